"""The cluster surface (status, iplist, stop/start) through the CLI on the real backends."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from support.ec2_world import make_world
from support.local_helpers import kill_test_nodes, pid_alive


# -- local: real node processes ------------------------------------------------------------
@pytest.fixture
def local_nodes(ess, ess_home):
    yield
    ess("instance", "local", "terminate", "all", "--yes")
    kill_test_nodes(ess_home)


def local_state(ess_home) -> dict:
    files = list((ess_home / "state" / "local").glob("*/state.json"))
    return json.loads(files[0].read_text()) if files else {}


def test_local_status_iplist_stop_start(ess, ess_home, local_nodes):
    created = ess("instance", "local", "create", "--number", "2", "--no-verify", "--json")
    assert created.code == 0, created
    nodes = json.loads(created.out)["nodes"]
    status = json.loads(ess("instance", "local", "status", "--ssh", "--json").out)
    assert [n["state"] for n in status["nodes"]] == ["running", "running"]
    assert all(n["checks"][0]["ok"] for n in status["nodes"]) and all(n["uptime"] for n in status["nodes"])
    # Local nodes listen on their own ports: iplist gives ADDRESS:PORT, usable by a script.
    assert ess("instance", "local", "iplist").out.split() == [f"127.0.0.1:{n['port']}" for n in nodes]
    pids = [record["pid"] for record in local_state(ess_home)["nodes"]]
    assert all(pid_alive(pid) for pid in pids)

    stopped = ess("instance", "local", "stop", "--yes")
    assert stopped.code == 0, stopped
    assert {n["state"] for n in json.loads(ess("instance", "local", "list", "--json").out)["nodes"]} == {"stopped"}
    assert not any(pid_alive(pid) for pid in pids), "stop must end the node processes"
    assert ess("instance", "local", "iplist").out == ""

    started = ess("instance", "local", "start")
    assert started.code == 0, started
    after = json.loads(ess("instance", "local", "list", "--json").out)["nodes"]
    assert {n["state"] for n in after} == {"running"}
    assert sorted((n["id"], n["port"]) for n in after) == sorted((n["id"], n["port"]) for n in nodes)
    assert ess("instance", "local", "verify").code == 0


# -- ec2 on moto -----------------------------------------------------------------------------
def test_ec2_status_and_iplist(ess, moto_endpoint, tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch)
    monkeypatch.setenv("ESS_CONFIG", str(world.conf))
    assert ess("instance", "ec2", "create", "--number", "3", "--no-verify").code == 0
    world.foreign(1)
    world.calls.reset()
    status = json.loads(ess("instance", "ec2", "status", "--json").out)
    assert len(status["nodes"]) == 3 and {n["instance_type"] for n in status["nodes"]} == {"m3.medium"}
    assert all(n["public_ip"] and n["private_ip"] for n in status["nodes"])
    assert world.calls.by_operation() == Counter({"DescribeInstances": 1})
    public = ess("instance", "ec2", "iplist").out.split()
    private = ess("instance", "ec2", "iplist", "--private").out.split()
    assert sorted(public) == sorted(n["public_ip"] for n in status["nodes"])  # use_private_ip: False
    assert sorted(private) == sorted(n["private_ip"] for n in status["nodes"])
    monkeypatch.setenv("ESS_USE_PRIVATE_IP", "true")
    assert sorted(ess("instance", "ec2", "iplist").out.split()) == sorted(private)
    table = ess("instance", "ec2", "status").out.splitlines()
    # EC2 knows each node's zone and lifecycle: they get columns; a summary line ends the table.
    header = ["ID", "STATE", "PUBLIC_IP", "PRIVATE_IP", "TYPE", "ZONE", "LIFECYCLE", "UPTIME"]
    assert table[0].split() == header and len(table) == 5 and table[-1] == "3/3 running"
