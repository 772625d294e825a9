"""stop / start through the CLI cost the same EC2 calls for 2 nodes as for 200."""

from __future__ import annotations

import json

import pytest
from support.ec2_world import make_world

from ess.models import TAG_CLUSTER, TAG_LAUNCH


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    return make_world(tmp_path, monkeypatch)


def power_cycle(world, ess, cluster: str, count: int):
    """Launch ``count`` cluster nodes in one call, then `stop --yes` and `start` them."""
    tags = [
        {"Key": TAG_CLUSTER, "Value": cluster},
        {"Key": TAG_LAUNCH, "Value": cluster},
        {"Key": "Name", "Value": "Essentia Worker Node"},
    ]
    reply = world.ec2.run_instances(
        ImageId=world.image,
        MinCount=count,
        MaxCount=count,
        InstanceType="m3.medium",
        KeyName="pem_file",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    ids = {i["InstanceId"] for i in reply["Instances"]}
    conf = str(world.conf)
    world.calls.reset()
    stopped = ess("instance", "ec2", "stop", "--yes", "--json", "--cluster", cluster, "--config", conf)
    assert stopped.code == 0, stopped.err
    stop_calls = world.calls.by_operation()
    # The JSON is the core's list() after the change: EC2's own view, read once.
    after_stop = json.loads(stopped.out)["nodes"]
    assert {n["id"] for n in after_stop} == ids and {n["state"] for n in after_stop} == {"stopped"}
    world.calls.reset()
    started = ess("instance", "ec2", "start", "--json", "--cluster", cluster, "--config", conf)
    assert started.code == 0, started.err
    start_calls = world.calls.by_operation()
    after_start = json.loads(started.out)["nodes"]
    assert {n["id"] for n in after_start} == ids and {n["state"] for n in after_start} == {"running"}
    return stop_calls, start_calls


def test_stop_and_start_cost_the_same_calls_for_2_and_200_nodes(world, ess):
    small_stop, small_start = power_cycle(world, ess, "small", 2)
    big_stop, big_start = power_cycle(world, ess, "big", 200)
    assert big_stop == small_stop and big_start == small_start
    assert small_stop["StopInstances"] == 1 and small_start["StartInstances"] == 1
    # stop marks its nodes ess:desired=stopped first and start removes the mark (issue 13):
    # one batched CreateTags / DeleteTags each, whatever the count.
    assert small_stop["CreateTags"] == 1 and small_start["DeleteTags"] == 1
    sent = [p for op, p in world.calls.made if op == "StartInstances"]
    assert len(sent) == 1 and len(sent[0]["InstanceIds"]) == 200
    # list, the backend's tag re-check, one wait poll, the list shown: nothing per instance.
    assert small_stop["DescribeInstances"] == small_start["DescribeInstances"] == 4


def test_stop_without_yes_off_a_terminal_changes_nothing(world, ess):
    world.launch(2)
    world.calls.reset()
    result = ess("instance", "ec2", "stop", "--config", str(world.conf))
    assert result.code == 2 and "--yes" in result.err
    assert world.calls.mutating() == []


def test_stop_and_start_leave_out_a_node_terminated_outside_ess(world):
    """A lost node EC2 still lists as terminated is neither asked about nor sent to the backend."""
    from ess.api import Cluster

    kept, gone = world.launch(2)
    world.ec2.terminate_instances(InstanceIds=[gone.id])  # behind ess's back: a lost node
    cluster = Cluster.from_settings(world.settings())
    assert {n.id: n.lost for n in cluster.nodes()} == {kept.id: False, gone.id: True}
    asked: list[list[str]] = []
    stopped = cluster.stop(confirm=lambda nodes: asked.append(sorted(n.id for n in nodes)))
    assert asked == [[kept.id]]
    assert {n.id: n.state for n in stopped}[kept.id] == "stopped"
    sent = [p["InstanceIds"] for op, p in world.calls.made if op in ("StopInstances", "StartInstances")]
    world.calls.reset()
    started = cluster.start()
    sent += [p["InstanceIds"] for op, p in world.calls.made if op in ("StopInstances", "StartInstances")]
    assert sent == [[kept.id], [kept.id]]
    assert {n.id: n.state for n in started}[kept.id] == "running"
