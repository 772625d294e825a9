"""Adopting existing instances into a cluster and releasing them: tags only, nothing restarts.

``add`` accepts instance ids (``i-...``) and reservation ids (``r-...``: every live instance
launched by that one RunInstances call). Everything is read in one batched describe and
changed in one CreateTags / DeleteTags per 1000 resources; ``add`` tags the instances' EBS
volumes in the same CreateTags as the instances (the describe already names them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ess.errors import UsageError
from ess.models import (
    SHUTTING_DOWN,
    TAG_ADOPTED,
    TAG_CLUSTER,
    TAG_CREATED_AT,
    TAG_CREATED_BY,
    TAG_LAUNCH,
    TERMINATED,
)

from .client import NOT_FOUND_IDS, Aws, chunks, error_code, error_message, tags_of
from .ownership import TAG_ADOPTED_PROOF

#: What ess last asked of a node ("stopped" by ``stop``, "terminated" before TerminateInstances);
#: no tag means "running". A node in another state without the matching mark was stopped or
#: terminated behind ess's back: ``list`` reports it as lost.
TAG_DESIRED = "ess:desired"
#: The tags ess puts on a node; ``remove`` deletes exactly these (Name is the user's label).
ESS_TAG_KEYS = (TAG_CLUSTER, TAG_LAUNCH, TAG_CREATED_BY, TAG_CREATED_AT, TAG_ADOPTED, TAG_ADOPTED_PROOF, TAG_DESIRED)
_INSTANCE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_RESERVATION = re.compile(r"^r-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_GONE = (TERMINATED, SHUTTING_DOWN)


def check_ids(ids: list[str]) -> tuple[list[str], list[str]]:
    """Split ``ids`` into instance and reservation ids; UsageError for anything else."""
    instances = [i for i in ids if _INSTANCE.match(i)]
    reservations = [r for r in ids if _RESERVATION.match(r)]
    bad = [x for x in ids if x not in instances and x not in reservations]
    if bad:
        raise UsageError(
            f"add {bad[0]}: not an EC2 instance id (i-...) or reservation id (r-...) "
            "(copy the ids from the EC2 console or `aws ec2 describe-instances`; nothing "
            "was changed)"
        )
    return instances, reservations


def find(aws: Aws, ids: list[str]) -> list[dict[str, Any]]:
    """The instances ``ids`` name, in the order given; UsageError for any id EC2 does not know.

    Instance ids alone: DescribeInstances by id (1000 per call, every page followed).
    With reservation ids: EC2 has no call that reads a reservation by id that emulators
    also implement (the ``reservation-id`` filter is missing from moto), so the region's
    instances are read once, paginated, and picked by reservation.
    """
    instance_ids, reservation_ids = check_ids(ids)
    by_id: dict[str, dict[str, Any]] = {}
    by_reservation: dict[str, list[dict[str, Any]]] = {}
    paginator = aws.ec2.get_paginator("describe_instances")
    if reservation_ids:
        for page in paginator.paginate(PaginationConfig={"PageSize": 1000}):
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    by_id[instance["InstanceId"]] = instance
                    by_reservation.setdefault(reservation["ReservationId"], []).append(instance)
    else:
        from botocore.exceptions import ClientError

        for chunk in chunks(instance_ids):
            try:
                for page in paginator.paginate(InstanceIds=chunk):
                    for reservation in page.get("Reservations", []):
                        for instance in reservation.get("Instances", []):
                            by_id[instance["InstanceId"]] = instance
            except ClientError as exc:
                if error_code(exc) not in (NOT_FOUND_IDS, "InvalidInstanceID.Malformed"):
                    raise
                named = [i for i in chunk if i in error_message(exc)] or chunk[:1]
                raise _unknown(named[0], aws) from None
    found: list[dict[str, Any]] = []
    for asked in ids:
        if asked.startswith("r-"):
            members = by_reservation.get(asked)
            if not members:
                raise _unknown(asked, aws, "reservation")
            live = [i for i in members if i["State"]["Name"] not in _GONE]
            if not live:
                raise UsageError(
                    f"add {asked}: every instance of this reservation is terminated "
                    "(only live instances can join a cluster; nothing was changed)"
                )
            found.extend(live)
        elif asked in by_id:
            found.append(by_id[asked])
        else:
            raise _unknown(asked, aws)
    return list({i["InstanceId"]: i for i in found}.values())


def _unknown(what: str, aws: Aws, kind: str = "instance") -> UsageError:
    return UsageError(
        f"add {what}: no such {kind} in {aws.region} (check the id, and --region or "
        "region in the config; nothing was changed)"
    )


def check_adoptable(instances: list[dict[str, Any]], cluster: str) -> None:
    """UsageError for a terminated instance or one that another ess cluster owns."""
    for instance in instances:
        instance_id, state = instance["InstanceId"], instance["State"]["Name"]
        if state in _GONE:
            raise UsageError(
                f"add {instance_id}: the instance is {state} (only live instances can join "
                "a cluster; nothing was changed)"
            )
        owner = tags_of(instance).get(TAG_CLUSTER)
        if owner and owner != cluster:
            raise UsageError(
                f"add {instance_id}: the instance belongs to ess cluster {owner!r} (release "
                f"it first: ess instance ec2 remove {instance_id} --cluster {owner}; nothing "
                "was changed)"
            )


def volume_ids(instance: dict[str, Any]) -> list[str]:
    """The EBS volumes attached to ``instance``, from the describe already made (no call)."""
    return [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("VolumeId")]


def tag(aws: Aws, ids: list[str], tags: Mapping[str, str], size: int = 1000) -> None:
    """One CreateTags per ``size`` (at most 1000) resources: instance ids, volume ids, or both."""
    pairs = [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    for chunk in chunks(sorted(set(ids)), size):
        aws.ec2.create_tags(Resources=chunk, Tags=pairs)


def untag(aws: Aws, ids: list[str], keys: tuple[str, ...] = ESS_TAG_KEYS) -> None:
    """One DeleteTags of ``keys`` (default: all of ess's) per 1000 resources (instances, volumes),
    whatever their values."""
    pairs = [{"Key": k} for k in keys]
    for chunk in chunks(sorted(set(ids))):
        aws.ec2.delete_tags(Resources=chunk, Tags=pairs)
