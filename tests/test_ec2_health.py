"""Node health on EC2 (issue 13): a node stopped or terminated behind ess's back is lost.

ess marks what it asks for (ess:desired=stopped before StopInstances, =terminated before
TerminateInstances; start removes the mark), so ``list`` can tell the two apart from the one
DescribeInstances it already makes.
"""

from __future__ import annotations

import json

import pytest
from support.ec2_world import make_world

from ess.models import RUNNING, STOPPED, TERMINATED
from ess_ec2.membership import TAG_DESIRED


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    return make_world(tmp_path, monkeypatch)


def by_id(world):
    return {n.id: n for n in world.backend.nodes(world.settings())}


def tags_of(world, instance_id: str) -> dict[str, str]:
    reply = world.ec2.describe_instances(InstanceIds=[instance_id])
    return {t["Key"]: t["Value"] for t in reply["Reservations"][0]["Instances"][0].get("Tags", [])}


def test_stopped_or_terminated_behind_ess_back_is_listed_as_lost(world):
    a, b, c = (n.id for n in world.launch(3))
    world.ec2.stop_instances(InstanceIds=[a])
    world.ec2.terminate_instances(InstanceIds=[b])
    nodes = by_id(world)
    assert set(nodes) == {a, b, c}  # the terminated one too: EC2 still shows it
    assert (nodes[a].state, nodes[a].desired, nodes[a].lost) == (STOPPED, RUNNING, True)
    assert nodes[a].reason.startswith("stopped outside ess")
    assert (nodes[b].state, nodes[b].desired, nodes[b].lost) == (TERMINATED, RUNNING, True)
    assert nodes[b].reason.startswith("terminated outside ess")
    assert (nodes[c].desired, nodes[c].lost, nodes[c].reason) == (RUNNING, False, "")


def test_after_ess_stop_a_node_is_not_lost_and_start_clears_the_mark(world):
    nodes = world.launch(2)
    settings = world.settings()
    world.calls.reset()
    world.backend.stop(settings, nodes[:1], world.progress())
    marked = next(p for op, p in world.calls.made if op == "CreateTags")
    assert marked["Resources"] == [nodes[0].id] and marked["Tags"] == [{"Key": TAG_DESIRED, "Value": STOPPED}]
    listed = by_id(world)
    assert (listed[nodes[0].id].state, listed[nodes[0].id].desired, listed[nodes[0].id].lost) == (
        STOPPED,
        STOPPED,
        False,
    )
    world.backend.start(settings, nodes[:1], world.progress())
    assert TAG_DESIRED not in tags_of(world, nodes[0].id)
    assert world.calls.count("DeleteTags") == 1
    assert (by_id(world)[nodes[0].id].desired, by_id(world)[nodes[0].id].lost) == (RUNNING, False)


def test_nodes_ess_terminated_are_not_listed(world):
    nodes = world.launch(2)
    settings = world.settings()
    world.backend.terminate(settings, nodes, world.progress())
    assert {tags_of(world, n.id)[TAG_DESIRED] for n in nodes} == {TERMINATED}
    assert world.backend.nodes(settings) == []


def test_terminate_all_skips_an_already_terminated_lost_node(world, ess):
    a, b = (n.id for n in world.launch(2))
    world.ec2.terminate_instances(InstanceIds=[a])
    shown = ess("instance", "ec2", "list", "--json", "--config", str(world.conf))
    lost = {n["id"]: n for n in json.loads(shown.out)["nodes"]}
    assert lost[a]["lost"] is True and lost[a]["desired"] == RUNNING
    world.calls.reset()
    gone = ess("instance", "ec2", "terminate", "all", "--yes", "--json", "--config", str(world.conf))
    assert gone.code == 0, gone.err
    assert json.loads(gone.out)["terminated"] == [b]
    sent = [p["InstanceIds"] for op, p in world.calls.made if op == "TerminateInstances"]
    assert sent == [[b]]


def test_status_fails_a_node_stopped_behind_ess_back_but_not_one_ess_stopped(world, ess):
    a, b = (n.id for n in world.launch(2))
    conf = str(world.conf)
    world.ec2.stop_instances(InstanceIds=[a])
    lost = ess("instance", "ec2", "status", "--config", conf)
    assert lost.code == 3, lost
    assert a in lost.err and "stopped outside ess" in lost.err
    assert ess("instance", "ec2", "start", "--config", conf).code == 0
    stopped = ess("instance", "ec2", "stop", a, "--yes", "--config", conf)
    assert stopped.code == 0, stopped.err
    after = ess("instance", "ec2", "status", "--config", conf)
    assert after.code == 0, after
