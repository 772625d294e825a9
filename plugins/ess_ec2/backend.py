"""The EC2 backend: one RunInstances per create, tags at launch, batched everything."""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from ess.backend import Backend
from ess.errors import EssError
from ess.models import (
    PENDING,
    RUNNING,
    SHUTTING_DOWN,
    STOPPED,
    STOPPING,
    TAG_CLUSTER,
    TERMINATED,
    Access,
    LaunchRequest,
    Node,
    Settings,
    SettingSpec,
)
from ess.progress import Progress

from . import client as aws_client
from . import keys, membership
from .preflight import LaunchPlan, plan_launch
from .specs import SETTINGS

#: States a cluster's node can be in while it exists (what ``list`` asks EC2 for).
LIVE_STATES = (PENDING, RUNNING, STOPPING, STOPPED, SHUTTING_DOWN)
#: Polling: first delay, growth factor and ceiling (seconds); each delay gets jitter.
FIRST_DELAY, GROWTH, MAX_DELAY = 1.0, 1.5, 15.0
_ZONE = re.compile(r"\b([a-z]{2}(?:-gov)?-[a-z]+-\d[a-z])\b")


def client_token(launch_id: str) -> str:
    """The RunInstances idempotency token of a launch: the same launch id, the same token.

    A hash keeps it within EC2's 64 ASCII characters whatever the launch id looks like.
    """
    return "ess-" + hashlib.sha256(launch_id.encode()).hexdigest()[:48]


#: Seconds for which EC2's own answer about an instance's tags is trusted by terminate.
SEEN_FRESH = 60.0


class Ec2Backend(Backend):
    """Amazon EC2 instances, selected by their ess:cluster tag."""

    name: ClassVar[str] = "ec2"
    description: ClassVar[str] = "Amazon EC2 instances (boto3), tagged per cluster"
    settings: ClassVar[tuple[SettingSpec, ...]] = SETTINGS
    billable: ClassVar[bool] = True
    example_node_id: ClassVar[str] = "i-0abc123"

    def __init__(self) -> None:
        # Preflight's findings per launch, so create does not ask AWS again.
        self._plans: dict[str, LaunchPlan] = {}
        #: Sleep between polls and the clock deadlines are read from; tests replace both
        #: to run the polling logic without waiting.
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic
        #: What EC2 itself reported to this object (list, launch reply): instance id ->
        #: (when, its instance record). Terminate trusts these, never tags on Node objects
        #: a caller hands in, and only while fresh (SEEN_FRESH seconds).
        self._seen: dict[str, tuple[float, dict]] = {}

    def _remember(self, instances: Iterable[dict], *, launched: bool = False) -> None:
        # What this object launched it tagged itself: that knowledge does not go stale, so a
        # rollback after a long wait needs no describe (which may be what is failing).
        when = float("inf") if launched else self.clock()
        for instance in instances:
            self._seen[instance["InstanceId"]] = (when, instance)

    def _seen_recently(self, ids: list[str]) -> dict[str, dict] | None:
        """EC2's own recent records of all ``ids``, or None if any is missing or stale."""
        now = self.clock()
        found = {i: self._seen.get(i) for i in ids}
        if any(entry is None or (entry[0] != float("inf") and now - entry[0] > SEEN_FRESH)
               for entry in found.values()):
            return None
        return {i: entry[1] for i, entry in found.items() if entry is not None}

    # -- launching ---------------------------------------------------------------------
    def preflight(self, settings: Settings, request: LaunchRequest) -> None:
        """Check credentials, key pair and .pem, groups, type, image, subnet; DryRun the launch."""
        aws = aws_client.connect(settings)
        self._plans[request.launch_id] = plan_launch(aws, settings, request)

    def create(self, settings: Settings, request: LaunchRequest, progress: Progress) -> list[Node]:
        """One RunInstances for the whole count, tagged at launch, idempotent per launch id."""
        aws = aws_client.connect(settings)
        plan = self._plans.pop(request.launch_id, None) or plan_launch(aws, settings, request)
        tags = [{"Key": k, "Value": str(v)} for k, v in request.tags.items() if k != "Name"]
        tags.append({"Key": "Name", "Value": plan.instance_tag})
        # The core shows the "launching N" stage; one call has no finer progress to give.
        try:
            reply = aws.ec2.run_instances(
                MinCount=request.min_count,
                MaxCount=request.count,
                ClientToken=client_token(request.launch_id),
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags},
                                   {"ResourceType": "volume", "Tags": tags}],
                **plan.run_arguments(),
            )
        except Exception as exc:
            if aws_client.is_aws_error(exc):
                raise self._launch_error(exc, aws, plan, request) from None
            raise
        use_private = bool(settings.get("use_private_ip", False))
        self._remember(reply.get("Instances", []), launched=True)
        return [aws_client.to_node(i, use_private) for i in reply.get("Instances", [])]

    @staticmethod
    def _launch_error(exc: BaseException, aws: aws_client.Aws, plan: LaunchPlan,
                      request: LaunchRequest) -> EssError:
        code = aws_client.error_code(exc)
        message = aws_client.error_message(exc)
        if code == "InsufficientInstanceCapacity":
            match = _ZONE.search(message)
            zone = plan.zone or (match.group(1) if match else f"the zone EC2 chose in {aws.region}")
            return EssError(f"EC2 has not enough {plan.instance_type} capacity in {zone} for "
                            f"{request.min_count} node(s) right now (try another --type, another "
                            "subnet_id in another zone, or fewer nodes with --number / --min)")
        if code in ("InstanceLimitExceeded", "VcpuLimitExceeded"):
            return EssError(f"EC2 quota reached in {aws.region} for {request.count} x "
                            f"{plan.instance_type} ({code}) (launch fewer nodes, terminate unused "
                            "ones, or ask AWS for a higher quota)")
        return aws_client.translate(exc, aws, "launch instances")

    def wait(self, settings: Settings, nodes: list[Node], progress: Progress,
             timeout: float) -> list[Node]:
        """Poll (one batched describe per round) until every node runs; raise at the deadline."""
        aws = aws_client.connect(settings)
        found = self._poll(aws, [n.id for n in nodes], RUNNING, timeout, progress, "running",
                           fail_states=(SHUTTING_DOWN, TERMINATED, STOPPING, STOPPED))
        use_private = bool(settings.get("use_private_ip", False))
        return [aws_client.to_node(found[n.id], use_private) if n.id in found else n for n in nodes]

    # -- reading -----------------------------------------------------------------------
    def list(self, settings: Settings) -> list[Node]:
        """Every live instance tagged ess:cluster=<cluster>; Name is never used to select."""
        aws = aws_client.connect(settings)
        filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [settings.cluster]},
                   {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
        with aws_client.translated(aws, "list instances"):
            instances = aws_client.describe_filtered(aws, filters)
        use_private = bool(settings.get("use_private_ip", False))
        # The filter already selects the tag; checking again costs nothing and guards
        # against a backend (or emulator) that ignores a filter.
        mine = [i for i in instances if aws_client.tags_of(i).get(TAG_CLUSTER) == settings.cluster]
        self._remember(mine)
        nodes = [aws_client.to_node(i, use_private) for i in mine]
        return sorted(nodes, key=lambda n: (n.launched_at is None, n.launched_at, n.id))

    def access(self, settings: Settings) -> Access:
        """ec2-user (or ``username``) with the key pair's private key."""
        return Access(backend=self.name, cluster=settings.cluster,
                      username=str(settings.get("username", "ec2-user")),
                      key_file=keys.key_file(settings))

    # -- changing state ----------------------------------------------------------------
    def terminate(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Terminate the cluster's nodes among ``nodes`` (checked by tag) and wait until gone."""
        self._change(settings, nodes, progress, "terminate_instances", TERMINATED, "terminating",
                     skip_states=(TERMINATED,))

    def stop(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Stop the cluster's nodes among ``nodes`` and wait until they are stopped."""
        self._change(settings, nodes, progress, "stop_instances", STOPPED, "stopping",
                     skip_states=(STOPPED, TERMINATED, SHUTTING_DOWN))

    def start(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Start the cluster's stopped nodes among ``nodes`` and wait until they run."""
        self._change(settings, nodes, progress, "start_instances", RUNNING, "starting",
                     skip_states=(RUNNING, TERMINATED, SHUTTING_DOWN))

    def _change(self, settings: Settings, nodes: Iterable[Node], progress: Progress, operation: str,
                target: str, label: str, skip_states: tuple[str, ...]) -> None:
        aws = aws_client.connect(settings)
        nodes = list(nodes)
        ids = sorted({n.id for n in nodes})
        if not ids:
            return
        action = operation.replace("_", " ").replace(" instances", "")
        with aws_client.translated(aws, f"{action} instances"):
            # Defense in depth: the core chose these from list(), but only an instance that
            # EC2 says carries our cluster tag is ever touched. When EC2 told this object so
            # moments ago (the list or launch of this same command), that answer is used;
            # otherwise (ids from elsewhere, or stale) they are described again.
            current = self._seen_recently(ids) if operation == "terminate_instances" else None
            if current is None:
                current = aws_client.describe(aws, ids)
            ours = {i: inst for i, inst in current.items()
                    if aws_client.tags_of(inst).get(TAG_CLUSTER) == settings.cluster}
            foreign = [i for i in ids if i in current and i not in ours]
            if foreign:
                progress.note(f"ess: skipped {len(foreign)} instance(s) not tagged "
                              f"{TAG_CLUSTER}={settings.cluster}: {', '.join(foreign[:10])}")
            todo = [i for i, inst in ours.items() if inst["State"]["Name"] not in skip_states]
            if operation == "start_instances":
                waiting = [i for i, inst in ours.items() if inst["State"]["Name"] == STOPPING]
                if waiting:
                    self._poll(aws, waiting, STOPPED, settings.get("wait_timeout", 600), progress,
                               "stopped", fail_states=(TERMINATED, SHUTTING_DOWN))
            replied = aws_client.act(aws, operation, todo) if todo else {}
        watch = [i for i, inst in ours.items()
                 if target == TERMINATED or inst["State"]["Name"] not in (TERMINATED, SHUTTING_DOWN)]
        # What EC2 answered (or had already described) may be final: no poll needed then.
        known = {i: replied.get(i) or ours[i]["State"]["Name"] for i in watch}
        if watch and any(state != target for state in known.values()):
            try:
                self._poll(aws, watch, target, float(settings.get("wait_timeout", 600)), progress, label)
            except EssError:
                if operation != "terminate_instances":
                    raise
                # TerminateInstances was accepted; only the confirmation is out of reach.
                progress.note(f"ess: termination of {len(watch)} instance(s) was accepted but cannot be "
                              f"confirmed while describe fails; check with: ess instance ec2 list")

    # -- membership --------------------------------------------------------------------
    def adoptable(self, settings: Settings, ids: list[str]) -> list[Node]:
        """The live instances ``ids`` name (``i-...``, or ``r-...`` for a whole reservation).

        One batched describe; UsageError for an unknown id, a terminated instance, or one
        tagged with another ess cluster. Changes nothing.
        """
        aws = aws_client.connect(settings)
        with aws_client.translated(aws, "describe instances"):
            instances = membership.find(aws, ids)
        membership.check_adoptable(instances, settings.cluster)
        use_private = bool(settings.get("use_private_ip", False))
        return [aws_client.to_node(i, use_private) for i in instances]

    def adopt(self, settings: Settings, nodes: list[Node], tags: Mapping[str, str],
              progress: Progress) -> None:
        """Tag ``nodes`` with the cluster's tags: one CreateTags per 1000 instances.

        A node already in this cluster keeps its tags: marking a node ess launched as
        adopted would make ``terminate all`` pass it over.
        """
        ids = [n.id for n in nodes if n.tags.get(TAG_CLUSTER) != settings.cluster]
        if not ids:
            progress.note(f"ess: every node named is already in cluster {settings.cluster!r}")
            return
        aws_client.call(settings, "tag instances", lambda aws: membership.tag(aws, ids, tags))

    def release(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Delete ess's tags (ess:*) from the cluster's ``nodes``; they keep running."""
        ids = [n.id for n in nodes if n.tags.get(TAG_CLUSTER) == settings.cluster]
        if ids:
            aws_client.call(settings, "untag instances", lambda aws: membership.untag(aws, ids))

    # -- extras: security group, key pair, purge ---------------------------------------
    def commands(self) -> list[Any]:
        """``security-group create`` and ``key-pair create`` under ``ess instance ec2``."""
        from .commands import key_pair_group, security_group_group

        return [security_group_group(self), key_pair_group(self)]

    def purge(self, settings: Settings, progress: Progress) -> list[str]:
        """Delete the security groups and key pairs ess created for this cluster.

        Only resources tagged ``ess:cluster=<cluster>`` *and* ``ess:created-by`` are
        deleted: a group or key pair ess did not create is never touched. A group still in
        use (by a node that was not terminated) is kept and named in a note. Returns one
        description per deleted resource. Meant to run after ``terminate all``.
        """
        from . import keys, security_group

        aws = aws_client.connect(settings)
        with aws_client.translated(aws, "delete the cluster's security groups and key pairs"):
            deleted = security_group.purge(aws, settings.cluster, progress, self.sleep)
            deleted += keys.purge_key_pairs(aws, settings.cluster)
        return deleted

    # -- polling -----------------------------------------------------------------------
    def _poll(self, aws: aws_client.Aws, ids: list[str], target: str, timeout: float,
              progress: Progress, label: str, fail_states: tuple[str, ...] = ()) -> dict[str, Any]:
        """Describe ``ids`` (batched) until all are in ``target``; EssError at the deadline.

        An id EC2 no longer knows counts as terminated (it was, long enough ago to vanish).
        """
        deadline = self.clock() + timeout
        delay = FIRST_DELAY
        progress.stage(label, len(ids))
        while True:
            with aws_client.translated(aws, "describe instances"):
                found = aws_client.describe(aws, ids)
            states = {i: (found[i]["State"]["Name"] if i in found else TERMINATED) for i in ids}
            done = sum(1 for s in states.values() if s == target)
            progress.update(done)
            if done == len(ids):
                progress.finish()
                return found
            failed = {i: s for i, s in states.items() if s in fail_states}
            if failed:
                progress.finish()
                reasons = sorted({found[i].get("StateReason", {}).get("Message", s)
                                  for i, s in failed.items() if i in found} or set(failed.values()))
                went = "/".join(sorted(set(failed.values())))
                raise EssError(f"EC2: {len(failed)} of {len(ids)} node(s) went {went} "
                               f"instead of {target}: {'; '.join(reasons)[:300]} "
                               f"({', '.join(sorted(failed)[:10])})")
            remaining = deadline - self.clock()
            if remaining <= 0:
                progress.finish()
                late = sorted(i for i, s in states.items() if s != target)
                raise EssError(f"EC2: {len(late)} of {len(ids)} node(s) not {target} after "
                               f"{timeout:.0f}s ({', '.join(late[:10])}{' ...' if len(late) > 10 else ''}) "
                               "(check them in the EC2 console; `ess instance ec2 list` shows them)")
            self.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * GROWTH, MAX_DELAY)


