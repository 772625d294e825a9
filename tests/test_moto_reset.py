"""ess_ec2.testing's reset: every resource gone in every region, and no backend rebuilt for it."""

from __future__ import annotations

import boto3
import pytest
from support.ec2_world import lean_moto, register_image

from ess_ec2.testing import reset_moto

REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")


def _fill(url: str) -> None:
    for region in REGIONS:
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=url)
        ec2.create_security_group(GroupName="left-over", Description="from an earlier test")
        ec2.run_instances(ImageId=register_image(ec2), MinCount=2, MaxCount=2, InstanceType="t3.micro")


def _left(url: str) -> dict[str, int]:
    found = {}
    for region in REGIONS:
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=url)
        instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["left-over"]}])
        images = ec2.describe_images(Owners=["self"])["Images"]
        found[region] = len(instances) + len(groups["SecurityGroups"]) + len(images)
    return found


@pytest.mark.parametrize("how", ["in process", "over HTTP"])
def test_a_reset_leaves_nothing_in_any_region(moto_endpoint, how, monkeypatch):
    lean_moto(monkeypatch)
    # The same server by another name is not known to be in this process: moto's own reset.
    url = moto_endpoint if how == "in process" else moto_endpoint.replace("127.0.0.1", "localhost")
    _fill(moto_endpoint)
    assert _left(moto_endpoint) == dict.fromkeys(REGIONS, 2 + 1 + 1)
    reset_moto(url)
    assert _left(moto_endpoint) == dict.fromkeys(REGIONS, 0)


def test_an_in_process_reset_rebuilds_no_backend(moto_endpoint, monkeypatch):
    """moto's own reset builds every region's EC2 backend again only to drop it: up to 6 s of a
    busy CI machine's time, once over the 10 s the fixture allowed. Ours builds none."""
    from moto.ec2.models import EC2Backend

    lean_moto(monkeypatch)
    _fill(moto_endpoint)
    built = []
    real_init = EC2Backend.__init__

    def counting_init(self, region_name, account_id):
        built.append(region_name)
        real_init(self, region_name, account_id)

    monkeypatch.setattr(EC2Backend, "__init__", counting_init)
    reset_moto(moto_endpoint)
    assert built == []
    # Built again, lazily, by the first request that needs it.
    assert _left(moto_endpoint)["us-east-1"] == 0 and "us-east-1" in built
