"""known_hosts lookups stay cheap with 1,000 nodes, and find what a full scan found.

Each connection looks its host up; scanning every line made a 1,000-node run do a million
comparisons (1.9 s of CPU, issue 17). Plain names are indexed; only hashed lines
(``|1|salt|hmac``, OpenSSH's HashKnownHosts) still need a comparison each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from ess_ssh import hostkeys
from ess_ssh.hostkeys import KnownHosts

BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIGcmW0qC6kBq0dbc1RGk1N3jvXK8ZpSOmZxfJc2kYy8n"


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def names(count: int) -> list[str]:
    return [f"[127.77.{i // 250}.{i % 250 + 1}]:{30001 + i % 16}" for i in range(count)]


def test_lookup_compares_only_hashed_lines(tmp_path: Path, monkeypatch):
    hosts = names(1000)
    lines = [f"{name} ssh-ed25519 {BLOB}\n" for name in hosts]
    lines.insert(500, f"{hashed(hosts[7])} ssh-rsa AAAAB3Nza\n")
    path = tmp_path / "known_hosts"
    path.write_text("".join(lines))
    known = KnownHosts(path)
    calls = []
    real = hostkeys.Entry.matches
    monkeypatch.setattr(hostkeys.Entry, "matches", lambda self, name: calls.append(name) or real(self, name))
    for name in hosts:
        assert [e.keytype for e in known.lookup(name)][:1] == ["ssh-ed25519"]
    # One comparison per lookup (the hashed line), not one per line of the file (1001).
    assert len(calls) == len(hosts)


def test_lookup_finds_plain_hashed_and_multi_name_lines_in_file_order(tmp_path: Path):
    path = tmp_path / "known_hosts"
    path.write_text(
        f"# comment\n{hashed('node1')} ssh-rsa AAAAB3Nzaone\n"
        f"other,node1 ssh-ed25519 {BLOB}\n@revoked node1 ssh-ed25519 {BLOB}\n"
        f"node2 ssh-ed25519 {BLOB}\nnode1 ecdsa-sha2-nistp256 AAAAE2Vj\n"
    )
    known = KnownHosts(path)
    assert [(e.line, e.keytype) for e in known.lookup("node1")] == [
        (2, "ssh-rsa"),
        (3, "ssh-ed25519"),
        (6, "ecdsa-sha2-nistp256"),
    ]
    assert [e.line for e in known.lookup("other")] == [3]
    assert known.lookup("node3") == []
    known.learn("node3", "ssh-ed25519", BLOB)
    assert [(e.line, e.blob) for e in known.lookup("node3")] == [(0, BLOB)]
    known.save()
    assert [e.line for e in known.lookup("node3")] == [7]


def test_a_known_hosts_path_that_is_a_folder_is_one_line_not_an_internal_error(ess, tmp_path: Path):
    """Red team, 2026-12-01: 'ess: internal error: IsADirectoryError'."""
    from ess_ssh.hostkeys import known_hosts_path

    assert ess("instance", "local", "create", "--number", "1", "--no-verify").code == 0
    try:
        path = known_hosts_path("local", "default")
        path.unlink(missing_ok=True)
        path.mkdir()
        verified = ess("instance", "local", "verify")
        assert verified.code == 1, verified
        assert verified.err.strip().splitlines()[-1] == (
            f"ess: {path}: cannot read this known_hosts file (Is a directory; remove or fix it)"
        ), verified.err
        path.rmdir()
    finally:
        assert ess("instance", "local", "terminate", "all", "--yes").code == 0
