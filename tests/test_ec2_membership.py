"""add / remove on EC2 through the CLI: adopt by instance or reservation id, release by tags."""

from __future__ import annotations

import json

import pytest
from support.ec2_world import make_world

from ess.models import TAG_ADOPTED, TAG_CLUSTER, TAG_CREATED_BY, TAG_LAUNCH


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    return make_world(tmp_path, monkeypatch)


def cli(ess, world, *args: str):
    return ess("instance", "ec2", *args, "--config", str(world.conf))


def tags(world, instance_id: str) -> dict[str, str]:
    reply = world.ec2.describe_instances(InstanceIds=[instance_id])
    return {t["Key"]: t["Value"] for t in reply["Reservations"][0]["Instances"][0].get("Tags", [])}


def listed(ess, world) -> set[str]:
    result = cli(ess, world, "list", "--json")
    assert result.code == 0, result.err
    return {n["id"] for n in json.loads(result.out)["nodes"]}


def test_add_instances_by_id_in_one_describe_and_one_create_tags(world, ess):
    ids = world.foreign(3)
    world.calls.reset()
    result = cli(ess, world, "add", *ids, "--yes")
    assert result.code == 0, result.err
    assert "added 3 node(s) to cluster 'default'" in result.out
    ops = world.calls.by_operation()
    assert ops["CreateTags"] == 1 and ops["DescribeInstances"] == 1
    sent = next(p for op, p in world.calls.made if op == "CreateTags")
    # The instances, and their volumes in the same call (tests/test_heal.py checks the volumes).
    assert sorted(r for r in sent["Resources"] if r.startswith("i-")) == sorted(ids)
    for instance_id in ids:
        found = tags(world, instance_id)
        assert found[TAG_CLUSTER] == "default" and found[TAG_ADOPTED] == "true" and found[TAG_CREATED_BY]
        assert found["Name"] == "Essentia Worker Node"  # the user's label is left alone
    assert listed(ess, world) == set(ids)


def test_add_a_reservation_takes_all_its_live_instances(world, ess):
    reply = world.ec2.run_instances(ImageId=world.image, MinCount=3, MaxCount=3, InstanceType="m3.medium")
    ids = [i["InstanceId"] for i in reply["Instances"]]
    world.ec2.terminate_instances(InstanceIds=ids[:1])
    result = cli(ess, world, "add", reply["ReservationId"], "--yes")
    assert result.code == 0, result.err
    assert listed(ess, world) == set(ids[1:])


def test_terminate_all_keeps_adopted_and_remove_releases_without_stopping(world, ess):
    mine = [n.id for n in world.launch(2)]
    adopted = world.foreign(1)
    assert cli(ess, world, "add", *adopted, "--yes").code == 0
    gone = cli(ess, world, "terminate", "all", "--yes")
    assert gone.code == 0, gone.err
    assert set(world.states(mine).values()) == {"terminated"}
    assert world.states(adopted) == {adopted[0]: "running"}

    world.calls.reset()
    removed = cli(ess, world, "remove", adopted[0], "--yes")
    assert removed.code == 0, removed.err
    assert world.calls.count("DeleteTags") == 1
    sent = next(p for op, p in world.calls.made if op == "DeleteTags")
    assert {t["Key"] for t in sent["Tags"]} == {
        TAG_CLUSTER,
        TAG_LAUNCH,
        TAG_CREATED_BY,
        "ess:created-at",
        TAG_ADOPTED,
        "ess:adopted-proof",
        "ess:desired",
    }
    assert tags(world, adopted[0]) == {"Name": "Essentia Worker Node"}
    assert world.states(adopted) == {adopted[0]: "running"}
    assert listed(ess, world) == set()


def test_adding_a_node_already_in_the_cluster_does_not_mark_it_adopted(world, ess):
    mine = world.launch(1)
    world.calls.reset()
    result = cli(ess, world, "add", mine[0].id, "--yes")
    assert result.code == 0, result.err
    assert world.calls.count("CreateTags") == 0
    assert TAG_ADOPTED not in tags(world, mine[0].id)


@pytest.mark.parametrize("case", ["unknown", "malformed", "terminated", "other-cluster", "unknown-reservation"])
def test_bad_ids_are_one_line_exit_2_and_change_nothing(world, ess, case):
    good = world.foreign(1)
    if case == "unknown":
        bad, expected = "i-0123456789abcdef0", "no such instance in us-east-1"
    elif case == "malformed":
        bad, expected = "web-1", "not an EC2 instance id (i-...) or reservation id (r-...)"
    elif case == "terminated":
        bad = world.foreign(1)[0]
        world.ec2.terminate_instances(InstanceIds=[bad])
        expected = "the instance is terminated"
    elif case == "other-cluster":
        bad = world.foreign(1, tags={TAG_CLUSTER: "blue"})[0]
        expected = "belongs to ess cluster 'blue'"
    else:
        bad, expected = "r-0123456789abcdef0", "no such reservation in us-east-1"
    world.calls.reset()
    result = cli(ess, world, "add", good[0], bad, "--yes")
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and expected in result.err and bad in result.err
    assert world.calls.mutating() == []
    assert TAG_CLUSTER not in tags(world, good[0])


def test_remove_refuses_ids_outside_the_cluster(world, ess):
    foreign = world.foreign(1)
    world.calls.reset()
    result = cli(ess, world, "remove", foreign[0], "--yes")
    assert result.code == 2 and "not a node of cluster 'default'" in result.err
    assert world.calls.mutating() == []
