"""Opening authenticated SSH connections to nodes: deadlines, host keys, readable failures.

:class:`Connector` is the shared plumbing of every SSH feature (``verify`` in check.py,
``exec`` in run.py, ``push`` in push.py): it loads the key once, applies the cluster's host-key policy and turns
paramiko's exceptions into :class:`SshFailure` with a reason a user can act on and a flag
saying whether retrying can help.

Every blocking step has its own timeout capped by the caller's deadline, and the sockets
are owned here, so :meth:`Connector.abort` can close them all and no host can hang a run.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ess.log import warn
from ess.models import UNPROBED_CONNECT_TIMEOUT, Access, Node

from .hostkeys import KnownHosts, host_name, known_hosts_path, parse_public_key, to_paramiko
from .keys import load_private_key
from .tail import TAIL_BYTES, Tail

if TYPE_CHECKING:
    import paramiko

    from ess.models import Settings
    from ess.progress import Progress

log = logging.getLogger(__name__)

INSECURE_WARNING = (
    "WARNING: insecure_skip_host_key_check is on: SSH host keys are NOT checked; "
    "anyone on the network path can impersonate these nodes"
)


class SshFailure(Exception):
    """A connect or command failure on one node; ``retry`` says whether trying again can help."""

    def __init__(
        self,
        reason: str,
        *,
        retry: bool,
        auth: bool = False,
        refused: bool = False,
        cut: bool = False,
        exited: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        #: The server refused the key: final for a node that has run a while, but a node
        #: that just booted may not have its authorized_keys written yet (cloud-init).
        self.auth = auth
        #: TCP connection refused: a booting node's sshd is not up yet, but on a node that
        #: was not just launched nothing listens there (see :func:`refused_for_good`).
        self.refused = refused
        #: The deadline ended a command that was running: what an earlier attempt's command
        #: exited with says more about the node than this (on a busy machine the last retry
        #: of a command that fails in 10 ms can be cut short).
        self.cut = cut
        #: The command ran to its end and exited non-zero.
        self.exited = exited


#: A node launched less than this many seconds ago is still booting: its key refusals and
#: refused connections are retried (on EC2, sshd starts and cloud-init writes the key pair
#: into authorized_keys some time after the instance is "running").
BOOT_GRACE = 180.0
#: Seconds a node that was not just launched (hosts, adopted machines) may refuse
#: connections before ess gives up on it: long enough for an sshd restart, not 300 s.
REFUSED_GRACE = 5.0


def just_launched(node: Node) -> bool:
    """True for a node launched within :data:`BOOT_GRACE` (unknown launch time: False)."""
    if node.launched_at is None:
        return False
    launched = node.launched_at if node.launched_at.tzinfo else node.launched_at.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - launched).total_seconds() < BOOT_GRACE


#: What a refused connection means on a node that is not booting.
NOTHING_LISTENS = "nothing listens for SSH there (is sshd running? is the port right?)"


class RefusedClock:
    """Times one node's refused connections: final after :data:`REFUSED_GRACE` unless just launched."""

    def __init__(self, node: Node, grace: float | None = None) -> None:
        self.node = node
        self.grace = REFUSED_GRACE if grace is None else grace
        self.booting = just_launched(node)
        self._since: float | None = None

    def final(self, failure: SshFailure) -> SshFailure | None:
        """The failure to give up with, if ``failure`` ends this node's retries; else None."""
        if not failure.refused:
            self._since = None
            return None
        if self.booting:
            return None
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if now - self._since < self.grace:
            return None
        return SshFailure(
            f"connection refused by {self.node.address} port {self.node.port} for {self.grace:g}s: {NOTHING_LISTENS}",
            retry=False,
            refused=True,
        )


def unreachable(node: Node, failure: SshFailure, limit: float) -> SshFailure:
    """The final failure of an unprobed node's first TCP connect: the machine or its sshd is down.

    Not retried: for such a node (a registered host, not a booting instance) this connect is
    what ``list``'s probe would have been, and it gives the same verdict in the same time.
    """
    if failure.refused:
        why = f"refused: {NOTHING_LISTENS}"
    elif failure.reason == "timed out":
        why = f"did not answer within {limit:g}s (is the machine up? does a firewall drop it?)"
    else:
        why = failure.reason
    return SshFailure(f"port {node.port} {why}", retry=False, refused=failure.refused)


@dataclass(frozen=True)
class CommandOutput:
    """How a command exited on one node, and the end of what it printed.

    ``stdout`` and ``stderr`` are the last ``tail`` bytes of each stream (see :mod:`ess_ssh.tail`);
    ``truncated`` says that more was printed (and handed to the ``on_output`` callback).
    """

    exit_code: int
    stdout: bytes
    stderr: bytes
    truncated: bool = False


#: ``on_output(stream, chunk)``: stream is "stdout" or "stderr", called as output arrives.
OutputCallback = Callable[[str, bytes], None]

#: The SSH window of a command's channel: the most a node can send before ess reads it.
#: paramiko's default (2 MiB) times 50 busy nodes would be 100 MB waiting in ess alone.
COMMAND_WINDOW = 256 * 1024


class Connector:
    """Authenticated paramiko connections to a cluster's nodes, one policy for all of them.

    Build it once per run (it loads the private key and the known_hosts file), use it from
    many threads, and call :meth:`close` at the end to write newly learned host keys.
    """

    def __init__(
        self,
        access: Access,
        *,
        connect_timeout: float = 10.0,
        strict: bool = False,
        insecure: bool = False,
        known_hosts: Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.access = access
        self.connect_timeout = connect_timeout
        self.strict = strict
        self.insecure = insecure
        self.key_file = Path(access.key_file).expanduser()
        self.pkey = load_private_key(self.key_file)
        self.known_hosts = KnownHosts(known_hosts or known_hosts_path(access.backend, access.cluster))
        self._sockets: set[socket.socket] = set()
        self._attempts: dict[str, int] = {}  # per node id, for the debug log
        self._lock = threading.Lock()
        self._aborted = False
        self._stop = threading.Event()
        if insecure:  # a security warning is never dropped: without a progress, ess.log's sink or stderr
            warn(INSECURE_WARNING, progress)

    @classmethod
    def from_settings(cls, access: Access, settings: Settings, progress: Progress | None = None) -> Connector:
        """A connector configured by the ssh_* settings (see :mod:`ess_ssh.plugin`)."""
        return cls(
            access,
            connect_timeout=float(settings.get("ssh_connect_timeout", 10.0)),
            strict=bool(settings.get("strict_host_keys", False)),
            insecure=bool(settings.get("insecure_skip_host_key_check", False)),
            progress=progress,
        )

    # -- connections --------------------------------------------------------------------
    def connect(self, node: Node, deadline: float | None = None) -> paramiko.SSHClient:
        """An authenticated client for ``node``, or :class:`SshFailure`; one attempt, no retry.

        Each phase (TCP, banner, key exchange, auth) gets ``connect_timeout`` capped by what
        is left until ``deadline`` (a ``time.monotonic()`` value). The debug log gets one line
        per attempt with its outcome, numbered per node over this connector's run.
        """
        with self._lock:
            attempt = self._attempts[node.id] = self._attempts.get(node.id, 0) + 1
        started = time.monotonic()
        try:
            client = self._connect(node, deadline)
        except SshFailure as failure:
            log.debug(
                "ssh %s %s@%s:%s attempt %d: %s after %.1f ms (%s)",
                node.id,
                self.access.username,
                node.address,
                node.port,
                attempt,
                failure.reason,
                (time.monotonic() - started) * 1000,
                "retryable" if failure.retry else "final",
            )
            raise
        log.debug(
            "ssh %s %s@%s:%s attempt %d: connected in %.1f ms",
            node.id,
            self.access.username,
            node.address,
            node.port,
            attempt,
            (time.monotonic() - started) * 1000,
        )
        return client

    def _connect(self, node: Node, deadline: float | None) -> paramiko.SSHClient:
        import paramiko

        _quiet_paramiko()
        if not node.address:
            raise SshFailure("node has no address (is it running? for EC2, check use_private_ip)", retry=False)
        limit = self._budget(deadline)
        sock = self._open_socket(node, limit)
        client = paramiko.SSHClient()
        name = host_name(node.address, node.port)
        known = self._known_keys(node, name, client)
        policy = _Policy(self, name)
        client.set_missing_host_key_policy(policy)
        try:
            limit = self._budget(deadline)
            client.connect(
                node.address,
                port=node.port,
                username=self.access.username,
                pkey=self.pkey,
                # timeout= only bounds the key exchange here (the socket is ours);
                # a little over banner_timeout so the banner's own error wins the race.
                sock=sock,
                timeout=limit + 0.5,
                banner_timeout=limit,
                auth_timeout=limit,
                channel_timeout=limit,
                allow_agent=False,
                look_for_keys=False,
            )
        except BaseException as exc:
            # paramiko's transport thread keeps the real cause (e.g. the banner timeout)
            # while connect() may report a later symptom such as "No existing session".
            saved = getattr(client.get_transport(), "saved_exception", None)
            fatal = (SshFailure, paramiko.BadHostKeyException)
            if isinstance(saved, Exception) and not isinstance(exc, fatal):
                exc = saved
            client.close()
            self._forget(sock)
            if isinstance(exc, SshFailure):
                raise
            if isinstance(exc, paramiko.BadHostKeyException):
                raise self._changed(node, name, exc.key, known) from None
            if isinstance(exc, Exception):
                raise self.classify(exc, limit) from None
            raise
        # The socket now belongs to the client; keep it registered so abort() can cut it.
        client.get_transport().ess_socket = sock
        if policy.learned is not None:
            self.known_hosts.learn(name, *policy.learned)
        return client

    def connect_with_retry(self, node: Node, deadline: float, on_attempt: Any = None) -> tuple[paramiko.SSHClient, int]:
        """Connect, retrying retryable failures with backoff until ``deadline``.

        Returns the client and the number of attempts. Raises the last :class:`SshFailure`
        when the deadline passes or a failure is not retryable.
        """
        attempts = 0
        delays = RetryDelay()
        refused = RefusedClock(node)
        while True:
            attempts += 1
            if on_attempt is not None:
                on_attempt(attempts)
            try:
                return self.connect(node, deadline), attempts
            except SshFailure as failure:
                if not failure.retry or self._aborted:
                    raise
                final = refused.final(failure)
                if final is not None:
                    raise final from None
                if not self.sleep_until_retry(delays.after(failure), deadline):
                    raise

    def release(self, client: paramiko.SSHClient) -> None:
        """Close a client from :meth:`connect` and stop tracking its socket."""
        transport = client.get_transport()
        sock = getattr(transport, "ess_socket", None) if transport else None
        client.close()
        if sock is not None:
            self._forget(sock)

    def abort(self) -> None:
        """Close every socket still open: blocked threads wake up with an error at once."""
        with self._lock:
            self._aborted = True
            self._stop.set()
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        """Write host keys learned during this run to the cluster's known_hosts file."""
        self.known_hosts.save()

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sleep_until_retry(self, delay: float, deadline: float) -> bool:
        """Sleep ``delay`` (never past ``deadline``, woken by :meth:`abort`); False if no time is left."""
        remaining = deadline - time.monotonic()
        if remaining <= 0.05 or self._aborted:
            return False
        self._stop.wait(min(delay, remaining - 0.05))
        return not self._aborted and deadline - time.monotonic() > 0.05

    # -- commands -------------------------------------------------------------------------
    def run(
        self,
        client: paramiko.SSHClient,
        command: str,
        deadline: float | None = None,
        on_output: OutputCallback | None = None,
        tail: int = TAIL_BYTES,
    ) -> CommandOutput:
        """Run ``command`` on a connected client; its exit code and output tails, or SshFailure.

        ``on_output`` gets every chunk as it arrives; memory stays bounded either way (the
        last ``tail`` bytes of each stream are kept).
        """
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise SshFailure("connection closed before the command could run", retry=True)
        try:
            channel = transport.open_session(window_size=COMMAND_WINDOW, timeout=self._budget(deadline))
        except Exception as exc:
            raise self.classify(exc, self._budget(deadline)) from None
        try:
            channel.exec_command(command)
            # ess sends nothing on stdin: EOF at once (as `ssh -n` and pssh do), so `cat`, `read`
            # or a forgotten prompt ends instead of waiting until the deadline.
            channel.shutdown_write()
            return _collect(channel, command, deadline, on_output, tail)
        except (OutputFailure, SshFailure):
            raise
        except Exception as exc:
            raise self.classify(exc, self._budget(deadline)) from None
        finally:
            channel.close()

    # -- internals ------------------------------------------------------------------------
    def _budget(self, deadline: float | None) -> float:
        if deadline is None:
            return self.connect_timeout
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            # Retryable on purpose: callers then report the node's last real error instead.
            raise SshFailure("timed out", retry=True)
        return max(min(self.connect_timeout, remaining), 0.05)

    def _open_socket(self, node: Node, limit: float) -> socket.socket:
        if node.unprobed:
            # This connect is the backend's probe (Node.unprobed): its limit, and its verdict.
            limit = min(limit, UNPROBED_CONNECT_TIMEOUT)
        try:
            sock = socket.create_connection((node.address, node.port), timeout=limit)
        except Exception as exc:
            failure = self.classify(exc, limit)
            if node.unprobed:
                raise unreachable(node, failure, limit) from None
            raise failure from None
        with self._lock:
            if self._aborted:
                sock.close()
                raise SshFailure("timed out", retry=False)
            self._sockets.add(sock)
        return sock

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _known_keys(self, node: Node, name: str, client: paramiko.SSHClient) -> list[tuple[int, str, str]]:
        """Put the trusted keys for this node into ``client``; return (line, type, blob) of each."""
        if self.insecure:
            return []
        keys: list[tuple[int, str, str]] = []
        if node.host_keys:
            # Keys the backend learned out of band are the whole truth for this node.
            for line in node.host_keys:
                parsed = parse_public_key(line)
                if parsed:
                    keys.append((0, *parsed))
        else:
            keys = [(entry.line, entry.keytype, entry.blob) for entry in self.known_hosts.lookup(name)]
        store = client.get_host_keys()
        for _, keytype, blob in keys:
            key = to_paramiko(keytype, blob)
            if key is not None:
                store.add(name, keytype, key)
        return keys

    def _changed(self, node: Node, name: str, presented: Any, known: list[tuple[int, str, str]]) -> SshFailure:
        if node.host_keys:
            return SshFailure(
                f"host key of {name} does not match the key the {self.access.backend} backend "
                "reported for this node (the node may have been replaced or impersonated)",
                retry=False,
            )
        same_type = [line for line, keytype, _ in known if keytype == presented.get_name()]
        lines = [line for line in same_type or [line for line, _, _ in known] if line > 0]
        path = self.known_hosts.path
        where = f"line {lines[0]} of {path}" if lines else f"the entry in {path}"
        return SshFailure(
            f"host key changed: remove {where} if the node was really replaced "
            f"(otherwise someone may be impersonating {name})",
            retry=False,
        )

    def classify(self, exc: BaseException, limit: float) -> SshFailure:
        """Turn a paramiko/socket exception into a reason a user can act on (never key material)."""
        import paramiko

        if isinstance(exc, SshFailure):
            return exc
        if isinstance(exc, paramiko.AuthenticationException):
            text = str(exc).lower()
            if "timeout" in text:
                return SshFailure(f"authentication did not finish within {round(limit, 1):g}s", retry=True)
            return SshFailure(
                f"authentication failed with key {self.key_file} for user {self.access.username}",
                retry=False,
                auth=True,
            )
        if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError)):
            return SshFailure("connection refused", retry=True, refused=True)
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return SshFailure("timed out", retry=True)
        if isinstance(exc, socket.gaierror):
            return SshFailure(f"cannot resolve the address ({exc.strerror})", retry=True)
        if isinstance(exc, paramiko.SSHException):
            text = str(exc)
            if any(
                sign in text for sign in ("Indecipherable protocol version", "Invalid SSH banner", "codec can't decode")
            ):
                return SshFailure("not an SSH server: the banner is garbled (is the port right?)", retry=True)
            if "banner" in text.lower():
                return SshFailure(f"no SSH banner within {round(limit, 1):g}s", retry=True)
            if "No existing session" in text:
                return SshFailure(f"SSH handshake did not finish within {round(limit, 1):g}s", retry=True)
            if "Timeout opening channel" in text:
                return SshFailure(f"no session channel within {round(limit, 1):g}s", retry=True)
            return SshFailure(f"SSH error: {text}", retry=True)
        if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError)):
            return SshFailure("connection closed by the node", retry=True)
        if isinstance(exc, OSError):
            if exc.errno == errno.EHOSTUNREACH:
                return SshFailure("no route to host", retry=True)
            if exc.errno == errno.ENETUNREACH:
                return SshFailure("network unreachable", retry=True)
            if self._aborted or exc.errno == errno.EBADF:
                return SshFailure("timed out", retry=False)
            return SshFailure(f"network error: {exc.strerror or exc}", retry=True)
        return SshFailure(f"{type(exc).__name__}: {exc}", retry=True)


def _quiet_paramiko() -> None:
    """paramiko logs every failed handshake as ERROR lines with a traceback (20 to 50 lines
    for one garbled banner); ess reports one line per node instead.

    Its records stop at the "paramiko" logger unless ``--debug`` is on (the CLI then sets the
    ``ess_ssh`` logger to DEBUG): only then do they reach the CLI's redacting stderr
    handler. The NullHandler keeps Python's last-resort handler from printing them when no
    handler is configured at all (ess used as a library).
    """
    import logging

    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = logging.getLogger("ess_ssh").isEnabledFor(logging.DEBUG)


#: Backoff between attempts on one node: fresh cloud nodes take tens of seconds to start sshd.
BACKOFF_START = 0.25
BACKOFF_FACTOR = 1.6
BACKOFF_MAX = 5.0
#: Seconds between attempts while a node refuses the TCP connection (sshd not started yet).
#: A refusal costs microseconds on loopback and one round trip to a cloud node, so polling
#: this often is cheap, and the node is noticed at most this long after sshd listens
#: (the backoff above would wait up to BACKOFF_MAX, issue 17).
REFUSED_RETRY = 0.25


class RetryDelay:
    """The wait before one node's next attempt: short while it refuses, backing off otherwise.

    Refusals do not grow the backoff: a booting node refuses until sshd listens and should be
    tried again soon after; slow failures (timeouts, a key not yet authorized) back off.
    """

    def __init__(self) -> None:
        self._next = BACKOFF_START

    def after(self, failure: SshFailure) -> float:
        if failure.refused:
            return REFUSED_RETRY
        delay = self._next
        self._next = min(delay * BACKOFF_FACTOR, BACKOFF_MAX)
        return delay


class _Policy:
    """paramiko calls this only for a host with no trusted key: trust on first use, or refuse."""

    def __init__(self, connector: Connector, name: str) -> None:
        self.connector = connector
        self.name = name
        self.learned: tuple[str, str] | None = None

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        if self.connector.insecure:
            return
        if self.connector.strict:
            raise SshFailure(
                f"host key of {self.name} is not known and strict_host_keys is on (add the "
                f"node's key to {self.connector.known_hosts.path} or turn strict_host_keys off)",
                retry=False,
            )
        # Recorded only once authentication succeeds, so a key is never filed for a failed node.
        self.learned = (key.get_name(), key.get_base64())


class OutputFailure(Exception):
    """The ``on_output`` callback raised: the caller's problem, not the node's (never retried)."""


#: Once the command's exit status is in: how long output may go quiet before ess stops
#: waiting for its end (a background `worker &` holds stdout open; `ssh` would wait for it).
AFTER_EXIT = 1.0
STATUS_POLL = 0.25


def _collect(
    channel: Any,
    command: str,
    deadline: float | None,
    on_output: OutputCallback | None = None,
    tail: int = TAIL_BYTES,
) -> CommandOutput:
    """Read stdout and stderr until the command exits; both at once, so neither stream stalls.

    Each chunk goes to ``on_output`` and into a bounded tail, never into an unbounded buffer.
    The command has exited when its exit status is in and its output ended, or went quiet
    for AFTER_EXIT (or the deadline came) after the status.
    """
    out, err = Tail(tail), Tail(tail)

    def drain() -> bool:
        got = False
        while channel.recv_ready():
            _take("stdout", channel.recv(65536), out, on_output)
            got = True
        while channel.recv_stderr_ready():
            _take("stderr", channel.recv_stderr(65536), err, on_output)
            got = True
        return got

    def finished() -> CommandOutput:
        drain()
        return CommandOutput(_exit_code(channel, command), out.value(), err.value(), out.truncated or err.truncated)

    quiet_since: float | None = None
    while True:
        got = drain()
        if channel.eof_received or channel.closed:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            if not channel.status_event.wait(remaining):
                break
            return finished()
        now = time.monotonic()
        if channel.exit_status_ready():
            if quiet_since is None or got:
                quiet_since = now
            elif now - quiet_since >= AFTER_EXIT:
                log.debug("%r exited; its output is still held open (a background process): not waited for", command)
                return finished()
        remaining = None if deadline is None else deadline - now
        if remaining is not None and remaining <= 0:
            if quiet_since is not None:
                return finished()
            break
        # The channel's fileno is readable when stdout or stderr has data, or on EOF/close, but
        # not when the exit status comes in: look for that every STATUS_POLL.
        wait = STATUS_POLL if quiet_since is None else quiet_since + AFTER_EXIT - now
        select.select([channel], [], [], wait if remaining is None else min(wait, remaining))
    raise SshFailure(f"command {command!r} did not finish in time", retry=True, cut=True)


def _exit_code(channel: Any, command: str) -> int:
    """The command's exit status; SshFailure when the channel closed without one.

    paramiko sets the status event on close too, leaving the status at -1: that is a
    connection that dropped, or a command killed by a signal (OpenSSH then sends
    "exit-signal", which paramiko ignores), never an exit code.
    """
    code = int(channel.exit_status)
    if code >= 0:
        return code
    transport = channel.get_transport()
    if transport is None or not transport.is_active():
        raise SshFailure(f"connection lost while {command!r} ran", retry=True)
    raise SshFailure(f"{command!r} ended without an exit status (killed by a signal?)", retry=True)


def _take(stream: str, chunk: bytes, tail: Tail, on_output: OutputCallback | None) -> None:
    tail.add(chunk)
    if on_output is not None and chunk:
        try:
            on_output(stream, chunk)
        except Exception as exc:
            raise OutputFailure(f"{type(exc).__name__}: {exc}") from exc
