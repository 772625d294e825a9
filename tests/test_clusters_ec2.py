"""``ess clusters`` against moto: two regions, foreign instances, calls per region, and the
printed terminate command run for real."""

from __future__ import annotations

import io
import json
import shlex
import sys
from collections import Counter
from typing import Any

import pytest
from support.ec2_world import aws_error, make_world

from ess.models import TAG_CLUSTER, TAG_EXPIRES
from ess_ec2 import client as ec2_client
from ess_ec2.testing import reset_moto

EU = "eu-west-1"
US = "us-east-1"
LIVE = ["pending", "running", "stopping", "stopped"]


class RegionCalls:
    """(region, operation) of every EC2 call, through the same seam the other tests wrap;
    ``refuse`` makes one region answer every DescribeInstances with an error."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse: str | None = None) -> None:
        self.made: list[tuple[str, str]] = []
        original = ec2_client.build_client

        def counting(session: Any, service: str, region: str, max_attempts: int) -> Any:
            made = original(session, service, region, max_attempts)
            made.meta.events.register(
                "before-parameter-build", lambda model, **_: self.made.append((region, model.name))
            )
            if region == refuse:
                made.meta.events.register(
                    "before-send.ec2.DescribeInstances",
                    lambda **_: aws_error(403, "UnauthorizedOperation", "You are not authorized to perform this."),
                )
            return made

        monkeypatch.setattr(ec2_client, "build_client", counting)

    def count(self) -> Counter:
        return Counter(self.made)


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch)
    # The same key pair and group in Europe, so one config launches in both regions.
    import boto3

    europe = boto3.client("ec2", region_name=EU, endpoint_url=moto_endpoint)
    public = _public_key(world.pem.read_text())
    europe.import_key_pair(KeyName="pem_file", PublicKeyMaterial=public.encode())
    europe.create_security_group(GroupName="essentia-access", Description="ess tests")
    world.europe = europe  # type: ignore[attr-defined]
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "2")
    yield world
    # Empty the server now, while MOTO_EC2_LOAD_DEFAULT_AMIS=false still holds: if this moto
    # is reset over HTTP, that rebuilds the EC2 backend of every region asked (38 after
    # --all-regions), ~0.4 s each with default AMIs.
    reset_moto(moto_endpoint)


def _public_key(pem: str) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def create(world, cluster: str, region: str, count: int = 1) -> list[str]:
    """A launch through the core's create flow (which records the config it came from)."""
    from ess import Cluster

    made = Cluster("ec2", config=world.conf, cluster=cluster, region=region).create(count, verify=False)
    return sorted(n.id for n in made.nodes)


def live(client: Any, ids: list[str]) -> set[str]:
    pages = client.get_paginator("describe_instances").paginate(InstanceIds=ids)
    return {
        i["InstanceId"]
        for page in pages
        for r in page["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] in LIVE
    }


@pytest.fixture
def two_regions(ess, world):
    """Cluster "alpha" in us-east-1, "euro" (2 nodes) in eu-west-1, and three instances that
    are not ess clusters: one with no tags, one with another tool's tags, one with a lone
    ess:cluster tag (no ess:launch, not adopted)."""
    alpha = create(world, "alpha", US)
    euro = create(world, "euro", EU, count=2)
    plain = world.foreign(name="web server")
    other_tool = world.foreign(name="ray-head", tags={"ray-cluster-name": "alpha", "ray-node-type": "head"})
    lone_tag = world.foreign(name="imposter", tags={TAG_CLUSTER: "alpha"})
    # Launch-tagged, but a cluster name ess never writes (a shell command in it).
    odd_name = world.foreign(name="odd", tags={TAG_CLUSTER: "x; rm -rf ~", "ess:launch": "l-1"})
    return {"alpha": alpha, "euro": euro, "foreign": plain + other_tool, "lone": lone_tag + odd_name}


def test_all_regions_shows_both_clusters_and_no_foreign_instance(ess, world, two_regions, monkeypatch) -> None:
    calls = RegionCalls(monkeypatch)
    result = ess("clusters", "--all-regions", "--json", "--config", str(world.conf))
    assert result.code == 0, result
    report = json.loads(result.out)
    ec2 = {(c["region"], c["cluster"]): c for c in report["clusters"] if c["backend"] == "ec2"}
    assert set(ec2) == {(US, "alpha"), (EU, "euro")}
    assert ec2[(US, "alpha")]["node_ids"] == two_regions["alpha"]
    assert sorted(ec2[(EU, "euro")]["node_ids"]) == sorted(two_regions["euro"])
    assert ec2[(EU, "euro")]["nodes"] == {"running": 2}
    assert ec2[(EU, "euro")]["instance_types"] == ["m3.medium"]
    assert ec2[(EU, "euro")]["key_pair"] == "pem_file"
    assert ec2[(EU, "euro")]["created_by"] and "@" in ec2[(EU, "euro")]["created_by"][0]
    # The config is known: these clusters were created on this machine from world.conf.
    assert ec2[(EU, "euro")]["config"] == str(world.conf.resolve())
    shown = {i for c in report["clusters"] for i in c["node_ids"]}
    assert not shown & set(two_regions["foreign"] + two_regions["lone"])
    assert two_regions["foreign"][0] not in result.out + result.err
    # The lone ess:cluster tag is named once, as not listed.
    assert all(i in result.err for i in two_regions["lone"]) and "neither launched nor adopted" in result.err
    assert "rm -rf" not in result.out

    # One DescribeRegions, then exactly one DescribeInstances in every region it named.
    counted = calls.count()
    regions = {r["RegionName"] for r in world.ec2.describe_regions()["Regions"]}
    assert {EU, US} <= regions
    assert sum(n for (_, op), n in counted.items() if op == "DescribeRegions") == 1
    assert {region: n for (region, op), n in counted.items() if op == "DescribeInstances"} == dict.fromkeys(regions, 1)
    assert set(op for _, op in counted) == {"DescribeRegions", "DescribeInstances"}


def test_without_all_regions_only_the_configured_region_is_asked(ess, world, two_regions, monkeypatch) -> None:
    calls = RegionCalls(monkeypatch)
    result = ess("clusters", "--json", "--config", str(world.conf))
    assert result.code == 0, result
    ec2 = [(c["region"], c["cluster"]) for c in json.loads(result.out)["clusters"] if c["backend"] == "ec2"]
    assert ec2 == [(US, "alpha")]
    assert calls.count() == Counter({(US, "DescribeInstances"): 1})


def test_a_region_that_refuses_costs_its_rows_only_and_says_so(ess, world, two_regions, monkeypatch) -> None:
    calls = RegionCalls(monkeypatch, refuse=EU)
    result = ess("clusters", "--all-regions", "--json", "--config", str(world.conf))
    assert result.code == 3, result  # partial: the list is shown, and the exit code says it is not whole
    report = json.loads(result.out)
    assert [(c["region"], c["cluster"]) for c in report["clusters"] if c["backend"] == "ec2"] == [(US, "alpha")]
    assert report["partial"] is True and len(report["failures"]) == 1
    warnings = [line for line in result.err.splitlines() if line.startswith("ess: warning:")]
    assert len(warnings) == 1 and f"ec2: {EU}: " in warnings[0] and "not allowed to list instances" in warnings[0]
    assert result.err.rstrip().endswith("the list above is partial")
    assert calls.count()[(US, "DescribeInstances")] == 1


def test_a_cluster_past_its_expiry_is_marked(ess, world, two_regions) -> None:
    world.europe.create_tags(
        Resources=two_regions["euro"][:1], Tags=[{"Key": TAG_EXPIRES, "Value": "2026-01-01T00:00:00Z"}]
    )
    world.europe.create_tags(
        Resources=two_regions["euro"][1:], Tags=[{"Key": TAG_EXPIRES, "Value": "2099-01-01T00:00:00Z"}]
    )
    for region, cluster, mark in ((EU, "euro", "EXPIRED"), (US, "alpha", "")):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_DEFAULT_REGION", region)
            text = ess("clusters", "--config", str(world.conf))
            data = ess("clusters", "--config", str(world.conf), "--json")
        assert text.code == data.code == 0, (text, data)
        line = next(line for line in text.out.splitlines() if line.startswith("ec2"))
        assert line.split()[2] == cluster
        row = next(c for c in json.loads(data.out)["clusters"] if c["backend"] == "ec2")
        if mark:
            # The earliest deadline of the cluster's nodes is the cluster's.
            assert "EXPIRED" in line and "2026-01-01T00:00:00Z" in line
            assert (row["expires"], row["marks"]) == ("2026-01-01T00:00:00Z", ["EXPIRED"])
        else:
            assert "EXPIRED" not in line and row["marks"] == [] and row["expires"] is None


class Terminal(io.StringIO):
    """stdin as a terminal that answers the confirmation prompt."""

    def isatty(self) -> bool:
        return True


def run_printed(ess, command: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a command line exactly as printed: leading NAME=value words are its environment."""
    words = shlex.split(command)
    while "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        monkeypatch.setenv(name, value)
    assert words[:2] == ["ess", "instance"], command
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    return ess(*words[1:])


@pytest.mark.parametrize("config_known", [True, False])
def test_the_printed_terminate_command_terminates_exactly_that_cluster(
    ess, world, two_regions, monkeypatch, tmp_path, config_known: bool
) -> None:
    if not config_known:
        from ess.origins import registry_path

        registry_path().unlink()  # created elsewhere: ess has no record of the config
        # ESS_KEY_NAME names the key pair: its private key must be on this machine (red team
        # F5; test_a_printed_command_for_a_key_pair_whose_key_is_elsewhere_changes_nothing).
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "pem_file.pem").write_text(world.pem.read_text())
        (home / ".ssh" / "pem_file.pem").chmod(0o600)
        monkeypatch.setenv("HOME", str(home))
    # No --config: AWS's own chain, as on a fresh machine. (--all-regions is covered above.)
    result = ess("clusters", "--region", EU)
    assert result.code == 0, result
    row = next(line for line in result.out.splitlines() if line.startswith("ec2") and " euro " in line)
    command = row[row.index("ess instance ec2 terminate") - (0 if config_known else len("ESS_KEY_NAME=pem_file ")) :]
    if config_known:
        assert f"--config {world.conf.resolve()}" in command
    else:
        assert command.startswith("ESS_KEY_NAME=pem_file ess instance ec2 terminate all")
    assert "--region eu-west-1" in command and "--cluster euro" in command
    done = run_printed(ess, command, monkeypatch)
    assert done.code == 0, done
    assert live(world.europe, two_regions["euro"]) == set()
    assert live(world.ec2, two_regions["alpha"] + two_regions["foreign"] + two_regions["lone"]) == set(
        two_regions["alpha"] + two_regions["foreign"] + two_regions["lone"]
    )
    after = json.loads(ess("clusters", "--json", "--region", EU).out)
    assert [c["cluster"] for c in after["clusters"] if c["backend"] == "ec2"] == []


def test_a_printed_command_for_a_key_pair_whose_key_is_elsewhere_changes_nothing(
    ess, world, two_regions, monkeypatch, tmp_path
) -> None:
    """A row's command names its key pair by ESS_KEY_NAME; anyone with CreateTags can forge
    a row onto another team's instances, so without the key pair's .pem here it is refused."""
    from ess.origins import registry_path

    registry_path().unlink()
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    result = ess("clusters", "--region", EU)
    row = next(line for line in result.out.splitlines() if line.startswith("ec2") and " euro " in line)
    command = row[row.index("ESS_KEY_NAME=pem_file ess instance ec2 terminate") :]
    refused = run_printed(ess, command, monkeypatch)
    assert refused.code == 2, refused
    assert "will not terminate instances of key pair 'pem_file'" in refused.err, refused.err
    assert "Terminate " not in refused.err, refused.err  # refused before the question, not after a yes
    assert live(world.europe, two_regions["euro"]) == set(two_regions["euro"])


def test_a_key_pair_is_a_cluster_of_its_own(ess, world, two_regions) -> None:
    """Same region and name, another key pair: another config's cluster, another row and command."""
    world.ec2.create_key_pair(KeyName="other_pair")
    world.ec2.run_instances(
        ImageId=world.image, MinCount=1, MaxCount=1, InstanceType="t3.large", KeyName="other_pair",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": TAG_CLUSTER, "Value": "alpha"}, {"Key": "ess:launch", "Value": "elsewhere"}]}],
    )  # fmt: skip
    report = json.loads(ess("clusters", "--json", "--config", str(world.conf)).out)
    rows = {c["key_pair"]: c for c in report["clusters"] if c["cluster"] == "alpha"}
    assert set(rows) == {"pem_file", "other_pair"}
    assert rows["other_pair"]["config"] is None
    assert rows["other_pair"]["terminate"].startswith("ESS_KEY_NAME=other_pair ess instance ec2 terminate all")


def test_no_credentials_is_one_warning_and_the_local_clusters_still_show(ess, world, monkeypatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    result = ess("clusters")
    assert result.code == 3, result  # local answered (no clusters), ec2 could not be asked: partial
    assert result.out.startswith("no ess clusters found")
    warnings = [line for line in result.err.splitlines() if line.startswith("ess: warning: ec2:")]
    assert len(warnings) == 1 and "no AWS credentials" in warnings[0]
