"""The fleet path: one CreateFleet over every (type, subnet) pool, against moto with capacity.

moto has no capacity limits; tests/support/capacity.py adds them in the moto server of
this process (per pool), and makes its CreateFleet fill by priority and answer ``Errors``.
Plans are built from a preflighted one, with the lists and market set directly.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from support import capacity
from support.capacity import Capacity
from support.ec2_world import World, make_world, reply_lost

from ess import provision
from ess.errors import EssError, UsageError
from ess.models import LaunchRequest
from ess_ec2 import fleet
from ess_ec2.backend import client_token
from ess_ec2.preflight import ON_DEMAND, SPOT, SPOT_OR_ON_DEMAND

TYPES = ("m5.large", "m5a.large")


@pytest.fixture
def ec2_capacity(moto_endpoint: str) -> Iterator[Capacity]:
    with capacity.simulated() as pools:
        yield pools


@pytest.fixture
def world(ec2_capacity: Capacity, tmp_path, monkeypatch) -> World:
    import botocore.retries.standard

    # A capacity error is a 5xx: botocore retries it; without its back-off pauses here.
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    return make_world(tmp_path, monkeypatch)


def subnets(world: World, *zones: str) -> tuple[tuple[str, str], ...]:
    """The default subnet of each zone, as LaunchPlan.subnets lists them."""
    found = world.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in found}
    return tuple((by_zone[z], z) for z in zones)


def fleet_request(
    world: World,
    count: int,
    *,
    types: tuple[str, ...] = TYPES,
    zones: tuple[str, ...] = ("us-east-1a", "us-east-1b"),
    market: str = ON_DEMAND,
    min_count: int | None = None,
    launch_id: str = "fleet-1",
    **plan_fields: Any,
) -> LaunchRequest:
    """A preflighted request whose plan lists ``types`` x ``zones`` (default subnets)."""
    settings = world.settings()
    request = world.preflight(settings, world.request(count, min_count, launch_id=launch_id))
    plan = replace(request.plan, instance_types=types, subnets=subnets(world, *zones), market=market, **plan_fields)
    assert plan.uses_fleet
    world.calls.reset()
    return replace(request, plan=plan)


def described(world: World, ids: list[str]) -> list[dict[str, Any]]:
    pages = world.ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def pools_of(instances: list[dict[str, Any]]) -> Counter:
    return Counter(f"{i['InstanceType']}/{i['Placement']['AvailabilityZone']}" for i in instances)


def create_fleet_params(world: World) -> list[dict[str, Any]]:
    return [params for op, params in world.calls.made if op == "CreateFleet"]


def test_one_pool_out_100_nodes_in_one_create_fleet(world: World, ec2_capacity: Capacity) -> None:
    ec2_capacity.out("m5.large", "us-east-1a")
    request = fleet_request(world, 100)
    nodes = world.backend.create(world.settings(), request, world.progress())
    assert len(nodes) == 100 and len({n.id for n in nodes}) == 100
    assert world.calls.count("CreateFleet") == 1
    assert world.calls.count("RunInstances", dry_run=False) == 0
    # Priority is type first, then subnet: m5.large in 1b comes before m5a.large anywhere.
    assert pools_of(described(world, [n.id for n in nodes])) == Counter({"m5.large/us-east-1b": 100})
    assert {(n.instance_type, n.zone, n.lifecycle) for n in nodes} == {("m5.large", "us-east-1b", "on-demand")}
    said = world.progress_stream.getvalue().strip().splitlines()
    assert said == [
        "ess: launched 100 of 100 node(s); pools without capacity (or refused): m5.large/us-east-1a: "
        "InsufficientInstanceCapacity"
    ]
    sent = create_fleet_params(world)[0]
    assert sent["Type"] == "instant" and sent["ClientToken"] == client_token("fleet-1")
    assert sent["OnDemandOptions"] == {"AllocationStrategy": "prioritized"}
    assert sent["TargetCapacitySpecification"] == {"TotalTargetCapacity": 100, "DefaultTargetCapacityType": "on-demand"}
    overrides = sent["LaunchTemplateConfigs"][0]["Overrides"]
    assert [(o["InstanceType"], o["Priority"]) for o in overrides] == [
        ("m5.large", 0.0),
        ("m5.large", 1.0),
        ("m5a.large", 2.0),
        ("m5a.large", 3.0),
    ]


def test_a_pool_with_little_room_is_filled_and_the_next_takes_the_rest(world: World, ec2_capacity: Capacity) -> None:
    ec2_capacity.limit("m5.large", "us-east-1a", 3)
    ec2_capacity.out("m5.large", "us-east-1b")
    request = fleet_request(world, 10)
    nodes = world.backend.create(world.settings(), request, world.progress())
    assert pools_of(described(world, [n.id for n in nodes])) == Counter(
        {"m5.large/us-east-1a": 3, "m5a.large/us-east-1a": 7}
    )
    assert world.calls.count("CreateFleet") == 1


def test_every_pool_out_exits_1_and_leaves_nothing_running(world: World, ec2_capacity: Capacity) -> None:
    for instance_type in TYPES:
        for zone in ("us-east-1a", "us-east-1b"):
            ec2_capacity.out(instance_type, zone)
    settings = world.settings()
    request = fleet_request(world, 5)
    with pytest.raises(EssError) as info:
        provision.create(world.backend, settings, request, world.progress(), verify=False)
    text = str(info.value)
    assert "\n" not in text and "EC2 launched 0 of 5 node(s) and all were needed" in text
    for pool in ("m5.large/us-east-1a", "m5.large/us-east-1b", "m5a.large/us-east-1a", "m5a.large/us-east-1b"):
        assert f"{pool}: InsufficientInstanceCapacity" in text
    assert world.ec2.describe_instances()["Reservations"] == []
    assert world.calls.count("CreateFleet") == 1 and world.calls.count("TerminateInstances") == 0


def test_min_count_keeps_a_short_fleet(world: World, ec2_capacity: Capacity) -> None:
    ec2_capacity.limit("m5.large", "us-east-1a", 4)
    for pool in (("m5.large", "us-east-1b"), ("m5a.large", "us-east-1a"), ("m5a.large", "us-east-1b")):
        ec2_capacity.limit(*pool, 1)
    settings = world.settings()
    request = fleet_request(world, 10, min_count=6)
    result = provision.create(world.backend, settings, request, world.progress(), verify=False)
    assert len(result.nodes) == 7
    assert "ess: launched 7 of 10 node(s); pools without capacity" in world.progress_stream.getvalue()
    assert len(world.backend.nodes(settings)) == 7


def test_min_count_not_reached_rolls_back_what_launched(world: World, ec2_capacity: Capacity) -> None:
    ec2_capacity.limit("m5.large", "us-east-1a", 4)
    for pool in (("m5.large", "us-east-1b"), ("m5a.large", "us-east-1a"), ("m5a.large", "us-east-1b")):
        ec2_capacity.out(*pool)
    settings = world.settings()
    request = fleet_request(world, 10, min_count=6)
    with pytest.raises(EssError) as info:
        provision.create(world.backend, settings, request, world.progress(), verify=False)
    assert "EC2 launched 4 of 10 node(s) and at least 6 were needed" in str(info.value)
    assert "m5a.large/us-east-1b: InsufficientInstanceCapacity" in str(info.value)
    live = world.ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert live["Reservations"] == []
    terminated = [p for op, p in world.calls.made if op == "TerminateInstances"]
    assert len(terminated) == 1 and len(terminated[0]["InstanceIds"]) == 4


def test_spot_fleet_price_capacity_optimized_terminates_on_interruption(world: World) -> None:
    request = fleet_request(world, 4, market=SPOT, max_price="0.05")
    nodes = world.backend.create(world.settings(), request, world.progress())
    assert {n.lifecycle for n in nodes} == {"spot"}
    ready = world.backend.wait(world.settings(), nodes, world.progress(), timeout=60)
    assert {n.lifecycle for n in ready} == {"spot"}
    assert {i.get("InstanceLifecycle") for i in described(world, [n.id for n in nodes])} == {"spot"}
    sent = create_fleet_params(world)
    assert len(sent) == 1
    assert sent[0]["SpotOptions"] == {
        "AllocationStrategy": "price-capacity-optimized",
        "InstanceInterruptionBehavior": "terminate",
    }
    assert sent[0]["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "spot"
    assert {o["MaxPrice"] for o in sent[0]["LaunchTemplateConfigs"][0]["Overrides"]} == {"0.05"}
    assert all("Priority" not in o for o in sent[0]["LaunchTemplateConfigs"][0]["Overrides"])


def test_spot_or_on_demand_fills_the_spot_shortfall_on_demand(world: World, ec2_capacity: Capacity) -> None:
    # Spot has room for 3 nodes in all pools; on-demand has room everywhere.
    ec2_capacity.limit("m5.large", "us-east-1a", 3, market="spot")
    for pool in (("m5.large", "us-east-1b"), ("m5a.large", "us-east-1a"), ("m5a.large", "us-east-1b")):
        ec2_capacity.out(*pool, market="spot")
    request = fleet_request(world, 6, market=SPOT_OR_ON_DEMAND)
    nodes = world.backend.create(world.settings(), request, world.progress())
    assert Counter(n.lifecycle for n in nodes) == Counter({"spot": 3, "on-demand": 3})
    sent = create_fleet_params(world)
    assert [s["TargetCapacitySpecification"] for s in sent] == [
        {"TotalTargetCapacity": 6, "DefaultTargetCapacityType": "spot"},
        {"TotalTargetCapacity": 3, "DefaultTargetCapacityType": "on-demand"},
    ]
    assert sent[0]["ClientToken"] != sent[1]["ClientToken"] and len(sent[1]["ClientToken"]) <= 64
    assert world.calls.count("CreateFleet") == 2


def test_spot_or_on_demand_with_room_is_one_call(world: World) -> None:
    request = fleet_request(world, 6, market=SPOT_OR_ON_DEMAND)
    nodes = world.backend.create(world.settings(), request, world.progress())
    assert {n.lifecycle for n in nodes} == {"spot"} and world.calls.count("CreateFleet") == 1


def test_tags_at_launch_on_instances_and_volumes(world: World) -> None:
    request = fleet_request(world, 2, tags={"team": "data"})
    nodes = world.backend.create(world.settings(), request, world.progress())
    for instance in described(world, [n.id for n in nodes]):
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["ess:cluster"] == "default" and tags["ess:launch"] == "fleet-1"
        assert tags["team"] == "data" and tags["Name"] == "Essentia Worker Node"
        assert instance["KeyName"] == "pem_file"
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [world.group_id]
        volumes = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
        assert volumes
        for volume in world.ec2.describe_volumes(VolumeIds=volumes)["Volumes"]:
            vtags = {t["Key"]: t["Value"] for t in volume["Tags"]}
            assert vtags["ess:cluster"] == "default" and vtags["team"] == "data" and vtags["ess:launch"] == "fleet-1"


def test_one_launch_template_per_cluster_a_version_per_launch_and_purge(world: World) -> None:
    settings = world.settings()
    world.backend.create(settings, fleet_request(world, 1, launch_id="first"), world.progress())
    assert world.calls.count("CreateLaunchTemplate") == 1 and world.calls.count("CreateLaunchTemplateVersion") == 0
    world.backend.create(settings, fleet_request(world, 1, launch_id="second"), world.progress())
    assert world.calls.count("CreateLaunchTemplate") == 0 and world.calls.count("CreateLaunchTemplateVersion") == 1
    templates = world.ec2.describe_launch_templates()["LaunchTemplates"]
    assert [(t["LaunchTemplateName"], t["LatestVersionNumber"]) for t in templates] == [("ess-default", 2)]
    tags = {t["Key"]: t["Value"] for t in templates[0]["Tags"]}
    assert tags["ess:cluster"] == "default" and tags["ess:created-by"] == "tester@host"
    sent = create_fleet_params(world)[-1]["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"]
    assert sent == {"LaunchTemplateId": templates[0]["LaunchTemplateId"], "Version": "2"}
    # Another cluster's template and one nobody tagged stay.
    world.ec2.create_launch_template(LaunchTemplateName="theirs", LaunchTemplateData={"ImageId": world.image})
    world.ec2.create_launch_template(
        LaunchTemplateName="ess-other",
        LaunchTemplateData={"ImageId": world.image},
        TagSpecifications=[
            {
                "ResourceType": "launch-template",
                "Tags": [{"Key": "ess:cluster", "Value": "other"}, {"Key": "ess:created-by", "Value": "x@y"}],
            }
        ],
    )
    world.backend.terminate(settings, world.backend.nodes(settings), world.progress())
    deleted = world.backend.purge(settings, world.progress())
    assert any("launch template ess-default" in d for d in deleted)
    left = sorted(t["LaunchTemplateName"] for t in world.ec2.describe_launch_templates()["LaunchTemplates"])
    assert left == ["ess-other", "theirs"]


def test_a_template_ess_did_not_make_is_never_changed(world: World) -> None:
    world.ec2.create_launch_template(LaunchTemplateName="ess-default", LaunchTemplateData={"ImageId": world.image})
    request = fleet_request(world, 2)
    with pytest.raises(UsageError) as info:
        provision.create(world.backend, world.settings(), request, world.progress(), verify=False)
    assert "'ess-default' exists" in str(info.value) and "ess did not make it" in str(info.value)
    assert world.calls.mutating() == []
    versions = world.ec2.describe_launch_template_versions(LaunchTemplateName="ess-default")["LaunchTemplateVersions"]
    assert len(versions) == 1


def test_single_pool_on_demand_keeps_run_instances(world: World) -> None:
    settings = world.settings()
    request = world.preflight(settings, world.request(3))
    assert not request.plan.uses_fleet
    world.calls.reset()
    nodes = world.backend.create(settings, request, world.progress())
    assert len(nodes) == 3
    assert world.calls.count("RunInstances", dry_run=False) == 1 and world.calls.count("CreateFleet") == 0
    assert world.calls.count("CreateLaunchTemplate") == 0


def test_run_instances_in_a_pool_without_capacity_names_type_and_zone(world: World, ec2_capacity: Capacity) -> None:
    ec2_capacity.out("m3.medium", "us-east-1b")
    ((subnet, zone),) = subnets(world, "us-east-1b")
    settings = world.settings(subnet_id=subnet)
    request = world.preflight(settings, world.request(2))
    with pytest.raises(EssError) as info:
        provision.create(world.backend, settings, request, world.progress(), verify=False)
    assert "not enough m3.medium capacity in us-east-1b" in str(info.value)
    assert world.ec2.describe_instances()["Reservations"] == []


def test_lost_create_fleet_reply_keeps_exactly_n(world: World) -> None:
    seen = {"lost": 0}

    def lose_once(request: Any, **_: Any) -> None:
        if seen["lost"] == 0:
            seen["lost"] += 1
            reply_lost(request)

    world.calls.handlers.append(("before-send.ec2.CreateFleet", lose_once))
    request = fleet_request(world, 4, launch_id="lost-fleet")
    nodes = world.backend.create(world.settings(), request, world.progress())
    assert seen["lost"] == 1 and len(nodes) == 4
    live = world.ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert sorted(i["InstanceId"] for r in live["Reservations"] for i in r["Instances"]) == sorted(n.id for n in nodes)
    assert "CreateFleet was retried (2 attempts); found 8 instances of this launch, terminated 4 extra" in (
        world.progress_stream.getvalue()
    )


def test_pools_and_overrides_follow_the_lists() -> None:
    from pathlib import Path

    from ess_ec2.preflight import LaunchPlan

    plan = LaunchPlan(
        region="us-east-1",
        instance_type="a.large",
        image_id="ami-1",
        key_name="k",
        key_file=Path("k.pem"),
        instance_types=("a.large", "b.large", "c.large"),
        subnets=(("subnet-1", "z1"), ("subnet-2", "z2")),
    )
    assert [p.label for p in fleet.pools(plan)] == [
        "a.large/z1",
        "a.large/z2",
        "b.large/z1",
        "b.large/z2",
        "c.large/z1",
        "c.large/z2",
    ]
    assert [o["Priority"] for o in fleet.overrides(plan, "on-demand")] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    no_subnets = replace(plan, subnets=(), market=SPOT)
    assert fleet.overrides(no_subnets, "spot") == [{"InstanceType": t} for t in ("a.large", "b.large", "c.large")]
    data = fleet.template_data(replace(plan, extra={"UserData": "#!/bin/sh\necho hi\n", "SubnetId": "x"}), [])
    assert data["UserData"] == "IyEvYmluL3NoCmVjaG8gaGkK" and "SubnetId" not in data


# -- the command line, with the settings as a user writes them --------------------------
def fleet_conf(world: World, types: str, zones: tuple[str, ...], extra: str = "") -> None:
    ids = ", ".join(subnet for subnet, _ in subnets(world, *zones))
    world.conf.write_text(
        world.conf.read_text().replace("instance_type:  m3.medium\n", f"instance_type: {types}\n")
        + f"subnet_id: {ids}\nimage_id: {world.image}\n{extra}"
    )


@pytest.fixture
def cli_world(world: World, monkeypatch) -> World:
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    monkeypatch.chdir(world.folder)
    return world


def test_cli_create_100_over_two_types_and_two_subnets_is_one_create_fleet(
    cli_world: World, ec2_capacity: Capacity, ess
) -> None:
    world = cli_world
    fleet_conf(world, "m5.large, m5a.large", ("us-east-1a", "us-east-1b"), "tags: team=data\n")
    ec2_capacity.out("m5.large", "us-east-1a")
    world.calls.reset()
    result = ess("instance", "ec2", "create", "--yes", "--no-verify", "--number", "100", "--json")
    assert result.code == 0, result.err
    nodes = json.loads(result.out)["nodes"]
    assert len(nodes) == 100
    assert {(n["instance_type"], n["zone"], n["lifecycle"]) for n in nodes} == {("m5.large", "us-east-1b", "on-demand")}
    assert world.calls.count("CreateFleet") == 1 and world.calls.count("RunInstances", dry_run=False) == 0
    warned = [line for line in result.err.splitlines() if "pools without capacity" in line]
    assert warned == [
        "ess: launched 100 of 100 node(s); pools without capacity (or refused): "
        "m5.large/us-east-1a: InsufficientInstanceCapacity"
    ]
    # Every mutating call of the whole create: template, fleet. Nothing per node.
    assert Counter(world.calls.mutating()) == Counter({"CreateLaunchTemplate": 1, "CreateFleet": 1})
    gone = ess("instance", "ec2", "terminate", "all", "--yes", "--purge")
    assert gone.code == 0, gone.err
    assert world.ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_cli_every_pool_out_exits_1_and_nothing_is_left(cli_world: World, ec2_capacity: Capacity, ess) -> None:
    world = cli_world
    fleet_conf(world, "m5.large, m5a.large", ("us-east-1a", "us-east-1b"))
    for instance_type in TYPES:
        for zone in ("us-east-1a", "us-east-1b"):
            ec2_capacity.out(instance_type, zone)
    result = ess("instance", "ec2", "create", "--yes", "--no-verify", "--number", "100")
    assert result.code == 1, result
    errors = [line for line in result.err.splitlines() if line.startswith("ess: error") or "EC2 launched" in line]
    assert len(errors) == 1 and "EC2 launched 0 of 100 node(s)" in errors[0], result.err
    assert "m5a.large/us-east-1b: InsufficientInstanceCapacity" in errors[0]
    live = world.ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert live["Reservations"] == []


def test_cli_spot_or_on_demand_shows_lifecycle_in_list(cli_world: World, ec2_capacity: Capacity, ess) -> None:
    world = cli_world
    fleet_conf(world, "m5.large, m5a.large", ("us-east-1a",), "market: spot-or-on-demand\nmax_price: 0.04\n")
    ec2_capacity.limit("m5.large", "us-east-1a", 2, market="spot")
    ec2_capacity.out("m5a.large", "us-east-1a", market="spot")
    result = ess("instance", "ec2", "create", "--yes", "--no-verify", "--number", "5")
    assert result.code == 0, result.err
    listed = ess("instance", "ec2", "list", "--json")
    nodes = json.loads(listed.out)["nodes"]
    assert Counter(n["lifecycle"] for n in nodes) == Counter({"spot": 2, "on-demand": 3})
    assert world.calls.count("CreateFleet") == 2


def test_fleet_create_calls_do_not_grow_with_the_count(world: World, ec2_capacity: Capacity) -> None:
    """preflight + create over 2 types x 2 subnets, spot-or-on-demand with a spot shortfall
    (the longest path): the same calls, one by one, for 1 node and for 60."""
    made = []
    for count, launch_id in ((1, "one"), (60, "sixty")):
        ec2_capacity.reset()
        ec2_capacity.out("m5.large", "us-east-1a")
        ec2_capacity.limit("m5.large", "us-east-1a", count // 2, market="spot")
        for instance_type, zone in (
            ("m5.large", "us-east-1b"),
            ("m5a.large", "us-east-1a"),
            ("m5a.large", "us-east-1b"),
        ):
            ec2_capacity.out(instance_type, zone, market="spot")
        # A cluster each: both launches make their cluster's template (a later one adds a version).
        settings = world.settings(cluster=launch_id)
        world.calls.reset()
        request = world.preflight(settings, world.request(count, launch_id=launch_id, cluster=launch_id))
        plan = replace(request.plan, instance_types=TYPES, subnets=subnets(world, "us-east-1a", "us-east-1b"))
        plan = replace(plan, market=SPOT_OR_ON_DEMAND)
        nodes = world.backend.create(settings, replace(request, plan=plan), world.progress())
        assert len(nodes) == count
        made.append(world.calls.by_operation())
    assert made[0] == made[1]
    assert made[0]["CreateFleet"] == 2 and made[0]["RunInstances"] == 1  # the DryRun only
