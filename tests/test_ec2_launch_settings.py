"""Issue 15's launch settings against moto: each one reaches the launch, each bad value
stops before any mutating call; and issue 17's concurrent preflight, counted in rounds."""

from __future__ import annotations

import base64
import email
import os
import threading
from typing import Any

import boto3
import pytest
from support.ec2_world import aws_error, make_world

from ess.errors import UsageError
from ess_ec2 import lifetime, userdata
from ess_ec2.preflight import ON_DEMAND, SPOT_OR_ON_DEMAND, likely_architecture
from ess_ec2.userdata import MAX_USER_DATA, Part

BOOT = "#!/bin/sh\n# a line starting with From must stay as written:\nFrom here on, héllo\necho ready > /tmp/ready\n"
ESS_PART = Part("#!/bin/sh\nshutdown -h +480\n", "text/x-shellscript", "ess-lifetime.sh")


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    return make_world(tmp_path, monkeypatch)


@pytest.fixture
def iam(world):
    return boto3.client("iam", region_name="us-east-1", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def default_subnets(world) -> list[dict[str, Any]]:
    subnets = world.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return sorted(subnets, key=lambda s: s["AvailabilityZone"])


def preflight_error(world, **cli: Any) -> str:
    with pytest.raises(UsageError) as info:
        world.backend.preflight(world.settings(**cli), world.request(2))
    message = str(info.value)
    assert "\n" not in message
    assert world.calls.mutating() == [], "preflight must not change anything"
    return message


def parts_of(user_data: str) -> list[tuple[str, bytes]]:
    message = email.message_from_bytes(user_data.encode())
    return [(p.get_content_type(), p.get_payload(decode=True)) for p in message.walk() if not p.is_multipart()]


# -- every setting reaches the launch ------------------------------------------------------
def test_every_launch_setting_reaches_the_instances_and_their_volumes(world, iam, monkeypatch):
    arn = iam.create_instance_profile(InstanceProfileName="essentia-workers")["InstanceProfile"]["Arn"]
    (world.folder / "boot.sh").write_text(BOOT, encoding="utf-8")
    # From the config file: relative to its folder (the test runs elsewhere).
    world.conf.write_text(world.conf.read_text() + "user_data: boot.sh\n")
    monkeypatch.setattr(lifetime, "parts", lambda settings, expires=None: [ESS_PART])
    nodes = world.launch(
        2,
        iam_instance_profile="essentia-workers",
        root_volume_gb=20,
        volume_type="gp2",
        tags="team=data, cost-center=42",
        image_id=world.image,
    )
    ids = [n.id for n in nodes]
    pages = world.ec2.describe_instances(InstanceIds=ids)["Reservations"]
    instances = [i for r in pages for i in r["Instances"]]
    # The launch asks for the profile for every node; moto 5.2.5 associates it with the
    # first instance of a RunInstances only (checked: the same with boto3 alone).
    assert {i.get("IamInstanceProfile", {}).get("Arn") for i in instances} - {None} == {arn}
    launched = [p for op, p in world.calls.made if op == "RunInstances" and not p.get("DryRun")]
    assert launched[0]["IamInstanceProfile"] == {"Arn": arn} and launched[0]["MaxCount"] == 2
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["team"] == "data" and tags["cost-center"] == "42" and tags["ess:cluster"] == "default"
        raw = world.ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
        sent = base64.b64decode(raw["UserData"]["Value"]).decode("utf-8")
        # The user's part first and byte for byte, then ess's own: composed, never replaced.
        assert parts_of(sent) == [
            ("text/x-shellscript", BOOT.encode("utf-8")),
            ("text/x-shellscript", ESS_PART.content.encode()),
        ]
    volumes = world.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": ids}])["Volumes"]
    assert len(volumes) == 2
    for volume in volumes:
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        assert (volume["Size"], volume["VolumeType"]) == (20, "gp2")
        assert tags["team"] == "data" and tags["ess:cluster"] == "default" and tags["Name"] == "Essentia Worker Node"
    assert len(launched) == 1 and launched[0]["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"] is True


def test_user_data_alone_goes_unchanged(world):
    (world.folder / "boot.sh").write_text(BOOT, encoding="utf-8")
    [node] = world.launch(1, user_data=str(world.folder / "boot.sh"))
    raw = world.ec2.describe_instance_attribute(InstanceId=node.id, Attribute="userData")
    assert base64.b64decode(raw["UserData"]["Value"]) == BOOT.encode("utf-8")


def test_user_data_inline_line_and_the_flag_path_from_the_current_folder(world, tmp_path, monkeypatch):
    plan = world.backend.preflight(world.settings(user_data="#include https://example.com/boot.sh"), world.request(1))
    assert plan.extra["UserData"] == "#include https://example.com/boot.sh"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "boot.sh").write_text(BOOT)
    monkeypatch.chdir(elsewhere)
    # world.settings passes it like the --user-data flag does: relative to the current folder.
    plan = world.backend.preflight(world.settings(user_data="boot.sh"), world.request(1))
    assert plan.extra["UserData"] == BOOT


def test_plan_holds_the_lists_market_and_tags_in_order(world):
    subnets = default_subnets(world)[:2]
    listed = ", ".join(s["SubnetId"] for s in subnets)
    plan = world.backend.preflight(
        world.settings(
            instance_type="t3.large, m3.medium",
            subnet_id=listed,
            market="spot-or-on-demand",
            max_price="0.05",
            tags="team=data",
        ),
        world.request(2),
    )
    assert plan.instance_types == ("t3.large", "m3.medium") and plan.instance_type == "t3.large"
    assert plan.subnets == tuple((s["SubnetId"], s["AvailabilityZone"]) for s in subnets)
    assert (plan.subnet_id, plan.zone) == plan.subnets[0]
    assert (plan.market, plan.max_price, plan.tags) == (SPOT_OR_ON_DEMAND, "0.05", {"team": "data"})
    assert plan.uses_fleet
    # One describe each for the lists, however long they are.
    ops = world.calls.by_operation()
    assert ops["DescribeSubnets"] == ops["DescribeInstanceTypes"] == ops["DescribeInstanceTypeOfferings"] == 1


def test_one_type_one_subnet_on_demand_stays_a_plain_run_instances(world):
    plan = world.backend.preflight(world.settings(), world.request(2))
    assert (plan.instance_types, plan.market, plan.max_price, plan.tags) == (("m3.medium",), ON_DEMAND, None, {})
    assert not plan.uses_fleet and "BlockDeviceMappings" not in plan.extra and "UserData" not in plan.extra


def test_volume_type_alone_keeps_the_image_size(world):
    plan = world.backend.preflight(world.settings(image_id=world.image, volume_type="io2"), world.request(1))
    [mapping] = plan.extra["BlockDeviceMappings"]
    snapshot = world.ec2.describe_images(ImageIds=[world.image])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]
    assert mapping["Ebs"]["VolumeSize"] == snapshot["VolumeSize"] and mapping["Ebs"]["VolumeType"] == "io2"
    assert mapping["Ebs"]["Iops"] == min(3000, 500 * snapshot["VolumeSize"])


def test_instance_profile_by_arn(world, iam):
    arn = iam.create_instance_profile(InstanceProfileName="workers", Path="/ess/")["InstanceProfile"]["Arn"]
    plan = world.backend.preflight(world.settings(iam_instance_profile=arn), world.request(1))
    assert plan.extra["IamInstanceProfile"] == {"Arn": arn}
    wrong = arn.replace("123456789012", "210987654321")
    assert "whose ARN is" in preflight_error(world, iam_instance_profile=wrong)


# -- bad values: one line naming the setting, nothing changed --------------------------------
def test_missing_instance_profile(world, iam):
    message = preflight_error(world, iam_instance_profile="nosuch")
    assert message.startswith("--instance-profile: instance profile 'nosuch' not found")


def test_missing_pass_role_is_named(world, iam):
    iam.create_instance_profile(InstanceProfileName="workers")
    denied = (
        "You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/ess is not "
        "authorized to perform: iam:PassRole on resource: arn:aws:iam::123456789012:role/workers"
    )

    def refuse(request: Any, **_: Any) -> Any:
        return aws_error(403, "UnauthorizedOperation", denied)

    world.calls.handlers.append(("before-send.ec2.RunInstances", refuse))
    message = preflight_error(world, iam_instance_profile="workers")
    assert "lack iam:PassRole" in message and "docs/ec2.md" in message and "--instance-profile" in message


def test_root_volume_below_the_image_snapshot(world):
    snapshot = world.ec2.describe_images(ImageIds=[world.image])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]
    least = snapshot["VolumeSize"]
    message = preflight_error(world, image_id=world.image, root_volume_gb=least - 1)
    assert message.startswith(f"--root-volume-gb: {least - 1} GiB is below the {least} GiB of image")


def test_user_data_too_large_once_composed_names_size_and_limit(world, monkeypatch):
    # Under the limit alone, over it with ess's part: the check is on what is sent.
    text = "#!/bin/sh\n" + "x" * (MAX_USER_DATA * 3 // 4 - 20) + "\n"
    assert len(userdata.encoded(text)) <= MAX_USER_DATA
    (world.folder / "boot.sh").write_text(text)
    monkeypatch.chdir(world.folder)
    world.backend.preflight(world.settings(user_data="boot.sh"), world.request(1))
    monkeypatch.setattr(lifetime, "parts", lambda settings, expires=None: [ESS_PART])
    message = preflight_error(world, user_data="boot.sh")
    assert "bytes after base64 encoding (with ess's own parts), over EC2's limit of 16,384" in message


@pytest.mark.parametrize(
    ("cli", "fragment"),
    [
        ({"user_data": "not-utf8.sh"}, "is not UTF-8 text"),
        ({"instance_type": "m3.medium, m3.nosuch, x9.bad"}, "instance type 'm3.nosuch', 'x9.bad' does not exist"),
        ({"instance_type": "t3.large, t3.large"}, "'t3.large' is listed twice"),
        ({"subnet_id": "subnet-00000000deadbeef0"}, "subnet 'subnet-00000000deadbeef0' not found"),
        ({"root_volume_gb": 0}, "0 is too small"),
        ({"max_price": "abc", "market": "spot"}, "'abc' is not a valid max_price"),
        ({"max_price": "0", "market": "spot"}, "'0' is not a positive price"),
        ({"tags": "=x"}, "'=x' has an empty key"),
        ({"tags": "aws:owner=me"}, "tag key 'aws:owner' is reserved"),
        ({"tags": "Name=x"}, "the Name tag comes from instance_tag"),
        ({"tags": "a=1, a=2"}, "tag key 'a' is given twice"),
        ({"instance_type": "m3.medium, t4g.large"}, "do not share an architecture"),
    ],
)
def test_bad_launch_settings(world, cli, fragment, monkeypatch):
    monkeypatch.chdir(world.folder)
    (world.folder / "not-utf8.sh").write_bytes(b"#!/bin/sh\necho \xff\xfe\n")
    message = preflight_error(world, **cli)  # some are refused as the settings are read
    assert fragment in message, message


def test_subnet_with_the_unknown_one_named_among_known(world):
    known = default_subnets(world)[0]["SubnetId"]
    message = preflight_error(world, subnet_id=f"{known}, subnet-00000000deadbeef0")
    assert "subnet 'subnet-00000000deadbeef0' not found" in message and known not in message


def test_subnets_in_two_vpcs(world):
    vpc = world.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    other = world.ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="us-east-1a")
    world.calls.reset()
    first = default_subnets(world)[0]["SubnetId"]
    message = preflight_error(world, subnet_id=f"{first}, {other['Subnet']['SubnetId']}")
    assert "the subnets are in different VPCs" in message


def test_type_not_offered_in_any_listed_zone(world):
    # moto offers m3.medium in us-east-1a/b/c/e, not in us-east-1d or f.
    zones = {s["AvailabilityZone"]: s["SubnetId"] for s in default_subnets(world)}
    message = preflight_error(world, instance_type="t3.large, m3.medium", subnet_id=zones["us-east-1d"])
    assert "instance type 'm3.medium' is not offered in the zone(s) of the listed subnets (us-east-1d)" in message
    both = f"{zones['us-east-1d']}, {zones['us-east-1a']}"
    world.calls.reset()
    plan = world.backend.preflight(
        world.settings(instance_type="t3.large, m3.medium", subnet_id=both), world.request(2)
    )
    assert plan.instance_types == ("t3.large", "m3.medium")


def test_architecture_is_guessed_from_the_name_and_checked(world):
    assert [likely_architecture(t) for t in ("t4g.large", "c7gn.large", "a1.large", "g5.xlarge", "m7i-flex.large")] == [
        "arm64",
        "arm64",
        "arm64",
        "x86_64",
        "x86_64",
    ]
    plan = world.backend.preflight(world.settings(instance_type="t4g.large"), world.request(1))
    asked = [p["Name"] for op, p in world.calls.made if op == "GetParameter"]
    assert asked == ["/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"]
    assert plan.image_id.startswith("ami-")


# -- issue 17: the read-only calls in rounds ------------------------------------------------
ROUND_ONE = {
    "DescribeKeyPairs",
    "DescribeSubnets",
    "DescribeInstanceTypes",
    "DescribeInstanceTypeOfferings",
    "GetInstanceProfile",
    "DescribeImages",
    "DescribeSecurityGroups",
}


def test_preflight_asks_in_two_rounds_and_the_launch_is_the_third(world, iam):
    """Round one's seven calls meet at a barrier: made one after another, the first would wait
    there alone and the barrier breaks. The security groups are looked up in every VPC in that
    round (the VPC is not known yet) and kept in the subnet's. Then the DryRun, then the launch."""
    iam.create_instance_profile(InstanceProfileName="workers")
    subnets = default_subnets(world)[0]["SubnetId"]
    sends: list[str] = []
    barrier = threading.Barrier(len(ROUND_ONE))

    def gate(request: Any, **kwargs: Any) -> None:
        operation = kwargs["event_name"].split(".")[-1]
        sends.append(operation)
        if len(sends) <= len(ROUND_ONE):
            barrier.wait(timeout=60)

    world.calls.handlers.append(("before-send", gate))
    settings = world.settings(
        iam_instance_profile="workers", subnet_id=subnets, image_id=world.image, instance_type="t3.large"
    )
    request = world.request(2)
    plan = world.backend.preflight(settings, request)
    assert set(sends[: len(ROUND_ONE)]) == ROUND_ONE and not barrier.broken
    assert sends[len(ROUND_ONE) :] == ["RunInstances"]
    assert plan.security_group_ids == (world.group_id,)
    from dataclasses import replace

    world.backend.create(settings, replace(request, plan=plan), world.progress())
    assert sends[len(ROUND_ONE) :] == ["RunInstances", "RunInstances"]
    assert world.calls.count("RunInstances", dry_run=True) == 1


def test_the_earliest_check_error_wins_whatever_answers_first(world):
    """The key pair's answer is held until the instance types' error is back: the message
    is still the key pair's, as when the checks ran one after another."""
    world.ec2.delete_key_pair(KeyName="pem_file")
    types_answered = threading.Event()

    def after_types(**_: Any) -> None:
        types_answered.set()

    def hold_key_pairs(request: Any, **_: Any) -> None:
        assert types_answered.wait(timeout=60)

    world.calls.handlers.append(("after-call.ec2.DescribeInstanceTypes", after_types))
    world.calls.handlers.append(("before-send.ec2.DescribeKeyPairs", hold_key_pairs))
    message = preflight_error(world, instance_type="m3.nosuch", subnet_id="subnet-00000000deadbeef0")
    assert "key pair 'pem_file' not found" in message


def test_a_wrong_architecture_guess_costs_one_more_round_not_a_wrong_image(world, monkeypatch):
    from ess_ec2 import preflight

    monkeypatch.setattr(preflight, "likely_architecture", lambda instance_type: "arm64")
    plan = world.backend.preflight(world.settings(), world.request(1))  # m3.medium: x86_64
    asked = [p["Name"].rsplit("-", 1)[-1] for op, p in world.calls.made if op == "GetParameter"]
    assert asked == ["arm64", "x86_64"]
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    x86 = ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    assert plan.image_id == x86["Parameter"]["Value"]


def test_security_group_create_uses_the_first_listed_subnet(world):
    from ess_ec2.preflight import find_subnet
    from ess_ec2.session import session_for

    first, second = default_subnets(world)[:2]
    settings = world.settings(subnet_id=f"{first['SubnetId']}, {second['SubnetId']}")
    assert find_subnet(session_for(settings).aws, settings)["SubnetId"] == first["SubnetId"]


def test_time_limits_are_composed_with_the_user_data_never_replacing_it(world):
    """The real lifetime part (issue 16) next to the user's script: both arrive, the user's first."""
    (world.folder / "boot.sh").write_text(BOOT, encoding="utf-8")
    [node] = world.launch(1, user_data=str(world.folder / "boot.sh"), max_lifetime="8h")
    raw = world.ec2.describe_instance_attribute(InstanceId=node.id, Attribute="userData")
    parts = parts_of(base64.b64decode(raw["UserData"]["Value"]).decode("utf-8"))
    assert parts[0] == ("text/x-shellscript", BOOT.encode("utf-8"))
    assert len(parts) == 2 and parts[1][0] == "text/x-shellscript" and parts[1][1] != parts[0][1]
    behavior = world.ec2.describe_instance_attribute(InstanceId=node.id, Attribute="instanceInitiatedShutdownBehavior")
    assert behavior["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"


def test_refused_dry_run_with_a_profile_points_at_pass_role_even_without_details(world, iam):
    iam.create_instance_profile(InstanceProfileName="workers")

    def refuse(request: Any, **_: Any) -> Any:
        return aws_error(403, "UnauthorizedOperation", "You are not authorized to perform this operation.")

    world.calls.handlers.append(("before-send.ec2.RunInstances", refuse))
    message = preflight_error(world, iam_instance_profile="workers")
    assert "usually iam:PassRole on its role is missing" in message and "docs/ec2.md" in message


def test_profile_check_denied_names_the_permission(world):
    def deny(request: Any, **_: Any) -> Any:
        return aws_error(403, "AccessDenied", "User is not authorized to perform: iam:GetInstanceProfile")

    world.calls.handlers.append(("before-send.iam.GetInstanceProfile", deny))
    message = preflight_error(world, iam_instance_profile="workers")
    assert "may not read instance profile 'workers' (allow iam:GetInstanceProfile" in message
