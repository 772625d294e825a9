"""paramiko's handshake tracebacks stay off stderr unless --debug (#12): a real `ess` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.ssh_helpers import GarbageServer

from ess.testing.sshd import generate_ed25519_key, write_private_key


def ess_process(*args: str, home: Path, key: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ESS_HOME": str(home), "ESS_KEY_FILE": str(key)}
    return subprocess.run(
        [sys.executable, "-m", "ess", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_a_garbage_banner_is_one_line_without_debug_and_tracebacks_with_it(tmp_path: Path) -> None:
    key = write_private_key(generate_ed25519_key(), tmp_path / "key")
    with GarbageServer() as server:
        quiet = ess_process(
            "instance", "hosts", "create", f"127.0.0.1:{server.port}", "--timeout", "3", home=tmp_path / "a", key=key
        )
        loud = ess_process(
            "instance",
            "hosts",
            "create",
            f"127.0.0.1:{server.port}",
            "--timeout",
            "3",
            "--debug",
            home=tmp_path / "b",
            key=key,
        )
    assert server.connections >= 2  # ess did talk to it (several attempts each)
    assert quiet.returncode == 1, quiet.stderr
    assert "paramiko" not in quiet.stderr and "Traceback" not in quiet.stderr, quiet.stderr
    lines = quiet.stderr.splitlines()
    assert len(lines) <= 8, quiet.stderr  # progress, cleanup and the one-line verdict
    assert lines[-1].startswith(
        f"ess: verification failed on 1 of 1 node(s): 127.0.0.1:{server.port}: "
        "not an SSH server: the banner is garbled (is the port right?)"
    )
    assert loud.returncode == 1
    assert "ERROR paramiko.transport: Traceback" in loud.stderr  # --debug shows them, via ess's handler
