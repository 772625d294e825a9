"""The EC2 backend against the contract suite every backend must pass (on moto).

Twice: the single-pool path (one RunInstances) and the fleet path (two types over two
subnets, spot-or-on-demand: CreateFleet with a launch template), the latter with the
capacity simulation of tests/support/capacity.py in the moto server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support import capacity
from support.ec2_world import World, make_world

from ess.testing.contract import BackendContract, ContractTarget


def target(world: World, settings: dict[str, Any]) -> ContractTarget:
    def snapshot():
        reservations = world.ec2.describe_instances()["Reservations"]
        return (
            sorted(i["InstanceId"] for r in reservations for i in r["Instances"]),
            sorted(g["GroupId"] for g in world.ec2.describe_security_groups()["SecurityGroups"]),
            sorted(k["KeyName"] for k in world.ec2.describe_key_pairs()["KeyPairs"]),
        )

    return ContractTarget(
        backend=world.backend,
        config=world.conf,
        settings={"image_id": world.image, **settings},
        bad_settings=[
            ({"instance_type": "m3.nosuch"}, "m3.nosuch"),
            ({"key_name": "no-such-pair"}, "no-such-pair"),
            ({"security_groups": "no-such-group"}, "no-such-group"),
            ({"instance_count": 0}, "too small"),
        ],
        snapshot=snapshot,
        foreign_node=lambda: world.foreign(1)[0],
        node_exists=lambda node_id: world.states([node_id]).get(node_id) == "running",
        verify=False,  # moto's addresses are not reachable (and the test network guard forbids trying)
    )


class TestEc2Contract(BackendContract):
    @pytest.fixture
    def contract_target(self, moto_endpoint, tmp_path, monkeypatch):
        return target(make_world(tmp_path, monkeypatch), {})


class TestEc2FleetContract(BackendContract):
    @pytest.fixture
    def contract_target(self, moto_endpoint, tmp_path, monkeypatch) -> Iterator[ContractTarget]:
        with capacity.simulated():
            world = make_world(tmp_path, monkeypatch)
            found = world.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
            by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in found}
            settings = {
                "instance_type": "m5.large, m5a.large",
                "subnet_id": f"{by_zone['us-east-1a']}, {by_zone['us-east-1b']}",
                "market": "spot-or-on-demand",
            }
            yield target(world, settings)
