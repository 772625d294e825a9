"""Issue 12: a local node's SFTP must not reach ess's own state folder.

`push state.json --dest ../../..` once overwrote the cluster's state.json (a node's home is
<state>/nodes/<id>/home) and orphaned its nodes. SFTP is now chrooted to the node's home:
no relative or absolute destination leaves it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes, node_pids

from ess_local.state import ClusterStore


@pytest.fixture
def cluster(ess, ess_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    monkeypatch.chdir(tmp_path)
    created = ess("instance", "local", "create", "--number", "2", "--json")
    assert created.code == 0, created
    yield sorted(node["id"] for node in json.loads(created.out)["nodes"])
    kill_test_nodes(ess_home)


@pytest.mark.parametrize("dest", ["../../..", "../../../..", "STATE_DIR", "/"])
def test_push_cannot_overwrite_the_cluster_state(ess, cluster: list[str], tmp_path: Path, dest: str) -> None:
    store = ClusterStore("default")
    before = store.state_path.read_bytes()
    (tmp_path / "state.json").write_text('{"nodes": []}\n')
    target = str(store.dir) if dest == "STATE_DIR" else dest
    pushed = ess("instance", "local", "push", "state.json", "--dest", target)
    assert pushed.code == 0, pushed
    assert store.state_path.read_bytes() == before
    listed = ess("instance", "local", "list", "--json")
    nodes = json.loads(listed.out)["nodes"]
    assert sorted(node["id"] for node in nodes) == cluster
    assert {node["state"] for node in nodes} == {"running"}
    for node_id in cluster:  # the copy landed inside the node's home, where it belongs
        home = store.node_dir(node_id) / "home"
        assert [path.read_text() for path in home.rglob("state.json")] == ['{"nodes": []}\n']


def test_commands_start_in_the_node_home(ess, cluster: list[str], ess_home: Path) -> None:
    ran = ess("instance", "local", "exec", "--json", "--", 'echo "$PWD|$HOME"')
    assert ran.code == 0, ran
    store = ClusterStore("default")
    for result in json.loads(ran.out)["results"]:
        home = store.node_dir(result["node"]) / "home"
        assert result["stdout"].strip() == f"{home}|{home}"
    gone = ess("instance", "local", "terminate", "all", "--yes")
    assert gone.code == 0 and node_pids(ess_home) == []
