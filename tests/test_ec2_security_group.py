"""security-group create, key-pair create and purge against moto; never a real address lookup."""

from __future__ import annotations

import json
import stat

import pytest
from support.ec2_world import aws_error, make_world

from ess.errors import UsageError
from ess.models import TAG_CLUSTER, TAG_CREATED_BY
from ess_ec2 import security_group

MY_IP = "198.51.100.7"


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    monkeypatch.delenv(security_group.MY_IP_ENV, raising=False)
    lookups: list[int] = []

    def fake_lookup() -> str:
        lookups.append(1)
        return MY_IP

    monkeypatch.setattr(security_group, "lookup_public_address", fake_lookup)
    made = make_world(tmp_path, monkeypatch)
    made.lookups = lookups  # type: ignore[attr-defined]
    return made


def cli(ess, world, *args: str):
    return ess("instance", "ec2", *args, "--config", str(world.conf))


def group(world, name: str) -> dict:
    found = world.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])
    return found["SecurityGroups"][0]


def ingress(described: dict) -> set[tuple]:
    return {(r.protocol, r.from_port, r.to_port, r.source) for r in security_group.current_rules(described)}


def test_create_makes_a_tagged_group_with_ssh_from_my_32_and_worker_ports_from_itself(world, ess):
    result = cli(ess, world, "security-group", "create", "workers", "--json")
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    made = group(world, "workers")
    gid = made["GroupId"]
    assert shown["group_id"] == gid and shown["created"] is True
    assert ingress(made) == {("tcp", 22, 22, f"{MY_IP}/32"), ("tcp", 22, 22, gid), ("tcp", 10010, 10079, gid)}
    assert {r["status"] for r in shown["rules"]} == {"added"}
    tags = {t["Key"]: t["Value"] for t in made["Tags"]}
    assert tags[TAG_CLUSTER] == "default" and tags[TAG_CREATED_BY]
    default_vpc = world.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    assert made["VpcId"] == default_vpc["VpcId"]
    assert "0.0.0.0/0" not in result.out and "0.0.0.0/0" not in str(made["IpPermissions"])
    assert world.lookups == [1]


def test_second_run_adds_only_missing_rules(world, ess):
    assert cli(ess, world, "security-group", "create", "workers").code == 0
    world.calls.reset()
    again = cli(ess, world, "security-group", "create", "workers")
    assert again.code == 0, again.err
    assert world.calls.mutating() == []
    assert "added 0 rule(s)" in again.err and "present" in again.out
    wider = cli(ess, world, "security-group", "create", "workers", "--worker-ports", "10010-10079,9000")
    assert wider.code == 0, wider.err
    assert world.calls.count("AuthorizeSecurityGroupIngress") == 1
    sent = next(p for op, p in world.calls.made if op == "AuthorizeSecurityGroupIngress")
    assert [(p["FromPort"], p["ToPort"]) for p in sent["IpPermissions"]] == [(9000, 9000)]


def test_name_defaults_to_the_configured_group_and_a_foreign_group_needs_yes(world, ess):
    # essentia-access exists (make_world made it) and is not tagged as ess's.
    world.calls.reset()
    refused = cli(ess, world, "security-group", "create")
    assert refused.code == 2 and "ess did not create it (pass --yes" in refused.err
    assert refused.err.count("\n") == 1 and world.calls.mutating() == []
    forced = cli(ess, world, "security-group", "create", "--yes")
    assert forced.code == 0, forced.err
    assert ("tcp", 22, 22, f"{MY_IP}/32") in ingress(group(world, "essentia-access"))
    assert "--purge will never delete it" in forced.err
    assert world.calls.count("CreateTags") == 0


def test_cidr_option_and_env_override_skip_the_lookup(world, ess, monkeypatch):
    assert cli(ess, world, "security-group", "create", "a", "--cidr", "203.0.113.0/24").code == 0
    assert ("tcp", 22, 22, "203.0.113.0/24") in ingress(group(world, "a"))
    monkeypatch.setenv(security_group.MY_IP_ENV, "192.0.2.9")
    assert cli(ess, world, "security-group", "create", "b").code == 0
    assert ("tcp", 22, 22, "192.0.2.9/32") in ingress(group(world, "b"))
    assert world.lookups == []


def test_whole_internet_only_when_asked_and_loudly(world, ess, monkeypatch):
    opened = cli(ess, world, "security-group", "create", "open", "--cidr", "0.0.0.0/0")
    assert opened.code == 0 and "warning: --cidr 0.0.0.0/0 opens SSH" in opened.err
    assert ("tcp", 22, 22, "0.0.0.0/0") in ingress(group(world, "open"))
    monkeypatch.setenv(security_group.MY_IP_ENV, "0.0.0.0/0")
    world.calls.reset()
    refused = cli(ess, world, "security-group", "create", "sneaky")
    assert refused.code == 2 and "whole internet" in refused.err and world.calls.mutating() == []


def test_failed_lookup_is_one_line_telling_to_pass_cidr(world, ess, monkeypatch):
    def offline() -> str:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(security_group, "lookup_public_address", offline)
    world.calls.reset()
    result = cli(ess, world, "security-group", "create", "x")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "cannot find this machine's public IP address" in result.err and "--cidr" in result.err
    assert world.calls.made == []


@pytest.mark.parametrize(
    ("ports", "cidr", "expected"),
    [
        ("10079-10010", None, "--worker-ports: '10079-10010' is not a port range"),
        ("http", None, "--worker-ports: 'http' is not a port"),
        ("22", "300.1.1.1", "--cidr: '300.1.1.1' is not an IP address or CIDR block"),
    ],
)
def test_bad_ports_or_cidr_are_usage_errors(world, ess, ports, cidr, expected):
    args = ["security-group", "create", "x", "--worker-ports", ports] + (["--cidr", cidr] if cidr else [])
    result = cli(ess, world, *args)
    assert result.code == 2 and expected in result.err and world.calls.mutating() == []


def test_subnet_id_puts_the_group_in_that_vpc(world, ess):
    vpc = world.ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = world.ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    world.conf.write_text(world.conf.read_text() + f"subnet_id: {subnet}\n")
    assert cli(ess, world, "security-group", "create", "essentia-access").code == 0  # new: other VPC
    groups = world.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["essentia-access"]}])
    assert sorted(g["VpcId"] == vpc for g in groups["SecurityGroups"]) == [False, True]


def test_key_pair_create_saves_a_private_pem_and_refuses_to_overwrite(world, ess):
    result = cli(ess, world, "key-pair", "create", "cluster-key")
    assert result.code == 0, result.err
    pem = world.folder / "cluster-key.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600 and "PRIVATE KEY" in pem.read_text()
    assert "PRIVATE KEY" not in result.out + result.err
    pairs = world.ec2.describe_key_pairs(KeyNames=["cluster-key"])["KeyPairs"]
    assert {t["Key"] for t in pairs[0]["Tags"]} >= {TAG_CLUSTER, TAG_CREATED_BY}
    world.calls.reset()
    again = cli(ess, world, "key-pair", "create", "cluster-key")
    assert again.code == 2 and "already exists" in again.err and world.calls.mutating() == []


def test_purge_deletes_only_what_ess_created_for_this_cluster(world, ess):
    assert cli(ess, world, "security-group", "create", "mine").code == 0
    assert cli(ess, world, "security-group", "create", "theirs", "--cluster", "blue").code == 0
    assert cli(ess, world, "security-group", "create", "--yes").code == 0  # essentia-access: not ess's
    assert cli(ess, world, "key-pair", "create", "mine-key").code == 0
    settings = world.settings()
    deleted = world.backend.purge(settings, world.progress())
    assert sorted(d.split(" (")[0] for d in deleted) == ["key pair mine-key", "security group mine"]
    names = {g["GroupName"] for g in world.ec2.describe_security_groups()["SecurityGroups"]}
    assert {"theirs", "essentia-access"} <= names and "mine" not in names
    keys = {k["KeyName"] for k in world.ec2.describe_key_pairs()["KeyPairs"]}
    assert keys == {"pem_file"}  # the user's own key pair is never touched
    assert (world.folder / "mine-key.pem").exists()  # local files are the user's
    assert world.backend.purge(settings, world.progress()) == []  # idempotent


@pytest.mark.parametrize("busy_for", [2, 99])
def test_purge_retries_a_group_still_in_use_then_keeps_it_and_says_so(world, ess, busy_for):
    # moto does not refuse to delete a group in use; EC2 does (DependencyViolation, also for a
    # short while after the instances terminated), so EC2's answer is injected on the wire.
    assert cli(ess, world, "security-group", "create", "busy").code == 0
    gid = group(world, "busy")["GroupId"]
    sends = []

    def in_use(request, **_):
        sends.append(1)
        if len(sends) <= busy_for:
            return aws_error(400, "DependencyViolation", f"resource {gid} has a dependent object")
        return None

    world.calls.handlers.append(("before-send.ec2.DeleteSecurityGroup", in_use))
    deleted = world.backend.purge(world.settings(), world.progress())
    if busy_for == 2:
        assert deleted == [f"security group busy ({gid})"] and len(world.sleeps) == 2
    else:
        assert deleted == []
        assert len(world.sleeps) == len(security_group.DELETE_RETRY_DELAYS)  # retried, without waiting
        assert f"kept security group busy ({gid}): still in use" in world.progress_stream.getvalue()
        assert group(world, "busy")["GroupId"] == gid


def test_caller_cidr_never_looks_up_when_told():
    def boom() -> str:
        raise AssertionError("looked up")

    assert security_group.caller_cidr("2001:db8::1", {}, boom) == ("2001:db8::1/128", False)
    assert security_group.caller_cidr(None, {"ESS_MY_IP": "192.0.2.1"}, boom) == ("192.0.2.1/32", False)
    assert security_group.caller_cidr("::/0", {}, boom) == ("::/0", True)
    with pytest.raises(UsageError):
        security_group.caller_cidr(None, {"ESS_MY_IP": "::/0"}, boom)


def test_ec2_help_lists_the_extra_commands_without_importing_boto3():
    import subprocess
    import sys

    code = (
        "import sys\nfrom ess.cli import run\nrun(['instance', 'ec2', '--help'])\n"
        "print([m for m in ('boto3', 'botocore', 'paramiko') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "security-group" in proc.stdout and "key-pair" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
