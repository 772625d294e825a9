"""Per-cluster known_hosts: trust on first use, then verify every later connect.

The file lives at ``<data_dir>/known_hosts/<backend>-<cluster>`` in OpenSSH's format, so
``ssh -o UserKnownHostsFile=<that file>`` works against the same nodes. It is never
``~/.ssh/known_hosts``: a cluster's throwaway nodes reuse IP addresses, and mixing them with
the user's own hosts would turn every recycled address into a scary mismatch there.

Line numbers matter: a changed key is reported as "remove line N of <file>", the way
OpenSSH reports it, so the lookup keeps the line each entry came from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ess import paths
from ess.errors import EssError
from ess.files import atomic_write

if TYPE_CHECKING:
    import paramiko


#: Seconds to wait for another ess process to finish writing the same known_hosts file.
SAVE_LOCK_TIMEOUT = 30.0


def host_name(address: str, port: int) -> str:
    """The name a host is filed under: ``addr`` on port 22, ``[addr]:port`` otherwise (as OpenSSH)."""
    return address if port == 22 else f"[{address}]:{port}"


def _unreadable(path: Path, exc: OSError) -> EssError:
    """A known_hosts path that is a folder, or unreadable: one line, not an internal error."""
    return EssError(f"{path}: cannot read this known_hosts file ({exc.strerror}; remove or fix it)")


def known_hosts_path(backend: str, cluster: str) -> Path:
    """Where the known_hosts file of one cluster lives (the folder is created, mode 0700)."""
    path = paths.known_hosts_file(backend, cluster)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@dataclass(frozen=True)
class Entry:
    """One key line: the host patterns it names, its key type and base64 blob, its line number."""

    line: int
    hosts: tuple[str, ...]
    keytype: str
    blob: str

    def matches(self, name: str) -> bool:
        for pattern in self.hosts:
            if pattern.startswith("|1|"):
                if _hashed_match(pattern, name):
                    return True
            elif pattern == name:
                return True
        return False


def _hashed_match(pattern: str, name: str) -> bool:
    """OpenSSH's HashKnownHosts form: ``|1|base64(salt)|base64(hmac-sha1(salt, name))``."""
    try:
        _, _, salt, digest = pattern.split("|", 3)
        expected = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(expected, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def parse_line(text: str, line: int = 0) -> Entry | None:
    """One known_hosts line into an Entry; comments, blanks, markers and junk give None."""
    fields = text.split()
    if not fields or fields[0].startswith("#") or fields[0].startswith("@"):
        return None
    if len(fields) < 3:
        return None
    return Entry(line, tuple(fields[0].split(",")), fields[1], fields[2])


def parse_public_key(text: str) -> tuple[str, str] | None:
    """An OpenSSH public key line ("ssh-ed25519 AAAA... comment") into (type, blob)."""
    fields = text.split()
    if len(fields) >= 2 and fields[1].startswith("AAAA"):
        return fields[0], fields[1]
    # Some backends hand over known_hosts-style lines ("host ssh-ed25519 AAAA...").
    if len(fields) >= 3 and fields[2].startswith("AAAA"):
        return fields[1], fields[2]
    return None


class KnownHosts:
    """A thread-safe view of one known_hosts file with pending trust-on-first-use additions.

    Reads the file once; :meth:`learn` records a new key in memory (so a second connect
    to the same host in this run is already verified against it); :meth:`save` merges the
    additions into the file atomically (temp file + rename) under a file lock, re-reading
    it first so a concurrent ess run's additions are kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._index(self._read())
        self._added: list[tuple[str, str, str]] = []

    def _index(self, entries: list[Entry]) -> None:
        """Plain host names in a dict, hashed entries in a list: a lookup per connection
        scanning every line was O(N) per node, 1.9 s of CPU for 1,000 nodes (issue 17)."""
        self._by_name: dict[str, list[Entry]] = {}
        self._hashed: list[Entry] = []
        for entry in entries:
            for pattern in entry.hosts:
                if pattern.startswith("|1|"):
                    if not self._hashed or self._hashed[-1] is not entry:
                        self._hashed.append(entry)
                else:
                    named = self._by_name.setdefault(pattern, [])
                    if not named or named[-1] is not entry:
                        named.append(entry)

    def _read(self) -> list[Entry]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _unreadable(self.path, exc) from None
        entries = []
        for number, raw in enumerate(text.splitlines(), start=1):
            entry = parse_line(raw, number)
            if entry is not None:
                entries.append(entry)
        return entries

    def lookup(self, name: str) -> list[Entry]:
        """Every entry (from the file, or learned this run) that names this host."""
        with self._lock:
            found = list(self._by_name.get(name, ()))
            found += [entry for entry in self._hashed if entry.matches(name) and entry not in found]
            found.sort(key=lambda entry: entry.line)  # file order, as a full scan gave
            found += [Entry(0, (host,), keytype, blob) for host, keytype, blob in self._added if host == name]
            return found

    def learn(self, name: str, keytype: str, blob: str) -> None:
        """Trust a first-seen key for ``name``; written to the file by :meth:`save`."""
        with self._lock:
            if (name, keytype, blob) not in self._added:
                self._added.append((name, keytype, blob))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._added)

    def save(self) -> None:
        """Append what was learned this run, atomically; a no-op when nothing was learned.

        The read-merge-replace runs under a file lock (``<file>.lock``) as well as the
        thread lock: two ess processes saving at once would otherwise each write the file
        as they read it, and the later rename would drop the other's new keys.
        """
        from filelock import FileLock, Timeout

        with self._lock:
            if not self._added:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = FileLock(f"{self.path}.lock", timeout=SAVE_LOCK_TIMEOUT, mode=0o600)
            try:
                with lock:
                    self._merge_into_file()
            except Timeout:
                raise EssError(
                    f"{self.path}: could not lock {self.path}.lock within "
                    f"{SAVE_LOCK_TIMEOUT:g}s to record new host keys (another ess run holds "
                    "it; run again when it is done)"
                ) from None
            self._added.clear()
            self._index(self._read())

    def _merge_into_file(self) -> None:
        try:
            current = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            current = ""
        except OSError as exc:
            raise _unreadable(self.path, exc) from None
        if current and not current.endswith("\n"):
            current += "\n"
        lines = [
            f"{host} {keytype} {blob}\n"
            for host, keytype, blob in self._added
            if f"{host} {keytype} {blob}\n" not in current
        ]
        if not lines:
            return
        atomic_write(self.path, current + "".join(lines))


def to_paramiko(keytype: str, blob: str) -> paramiko.PKey | None:
    """A public key object paramiko can compare with what the server presents."""
    import paramiko

    try:
        return paramiko.PKey.from_type_string(keytype, base64.b64decode(blob))
    except Exception:  # an entry paramiko cannot read can never match; skip it, as OpenSSH does
        return None
