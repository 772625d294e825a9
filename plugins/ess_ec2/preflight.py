"""Preflight: every check a launch needs, read-only, ending in a RunInstances DryRun.

The result is a :class:`LaunchPlan` holding what the checks resolved (security group ids,
image id, subnet), so ``create`` launches without asking AWS the same questions again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ess.errors import UsageError
from ess.models import LaunchRequest, Settings

from . import keys
from .client import Aws, error_code, error_message, is_aws_error, translate, translated

#: Latest Amazon Linux 2023 per architecture, published by AWS as public SSM parameters.
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"


#: Markets a cluster can launch in (setting ``market``).
ON_DEMAND, SPOT, SPOT_OR_ON_DEMAND = "on-demand", "spot", "spot-or-on-demand"


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch needs besides the count and the core's tags.

    ``instance_types`` and ``subnets`` are every pool the settings list, in order of
    preference (``instance_type`` and ``subnet_id`` are the first of each); ``extra`` holds
    RunInstances arguments beyond the basics (IamInstanceProfile, UserData,
    BlockDeviceMappings, InstanceInitiatedShutdownBehavior...), shared by RunInstances and
    the fleet's launch template; ``tags`` are the user's extra tags (setting ``tags``).
    """

    region: str
    instance_type: str
    image_id: str
    key_name: str
    key_file: Path
    security_group_ids: tuple[str, ...] = ()
    subnet_id: str | None = None
    zone: str | None = None
    instance_tag: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    instance_types: tuple[str, ...] = ()
    #: (subnet id, its availability zone) per listed subnet, in order.
    subnets: tuple[tuple[str, str], ...] = ()
    market: str = ON_DEMAND
    max_price: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uses_fleet(self) -> bool:
        """One type, at most one subnet, on-demand: one RunInstances. Anything more: one CreateFleet."""
        return len(self.instance_types) > 1 or len(self.subnets) > 1 or self.market != ON_DEMAND

    def run_arguments(self) -> dict[str, Any]:
        """RunInstances arguments shared by the DryRun and the real launch."""
        args: dict[str, Any] = {
            "ImageId": self.image_id,
            "InstanceType": self.instance_type,
            "KeyName": self.key_name,
        }
        if self.security_group_ids:
            args["SecurityGroupIds"] = list(self.security_group_ids)
        if self.subnet_id:
            args["SubnetId"] = self.subnet_id
        args.update(self.extra)
        return args


def plan_launch(aws: Aws, settings: Settings, request: LaunchRequest) -> LaunchPlan:
    """Run every check; raise UsageError on the first problem. No side effects."""
    key_name = keys.key_pair_name(settings)
    key_file = keys.key_file(settings)
    instance_type = str(settings["instance_type"])
    with translated(aws, "check the launch settings"):
        _check_key_pair(aws, settings, key_name)
        subnet_id, vpc_id, zone = _check_subnet(aws, settings)
        group_ids = _resolve_security_groups(aws, settings, vpc_id)
        arch = _check_instance_type(aws, settings, instance_type, zone)
        image_id = _resolve_image(aws, settings, arch)
    plan = LaunchPlan(
        region=aws.region,
        instance_type=instance_type,
        image_id=image_id,
        key_name=key_name,
        key_file=key_file,
        security_group_ids=tuple(group_ids),
        subnet_id=subnet_id,
        zone=zone,
        instance_tag=str(settings["instance_tag"]),
    )
    dry_run(aws, settings, plan, request)
    return plan


def _check_key_pair(aws: Aws, settings: Settings, key_name: str) -> None:
    from botocore.exceptions import ClientError

    try:
        found = aws.ec2.describe_key_pairs(KeyNames=[key_name]).get("KeyPairs", [])
    except ClientError as exc:
        if error_code(exc) != "InvalidKeyPair.NotFound":
            raise
        found = []
    if not found:
        raise UsageError(
            f"{settings.where('key_name')}: key pair {key_name!r} not found in "
            f"{aws.region} (create or import it in that region, or fix key_name)"
        )


def _check_subnet(aws: Aws, settings: Settings) -> tuple[str | None, str | None, str | None]:
    """(subnet id, its VPC, its zone); without a subnet, the default VPC and no zone."""
    subnet = find_subnet(aws, settings)
    if subnet is not None:
        return subnet["SubnetId"], subnet.get("VpcId"), subnet.get("AvailabilityZone")
    if not settings.get("security_groups"):
        return None, None, None
    # Security group names are per VPC; without a subnet, EC2 launches into the default VPC.
    return None, default_vpc(aws, settings), None


def find_subnet(aws: Aws, settings: Settings) -> dict[str, Any] | None:
    """The description of ``subnet_id``, None when it is unset; UsageError when EC2 does not know it."""
    from botocore.exceptions import ClientError

    subnet_id = settings.get("subnet_id")
    if not subnet_id:
        return None
    try:
        subnets = aws.ec2.describe_subnets(SubnetIds=[subnet_id]).get("Subnets", [])
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidSubnetID"):
            raise
        subnets = []
    if not subnets:
        raise UsageError(
            f"{settings.where('subnet_id')}: subnet {subnet_id!r} not found in "
            f"{aws.region} (fix subnet_id, or remove it to use the default VPC)"
        )
    return subnets[0]


def default_vpc(aws: Aws, settings: Settings) -> str:
    """The region's default VPC, where EC2 puts nodes (and groups) when no subnet is given."""
    vpcs = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}]).get("Vpcs", [])
    if not vpcs:
        raise UsageError(
            f"{settings.where('subnet_id')}: {aws.region} has no default VPC "
            "(set subnet_id to a subnet of the VPC the nodes should run in)"
        )
    return str(vpcs[0]["VpcId"])


def _resolve_security_groups(aws: Aws, settings: Settings, vpc_id: str | None) -> list[str]:
    """Security group names and ids → ids, every one checked to exist in the right VPC."""
    wanted = [str(g) for g in settings.get("security_groups", []) or []]
    if not wanted:
        return []
    ids = [g for g in wanted if g.startswith("sg-")]
    names = [g for g in wanted if not g.startswith("sg-")]
    by_id: dict[str, str] = {}
    by_name: dict[str, str] = {}
    if ids:
        found = aws.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": ids}]).get(
            "SecurityGroups", []
        )
        by_id = {g["GroupId"]: g["GroupId"] for g in found if not vpc_id or g.get("VpcId") == vpc_id}
    if names:
        # GroupNames= only searches the default VPC (and moto crashes on a missing name):
        # filter by name within the VPC instead.
        filters = [{"Name": "group-name", "Values": names}]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [vpc_id]})
        found = aws.ec2.describe_security_groups(Filters=filters).get("SecurityGroups", [])
        by_name = {g["GroupName"]: g["GroupId"] for g in found}
    missing = [g for g in wanted if g not in by_id and g not in by_name]
    if missing:
        place = f"VPC {vpc_id}" if vpc_id else aws.region
        listed = ", ".join(repr(m) for m in missing)
        raise UsageError(
            f"{settings.where('security_groups')}: security group {listed} not found in "
            f"{place} (create it, e.g. `ess instance ec2 security-group create`, or fix "
            "security_groups)"
        )
    resolved = [by_id.get(g) or by_name[g] for g in wanted]
    return list(dict.fromkeys(resolved))


def _check_instance_type(aws: Aws, settings: Settings, instance_type: str, zone: str | None) -> str:
    """Check the type exists and is offered where we launch; return its architecture."""
    from botocore.exceptions import ClientError

    where = settings.where("instance_type")
    try:
        described = aws.ec2.describe_instance_types(InstanceTypes=[instance_type]).get("InstanceTypes", [])
    except ClientError as exc:
        if error_code(exc) not in ("InvalidInstanceType", "InvalidParameterValue"):
            raise
        described = []
    if not described:
        raise UsageError(
            f"{where}: instance type {instance_type!r} does not exist "
            "(pick one such as t3.large or m5.large, or fix instance_type / --type)"
        )
    location_type, location = ("availability-zone", zone) if zone else ("region", aws.region)
    offerings = aws.ec2.describe_instance_type_offerings(
        LocationType=location_type,
        Filters=[{"Name": "instance-type", "Values": [instance_type]}, {"Name": "location", "Values": [location]}],
    ).get("InstanceTypeOfferings", [])
    if not offerings:
        raise UsageError(
            f"{where}: instance type {instance_type!r} is not offered in {location} "
            "(pick another type, or another region or subnet)"
        )
    archs = described[0].get("ProcessorInfo", {}).get("SupportedArchitectures", []) or ["x86_64"]
    return "arm64" if "x86_64" not in archs and "arm64" in archs else "x86_64"


def _resolve_image(aws: Aws, settings: Settings, arch: str) -> str:
    from botocore.exceptions import ClientError

    image_id = settings.get("image_id")
    if not image_id:
        name = AL2023_PARAMETER.format(arch=arch)
        try:
            return str(aws.ssm.get_parameter(Name=name)["Parameter"]["Value"])
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise
            raise UsageError(
                f"{settings.where('image_id')}: no Amazon Linux 2023 image is published "
                f"for {arch} in {aws.region} (set image_id to an AMI id)"
            ) from None
    where = settings.where("image_id")
    try:
        images = aws.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidAMIID"):
            raise
        images = []
    if not images:
        raise UsageError(
            f"{where}: image {image_id!r} not found in {aws.region} (AMI ids differ per "
            "region: look it up there, or remove image_id to use Amazon Linux 2023)"
        )
    image_arch = images[0].get("Architecture")
    if image_arch and image_arch != arch:
        raise UsageError(
            f"{where}: image {image_id!r} is {image_arch} but instance type "
            f"{settings['instance_type']!r} runs {arch} (pick a matching image or type)"
        )
    return str(image_id)


def dry_run(aws: Aws, settings: Settings, plan: LaunchPlan, request: LaunchRequest) -> None:
    """Ask EC2 whether the whole launch would be allowed, launching nothing."""
    from botocore.exceptions import ClientError

    try:
        aws.ec2.run_instances(DryRun=True, MinCount=request.min_count, MaxCount=request.count, **plan.run_arguments())
    except ClientError as exc:
        code = error_code(exc)
        if code == "DryRunOperation":
            return
        if code in ("VcpuLimitExceeded", "InstanceLimitExceeded"):
            raise UsageError(
                f"{settings.where('instance_count')}: {request.count} x {plan.instance_type} "
                f"is over your EC2 quota in {aws.region} ({code}: {error_message(exc)}) "
                "(launch fewer nodes, or ask AWS for a higher quota)"
            ) from None
        if code.startswith("Invalid") or code in ("Unsupported", "MissingParameter"):
            raise UsageError(
                f"{settings.where('instance_type')}: EC2 would refuse this launch in "
                f"{aws.region}: {code}: {error_message(exc)} (fix the setting it names)"
            ) from None
        raise translate(exc, aws, "launch instances (dry run)") from None
    except Exception as exc:
        if is_aws_error(exc):
            raise translate(exc, aws, "launch instances (dry run)") from None
        raise
