"""Preflight: every check a launch needs, read-only, ending in a RunInstances DryRun.

The result is a :class:`LaunchPlan` holding what the checks resolved (security group ids,
image id, subnet), so ``create`` launches without asking AWS the same questions again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ess.errors import UsageError
from ess.models import TAG_EXPIRES, LaunchRequest, Settings

from . import keys, launch_options, lifetime, rounds, userdata
from .client import Aws, error_code, error_message, is_aws_error, translate, translated

#: Latest Amazon Linux 2023 per architecture, published by AWS as public SSM parameters.
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
#: IOPS given to an io1/io2 root volume, and the most each GiB allows.
BASE_IOPS = 3000
IOPS_PER_GIB = {"io1": 50, "io2": 500}


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
    """Run every check; raise UsageError on the first problem. No side effects.

    Local checks come first (settings, key file, user data: no call is made for a typo).
    The AWS questions go in rounds of concurrent calls (see rounds.py): every question at
    once (security groups looked up in all VPCs, then kept in the nodes' VPC), then the
    DryRun; only a default image whose architecture was guessed wrong, or whose root device
    is needed, adds a round between them. Errors are raised in the order the checks were
    always made (key pair, subnets, security groups, types, image, profile), so the message
    does not depend on which call answered first.
    """
    options = launch_options.read(settings)
    key_name = keys.key_pair_name(settings)
    key_file = keys.key_file(settings)
    user_data = _user_data(settings, request)
    with translated(aws, "check the launch settings"):
        # Clients are made here, before the threads: making one is not thread-safe.
        aws.ec2  # noqa: B018
        if not settings.get("image_id"):
            aws.ssm  # noqa: B018
        if options.iam_instance_profile:
            aws.client("iam")
        first = rounds.at_once(_first_round(aws, settings, options, key_name))
        first["key_pair"].get()
        subnets, vpc_id = first["network"].get()
        group_ids = _pick_security_groups(settings, aws.region, vpc_id, first)
        second = rounds.at_once(_second_round(aws, settings, options, first))
        arch = _check_instance_types(aws, settings, options, subnets, first["types"].get(), first["offerings"])
        image_id, image = _image(aws, settings, options, arch, first, second)
        profile = first["profile"].get()
    extra: dict[str, Any] = {}
    if profile:
        extra["IamInstanceProfile"] = {"Arn": profile}
    if user_data is not None:
        extra["UserData"] = user_data
    mapping = _root_volume(settings, options, image)
    if mapping:
        extra["BlockDeviceMappings"] = [mapping]
    extra.update(lifetime.run_arguments(settings))
    plan = LaunchPlan(
        region=aws.region,
        instance_type=options.instance_types[0],
        image_id=image_id,
        key_name=key_name,
        key_file=key_file,
        security_group_ids=tuple(group_ids),
        subnet_id=subnets[0][0] if subnets else None,
        zone=subnets[0][1] if subnets else None,
        instance_tag=str(settings["instance_tag"]),
        extra=extra,
        instance_types=options.instance_types,
        subnets=tuple(subnets),
        market=options.market,
        max_price=options.max_price,
        tags=dict(options.tags),
    )
    dry_run(aws, settings, plan, request)
    return plan


def _first_round(
    aws: Aws, settings: Settings, options: launch_options.LaunchOptions, key_name: str
) -> dict[str, Callable[[], Any]]:
    """The questions that need no other answer, keyed by the check they serve.

    The default image depends on the architecture, known only once the types are
    described: its SSM parameter is asked for the architecture the first type's name
    suggests (:func:`likely_architecture`), and asked again in the next round if wrong.
    """
    image_id = settings.get("image_id")
    guess = likely_architecture(options.instance_types[0])
    return {
        "key_pair": lambda: _check_key_pair(aws, settings, key_name),
        "network": lambda: _check_subnets(aws, settings, options.subnet_ids),
        "types": lambda: _describe_instance_types(aws, settings, options.instance_types),
        "offerings": lambda: _offerings(aws, options.instance_types),
        "profile": lambda: _check_instance_profile(aws, settings, options.iam_instance_profile),
        "image": (lambda: _describe_image(aws, settings, str(image_id)))
        if image_id
        else (lambda: {guess: _latest_image(aws, guess)}),
        **_security_group_calls(aws, settings),
    }


def _second_round(
    aws: Aws,
    settings: Settings,
    options: launch_options.LaunchOptions,
    first: dict[str, rounds.Outcome[Any]],
) -> dict[str, Callable[[], Any]]:
    """What needs the architecture: the default image when the first type's name misled
    the guess, or its description for the root device. Usually nothing: no round at all."""
    calls: dict[str, Callable[[], Any]] = {}
    if settings.get("image_id") or first["types"].error is not None or first["image"].error is not None:
        return calls  # any error is reported in its turn
    try:
        arch = _common_architecture(settings, options, first["types"].get())
    except UsageError:
        return calls
    latest = first["image"].get()
    if arch not in latest:
        calls["latest"] = lambda: {arch: _latest_image(aws, arch)}
    elif latest[arch] and _wants_image(options):
        calls["image"] = lambda: _describe_image(aws, settings, latest[arch])
    return calls


def _image(
    aws: Aws,
    settings: Settings,
    options: launch_options.LaunchOptions,
    arch: str,
    first: dict[str, rounds.Outcome[Any]],
    second: dict[str, rounds.Outcome[Any]],
) -> tuple[str, dict[str, Any] | None]:
    """(image id, its description when it was needed) for ``arch``, checked."""
    if settings.get("image_id"):
        image = first["image"].get()
        return _check_image_architecture(settings, image, arch), image
    latest = {**first["image"].get(), **(second["latest"].get() if "latest" in second else {})}
    image_id = latest.get(arch)
    if not image_id:
        raise UsageError(
            f"{settings.where('image_id')}: no Amazon Linux 2023 image is published "
            f"for {arch} in {aws.region} (set image_id to an AMI id)"
        )
    if "image" in second:
        return image_id, second["image"].get()
    # Only when the architecture was guessed wrong and the root volume is set: one more round.
    return image_id, _describe_image(aws, settings, image_id) if _wants_image(options) else None


def _wants_image(options: launch_options.LaunchOptions) -> bool:
    """The image's description is needed for its root device when the root volume is set."""
    return options.root_volume_gb is not None or options.volume_type is not None


#: Graviton families carry a g after the generation digit (t4g, m7gd, c6gn, im4gn); a1 too.
_ARM_FAMILY = re.compile(r"a1|[a-z]+\d+[a-z]*g[a-z-]*")


def likely_architecture(instance_type: str) -> str:
    """The architecture ``instance_type``'s name suggests; only a guess, checked after DescribeInstanceTypes."""
    return "arm64" if _ARM_FAMILY.fullmatch(instance_type.split(".")[0]) else "x86_64"


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


def _check_subnets(
    aws: Aws, settings: Settings, subnet_ids: tuple[str, ...]
) -> tuple[list[tuple[str, str]], str | None]:
    """((subnet id, zone) per listed subnet, their VPC); without subnets, the default VPC.

    One DescribeSubnets for the whole list. All must be in one VPC: security groups
    belong to a VPC, and one launch uses one set of groups.
    """
    if subnet_ids:
        described = _describe_subnets(aws, settings, subnet_ids)
        vpcs = {str(s.get("VpcId")) for s in described.values()}
        if len(vpcs) > 1:
            shown = ", ".join(f"{i} in {described[i].get('VpcId')}" for i in subnet_ids)
            raise UsageError(
                f"{settings.where('subnet_id')}: the subnets are in different VPCs ({shown}); "
                "list subnets of one VPC (security groups belong to one VPC)"
            )
        return [(i, str(described[i].get("AvailabilityZone", ""))) for i in subnet_ids], vpcs.pop()
    if not settings.get("security_groups"):
        return [], None
    # Security group names are per VPC; without a subnet, EC2 launches into the default VPC.
    return [], default_vpc(aws, settings)


def _describe_subnets(aws: Aws, settings: Settings, subnet_ids: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Every listed subnet's description by id; UsageError naming those EC2 does not know.

    By filter, not SubnetIds=: a filter leaves unknown ids out instead of failing the
    whole call, so the reply says exactly which ones are missing.
    """
    found = aws.ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": list(subnet_ids)}]).get("Subnets", [])
    missing = [i for i in subnet_ids if i not in {s["SubnetId"] for s in found}]
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        raise UsageError(
            f"{settings.where('subnet_id')}: subnet {listed} not found in "
            f"{aws.region} (fix subnet_id, or remove it to use the default VPC)"
        )
    return {s["SubnetId"]: s for s in found}


def find_subnet(aws: Aws, settings: Settings) -> dict[str, Any] | None:
    """The description of the first ``subnet_id``, None when it is unset; UsageError when EC2 does not know it."""
    subnet_ids = launch_options.ordered_list(settings, "subnet_id")
    if not subnet_ids:
        return None
    return _describe_subnets(aws, settings, subnet_ids[:1])[subnet_ids[0]]


def default_vpc(aws: Aws, settings: Settings) -> str:
    """The region's default VPC, where EC2 puts nodes (and groups) when no subnet is given."""
    vpcs = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}]).get("Vpcs", [])
    if not vpcs:
        raise UsageError(
            f"{settings.where('subnet_id')}: {aws.region} has no default VPC "
            "(set subnet_id to a subnet of the VPC the nodes should run in)"
        )
    return str(vpcs[0]["VpcId"])


def _security_group_calls(aws: Aws, settings: Settings) -> dict[str, Callable[[], list[dict[str, Any]]]]:
    """The lookups of the listed security groups, for the first round: one call for the ids,
    one for the names, in every VPC (the VPC is not known yet; :func:`_pick_security_groups`
    keeps the groups of the nodes' VPC).

    By name with a filter, not ``GroupNames=``: that searches only the default VPC (and moto
    crashes on a missing name).
    """
    wanted = _wanted_groups(settings)
    ids = [g for g in wanted if g.startswith("sg-")]
    names = [g for g in wanted if not g.startswith("sg-")]

    def lookup(by: str, values: list[str]) -> Callable[[], list[dict[str, Any]]]:
        filters = [{"Name": by, "Values": values}]
        return lambda: list(aws.ec2.describe_security_groups(Filters=filters).get("SecurityGroups", []))

    calls = {"groups_by_id": lookup("group-id", ids)} if ids else {}
    if names:
        calls["groups_by_name"] = lookup("group-name", names)
    return calls


def _pick_security_groups(
    settings: Settings, region: str, vpc_id: str | None, first: dict[str, rounds.Outcome[Any]]
) -> list[str]:
    """Security group names and ids → ids, every one checked to exist in the nodes' VPC."""
    wanted = _wanted_groups(settings)
    if not wanted:
        return []
    found = [g for key in ("groups_by_id", "groups_by_name") if key in first for g in first[key].get()]
    # Each group of the VPC under its id and its name (EC2 refuses names that start "sg-").
    known = {
        spelled: str(g["GroupId"])
        for g in found
        if not vpc_id or g.get("VpcId") == vpc_id
        for spelled in (str(g["GroupId"]), str(g["GroupName"]))
    }
    missing = [g for g in wanted if g not in known]
    if missing:
        place = f"VPC {vpc_id}" if vpc_id else region
        listed = ", ".join(repr(m) for m in missing)
        raise UsageError(
            f"{settings.where('security_groups')}: security group {listed} not found in "
            f"{place} (create it, e.g. `ess instance ec2 security-group create`, or fix "
            "security_groups)"
        )
    return list(dict.fromkeys(known[g] for g in wanted))


def _wanted_groups(settings: Settings) -> list[str]:
    """The ``security_groups`` setting: ids (``sg-...``) and names, as listed."""
    return [str(g) for g in settings.get("security_groups", []) or []]


def _describe_instance_types(
    aws: Aws, settings: Settings, instance_types: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Every listed type's description, in one call; UsageError naming the types that do not exist."""
    from botocore.exceptions import ClientError

    try:
        found = aws.ec2.describe_instance_types(InstanceTypes=list(instance_types)).get("InstanceTypes", [])
    except ClientError as exc:
        if error_code(exc) not in ("InvalidInstanceType", "InvalidParameterValue"):
            raise
        message = error_message(exc)
        missing = [t for t in instance_types if re.search(rf"(?<![\w.-]){re.escape(t)}(?![\w.-])", message)]
        missing = missing or list(instance_types)
    else:
        missing = [t for t in instance_types if t not in {d["InstanceType"] for d in found}]
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        raise UsageError(
            f"{settings.where('instance_type')}: instance type {listed} does not exist "
            "(pick one such as t3.large or m5.large, or fix instance_type / --type)"
        )
    return {d["InstanceType"]: d for d in found}


def _offerings(aws: Aws, instance_types: tuple[str, ...]) -> set[tuple[str, str]]:
    """(type, zone) for every zone of the region that offers one of ``instance_types``: one call."""
    paginator = aws.ec2.get_paginator("describe_instance_type_offerings")
    pages = paginator.paginate(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": list(instance_types)}]
    )
    return {(o["InstanceType"], o["Location"]) for page in pages for o in page.get("InstanceTypeOfferings", [])}


def _check_instance_types(
    aws: Aws,
    settings: Settings,
    options: launch_options.LaunchOptions,
    subnets: list[tuple[str, str]],
    described: dict[str, dict[str, Any]],
    offerings: rounds.Outcome[set[tuple[str, str]]],
) -> str:
    """Each type is offered where the nodes may go, and all share one architecture; return it."""
    arch = _common_architecture(settings, options, described)
    offered = offerings.get()
    zones = [zone for _, zone in subnets]
    where = settings.where("instance_type")
    for instance_type in options.instance_types:
        if zones and not any((instance_type, zone) in offered for zone in zones):
            raise UsageError(
                f"{where}: instance type {instance_type!r} is not offered in the zone(s) of the "
                f"listed subnets ({', '.join(dict.fromkeys(zones))}) (remove it, or add a subnet "
                "in a zone that offers it)"
            )
        if not zones and not any(t == instance_type for t, _ in offered):
            raise UsageError(
                f"{where}: instance type {instance_type!r} is not offered in {aws.region} "
                "(pick another type, or another region or subnet)"
            )
    return arch


def _common_architecture(
    settings: Settings, options: launch_options.LaunchOptions, described: dict[str, dict[str, Any]]
) -> str:
    """The one architecture (x86_64 or arm64) every listed type runs; UsageError when there is none."""
    supported = {
        t: set(described[t].get("ProcessorInfo", {}).get("SupportedArchitectures", []) or ["x86_64"])
        for t in options.instance_types
    }
    common = set.intersection(*supported.values()) & {"x86_64", "arm64"}
    if not common:
        shown = ", ".join(f"{t} {'/'.join(sorted(a))}" for t, a in supported.items())
        raise UsageError(
            f"{settings.where('instance_type')}: the listed types do not share an architecture "
            f"({shown}); one image serves them all (list types of one architecture)"
        )
    return "x86_64" if "x86_64" in common else "arm64"


def _latest_image(aws: Aws, arch: str) -> str | None:
    """Amazon Linux 2023's current image id for ``arch``; None when AWS publishes none there."""
    from botocore.exceptions import ClientError

    try:
        return str(aws.ssm.get_parameter(Name=AL2023_PARAMETER.format(arch=arch))["Parameter"]["Value"])
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
        return None


def _describe_image(aws: Aws, settings: Settings, image_id: str) -> dict[str, Any]:
    """The image's description; UsageError when the region does not have it."""
    from botocore.exceptions import ClientError

    try:
        images = aws.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidAMIID"):
            raise
        images = []
    if not images and not settings.get("image_id"):
        raise UsageError(
            f"{settings.where('image_id')}: the Amazon Linux 2023 image {image_id!r} that SSM names "
            f"cannot be described in {aws.region} (set image_id to an AMI id)"
        )
    if not images:
        raise UsageError(
            f"{settings.where('image_id')}: image {image_id!r} not found in {aws.region} (AMI ids differ per "
            "region: look it up there, or remove image_id to use Amazon Linux 2023)"
        )
    return dict(images[0])


def _check_image_architecture(settings: Settings, image: dict[str, Any], arch: str) -> str:
    """``image_id``, when the image runs on the types' architecture."""
    image_id = str(settings["image_id"])
    image_arch = image.get("Architecture")
    if image_arch and image_arch != arch:
        raise UsageError(
            f"{settings.where('image_id')}: image {image_id!r} is {image_arch} but instance type "
            f"{settings['instance_type']!r} runs {arch} (pick a matching image or type)"
        )
    return image_id


def _check_instance_profile(aws: Aws, settings: Settings, profile: str | None) -> str | None:
    """The instance profile's ARN (None when unset); UsageError when it does not exist."""
    if not profile:
        return None
    from botocore.exceptions import ClientError

    # An ARN's last path segment is the profile's name: arn:aws:iam::123:instance-profile/path/name.
    name = profile.rsplit("/", 1)[-1] if profile.startswith("arn:") else profile
    where = settings.where("iam_instance_profile")
    try:
        found = aws.client("iam").get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "NoSuchEntity":
            raise UsageError(
                f"{where}: instance profile {name!r} not found in this AWS account (create it "
                "with its role in IAM, or fix iam_instance_profile; a role name is not a profile name "
                "unless the console made both)"
            ) from None
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            raise UsageError(
                f"{where}: the credentials from {aws.credential_source} may not read instance "
                f"profile {name!r} (allow iam:GetInstanceProfile: see the policy in docs/ec2.md)"
            ) from None
        raise
    arn = str(found["Arn"])
    if profile.startswith("arn:") and arn != profile:
        raise UsageError(
            f"{where}: {profile!r} names instance profile {name!r}, whose ARN is {arn!r} "
            "(fix the ARN, or give the name)"
        )
    return arn


def _root_volume(
    settings: Settings, options: launch_options.LaunchOptions, image: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The root volume's block device mapping (None when the image's own is kept)."""
    if options.root_volume_gb is None and options.volume_type is None:
        return None
    image = image or {}
    root = image.get("RootDeviceName")
    where = settings.where("root_volume_gb" if options.root_volume_gb is not None else "volume_type")
    if not root or image.get("RootDeviceType") == "instance-store":
        raise UsageError(
            f"{where}: image {image.get('ImageId', '?')!r} has no EBS root volume to size "
            "(remove root_volume_gb and volume_type, or pick an EBS-backed image)"
        )
    snapshot: dict[str, Any] = next(
        (m.get("Ebs", {}) for m in image.get("BlockDeviceMappings", []) or [] if m.get("DeviceName") == root), {}
    )
    ebs: dict[str, Any] = {"DeleteOnTermination": True}
    size = options.root_volume_gb
    least = int(snapshot.get("VolumeSize") or 0)
    if size is not None:
        if size < least:
            raise UsageError(
                f"{settings.where('root_volume_gb')}: {size} GiB is below the {least} GiB of image "
                f"{image.get('ImageId')!r}'s root snapshot (give at least {least}, or remove root_volume_gb)"
            )
        ebs["VolumeSize"] = size
    elif least:
        # The image's own size, said explicitly: EC2 would take it anyway, emulators insist.
        ebs["VolumeSize"] = least
    if options.volume_type is not None:
        ebs["VolumeType"] = options.volume_type
        if options.volume_type in IOPS_PER_GIB:
            # io1/io2 need an IOPS figure: 3,000 (gp3's baseline), within the size's ratio.
            gib = size or least or 1
            ebs["Iops"] = max(100, min(BASE_IOPS, IOPS_PER_GIB[options.volume_type] * gib))
    return {"DeviceName": str(root), "Ebs": ebs}


def _user_data(settings: Settings, request: LaunchRequest) -> str | None:
    """The user's data composed with ess's parts, checked against EC2's limit; None when there is none."""
    user = userdata.read(settings)
    # The node's deadline is the launch's ess:expires tag, to the second.
    ess_parts = lifetime.parts(settings, expires=request.tags.get(TAG_EXPIRES))
    composed = userdata.compose(user, ess_parts)
    if composed is not None:
        userdata.check_size(composed, settings.where("user_data"), composed=bool(ess_parts))
    return composed


def dry_run(aws: Aws, settings: Settings, plan: LaunchPlan, request: LaunchRequest) -> None:
    """Ask EC2 whether the whole launch would be allowed, launching nothing."""
    from botocore.exceptions import ClientError

    try:
        aws.ec2.run_instances(DryRun=True, MinCount=request.min_count, MaxCount=request.count, **plan.run_arguments())
    except ClientError as exc:
        code = error_code(exc)
        if code == "DryRunOperation":
            return
        if code == "UnauthorizedOperation" and plan.extra.get("IamInstanceProfile"):
            raise UsageError(_pass_role_error(aws, settings, error_message(exc))) from None
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


def _pass_role_error(aws: Aws, settings: Settings, message: str) -> str:
    """One line for a DryRun refused while launching with an instance profile.

    EC2 names iam:PassRole in the message when it can; often the details are only in the
    encoded authorization message, and a missing PassRole is then still the usual cause.
    """
    where = settings.where("iam_instance_profile")
    profile = settings.get("iam_instance_profile")
    if "iam:PassRole" in message:
        return (
            f"{where}: the credentials from {aws.credential_source} lack iam:PassRole on the "
            f"role of instance profile {profile!r} (allow iam:PassRole on that role: see the "
            "master policy in docs/ec2.md)"
        )
    return (
        f"{where}: the credentials from {aws.credential_source} may not launch with instance "
        f"profile {profile!r} in {aws.region} (usually iam:PassRole on its role is missing; "
        "the master policy in docs/ec2.md lists every permission)"
    )
