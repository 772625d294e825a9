"""The EC2 backend against the contract suite every backend must pass (on moto)."""

from __future__ import annotations

import pytest
from support.ec2_world import make_world

from ess.testing.contract import BackendContract, ContractTarget


class TestEc2Contract(BackendContract):
    @pytest.fixture
    def contract_target(self, moto_endpoint, tmp_path, monkeypatch):
        world = make_world(tmp_path, monkeypatch)

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
            settings={"image_id": world.image},
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
