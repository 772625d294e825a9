"""The cluster's security group: SSH from the caller's address only, worker ports within the group.

``ess instance ec2 security-group create`` makes (or completes) the group Essentia's docs
ask for, without ever opening SSH to the world unless told to in so many words. Groups
ess creates carry ``ess:cluster`` and ``ess:created-by``; only those are ever deleted
(``terminate all --purge``), and a group ess did not create is only changed with ``--yes``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ess.errors import UsageError
from ess.log import warn
from ess.models import TAG_CLUSTER, TAG_CREATED_BY, Settings
from ess.progress import Progress

from .client import Aws, error_code, tags_of
from .preflight import default_vpc, find_subnet

#: Essentia's worker port range (TCP), open between the cluster's own nodes.
DEFAULT_WORKER_PORTS = "10010-10079"
#: Where the caller's public address is asked when neither --cidr nor ESS_MY_IP gives it.
CHECKIP_URL = "https://checkip.amazonaws.com"
#: The environment variable that overrides the address lookup (an address or a CIDR block).
MY_IP_ENV = "ESS_MY_IP"
#: Pauses between attempts to delete a group EC2 still sees in use (ENIs of just-terminated
#: instances are released a little after the instances report terminated).
DELETE_RETRY_DELAYS = (2.0, 4.0, 8.0, 16.0)
_WORLD = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@dataclass(frozen=True, order=True)
class Rule:
    """One ingress rule: protocol, port range, and a source (a CIDR block or an sg- id)."""

    protocol: str
    from_port: int
    to_port: int
    source: str
    description: str = field(default="", compare=False)

    @property
    def ports(self) -> str:
        if self.protocol == "-1":
            return "all"
        return str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"

    def covered_by(self, other: Rule) -> bool:
        """True when ``other`` already allows everything this rule would."""
        if other.source != self.source:
            return False
        if other.protocol == "-1":
            return True
        return other.protocol == self.protocol and other.from_port <= self.from_port and other.to_port >= self.to_port

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "from_port": self.from_port,
            "to_port": self.to_port,
            "source": self.source,
            "description": self.description,
        }


@dataclass
class GroupResult:
    """What ``ensure`` found and did: the group, whether it was created, each rule's status."""

    group_id: str
    name: str
    vpc_id: str
    created: bool
    managed: bool
    rules: list[tuple[Rule, str]]

    @property
    def added(self) -> list[Rule]:
        return [rule for rule, status in self.rules if status == "added"]


# -- inputs ------------------------------------------------------------------------------
def parse_ports(text: str, where: str) -> list[tuple[int, int]]:
    """``"10010-10079"`` or ``"8000,9000-9010"`` → [(from, to), ...], each within 1–65535."""
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            start, end = int(low), int(high or low)
        except ValueError:
            raise UsageError(f"{where}: {part!r} is not a port or port range (e.g. 10010-10079)") from None
        if not 1 <= start <= end <= 65535:
            raise UsageError(f"{where}: {part!r} is not a port range within 1-65535, low to high (e.g. 10010-10079)")
        ranges.append((start, end))
    if not ranges:
        raise UsageError(f"{where}: no port given (e.g. 10010-10079)")
    return ranges


def lookup_public_address(timeout: float = 5.0) -> str:
    """The caller's public IP as AWS sees it (checkip.amazonaws.com). Tests replace this."""
    import urllib.request

    with urllib.request.urlopen(CHECKIP_URL, timeout=timeout) as reply:  # noqa: S310 - fixed https URL
        text = reply.read(64).decode("ascii", "replace").strip()
    return str(ipaddress.ip_address(text))


def caller_cidr(
    cidr: str | None, env: Mapping[str, str] | None = None, lookup: Callable[[], str] | None = None
) -> tuple[str, bool]:
    """The SSH source block and whether it is the whole internet.

    ``--cidr`` wins (and is the only way to get 0.0.0.0/0), then ``ESS_MY_IP``, then the
    lookup of this machine's public address, as a /32 (/128 for IPv6).
    """
    env = os.environ if env is None else env
    if cidr:
        network = _network(cidr, "--cidr")
        return str(network), network in _WORLD
    if env.get(MY_IP_ENV):
        network = _network(env[MY_IP_ENV], MY_IP_ENV)
        if network.prefixlen == 0:
            raise UsageError(
                f"{MY_IP_ENV}: {env[MY_IP_ENV]!r} would open SSH to the whole internet (set "
                "your own address, or pass --cidr 0.0.0.0/0 if you really mean it)"
            )
        return str(network), False
    lookup = lookup or lookup_public_address
    try:
        address = lookup()
        network = ipaddress.ip_network(address)
    except Exception as exc:  # network down, proxy, garbage answer: all mean "ask the user"
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise UsageError(
            f"security-group create: cannot find this machine's public IP address "
            f"({CHECKIP_URL}: {reason}) (pass --cidr YOUR.PUBLIC.IP/32, or set {MY_IP_ENV})"
        ) from None
    return str(network), False


def _network(text: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(
            f"{where}: {text!r} is not an IP address or CIDR block (e.g. 203.0.113.7 or 203.0.113.0/24)"
        ) from None


def wanted_rules(group_id: str, ssh_cidr: str, ports: list[tuple[int, int]]) -> list[Rule]:
    """SSH from ``ssh_cidr``; SSH and the worker ports from the group itself."""
    rules = [
        Rule("tcp", 22, 22, ssh_cidr, "ess: SSH from the master"),
        Rule("tcp", 22, 22, group_id, "ess: SSH within the cluster"),
    ]
    rules += [Rule("tcp", low, high, group_id, "ess: worker ports within the cluster") for low, high in ports]
    return rules


# -- EC2 -----------------------------------------------------------------------------------
def target_vpc(aws: Aws, settings: Settings) -> str:
    """The subnet's VPC when ``subnet_id`` is set, else the region's default VPC."""
    subnet = find_subnet(aws, settings)
    return str(subnet["VpcId"]) if subnet is not None else default_vpc(aws, settings)


def current_rules(group: Mapping[str, Any]) -> list[Rule]:
    """A described group's ingress rules, one Rule per source."""
    rules: list[Rule] = []
    for perm in group.get("IpPermissions", []) or []:
        protocol = str(perm.get("IpProtocol", "-1"))
        low, high = int(perm.get("FromPort", -1) or 0), int(perm.get("ToPort", -1) or 0)
        if protocol == "-1":
            low, high = 0, 65535
        for item in perm.get("IpRanges", []) or []:
            rules.append(Rule(protocol, low, high, item["CidrIp"], item.get("Description", "")))
        for item in perm.get("Ipv6Ranges", []) or []:
            rules.append(Rule(protocol, low, high, item["CidrIpv6"], item.get("Description", "")))
        for item in perm.get("UserIdGroupPairs", []) or []:
            rules.append(Rule(protocol, low, high, item.get("GroupId", ""), item.get("Description", "")))
    return rules


def ip_permissions(rules: list[Rule]) -> list[dict[str, Any]]:
    """Rules as AuthorizeSecurityGroupIngress's IpPermissions, one entry per port range."""
    grouped: dict[tuple[str, int, int], dict[str, Any]] = {}
    for rule in rules:
        perm = grouped.setdefault(
            (rule.protocol, rule.from_port, rule.to_port),
            {"IpProtocol": rule.protocol, "FromPort": rule.from_port, "ToPort": rule.to_port},
        )
        if rule.source.startswith("sg-"):
            perm.setdefault("UserIdGroupPairs", []).append({"GroupId": rule.source, "Description": rule.description})
        elif ":" in rule.source:
            perm.setdefault("Ipv6Ranges", []).append({"CidrIpv6": rule.source, "Description": rule.description})
        else:
            perm.setdefault("IpRanges", []).append({"CidrIp": rule.source, "Description": rule.description})
    return list(grouped.values())


def ensure(
    aws: Aws,
    settings: Settings,
    name: str,
    ssh_cidr: str,
    ports: list[tuple[int, int]],
    tags: Mapping[str, str],
    force: bool,
) -> GroupResult:
    """Create group ``name`` (tagged) or complete an existing one; add only missing rules.

    A group without the ``ess:created-by`` tag was not made by ess: it is changed only
    when ``force`` (``--yes``) is given, and it is never tagged, so ``--purge`` never
    deletes it.
    """
    vpc_id = target_vpc(aws, settings)
    found = aws.ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    ).get("SecurityGroups", [])
    created = not found
    if found:
        group = found[0]
        group_id = str(group["GroupId"])
        managed = TAG_CREATED_BY in tags_of(group)
        if not managed and not force:
            raise UsageError(
                f"security-group create {name}: group {group_id} already exists in {vpc_id} "
                "and ess did not create it (pass --yes to add ess's rules to it anyway, or "
                "pick another name; nothing was changed)"
            )
        existing = current_rules(group)
    else:
        cluster = tags.get(TAG_CLUSTER, "default")
        reply = aws.ec2.create_security_group(
            GroupName=name,
            VpcId=vpc_id,
            Description=f"ess cluster {cluster}: SSH from the master, worker ports within the group",
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": [{"Key": k, "Value": str(v)} for k, v in tags.items()]}
            ],
        )
        group_id, managed, existing = str(reply["GroupId"]), True, []
    wanted = wanted_rules(group_id, ssh_cidr, ports)
    missing = [rule for rule in wanted if not any(rule.covered_by(have) for have in existing)]
    if missing:
        aws.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ip_permissions(missing))
    statuses = [(rule, "added" if rule in missing else "present") for rule in wanted]
    statuses += [(rule, "other") for rule in existing if rule not in wanted]
    return GroupResult(group_id=group_id, name=name, vpc_id=vpc_id, created=created, managed=managed, rules=statuses)


def world_open(result: GroupResult) -> list[Rule]:
    """Rules of the group that allow SSH (or everything) from anywhere."""
    return [
        rule
        for rule, _ in result.rules
        if rule.source in ("0.0.0.0/0", "::/0") and Rule("tcp", 22, 22, rule.source).covered_by(rule)
    ]


def purge(aws: Aws, cluster: str, progress: Progress, sleep: Callable[[float], None]) -> list[str]:
    """Delete every group tagged ``ess:cluster=<cluster>`` and ``ess:created-by``; keep those in use."""
    filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]}, {"Name": "tag-key", "Values": [TAG_CREATED_BY]}]
    groups = [
        g
        for page in aws.ec2.get_paginator("describe_security_groups").paginate(Filters=filters)
        for g in page.get("SecurityGroups", [])
    ]
    deleted: list[str] = []
    for group in groups:
        tags = tags_of(group)
        # Re-checked on the reply: an emulator (or a future EC2) ignoring a filter must not
        # make ess delete a group it did not create.
        if tags.get(TAG_CLUSTER) != cluster or TAG_CREATED_BY not in tags:
            continue
        label = f"security group {group['GroupName']} ({group['GroupId']})"
        if _delete_group(aws, group["GroupId"], sleep):
            deleted.append(label)
        else:
            warn(f"ess: kept {label}: still in use (terminate what uses it, then run --purge again)", progress)
    return deleted


def _delete_group(aws: Aws, group_id: str, sleep: Callable[[float], None]) -> bool:
    from botocore.exceptions import ClientError

    for delay in (*DELETE_RETRY_DELAYS, None):
        try:
            aws.ec2.delete_security_group(GroupId=group_id)
            return True
        except ClientError as exc:
            code = error_code(exc)
            if code == "InvalidGroup.NotFound":
                return True  # someone else deleted it: the goal is met
            if code != "DependencyViolation":
                raise
            if delay is None:
                return False
            sleep(delay)
    return False
