"""Issue 13: OpenSSH's own clients against a local node: scp, sftp -b and rsync -e ssh exit 0.

OpenSSH's scp (SFTP mode, the default since 9.0) copied the file and exited 1, because the
node closed the SFTP channel without an exit status. Every client here must exit 0 and the
bytes must arrive intact, in the node's home folder.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes, quiet, request, settings_for
from support.tools import require

from ess.models import Node
from ess_local.backend import LocalBackend
from ess_local.state import ClusterStore

CLIENTS = ("scp", "sftp", "ssh", "rsync")


@pytest.fixture
def node(ess_home: Path) -> Iterator[tuple[Node, list[str], str, Path]]:
    require(*CLIENTS)
    backend = LocalBackend()
    settings = settings_for(backend)
    created = backend.create(settings, request(1), quiet())
    [node] = backend.wait(settings, created, quiet(), timeout=30)
    access = backend.access(settings)
    store = ClusterStore("default")
    options = [
        "-i",
        str(access.key_file),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={store.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
    ]
    yield node, options, f"{access.username}@127.0.0.1", store.node_dir(node.id) / "home"
    kill_test_nodes(ess_home)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_scp_sftp_and_rsync_exit_0(node, tmp_path: Path) -> None:
    target, options, login, home = node
    port = str(target.port)
    payload = tmp_path / "data.csv"
    payload.write_bytes(b"a,b\n" + bytes(range(256)) * 400)

    for mode in ([], ["-O"]):  # SFTP mode (the default) and the legacy protocol
        name = f"scp{''.join(mode)}.csv"
        copied = _run(["scp", *mode, *options, "-P", port, str(payload), f"{login}:{name}"], tmp_path)
        assert copied.returncode == 0, (mode, copied.stderr)
        assert (home / name).read_bytes() == payload.read_bytes()
    fetched = _run(["scp", *options, "-P", port, f"{login}:scp.csv", str(tmp_path / "back.csv")], tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "back.csv").read_bytes() == payload.read_bytes()

    batch = tmp_path / "batch"
    batch.write_text(f"mkdir inbox\nput {payload} inbox/data.csv\nls inbox\nget inbox/data.csv got.csv\n")
    sftp = _run(["sftp", *options, "-P", port, "-b", str(batch), login], tmp_path)
    assert sftp.returncode == 0, sftp.stderr
    assert (home / "inbox" / "data.csv").read_bytes() == (tmp_path / "got.csv").read_bytes() == payload.read_bytes()

    shell = shlex.join(["ssh", *options, "-p", port])
    synced = _run(["rsync", "-a", "-e", shell, str(payload), f"{login}:synced.csv"], tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert (home / "synced.csv").read_bytes() == payload.read_bytes()

    ran = _run(["ssh", *options, "-p", port, login, "exit 7"], tmp_path)
    assert ran.returncode == 7, ran.stderr
