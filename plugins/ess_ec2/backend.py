"""The EC2 backend: one RunInstances (or one CreateFleet) per create, tags at launch, batched everything.

The backend object holds no per-command state: preflight returns its :class:`LaunchPlan`
(the core hands it to create in ``request.plan``), and the AWS clients and what EC2 said
during a command live in that command's :class:`~ess_ec2.session.Ec2Session`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from ess import log as ess_log
from ess.backend import Backend
from ess.errors import EssError, UsageError
from ess.models import (
    PENDING,
    RUNNING,
    SHUTTING_DOWN,
    STOPPED,
    STOPPING,
    TAG_ADOPTED,
    TAG_CLUSTER,
    TAG_LAUNCH,
    TERMINATED,
    Access,
    ClusterInventory,
    LaunchRequest,
    Node,
    Settings,
    SettingSpec,
)
from ess.paths import state_dir
from ess.progress import Progress

from . import client as aws_client
from . import fleet, inventory, keys, lifetime, membership, ownership, polling, unanswered, wait_times
from .lifetime import DEADLINE_FILE
from .membership import TAG_DESIRED
from .preflight import LaunchPlan, plan_launch
from .session import Ec2Session, session_for
from .specs import SETTINGS

log = logging.getLogger(__name__)

#: States a cluster's node can be in while it exists.
LIVE_STATES = (PENDING, RUNNING, STOPPING, STOPPED, SHUTTING_DOWN)
#: What ``list`` asks EC2 for: terminated too (EC2 shows them for about an hour), so a node
#: terminated behind ess's back is reported lost instead of silently vanishing.
LISTED_STATES = (*LIVE_STATES, TERMINATED)
#: Seconds after its launch for which an instance this command launched is listed from its
#: launch record when EC2's listing does not show it (eventual consistency).
NOT_LISTED_FOR = 600.0
_ZONE = re.compile(r"\b([a-z]{2}(?:-gov)?-[a-z]+-\d[a-z])\b")


def _marks(instance: dict) -> str | None:
    """What ess last asked of ``instance`` (its ``ess:desired`` tag), None if nothing."""
    return aws_client.tags_of(instance).get(TAG_DESIRED)


def client_token(launch_id: str) -> str:
    """The RunInstances idempotency token of a launch: the same launch id, the same token.

    A hash keeps it within EC2's 64 ASCII characters whatever the launch id looks like.
    """
    return "ess-" + hashlib.sha256(launch_id.encode()).hexdigest()[:48]


class Ec2Backend(Backend):
    """Amazon EC2 instances, selected by their ess:cluster tag."""

    name: ClassVar[str] = "ec2"
    description: ClassVar[str] = "Amazon EC2 instances (boto3), tagged per cluster"
    settings: ClassVar[tuple[SettingSpec, ...]] = SETTINGS
    billable: ClassVar[bool] = True
    example_node_id: ClassVar[str] = "i-0abc123"
    #: A user-data part makes each node end itself (lifetime.py); extend rewrites its deadline file.
    enforces_lifetime: ClassVar[bool] = True
    deadline_file: ClassVar[str | None] = DEADLINE_FILE

    def __init__(self) -> None:
        #: Sleep between polls and the clock deadlines and freshness are read from; tests
        #: replace both to run the polling logic without waiting. Nothing else is kept here:
        #: per-command state is in the command's Ec2Session.
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic

    # -- launching ---------------------------------------------------------------------
    def preflight(self, settings: Settings, request: LaunchRequest) -> LaunchPlan:
        """Check credentials, key pair and .pem, groups, type, image, subnet; DryRun the launch.

        Returns the plan (what the checks resolved) for ``create``, which gets it back in
        ``request.plan``.
        """
        return plan_launch(session_for(settings).aws, settings, request)

    def create(self, settings: Settings, request: LaunchRequest, progress: Progress) -> list[Node]:
        """One launch call for the whole count, tagged at launch, idempotent per launch id.

        One type, at most one subnet, on-demand: one RunInstances. Type or subnet lists, or
        spot: one CreateFleet over every pool (see :mod:`ess_ec2.fleet`).
        """
        session = session_for(settings)
        aws = session.aws
        # The plan preflight made; without one (a caller that skipped preflight), check now.
        plan = request.plan if isinstance(request.plan, LaunchPlan) else plan_launch(aws, settings, request)
        # The core's tags, the user's (setting tags), and Name: on instances and volumes alike.
        wanted = {**plan.tags, **{k: str(v) for k, v in request.tags.items()}}
        tags = [{"Key": k, "Value": v} for k, v in wanted.items() if k != "Name"]
        tags.append({"Key": "Name", "Value": plan.instance_tag})
        if plan.uses_fleet:
            return self._create_fleet(settings, plan, request, tags, progress)
        # The core shows the "launching N" stage; one call has no finer progress to give.
        try:
            reply = aws.ec2.run_instances(
                MinCount=request.min_count,
                MaxCount=request.count,
                ClientToken=client_token(request.launch_id),
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": tags},
                    {"ResourceType": "volume", "Tags": tags},
                ],
                **plan.run_arguments(),
            )
        except BaseException as exc:
            self._unanswered(exc, aws, settings, request, progress)
            if aws_client.is_aws_error(exc):
                raise self._launch_error(exc, aws, plan, request) from None
            raise
        instances = reply.get("Instances", [])
        # Remembered before any check below (as after CreateFleet): a Ctrl-C during the
        # duplicate check's pauses used to leave the core with no launch record, and its
        # rollback, listing a launch EC2 did not show yet, terminated nothing.
        session.remember(instances, self.clock(), launched=True)
        attempts = 1 + int(reply.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
        if attempts > 1:
            instances = self._reconcile(aws, request, instances, attempts, progress, session)
        return [self._node(i, settings) for i in instances]

    def _create_fleet(
        self, settings: Settings, plan: LaunchPlan, request: LaunchRequest, tags: list[dict], progress: Progress
    ) -> list[Node]:
        """One CreateFleet over every pool (two for spot-or-on-demand when spot comes back short).

        Pools EC2 could not launch in are named in one warning; fewer nodes than
        ``request.min_count`` is an error (the core then terminates what this launch made,
        found by its ess:launch tag), more than ``request.count`` (a retried call) is
        trimmed as after a retried RunInstances.
        """
        session = session_for(settings)
        aws = session.aws
        try:
            launched = fleet.launch(aws, settings.cluster, plan, request, tags, client_token(request.launch_id))
        except BaseException as exc:
            self._unanswered(exc, aws, settings, request, progress)
            if aws_client.is_aws_error(exc):
                raise self._launch_error(exc, aws, plan, request) from None
            raise
        instances = launched.instances
        # Remembered before any check below, so the core's rollback needs no describe.
        session.remember(instances, self.clock(), launched=True)
        if launched.attempts > 1:
            instances = self._reconcile(aws, request, instances, launched.attempts, progress, session, "CreateFleet")
        failed = fleet.describe_failures(launched.failures)
        if len(instances) < request.min_count:
            needed = f"at least {request.min_count}" if request.min_count < request.count else "all"
            raise EssError(
                f"EC2 launched {len(instances)} of {request.count} node(s) and {needed} were needed; "
                f"pools that failed: {failed or 'none named by EC2'} (add instance types or subnets "
                "in other zones, try market spot-or-on-demand, or ask for fewer nodes with --number / --min)"
            )
        if launched.failures:
            ess_log.warn(
                f"ess: launched {len(instances)} of {request.count} node(s); "
                f"pools without capacity (or refused): {failed}",
                progress,
            )
        return [self._node(i, settings) for i in instances]

    def _unanswered(
        self, exc: BaseException, aws: aws_client.Aws, settings: Settings, request: LaunchRequest, progress: Progress
    ) -> None:
        """After a launch call that failed without EC2 saying it launched nothing, wait until
        EC2 lists what it may have launched, so the rollback finds it (see unanswered.py)."""
        from ess.provision import deferred_interrupts  # the core's cleanup hold, not a copy

        if unanswered.nothing_launched(exc):
            return
        # The search is part of the cleanup: a second Ctrl-C (or a SIGTERM) is held until it
        # ends, then raised, so the rollback runs with everything the search found.
        with deferred_interrupts(progress):
            progress.stage("looking for what the unanswered launch made")
            found = unanswered.find(aws, request, self.sleep, self._launched_by(session_for(settings)))
            progress.finish()
        log.debug(
            "launch %s got no answer (%s); EC2 lists %d of its instances",
            request.launch_id,
            type(exc).__name__,
            len(found),
        )

    def _launched_by(self, session: Ec2Session) -> Callable[[list[dict]], None]:
        """What a launch search calls with each listing: its finds are this command's launch
        at once, so whatever cuts the search short, the rollback terminates them without
        having to find them again."""
        return lambda instances: session.remember(instances, self.clock(), launched=True)

    def _reconcile(
        self,
        aws: aws_client.Aws,
        request: LaunchRequest,
        replied: list[dict],
        attempts: int,
        progress: Progress,
        session: Ec2Session,
        operation: str = "RunInstances",
    ) -> list[dict]:
        """After a retried launch call, keep at most ``request.count`` of this launch's instances.

        An earlier attempt whose reply was lost may have launched too (real EC2 honours the
        ClientToken, emulators and some proxies' replays do not): listings by the launch's
        ``ess:launch`` tag, until two agree (EC2 lists a launch a few seconds late), find
        every instance; the ones this reply named are kept first, and the surplus goes in
        one TerminateInstances call. Each listing's finds go into ``session`` (the command's)
        as launched by it as soon as they are read: an interrupt during the pauses
        then leaves the core's rollback a record of the duplicates as well.
        """
        filters = [
            {"Name": f"tag:{TAG_LAUNCH}", "Values": [request.launch_id]},
            {"Name": "instance-state-name", "Values": [PENDING, RUNNING]},
        ]
        try:
            with aws_client.translated(aws, "check the retried launch for duplicates"):
                # EC2 lists a launch a few seconds late: until two listings agree, a duplicate
                # not shown yet would stay running as one node more than asked for.
                found = unanswered.settled_listing(
                    aws,
                    filters,
                    self.sleep,
                    lambda n, before: n >= len(replied) and n == before,
                    self._launched_by(session),
                )
        except EssError as exc:
            # The instances exist and carry the launch tag: `list` and `terminate all` see them.
            ess_log.warn(
                f"ess: {operation} was retried; could not check for duplicate instances "
                f"({exc}); check with: ess instance ec2 list",
                progress,
            )
            return replied
        first = {i["InstanceId"] for i in replied}
        ranked = sorted(
            {i["InstanceId"]: i for i in [*replied, *found]}.values(),
            key=lambda i: (i["InstanceId"] not in first, str(i.get("LaunchTime", "")), i["InstanceId"]),
        )
        keep, extra = ranked[: request.count], ranked[request.count :]
        if extra:
            ids = [i["InstanceId"] for i in extra]
            with aws_client.translated(aws, "terminate duplicate instances"):
                membership.tag(aws, ids, {TAG_DESIRED: TERMINATED})
                aws_client.act(aws, "terminate_instances", ids)
            ess_log.warn(
                f"ess: {operation} was retried ({attempts} attempts); found {len(ranked)} "
                f"instances of this launch, terminated {len(extra)} extra: "
                f"{ess_log.some(sorted(ids))}",
                progress,
            )
        return keep

    @staticmethod
    def _launch_error(exc: BaseException, aws: aws_client.Aws, plan: LaunchPlan, request: LaunchRequest) -> EssError:
        code = aws_client.error_code(exc)
        message = aws_client.error_message(exc)
        if code == "InsufficientInstanceCapacity":
            match = _ZONE.search(message)
            zone = plan.zone or (match.group(1) if match else f"the zone EC2 chose in {aws.region}")
            return EssError(
                f"EC2 has not enough {plan.instance_type} capacity in {zone} for "
                f"{request.min_count} node(s) right now (try another --type, another "
                "subnet_id in another zone, or fewer nodes with --number / --min)"
            )
        if code in ("InstanceLimitExceeded", "VcpuLimitExceeded"):
            return EssError(
                f"EC2 quota reached in {aws.region} for {request.count} x "
                f"{plan.instance_type} ({code}) (launch fewer nodes, terminate unused "
                "ones, or ask AWS for a higher quota)"
            )
        return aws_client.translate(exc, aws, "launch instances")

    def wait(self, settings: Settings, nodes: list[Node], progress: Progress, timeout: float) -> list[Node]:
        """Poll (one batched describe per round) until every node runs; raise at the deadline."""
        aws = session_for(settings).aws
        found = self._poll(
            aws,
            [n.id for n in nodes],
            RUNNING,
            timeout,
            progress,
            "running",
            fail_states=(SHUTTING_DOWN, TERMINATED, STOPPING, STOPPED),
            types=[n.instance_type for n in nodes],
        )
        return [self._node(found[n.id], settings) if n.id in found else n for n in nodes]

    # -- reading -----------------------------------------------------------------------
    def nodes(self, settings: Settings) -> list[Node]:
        """The cluster's members (see ownership.py); Name is never used to select.

        One describe by the ess:cluster tag. Instances that carry the tag but are not
        members (not launched by ess with this key pair, adoption not signed) are named on
        stderr as skipped. A terminated instance is listed only if ess did not terminate
        it: it is a lost node (desired running) until EC2 forgets it.
        """
        session = session_for(settings)
        aws = session.aws
        filters = [
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [settings.cluster]},
            {"Name": "instance-state-name", "Values": list(LISTED_STATES)},
        ]
        with aws_client.translated(aws, "list instances"):
            instances = aws_client.describe_filtered(aws, filters)
        instances += self._not_listed_yet(session, settings, instances)
        mine, skipped = self._owned(settings, instances)
        # A terminated stranger can be touched by nobody: naming it would only be noise.
        gone = {i["InstanceId"] for i in instances if i["State"]["Name"] in (TERMINATED, SHUTTING_DOWN)}
        self._tell_skipped(session, settings, {i: why for i, why in skipped.items() if i not in gone})
        session.remember(mine, self.clock())
        nodes = [self._node(i, settings) for i in mine]
        nodes = [n for n in nodes if not (n.state in (TERMINATED, SHUTTING_DOWN) and n.desired == TERMINATED)]
        return sorted(nodes, key=lambda n: (n.launched_at is None, n.launched_at, n.id))

    @staticmethod
    def _not_listed_yet(session: Ec2Session, settings: Settings, listed: list[dict]) -> list[dict]:
        """What this command launched into the cluster minutes ago and the listing lacks.

        Read-your-writes: EC2's filtered listing shows a new instance a few seconds after its
        launch, and a rollback that lists in that window must still see it.
        """
        shown = {i["InstanceId"] for i in listed}
        now = datetime.now(timezone.utc)
        return [
            record
            for record in session.launches()
            if record["InstanceId"] not in shown
            and aws_client.tags_of(record).get(TAG_CLUSTER) == settings.cluster
            and isinstance(record.get("LaunchTime"), datetime)
            and (now - record["LaunchTime"]).total_seconds() < NOT_LISTED_FOR
        ]

    # -- ownership and health ------------------------------------------------------------
    def _owned(self, settings: Settings, instances: Iterable[dict]) -> tuple[list[dict], dict[str, str]]:
        """Members of the cluster among ``instances``, and the others with why they are not."""
        key_pair = keys.key_pair_name(settings)
        secret: list[bytes | None] = []

        def adoption_key() -> bytes | None:
            if not secret:
                try:
                    secret.append(ownership.adoption_key(keys.key_file(settings)))
                except (EssError, OSError):
                    secret.append(None)
            return secret[0]

        mine: list[dict] = []
        others: dict[str, str] = {}
        for instance in instances:
            reason = ownership.why_not_ours(instance, settings.cluster, key_pair, adoption_key)
            if reason:
                others[instance["InstanceId"]] = reason
            else:
                mine.append(instance)
        return mine, others

    @staticmethod
    def _tell_skipped(session: Ec2Session, settings: Settings, skipped: dict[str, str]) -> None:
        new = {i: skipped[i] for i in session.not_told(sorted(skipped))}
        if not new:
            return
        shown = "; ".join(f"{i} ({why})" for i, why in list(new.items())[:5])
        more = f"; and {len(new) - 5} more" if len(new) > 5 else ""
        ess_log.warn(
            f"ess: skipped {len(new)} instance(s) tagged {TAG_CLUSTER}={settings.cluster} that "
            f"are not this cluster's: {shown}{more} (ess never touches them; to remove one on "
            "purpose: aws ec2 terminate-instances --instance-ids ID, or adopt it first with "
            "ess instance ec2 add ID)"
        )

    @staticmethod
    def _node(instance: dict, settings: Settings) -> Node:
        """The instance as a Node, with what ess wants of it and, if it is lost, why."""
        node = aws_client.to_node(instance, bool(settings.get("use_private_ip", False)))
        mark = node.tags.get(TAG_DESIRED)
        if mark in (STOPPED, TERMINATED):
            return replace(node, desired=mark)
        ended = lifetime.ended_itself(instance, node)  # its deadline or idle window: not lost
        if ended is not None:
            return ended
        reason = ""
        if node.state in (STOPPING, STOPPED):
            reason = "stopped outside ess"
        elif node.state in (SHUTTING_DOWN, TERMINATED):
            reason = "terminated outside ess"
        why = str(instance.get("StateReason", {}).get("Message", "") or "")
        if reason and why:
            reason += f" ({why[:80]})"
        return replace(node, desired=RUNNING, reason=reason)

    def access(self, settings: Settings) -> Access:
        """ec2-user (or ``username``) with the key pair's private key."""
        return Access(
            backend=self.name,
            cluster=settings.cluster,
            username=str(settings.get("username", "ec2-user")),
            key_file=keys.key_file(settings),
        )

    # -- changing state ----------------------------------------------------------------
    def terminate(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Terminate the cluster's nodes among ``nodes`` (checked by tag) and wait until gone."""
        self._change(
            settings, nodes, progress, "terminate_instances", TERMINATED, "terminating", skip_states=(TERMINATED,)
        )

    def stop(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Stop the cluster's nodes among ``nodes`` and wait until they are stopped."""
        self._change(
            settings,
            nodes,
            progress,
            "stop_instances",
            STOPPED,
            "stopping",
            skip_states=(STOPPED, TERMINATED, SHUTTING_DOWN),
        )

    def start(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Start the cluster's stopped nodes among ``nodes`` and wait until they run."""
        self._change(
            settings,
            nodes,
            progress,
            "start_instances",
            RUNNING,
            "starting",
            skip_states=(RUNNING, TERMINATED, SHUTTING_DOWN),
        )

    def _change(
        self,
        settings: Settings,
        nodes: Iterable[Node],
        progress: Progress,
        operation: str,
        target: str,
        label: str,
        skip_states: tuple[str, ...],
    ) -> None:
        session = session_for(settings)
        aws = session.aws
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
            current = session.seen_recently(ids, self.clock()) if operation == "terminate_instances" else None
            if current is None:
                current = aws_client.describe(aws, ids)
            mine, foreign = self._owned(settings, current.values())
            ours = {inst["InstanceId"]: inst for inst in mine}
            if foreign:
                shown = "; ".join(f"{i} ({why})" for i, why in sorted(foreign.items())[:10])
                ess_log.warn(
                    f"ess: skipped {len(foreign)} instance(s) that are not cluster {settings.cluster!r}'s: {shown}",
                    progress,
                )
            todo = [i for i, inst in ours.items() if inst["State"]["Name"] not in skip_states]
            marked = todo
            if operation == "terminate_instances":
                # One already gone behind ess's back (heal replaced it) is marked in the same
                # call, so `list` stops reporting it lost instead of for the hour EC2 shows it;
                # so are the cluster's other gone members when this ends the cluster.
                marked = [i for i, inst in ours.items() if i in todo or _marks(inst) != TERMINATED]
                marked += self._retired(session, settings, ours, todo)
            if set(marked) - session.launched_here(marked):
                # Members by their key pair, not launched by this very command: the name of
                # that key pair must be more than typed (see ownership.prove_key_pair).
                ownership.prove_key_pair(settings, action)
            before = {i: _marks(ours.get(i) or session.record(i) or {}) for i in marked}
            asked = False
            try:
                if marked:
                    self._mark(aws, operation, marked, progress, spare=set(marked) - set(todo))
                if operation == "start_instances":
                    waiting = [i for i, inst in ours.items() if inst["State"]["Name"] == STOPPING]
                    if waiting:
                        self._poll(
                            aws,
                            waiting,
                            STOPPED,
                            settings.get("wait_timeout", 600),
                            progress,
                            "stopped",
                            fail_states=(TERMINATED, SHUTTING_DOWN),
                            types=[ours[i].get("InstanceType") for i in waiting],
                        )
                young = session.launched_here(todo)
                asked = True
                replied = aws_client.act(aws, operation, todo, young, self.sleep) if todo else {}
            except BaseException:
                if marked and not asked:
                    # Marked, then cut off (a Ctrl-C or SIGTERM, a failed wait) before EC2 was
                    # asked: a running node left marked "stopped" would make a later stop
                    # behind ess's back look like ess's own, so `status` and `heal` would not
                    # call it lost; a stopped one left unmarked by `start` would look lost.
                    self._put_back(aws, before, progress)
                raise
        watch = [
            i
            for i, inst in ours.items()
            if target == TERMINATED or inst["State"]["Name"] not in (TERMINATED, SHUTTING_DOWN)
        ]
        # What EC2 answered (or had already described) may be final: no poll needed then.
        known = {i: replied.get(i) or ours[i]["State"]["Name"] for i in watch}
        if watch and any(state != target for state in known.values()):
            try:
                self._poll(
                    aws,
                    watch,
                    target,
                    float(settings.get("wait_timeout", 600)),
                    progress,
                    label,
                    types=[ours[i].get("InstanceType") for i in watch],
                )
            except EssError:
                if operation != "terminate_instances":
                    raise
                # TerminateInstances was accepted; only the confirmation is out of reach.
                ess_log.warn(
                    f"ess: termination of {len(watch)} instance(s) was accepted but cannot be "
                    f"confirmed while describe fails; check with: ess instance ec2 list",
                    progress,
                )

    def _retired(
        self, session: Ec2Session, settings: Settings, ending: Mapping[str, dict], todo: list[str]
    ) -> list[str]:
        """Members this command listed that are already gone, unmarked, and not among
        ``ending``, when terminating ``todo`` leaves no live node ess launched in the cluster.

        `terminate all` hands over only the nodes that still exist: one terminated behind
        ess's back earlier stayed a lost member after it, so `status` failed on it for the
        hour EC2 lists it, and `heal` launched its replacement into a cluster the user had
        ended. Marked now (in the same CreateTags, no call of its own), it is ended with the
        cluster. A partial terminate (nodes named, others still running) or a rollback of
        what this command launched retires nothing: those lost nodes are still missing.
        """
        if not set(todo) - session.launched_here(todo):
            return []  # a rollback, or --min dropping failed nodes: not the user's ending
        listed, _ = self._owned(settings, [record for _, record in session.seen.values()])
        live_left = [
            i
            for i in listed
            if i["State"]["Name"] not in (SHUTTING_DOWN, TERMINATED)
            and i["InstanceId"] not in todo
            and aws_client.tags_of(i).get(TAG_ADOPTED) != "true"
        ]
        if live_left:
            return []
        return sorted(
            i["InstanceId"]
            for i in listed
            if i["State"]["Name"] in (SHUTTING_DOWN, TERMINATED)
            and i["InstanceId"] not in ending
            and _marks(i) != TERMINATED
        )

    @staticmethod
    def _mark(
        aws: aws_client.Aws, operation: str, ids: list[str], progress: Progress, spare: set[str] | None = None
    ) -> None:
        """Record what ess wants before asking for it (one batched call), so ``list`` can tell a
        node ess stopped or terminated from one stopped or terminated behind its back.

        ``spare``: ids already gone, marked only so they stop showing as lost. Should EC2
        refuse the call for them (a terminated instance may not take tags: not checkable
        on moto), the others are marked without them rather than not at all.
        """
        spare = spare or set()
        if operation == "start_instances":
            membership.untag(aws, ids, (TAG_DESIRED,))
            return
        wanted = TERMINATED if operation == "terminate_instances" else STOPPED
        remaining = list(ids)
        while remaining:
            try:
                membership.tag(aws, remaining, {TAG_DESIRED: wanted})
                return
            except Exception as exc:
                if operation != "terminate_instances" or not aws_client.is_aws_error(exc):
                    raise
                if aws_client.error_code(exc) == aws_client.NOT_FOUND_IDS:
                    # A node terminated long ago that EC2 no longer knows (it lists one for
                    # about an hour; gone members are marked with the others): nothing to mark.
                    forgotten = {i for i in remaining if i in aws_client.error_message(exc)}
                    if forgotten:
                        remaining = [i for i in remaining if i not in forgotten]
                        continue
                if spare & set(remaining):
                    remaining = [i for i in remaining if i not in spare]
                    if not remaining:
                        return
                    continue
                # Terminating matters more than the mark: without it `list` may show the nodes
                # as lost ("terminated outside ess") until EC2 forgets them, about an hour.
                ess_log.warn(
                    f"ess: could not mark {len(ids)} instance(s) as terminated by ess "
                    f"({aws_client.error_code(exc) or type(exc).__name__}); terminating anyway",
                    progress,
                )
                return

    @staticmethod
    def _put_back(aws: aws_client.Aws, before: Mapping[str, str | None], progress: Progress) -> None:
        """Give instances back the ``ess:desired`` mark they had ``before`` ``_mark`` (one call
        per kind of mark, ids in chunks), with Ctrl-C and SIGTERM held; a failure is a warning.

        Only for a change EC2 was never asked for: once the call went out, EC2 may have acted
        (a reply lost, a partly applied call), and the mark then tells the truth.
        """
        from ess.provision import deferred_interrupts  # the core's hold, not a copy

        bare = sorted(i for i, mark in before.items() if mark is None)
        marked: dict[str, list[str]] = {}
        for instance_id, mark in sorted(before.items()):
            if mark is not None:
                marked.setdefault(mark, []).append(instance_id)
        with deferred_interrupts(progress, "ess: putting back what ess last asked of the nodes; please wait"):
            try:
                if bare:
                    membership.untag(aws, bare, (TAG_DESIRED,))
                for mark, ids in marked.items():
                    membership.tag(aws, ids, {TAG_DESIRED: mark})
            except Exception as exc:
                ess_log.warn(
                    f"ess: could not put back the {TAG_DESIRED} mark of {len(before)} instance(s) "
                    f"({aws_client.error_code(exc) or type(exc).__name__}); the next stop or start sets it again",
                    progress,
                )

    # -- membership --------------------------------------------------------------------
    def adoptable(self, settings: Settings, ids: list[str]) -> list[Node]:
        """The live instances ``ids`` name (``i-...``, or ``r-...`` for a whole reservation).

        One batched describe; UsageError for an unknown id, a terminated instance, or one
        tagged with another ess cluster. Changes nothing.
        """
        session = session_for(settings)
        aws = session.aws
        with aws_client.translated(aws, "describe instances"):
            instances = membership.find(aws, ids)
        membership.check_adoptable(instances, settings.cluster)
        # adopt() signs the adoption with the private key: a missing or unsafe key file is
        # reported now, before anything is asked or changed.
        keys.key_file(settings)
        session.remember(instances, self.clock())
        return [self._node(i, settings) for i in instances]

    def adopt(self, settings: Settings, nodes: list[Node], tags: Mapping[str, str], progress: Progress) -> None:
        """Tag ``nodes`` with the cluster's tags and a signed proof of the adoption.

        The proof (ownership.TAG_ADOPTED_PROOF) holds an HMAC of each instance id and the
        cluster, keyed by a hash of the cluster's private key file; its value differs per
        batch, so there is one CreateTags per ownership.MACS_PER_TAG instances.
        A node that is already a member keeps its tags: marking a node ess launched as
        adopted would make ``terminate all`` pass it over. The instances' EBS volumes get
        the same tags in the same call, as launched nodes' volumes get them at launch.
        """
        session = session_for(settings)
        seen = [session.record(n.id) for n in nodes]
        mine, _ = self._owned(settings, [i for i in seen if i is not None])
        members = {i["InstanceId"] for i in mine}
        ids = sorted(n.id for n in nodes if n.id not in members)
        if not ids:
            ess_log.warn(f"ess: every node named is already in cluster {settings.cluster!r}", progress)
            return
        secret = ownership.adoption_key(keys.key_file(settings))
        # Their volumes join too, in the same CreateTags (EC2 takes both kinds of id in one call).
        volumes = {i["InstanceId"]: membership.volume_ids(i) for i in seen if i is not None}

        def tag_all(aws: aws_client.Aws) -> None:
            for chunk in aws_client.chunks(ids, ownership.MACS_PER_TAG):
                proof = ownership.proof_value(secret, chunk, settings.cluster)
                resources = chunk + [v for i in chunk for v in volumes.get(i, [])]
                membership.tag(aws, resources, {**tags, ownership.TAG_ADOPTED_PROOF: proof})

        aws_client.call(settings, "tag instances", tag_all)

    def may_change(self, settings: Settings, verb: str) -> None:
        """A key pair named outside a config file needs its private key here (before the prompt)."""
        ownership.prove_key_pair(settings, verb)

    def release(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Delete ess's tags (ess:*) from the cluster's ``nodes`` and from their EBS volumes,
        which ``adopt`` tagged with them, in the same DeleteTags; the instances keep running.
        The volumes come from this command's own describe of the nodes (no extra call)."""
        ids = [n.id for n in nodes if n.tags.get(TAG_CLUSTER) == settings.cluster]
        if not ids:
            return
        ownership.prove_key_pair(settings, "release")
        session = session_for(settings)
        volumes = [v for i in ids for v in membership.volume_ids(session.record(i) or {})]
        aws_client.call(settings, "untag instances", lambda aws: membership.untag(aws, ids + volumes))

    def retag(self, settings: Settings, nodes: list[Node], tags: Mapping[str, str], progress: Progress) -> None:
        """One CreateTags per 1,000 of the cluster's ``nodes`` (members only, checked by their tags)."""
        ids = [n.id for n in nodes if n.tags.get(TAG_CLUSTER) == settings.cluster]
        if set(ids) - session_for(settings).launched_here(ids):
            ownership.prove_key_pair(settings, "retag")
        if ids:
            aws_client.call(settings, "tag instances", lambda aws: membership.tag(aws, ids, tags))

    def clusters(self, settings: Settings, all_regions: bool, progress: Progress) -> ClusterInventory:
        """Every ess cluster in the region (or all regions): see inventory.py."""
        return inventory.clusters(self.name, settings, all_regions, progress)

    # -- extras: security group, key pair, purge ---------------------------------------
    def commands(self) -> list[Any]:
        """``security-group create`` and ``key-pair create`` under ``ess instance ec2``."""
        from .commands import key_pair_group, security_group_group

        return [security_group_group(self), key_pair_group(self)]

    def purge(self, settings: Settings, progress: Progress) -> list[str]:
        """Delete the security groups, key pairs and launch template ess created for this cluster.

        Only resources tagged ``ess:cluster=<cluster>`` *and* ``ess:created-by`` are
        deleted: a group, key pair or template ess did not create is never touched. A group still in
        use (by a node that was not terminated) is kept and named in a note. Returns one
        description per deleted resource. Meant to run after ``terminate all``.
        """
        from . import keys, security_group

        aws = session_for(settings).aws
        with aws_client.translated(aws, "delete the cluster's security groups and key pairs"):
            deleted = security_group.purge(aws, settings.cluster, progress, self.sleep)
            deleted += keys.purge_key_pairs(aws, settings.cluster)
        with aws_client.translated(aws, "delete the cluster's launch templates"):
            deleted += fleet.purge_templates(aws, settings.cluster)
        return deleted

    def _poll(
        self,
        aws: aws_client.Aws,
        ids: list[str],
        target: str,
        timeout: float,
        progress: Progress,
        label: str,
        fail_states: tuple[str, ...] = (),
        types: Iterable[str | None] = (),
    ) -> dict[str, Any]:
        """Wait until every one of ``ids`` is in ``target`` (see :func:`ess_ec2.polling.poll`),
        guided by earlier waits of the kind (``label``: running after a launch, starting,
        stopping, terminating) for the same ``types`` in the region (see wait_times.py)."""
        folder = _wait_times_folder()
        times = wait_times.load(folder, wait_times.key_of(aws.region, types, label)) if folder else None
        if times is not None:
            log.debug(
                "wait times %s: %d kept%s",
                times.key,
                len(times.past),
                "" if times.usable() else f" (fewer than {wait_times.ENOUGH}: not used)",
            )
        try:
            found = polling.poll(
                aws, ids, target, timeout, progress, label, fail_states, sleep=self.sleep, clock=self.clock, times=times
            )
        except EssError:
            if folder and times:
                wait_times.save(folder, times)  # a deadline: what it saw still holds
            raise
        if folder and times:
            wait_times.save(folder, times)
        return found


def _wait_times_folder() -> Path | None:
    """ess's state folder for wait_times.py, or None where it cannot be had (the wait runs without)."""
    try:
        return state_dir()
    except (UsageError, OSError) as exc:
        log.debug("wait times: no state folder (%s)", exc)
        return None
