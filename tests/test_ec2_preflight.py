"""Preflight against moto: every failure is one UsageError and nothing is mutated."""

from __future__ import annotations

import pytest
from support.ec2_world import aws_error, make_world

from ess.errors import UsageError


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    return make_world(tmp_path, monkeypatch)


def preflight_error(world, count: int = 2, **cli) -> str:
    settings = world.settings(**cli)
    with pytest.raises(UsageError) as info:
        world.backend.preflight(settings, world.request(count))
    message = str(info.value)
    assert "\n" not in message
    assert world.calls.mutating() == [], "preflight must not change anything"
    assert world.calls.count("RunInstances", dry_run=False) == 0
    return message


def test_passing_preflight_resolves_ids_and_only_dry_runs(world):
    settings = world.settings()
    plan = world.backend.preflight(settings, world.request(3))
    assert world.calls.mutating() == []
    assert world.calls.count("RunInstances", dry_run=True) == 1
    assert plan.security_group_ids == (world.group_id,)
    assert plan.image_id.startswith("ami-")  # the SSM-resolved Amazon Linux 2023
    assert plan.key_name == "pem_file" and plan.key_file == world.pem
    dry = next(p for op, p in world.calls.made if op == "RunInstances")
    assert dry["SecurityGroupIds"] == [world.group_id] and "SecurityGroups" not in dry
    assert (dry["MinCount"], dry["MaxCount"]) == (3, 3)
    assert world.ec2.describe_instances()["Reservations"] == []


def test_create_reuses_the_preflight_findings(world):
    settings = world.settings()
    request = world.preflight(settings, world.request(2))
    after_preflight = world.calls.by_operation()
    world.backend.create(settings, request, world.progress())
    launched = world.calls.by_operation() - after_preflight
    assert launched == {"RunInstances": 1}


def test_missing_key_pair(world):
    world.ec2.delete_key_pair(KeyName="pem_file")
    message = preflight_error(world)
    assert "key_name: key pair 'pem_file' not found in us-east-1" in message
    assert "instance.conf" in message


def test_missing_pem_file_names_every_place_looked(world):
    world.pem.unlink()
    message = preflight_error(world)
    assert "private key not found at" in message
    assert str(world.folder / "pem_file.pem") in message and ".ssh/pem_file.pem" in message


def test_pem_found_in_home_ssh(world, tmp_path):
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    moved = world.pem.rename(ssh / "pem_file.pem")
    world.backend.preflight(world.settings(), world.request(1))
    assert world.backend.access(world.settings()).key_file == moved


def test_key_name_may_be_a_pem_path(world):
    settings = world.settings(key_name=str(world.pem))
    assert world.backend.preflight(settings, world.request(1)).key_name == "pem_file"


def test_pem_readable_by_others_gives_the_chmod_to_run(world):
    world.pem.chmod(0o644)
    message = preflight_error(world)
    assert "mode 0644" in message
    assert f"(run: chmod 600 {world.pem})" in message


def test_unknown_security_group(world):
    message = preflight_error(world, security_groups="essentia-access,nosuch-group")
    assert "security group 'nosuch-group' not found" in message
    assert "security_groups" in message


def test_unknown_security_group_id(world):
    message = preflight_error(world, security_groups="sg-0123456789abcdef0")
    assert "security group 'sg-0123456789abcdef0' not found" in message


def test_security_group_by_id_and_name_in_subnet_vpc(world):
    vpc = world.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = world.ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="us-east-1a")["Subnet"][
        "SubnetId"
    ]
    in_vpc = world.ec2.create_security_group(GroupName="essentia-access", Description="x", VpcId=vpc)["GroupId"]
    other = world.ec2.create_security_group(GroupName="extra", Description="x", VpcId=vpc)["GroupId"]
    settings = world.settings(subnet_id=subnet, security_groups=f"essentia-access,{other}")
    request = world.preflight(settings, world.request(1))
    plan = request.plan
    # The same name exists in the default VPC: the subnet's VPC wins.
    assert plan.security_group_ids == (in_vpc, other)
    assert plan.subnet_id == subnet and plan.zone
    nodes = world.backend.create(settings, request, world.progress())
    assert world.states([nodes[0].id])
    sent = next(p for op, p in world.calls.made if op == "RunInstances" and not p.get("DryRun"))
    assert sent["SubnetId"] == subnet


def test_default_vpc_group_is_not_accepted_for_another_vpc(world):
    vpc = world.ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = world.ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    message = preflight_error(world, subnet_id=subnet)
    assert f"security group 'essentia-access' not found in VPC {vpc}" in message


def test_a_group_id_of_another_vpc_is_refused(world):
    """Groups are looked up by id in every VPC (the VPC is not known yet in that round):
    one that exists, but in another VPC than the nodes', is still not taken."""
    vpc = world.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    elsewhere = world.ec2.create_security_group(GroupName="elsewhere", Description="x", VpcId=vpc)["GroupId"]
    message = preflight_error(world, security_groups=elsewhere)
    assert f"security group {elsewhere!r} not found in VPC " in message
    assert vpc not in message.split("not found in VPC ", 1)[1]
    assert world.calls.mutating() == []


def test_unknown_instance_type(world):
    message = preflight_error(world, instance_type="m3.nosuch")
    assert message.startswith("--type: instance type 'm3.nosuch' does not exist")


def test_unknown_image(world):
    message = preflight_error(world, image_id="ami-12345678")
    assert "image_id: image 'ami-12345678' not found in us-east-1" in message


def test_explicit_linux_image_is_used(world):
    settings = world.settings(image_id=world.image)
    assert world.backend.preflight(settings, world.request(1)).image_id == world.image


def test_bad_subnet(world):
    message = preflight_error(world, subnet_id="subnet-12345678")
    assert "subnet_id: subnet 'subnet-12345678' not found in us-east-1" in message


def test_region_missing_everywhere(world, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    message = preflight_error(world)
    assert "region: no AWS region is set" in message
    assert world.calls.made == []


def test_key_name_missing(world):
    world.conf.write_text("[EC2]\nsecurity_groups: essentia-access\n")
    message = preflight_error(world)
    assert "key_name: no key pair is set" in message


def test_rejected_credentials_are_a_usage_error_without_the_secret(world):
    from ess_ec2.testing import FAKE_SECRET_KEY

    def reject(**_):
        return aws_error(401, "AuthFailure", "AWS was not able to validate the provided access credentials")

    world.calls.handlers.append(("before-send.ec2.*", reject))
    message = preflight_error(world)
    assert "AWS rejected the credentials from boto3's credential chain" in message
    assert "AuthFailure" in message and FAKE_SECRET_KEY not in message


def test_no_credentials_anywhere(world, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    message = preflight_error(world)
    assert "no AWS credentials found" in message
