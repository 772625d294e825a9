"""Launching over several instance types and subnets: one CreateFleet(Type=instant).

A cluster whose settings list more than one instance type or subnet, or that runs spot,
is launched by one EC2 Fleet call over every (type, subnet) pool, so EC2 itself falls
back from a pool without capacity to the next one, in the same call:

- on-demand: ``prioritized``; the priority is the list order, type first, then subnet
  (``m5.large`` in every listed subnet before ``m5a.large`` in any);
- spot: ``price-capacity-optimized`` over every pool, interrupted nodes terminate, capped
  at ``max_price`` per node-hour when set;
- spot-or-on-demand: a spot fleet for the whole count, then, only if it came back short,
  an on-demand fleet for the rest: two calls at most, whatever the count (one fleet
  cannot express "spot, and on-demand for what spot could not get").

CreateFleet reads everything but the type and subnet from a launch template: one per
cluster, named ``ess-<cluster>``, tagged ``ess:cluster`` and ``ess:created-by``, made by
the cluster's first fleet launch and given one new version per later launch (the
version carries the launch's volume tags). ``terminate all --purge`` deletes it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ess.errors import UsageError
from ess.models import TAG_CLUSTER, TAG_CREATED_BY, LaunchRequest

from .client import Aws, error_code, tags_of
from .preflight import ON_DEMAND, SPOT, SPOT_OR_ON_DEMAND, LaunchPlan

log = logging.getLogger(__name__)

#: The launch template of cluster ``c`` is ``ess-c`` (cluster names always make a valid one).
TEMPLATE_PREFIX = "ess-"
TEMPLATE_NOT_FOUND = "InvalidLaunchTemplateName.NotFoundException"
#: RunInstances arguments that have no place in a launch template: the fleet sets them
#: per pool or per call (and EC2 Fleet refuses a template asking for a spot market).
NOT_IN_TEMPLATE = frozenset(
    {"InstanceType", "SubnetId", "MinCount", "MaxCount", "ClientToken", "DryRun", "InstanceMarketOptions"}
)
SPOT_LIFECYCLE, ON_DEMAND_LIFECYCLE = "spot", "on-demand"


@dataclass(frozen=True)
class Pool:
    """One instance type in one subnet (None: the default VPC, zone chosen by EC2)."""

    instance_type: str
    subnet_id: str | None = None
    zone: str | None = None

    @property
    def label(self) -> str:
        return f"{self.instance_type}/{self.zone or self.subnet_id or 'any zone'}"


@dataclass(frozen=True)
class PoolFailure:
    """A pool EC2 could not launch in, as the fleet reply's ``Errors`` name it."""

    pool: Pool
    lifecycle: str
    code: str
    message: str


@dataclass
class FleetLaunch:
    """What the fleet call(s) launched: instance records, failed pools, and send attempts."""

    instances: list[dict[str, Any]] = field(default_factory=list)
    failures: list[PoolFailure] = field(default_factory=list)
    #: The most sends any one CreateFleet took (more than 1: botocore retried it).
    attempts: int = 1


def template_name(cluster: str) -> str:
    return TEMPLATE_PREFIX + cluster


def pools(plan: LaunchPlan) -> list[Pool]:
    """Every (type, subnet) pool in priority order: type first, then subnet."""
    types = plan.instance_types or (plan.instance_type,)
    subnets: tuple[tuple[str | None, str | None], ...] = plan.subnets or ((plan.subnet_id, plan.zone),)
    return [Pool(t, subnet, zone) for t in types for subnet, zone in subnets]


def overrides(plan: LaunchPlan, lifecycle: str) -> list[dict[str, Any]]:
    """The fleet's Overrides: one per pool; Priority (on-demand) or MaxPrice (spot)."""
    made = []
    for priority, pool in enumerate(pools(plan)):
        override: dict[str, Any] = {"InstanceType": pool.instance_type}
        if pool.subnet_id:
            override["SubnetId"] = pool.subnet_id
        if lifecycle == ON_DEMAND_LIFECYCLE:
            override["Priority"] = float(priority)
        elif plan.max_price:
            override["MaxPrice"] = plan.max_price
        made.append(override)
    return made


def template_data(plan: LaunchPlan, tags: list[dict[str, str]]) -> dict[str, Any]:
    """The launch template's data: what RunInstances would get, minus type and subnet.

    The volumes get the instances' tags here: an instant fleet tags only instances itself.
    """
    data: dict[str, Any] = {"ImageId": plan.image_id, "KeyName": plan.key_name}
    if plan.security_group_ids:
        data["SecurityGroupIds"] = list(plan.security_group_ids)
    for key, value in plan.extra.items():
        if key in NOT_IN_TEMPLATE:
            continue
        if key == "UserData":
            # RunInstances takes the text (boto3 encodes it); a launch template takes base64.
            raw = value.encode() if isinstance(value, str) else bytes(value)
            value = base64.b64encode(raw).decode("ascii")
        data[key] = value
    data["TagSpecifications"] = [{"ResourceType": "volume", "Tags": tags}]
    return data


def find_template(aws: Aws, cluster: str) -> dict[str, Any] | None:
    """The cluster's launch template, None if there is none; UsageError if ess did not make it."""
    from botocore.exceptions import ClientError

    name = template_name(cluster)
    try:
        found = aws.ec2.describe_launch_templates(LaunchTemplateNames=[name]).get("LaunchTemplates", [])
    except ClientError as exc:
        if error_code(exc) != TEMPLATE_NOT_FOUND:
            raise
        return None
    if not found:
        return None
    template = found[0]
    tags = tags_of(template)
    if tags.get(TAG_CLUSTER) != cluster or TAG_CREATED_BY not in tags:
        raise UsageError(
            f"cluster: a launch template named {name!r} exists in {aws.region} but ess did not "
            f"make it for cluster {cluster!r} (ess never changes it: rename or delete it, or "
            "pick another cluster name)"
        )
    return template


def template_version(
    aws: Aws, cluster: str, plan: LaunchPlan, tags: list[dict[str, str]], created_by: str
) -> dict[str, str]:
    """The LaunchTemplateSpecification of this launch: a new template, or a new version of
    the cluster's (2 calls: one describe, one create)."""
    data = template_data(plan, tags)
    existing = find_template(aws, cluster)
    if existing is not None:
        version = aws.ec2.create_launch_template_version(
            LaunchTemplateId=existing["LaunchTemplateId"], LaunchTemplateData=data
        )["LaunchTemplateVersion"]
        return {"LaunchTemplateId": version["LaunchTemplateId"], "Version": str(version["VersionNumber"])}
    own = [{"Key": TAG_CLUSTER, "Value": cluster}, {"Key": TAG_CREATED_BY, "Value": created_by}]
    template = aws.ec2.create_launch_template(
        LaunchTemplateName=template_name(cluster),
        LaunchTemplateData=data,
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": own}],
    )["LaunchTemplate"]
    return {"LaunchTemplateId": template["LaunchTemplateId"], "Version": str(template["LatestVersionNumber"])}


def launch(
    aws: Aws, cluster: str, plan: LaunchPlan, request: LaunchRequest, tags: list[dict[str, str]], token: str
) -> FleetLaunch:
    """Launch ``request.count`` nodes over every pool; constant calls whatever the count.

    ``tags`` go on the instances (in CreateFleet) and their volumes (in the template);
    ``token`` is the launch's idempotency token.
    """
    created_by = dict(request.tags).get(TAG_CREATED_BY, "ess")
    spec = template_version(aws, cluster, plan, tags, created_by)
    result = FleetLaunch()
    if plan.market in (SPOT, SPOT_OR_ON_DEMAND):
        _one_fleet(aws, plan, spec, SPOT_LIFECYCLE, request.count, tags, token, result)
    short = request.count - len(result.instances)
    if plan.market == ON_DEMAND or (plan.market == SPOT_OR_ON_DEMAND and short > 0):
        # The on-demand half of spot-or-on-demand has its own token: it is another request.
        second = token if plan.market == ON_DEMAND else token[:56] + "-ondemand"
        _one_fleet(aws, plan, spec, ON_DEMAND_LIFECYCLE, short, tags, second, result)
    return result


def _one_fleet(
    aws: Aws,
    plan: LaunchPlan,
    spec: Mapping[str, str],
    lifecycle: str,
    count: int,
    tags: list[dict[str, str]],
    token: str,
    result: FleetLaunch,
) -> None:
    """One CreateFleet(Type=instant) for ``count`` nodes of ``lifecycle``; adds to ``result``."""
    arguments: dict[str, Any] = {
        "Type": "instant",
        "ClientToken": token,
        "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": dict(spec), "Overrides": overrides(plan, lifecycle)}],
        "TargetCapacitySpecification": {"TotalTargetCapacity": count, "DefaultTargetCapacityType": lifecycle},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
    }
    if lifecycle == SPOT_LIFECYCLE:
        arguments["SpotOptions"] = {
            "AllocationStrategy": "price-capacity-optimized",
            "InstanceInterruptionBehavior": "terminate",
        }
    else:
        arguments["OnDemandOptions"] = {"AllocationStrategy": "prioritized"}
    reply = aws.ec2.create_fleet(**arguments)
    result.attempts = max(result.attempts, 1 + int(reply.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0))
    by_subnet = {pool.subnet_id: pool for pool in pools(plan)}
    for item in reply.get("Instances", []):
        pool = _pool_of(item.get("LaunchTemplateAndOverrides", {}), by_subnet, item.get("InstanceType"))
        for instance_id in item.get("InstanceIds", []):
            result.instances.append(_record(instance_id, pool, item.get("Lifecycle") or lifecycle, plan, tags))
    for error in reply.get("Errors", []):
        pool = _pool_of(error.get("LaunchTemplateAndOverrides", {}), by_subnet, None)
        result.failures.append(
            PoolFailure(
                pool, error.get("Lifecycle") or lifecycle, error.get("ErrorCode", "?"), error.get("ErrorMessage", "")
            )
        )
    log.debug(
        "CreateFleet %s: %d of %d launched, %d pool error(s)",
        lifecycle,
        len(reply.get("Instances", [])),
        count,
        len(reply.get("Errors", [])),
    )


def _pool_of(described: Mapping[str, Any], by_subnet: Mapping[str | None, Pool], instance_type: str | None) -> Pool:
    """The pool a reply item names (its Overrides), with the zone ess knows for the subnet."""
    chosen = described.get("Overrides") or {}
    subnet = chosen.get("SubnetId")
    known = by_subnet.get(subnet)
    zone = chosen.get("AvailabilityZone") or (known.zone if known else None)
    return Pool(str(chosen.get("InstanceType") or instance_type or "?"), subnet, zone)


def _record(instance_id: str, pool: Pool, lifecycle: str, plan: LaunchPlan, tags: list[dict[str, str]]) -> dict:
    """The instance as far as the launch defined it, in DescribeInstances' shape.

    The fleet reply names only ids; everything else here was set by this launch call (tags,
    key pair, type, subnet), so it is as reliable as a RunInstances reply. ``wait`` replaces
    it with EC2's own description on its first poll.
    """
    record: dict[str, Any] = {
        "InstanceId": instance_id,
        "InstanceType": pool.instance_type,
        "State": {"Name": "pending", "Code": 0},
        "KeyName": plan.key_name,
        "Tags": list(tags),
    }
    if pool.zone:
        record["Placement"] = {"AvailabilityZone": pool.zone}
    if pool.subnet_id:
        record["SubnetId"] = pool.subnet_id
    if lifecycle == SPOT_LIFECYCLE:
        record["InstanceLifecycle"] = SPOT_LIFECYCLE
    return record


def describe_failures(failures: list[PoolFailure], limit: int = 6) -> str:
    """``m5.large/us-east-1a: InsufficientInstanceCapacity; ...`` (each pool once)."""
    seen: dict[str, str] = {}
    for failure in failures:
        lifecycle = " spot" if failure.lifecycle == SPOT_LIFECYCLE else ""
        seen.setdefault(f"{failure.pool.label}{lifecycle}", failure.code)
    shown = "; ".join(f"{pool}: {code}" for pool, code in list(seen.items())[:limit])
    return shown + (f"; and {len(seen) - limit} more" if len(seen) > limit else "")


def purge_templates(aws: Aws, cluster: str) -> list[str]:
    """Delete the cluster's launch templates that ess made (tagged for it, and by ess)."""
    found = aws.ec2.describe_launch_templates(Filters=[{"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]}]).get(
        "LaunchTemplates", []
    )
    deleted = []
    for template in found:
        tags = tags_of(template)
        if tags.get(TAG_CLUSTER) != cluster or TAG_CREATED_BY not in tags:
            continue
        aws.ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
        deleted.append(f"launch template {template['LaunchTemplateName']} ({template['LaunchTemplateId']})")
    return deleted
