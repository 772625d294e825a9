"""The local backend through the real CLI: create (with SSH verification), list, terminate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes, pid_alive, port_accepts

from ess_local.state import ClusterStore


@pytest.fixture(autouse=True)
def _no_leftover_nodes(ess_home: Path):
    yield
    kill_test_nodes(ess_home)


def test_create_verify_list_terminate_through_the_cli(ess) -> None:
    created = ess("instance", "local", "create", "--number", "2", "--type", "lab", "--json")
    assert created.code == 0, created
    assert "log in by hand: ssh -i " in created.err and "UserKnownHostsFile=" in created.err

    listed = ess("instance", "local", "list", "--json")
    assert listed.code == 0, listed
    nodes = json.loads(listed.out)["nodes"]
    assert len(nodes) == 2
    assert {node["state"] for node in nodes} == {"running"}
    assert {node["instance_type"] for node in nodes} == {"lab"}

    verified = ess("instance", "local", "verify", "--json")
    assert verified.code == 0, verified

    pids = [record.pid for record in ClusterStore("default").read().nodes.values()]
    gone = ess("instance", "local", "terminate", "all", "--yes")
    assert gone.code == 0, gone
    assert not any(pid_alive(pid) for pid in pids)
    assert not any(port_accepts(node["port"]) for node in nodes)
    after = ess("instance", "local", "list")
    assert after.code == 0 and "has no nodes" in after.err + after.out
    assert not ClusterStore("default").dir.exists()


def test_bad_key_file_is_one_line_and_launches_nothing(ess, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    config = tmp_path / "instance.conf"
    config.write_text(f"[local]\nkey_file: {missing}\n")
    failed = ess("--config", str(config), "instance", "local", "create", "--cluster", "third")
    assert failed.code == 2, failed
    lines = failed.err.strip().splitlines()
    assert len(lines) == 1 and "missing.pem does not exist" in lines[0]
    assert not ClusterStore("third").dir.exists()


def test_plugin_import_is_light() -> None:
    code = (
        "import sys, ess_local.plugin\n"
        "heavy = [m for m in ('asyncssh', 'paramiko', 'boto3', 'cryptography', 'filelock') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
