"""Issues 12 and 13 on the local backend's own files: lost or hostile state, modes, health.

state.json is an index, not the only record of a live node: deleted, damaged or of the
wrong shape, it is rebuilt from the node folders and the process table, and `terminate all`
still stops every node. Everything read back from disk is untrusted input.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes, node_pids, pid_alive, quiet, request, settings_for

from ess.models import RUNNING, STOPPED
from ess_local.backend import LocalBackend
from ess_local.state import ClusterStore


@pytest.fixture
def backend(ess_home: Path) -> Iterator[LocalBackend]:
    yield LocalBackend()
    kill_test_nodes(ess_home)


def _cluster(backend: LocalBackend, count: int = 2) -> tuple[object, list[str]]:
    settings = settings_for(backend)
    nodes = backend.create(settings, request(count), quiet())
    return settings, sorted(node.id for node in nodes)


BROKEN_STATE = {
    "deleted": None,
    "a list": "[]",
    "nodes is a number": '{"nodes": 5}',
    "a node without keys": '{"nodes": [{"id": "local-00000000"}, {"pid": 3}]}',
    "torn JSON": '{"nodes": [{"id": "loc',
}


@pytest.mark.parametrize("content", BROKEN_STATE.values(), ids=BROKEN_STATE.keys())
def test_broken_state_file_is_rebuilt_and_terminate_all_stops_every_node(backend, ess, ess_home, content) -> None:
    settings, ids = _cluster(backend)
    pids = node_pids(ess_home)
    state_path = ClusterStore("default").state_path
    if content is None:
        state_path.unlink()
    else:
        state_path.write_text(content)
    listed = ess("instance", "local", "list", "--json")
    assert listed.code == 0, listed
    nodes = json.loads(listed.out)["nodes"]
    assert sorted(node["id"] for node in nodes) == ids
    assert {node["state"] for node in nodes} == {RUNNING}
    assert all(node["port"] for node in nodes)  # the ports come back from the node folders
    gone = ess("instance", "local", "terminate", "all", "--yes")
    assert gone.code == 0, gone
    assert node_pids(ess_home) == [] and not any(pid_alive(pid) for pid in pids)
    assert not ClusterStore("default").dir.exists()


def test_state_and_node_records_lost_the_process_table_still_finds_the_nodes(backend, ess, ess_home) -> None:
    settings, ids = _cluster(backend)
    store = ClusterStore("default")
    store.state_path.unlink()
    for node_id in ids:
        (store.node_dir(node_id) / "node.json").unlink()
    assert sorted(node.id for node in backend.nodes(settings) if node.state == RUNNING) == ids
    assert ess("instance", "local", "terminate", "all", "--yes").code == 0
    assert node_pids(ess_home) == []


@pytest.mark.parametrize("hostile_id", ["/", "ABSOLUTE", "../../../victim", "local-1234", "local-0000000g"])
def test_node_ids_from_disk_never_become_paths(backend, ess, ess_home, tmp_path, hostile_id) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    node_id = str(victim) if hostile_id == "ABSOLUTE" else hostile_id
    settings, ids = _cluster(backend, 1)
    store = ClusterStore("default")
    data = json.loads(store.state_path.read_text())
    forged = dict(data["nodes"][0], id=node_id, pid=os.getpid(), port=1)
    data["nodes"].append(forged)
    store.state_path.write_text(json.dumps(data))
    assert [node.id for node in backend.nodes(settings)] == ids  # the forged record is ignored
    gone = ess("instance", "local", "terminate", "all", "--yes")
    assert gone.code == 0, gone
    assert (victim / "precious.txt").read_text() == "keep me"
    assert node_pids(ess_home) == []
    assert pid_alive(os.getpid())


def test_a_planted_symlink_among_the_node_folders_is_never_followed(backend, ess, ess_home, tmp_path) -> None:
    # A guard for the folder scan that rebuilds lost records: it must not follow links out.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (victim / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA planted\n")
    settings, ids = _cluster(backend, 1)
    planted = ClusterStore("default").dir / "nodes" / "local-deadbeef"
    planted.symlink_to(victim)
    gone = ess("instance", "local", "terminate", "all", "--yes")
    assert gone.code == 0, gone
    assert (victim / "precious.txt").read_text() == "keep me"
    assert node_pids(ess_home) == []


@pytest.mark.parametrize(
    "field,value",
    [
        ("pid", "12"),
        ("pid", -5),
        ("port", "22; rm -rf /"),
        ("port", 70000),
        ("tags", ["x"]),
        ("stopped", "no"),
        ("host_key", 7),
    ],
)
def test_fields_of_the_wrong_type_fall_back_to_the_node_folder(backend, field, value) -> None:
    settings, ids = _cluster(backend, 1)
    store = ClusterStore("default")
    data = json.loads(store.state_path.read_text())
    data["nodes"][0][field] = value
    store.state_path.write_text(json.dumps(data))
    [node] = backend.nodes(settings)
    assert (node.id, node.state) == (ids[0], RUNNING)
    ready = json.loads((store.node_dir(ids[0]) / "ready.json").read_text())
    assert node.port == ready["port"]
    assert node.host_keys[0].startswith("ssh-ed25519 ")


def test_folders_and_files_are_private(backend) -> None:
    settings, ids = _cluster(backend, 1)
    store = ClusterStore("default")
    node_dir = store.node_dir(ids[0])
    for folder in (store.dir, store.nodes_dir, node_dir, node_dir / "home"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for private in (
        store.state_path,
        store.known_hosts,
        store.generated_key,
        node_dir / "node.json",
        node_dir / "ssh_host_ed25519_key",
        node_dir / "authorized_keys",
        node_dir / "ready.json",
        node_dir / "node.log",
    ):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private


def test_a_killed_node_is_lost_a_stopped_one_is_not(backend, ess_home) -> None:
    settings, ids = _cluster(backend, 3)
    victim, stopped, healthy = ids
    record = ClusterStore("default").read().nodes[victim]
    os.kill(record.pid, signal.SIGKILL)
    os.waitpid(record.pid, 0)
    backend.stop(settings, [node for node in backend.nodes(settings) if node.id == stopped], quiet())
    by_id = {node.id: node for node in backend.nodes(settings)}
    assert (by_id[victim].state, by_id[victim].desired, by_id[victim].lost) == (STOPPED, RUNNING, True)
    assert by_id[victim].reason == "process exited"
    assert (by_id[stopped].state, by_id[stopped].desired, by_id[stopped].lost) == (STOPPED, STOPPED, False)
    assert (by_id[healthy].state, by_id[healthy].desired, by_id[healthy].lost) == (RUNNING, RUNNING, False)
    # start brings the lost node back: it is wanted running again, and is.
    backend.start(settings, [by_id[victim]], quiet())
    again = {node.id: node for node in backend.nodes(settings)}[victim]
    assert (again.state, again.lost) == (RUNNING, False)


def test_folders_an_older_ess_made_0755_become_private_on_start(backend) -> None:
    settings, ids = _cluster(backend, 1)
    store = ClusterStore("default")
    folders = (store.nodes_dir, store.node_dir(ids[0]) / "home")
    for folder in folders:
        folder.chmod(0o755)
    nodes = backend.nodes(settings)
    backend.stop(settings, nodes, quiet())
    backend.start(settings, nodes, quiet())
    assert [stat.S_IMODE(folder.stat().st_mode) for folder in folders] == [0o700, 0o700]
