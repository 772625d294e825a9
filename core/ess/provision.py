"""The provisioning flows the core owns: create, verify, terminate, and rollback.

Backends do the cloud work; this module decides the order, what is cleaned up when
something fails, and what the user is told. The promise it keeps: after the launch call,
a failure or Ctrl-C terminates exactly what this run launched (found again by its
``ess:launch`` tag, so even nodes whose launch reply was lost), unless the user asked
to keep them; and once the new nodes passed, the command ends by showing them, never in
between (a Ctrl-C or SIGTERM from that point is held: see :func:`create`).
"""

from __future__ import annotations

import getpass
import logging
import signal
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from . import lifetime, origins
from .backend import Backend
from .census import GONE, Census, adopted, intended_size, recorded_size
from .errors import EssError, Interrupted, NotSupported, PartialFailure, UsageError
from .log import some, warn
from .models import (
    PENDING,
    RUNNING,
    SHUTTING_DOWN,
    STOPPED,
    STOPPING,
    TAG_ADOPTED,
    TAG_CLUSTER,
    TAG_CREATED_AT,
    TAG_CREATED_BY,
    TAG_LAUNCH,
    TAG_SIZE,
    TERMINATED,
    Access,
    CheckResult,
    LaunchRequest,
    Node,
    Settings,
)
from .plugins import get_plugin_manager
from .progress import Progress
from .settings import how_to_set

log = logging.getLogger(__name__)


@dataclass
class CreateResult:
    """What ``create`` ended with: the kept nodes, their checks, and the dropped ones."""

    nodes: list[Node]
    checks: list[CheckResult] = field(default_factory=list)
    dropped: list[Node] = field(default_factory=list)


def check_min_count(min_count: int | None, count: int) -> None:
    """``--min`` must lie between 1 and the node count (UsageError naming ``--min``)."""
    if min_count is not None and not 1 <= min_count <= count:
        raise UsageError(
            f"--min: {min_count} must be between 1 and the node count {count} (try --min {max(1, count // 2)})"
        )


def launch_request(
    settings: Settings, count: int, min_count: int | None = None, *, size: int | None = None
) -> LaunchRequest:
    """A new launch with a fresh id and the tags every node must carry from birth.

    ``size`` is the size the cluster is meant to have once this launch is done (default
    ``count``: a new cluster); every node records it so ``heal`` needs no local state.
    """
    check_min_count(min_count, count)
    launch_id = uuid.uuid4().hex
    tags = {
        TAG_CLUSTER: settings.cluster,
        TAG_LAUNCH: launch_id,
        TAG_SIZE: str(size or count),
        **_origin_tags(),
        **lifetime.launch_tags(settings),
    }
    return LaunchRequest(count=count, min_count=min_count or count, launch_id=launch_id, tags=tags)


def membership_tags(settings: Settings) -> dict[str, str]:
    """Tags that make an existing machine a member of the cluster (``add``)."""
    return {TAG_CLUSTER: settings.cluster, **_origin_tags(), TAG_ADOPTED: "true"}


def _origin_tags() -> dict[str, str]:
    """Who made a node a member, and when: on launched and adopted nodes alike."""
    return {
        TAG_CREATED_BY: f"{_user()}@{socket.gethostname()}",
        TAG_CREATED_AT: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still tag something useful
        return "unknown"


def prepare(
    backend: Backend, settings: Settings, count: int | None = None, min_count: int | None = None, *, verify: bool = True
) -> LaunchRequest:
    """The one way to get a launch ready: a new :class:`LaunchRequest` for ``count`` nodes
    (default: what the backend would make), checked by :func:`preflight`, carrying the
    backend's plan for :func:`create`. Raises UsageError before anything is launched."""
    if count is None:
        count = backend.requested_count(settings)
    request = launch_request(settings, count, min_count)
    return preflight(backend, settings, request, verify=verify)


def preflight(backend: Backend, settings: Settings, request: LaunchRequest, *, verify: bool = True) -> LaunchRequest:
    """Every check that costs nothing: the backend's, then the plugins' (which may veto).

    Returns ``request`` with the backend's plan (what its preflight returned) in ``plan``.
    """
    missing = [key for key, spec in settings.specs.items() if spec.required and settings.get(key) in (None, "")]
    if missing:
        key = missing[0]
        raise UsageError(f"{settings.where(key)}: required for create (set it in {how_to_set(settings.specs[key])})")
    plan = backend.preflight(settings, request)
    try:
        access: Access | None = backend.access(settings)
    except NotSupported:
        access = None
    get_plugin_manager().hook.ess_before_create(settings=settings, count=request.count, access=access, verify=verify)
    lifetime.check(backend, settings)  # every check passed: say once if limits are unenforced or absent
    return replace(request, plan=plan)


def create(
    backend: Backend,
    settings: Settings,
    request: LaunchRequest,
    progress: Progress,
    *,
    verify: bool = True,
    keep_on_failure: bool = False,
    afterwards: Callable[[CreateResult], None] | None = None,
) -> CreateResult:
    """Launch, wait, verify and run after-create hooks; roll back on any failure.

    ``request`` comes from :func:`prepare`. With ``request.min_count < request.count``,
    nodes that fail verification are terminated and the rest kept if ``min_count`` passed:
    the result then has ``dropped`` nodes and the caller reports a partial success.

    Once the hooks have passed, the nodes are the user's: from then on nothing rolls them
    back. ``afterwards(result)`` is the caller's bookkeeping (``create`` on a cluster with
    nodes retags the older ones, ``heal`` terminates the lost nodes it replaced); it runs
    with Ctrl-C and SIGTERM held (:func:`deferred_interrupts`), so a signal there cannot end
    the command between "the nodes run" and "here they are": the command finishes, the
    caller shows the nodes, and the signal is only noted.
    """
    launched: list[Node] = []
    ready: CreateResult | None = None
    try:
        with sigterm_as_interrupt():
            log.debug(
                "create: launch %s of %d node(s) (at least %d) on %s, cluster %r",
                request.launch_id,
                request.count,
                request.min_count,
                backend.name,
                settings.cluster,
            )
            progress.stage(f"launching {request.count}")
            # Before the launch, so a crash right after it still leaves the config on record.
            origins.remember(request.launch_id, backend.name, settings.cluster, settings.config_path)
            launched = backend.create(settings, request, progress)
            progress.finish()
            log.debug("create: launched %s", _ids(launched))
            timeout = float(settings.get("wait_timeout", 600.0))
            nodes = backend.wait(settings, launched, progress, timeout)
            progress.finish()
            log.debug("create: running %s", _ids(nodes))
            result = CreateResult(nodes=nodes)
            if verify:
                result = _verify_new(backend, settings, nodes, request, progress)
            get_plugin_manager().hook.ess_after_create(settings=settings, nodes=result.nodes)
            # The commit point. The hold is in force before ``ready`` is set: a signal just
            # before it still rolls back (nothing was shown yet), one after it is held.
            with deferred_interrupts(progress, READY_NOTE, reraise=False):
                ready = result
                if afterwards is not None:
                    afterwards(result)
            return result
    except BaseException as exc:
        progress.finish()
        if ready is not None:
            # After the commit point the nodes are kept whatever happens: a failure in the
            # bookkeeping is reported as itself, and a signal that slipped in after the hold
            # (the few instructions up to the return) names the nodes it leaves running.
            log.debug("create: %s after the nodes were ready; keeping them", type(exc).__name__)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(
                    f"interrupted after the nodes were ready; kept {_ids(ready.nodes)} "
                    f"(see them with: ess instance {backend.name} list)"
                ) from None
            raise
        log.debug(
            "create: failed with %s after launching %s; %s",
            type(exc).__name__,
            _ids(launched),
            "keeping them (--keep-on-failure)" if keep_on_failure else "rolling back",
        )
        if keep_on_failure:
            ids = some(n.id for n in launched) or f"tag {TAG_LAUNCH}={request.launch_id}"
            warn(
                f"ess: --keep-on-failure: keeping the nodes of this run ({ids}); "
                f"remove them with: ess instance {backend.name} terminate all",
                progress,
            )
        else:
            rollback(backend, settings, request, launched, progress)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(
                "interrupted; " + ("nodes kept" if keep_on_failure else "the nodes of this run were terminated")
            ) from None
        raise


#: What a Ctrl-C or SIGTERM after the commit point of :func:`create` is told (it is held).
READY_NOTE = "ess: the new nodes are ready and kept; finishing the command and showing them first, please wait"


def _verify_new(
    backend: Backend, settings: Settings, nodes: list[Node], request: LaunchRequest, progress: Progress
) -> CreateResult:
    checks = check(backend, settings, nodes, progress)
    failed_ids = {c.node_id for c in checks if not c.ok}
    if not failed_ids:
        return CreateResult(nodes=nodes, checks=checks)
    good = [n for n in nodes if n.id not in failed_ids]
    if len(good) >= request.min_count and request.min_count < request.count:
        bad = [n for n in nodes if n.id in failed_ids]
        warn(
            f"ess: {len(bad)} node(s) failed verification and are terminated "
            f"(--min {request.min_count} allows it): {some(n.id for n in bad)}",
            progress,
        )
        backend.terminate(settings, bad, progress)
        progress.finish()
        return CreateResult(nodes=good, checks=[c for c in checks if c.node_id not in failed_ids], dropped=bad)
    raise EssError(f"verification failed on {len(failed_ids)} of {len(nodes)} node(s): " + describe_failures(checks))


def _ids(nodes: list[Node], limit: int = 10) -> str:
    """``3 node(s): i-1, i-2, i-3`` for the debug log, cut after ``limit`` ids."""
    return f"{len(nodes)} node(s)" + (f": {some((n.id for n in nodes), limit)}" if nodes else "")


def describe_failures(checks: list[CheckResult], limit: int = 5) -> str:
    failed = [c for c in checks if not c.ok]
    text = "; ".join(f"{c.node_id}: {c.message}" for c in failed[:limit])
    return text + (f"; and {len(failed) - limit} more" if len(failed) > limit else "")


def rollback(
    backend: Backend, settings: Settings, request: LaunchRequest, launched: list[Node], progress: Progress
) -> None:
    """Terminate every node of this launch: those returned, and any found by the launch tag."""
    with deferred_interrupts(progress):
        log.debug("rollback: listing the cluster for nodes tagged %s=%s", TAG_LAUNCH, request.launch_id)
        try:
            found = [n for n in backend.nodes(settings) if n.launch_id == request.launch_id]
        except Exception as exc:
            found = []
            warn(f"ess: could not list nodes during cleanup ({exc})", progress)
        victims = {n.id: n for n in launched}
        victims.update({n.id: n for n in found})
        log.debug(
            "rollback: %d returned by the launch, %d found by tag; terminating %s",
            len(launched),
            len(found),
            _ids(list(victims.values())),
        )
        if not victims:
            return
        try:
            backend.terminate(settings, list(victims.values()), progress)
            progress.finish()
            log.debug("rollback: terminated %d node(s)", len(victims))
        except Exception as exc:
            log.debug("rollback: terminate failed: %s: %s", type(exc).__name__, exc)
            warn(
                f"ess: CLEANUP FAILED ({exc}); nodes tagged {TAG_LAUNCH}={request.launch_id} "
                f"may still run: ess instance {backend.name} terminate all --yes",
                progress,
            )
            return
        warn(
            f"ess: cleaned up: {'terminated' if backend.ends_nodes else 'released'} {len(victims)} node(s) "
            f"launched by this run ({some(sorted(victims))})",
            progress,
        )


def check(backend: Backend, settings: Settings, nodes: list[Node], progress: Progress) -> list[CheckResult]:
    """Run every health-check plugin over ``nodes``; one flat list of results."""
    if not nodes:
        return []
    access = backend.access(settings)
    answers = get_plugin_manager().hook.ess_check_nodes(
        nodes=nodes, access=access, settings=settings, progress=progress
    )
    progress.finish()
    results = [result for answer in answers for result in (answer or [])]
    if not answers:
        warn("ess: warning: no health-check plugin is installed; nothing was verified", progress)
    return results


def verify(backend: Backend, settings: Settings, progress: Progress) -> tuple[list[Node], list[CheckResult]]:
    """Check the cluster's running nodes, and fail its lost ones (see :func:`health_targets`)."""
    nodes = health_targets(backend, settings)
    return nodes, health_checks(backend, settings, nodes, progress)


def health_checks(backend: Backend, settings: Settings, nodes: list[Node], progress: Progress) -> list[CheckResult]:
    """Every health check on the running ``nodes``, and a failure per lost one (verify, status --ssh)."""
    return check(backend, settings, [n for n in nodes if n.state == RUNNING], progress) + lost_checks(nodes)


def health_targets(backend: Backend, settings: Settings) -> list[Node]:
    """The nodes ``verify``, ``exec`` and ``push`` act on, in the backend's order.

    Running nodes, and lost ones (``Node.lost``: ess wants them running and they are not):
    a lost node is a failure to report, never a node to leave out silently. A node stopped
    on purpose is left out. With neither, the error names the command that helps.
    The nodes come from :meth:`Backend.nodes_to_connect`: an SSH step follows.
    """
    nodes = backend.nodes_to_connect(settings)
    targets = [n for n in nodes if n.state == RUNNING or n.lost]
    if not targets:
        raise no_running_nodes(backend, settings, nodes)
    return targets


def reachable(targets: list[Node]) -> list[Node]:
    """The nodes of :func:`health_targets` that checks, commands and copies go to: all but
    the lost ones, which are reported as failures instead (:func:`lost_checks`)."""
    return [n for n in targets if not n.lost]


def no_running_nodes(backend: Backend, settings: Settings, nodes: list[Node]) -> EssError:
    """ "No running nodes", with the command that actually helps for what the cluster holds."""
    from .hints import create_example, empty_cluster  # the same lines as `list` and --help show

    name, cluster = backend.name, settings.cluster
    create = create_example(backend)
    if not nodes:
        return EssError(empty_cluster(backend, cluster))
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.state] = counts.get(node.state, 0) + 1
    held = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    can_start = backend.supports("start")
    if can_start and any(n.state in (STOPPED, STOPPING) for n in nodes):
        hint = f"start them with: ess instance {name} start"
    elif any(n.state == PENDING for n in nodes):
        hint = f"they are still starting; see ess instance {name} status"
    else:
        hint = f"create some with: {create}"
    return EssError(f"cluster {cluster!r} has no running nodes ({held}; {hint})")


def lost_message(node: Node) -> str:
    """Why a lost node failed, with its state and the backend's reason."""
    why = f" ({node.reason})" if node.reason else ""
    return f"{node.state}, expected running{why}"


def lost_checks(nodes: list[Node]) -> list[CheckResult]:
    """One failed result per lost node, so verdicts and tables count it as failed."""
    return [CheckResult(n.id, "state", False, lost_message(n), attempts=0, address=n.address) for n in nodes if n.lost]


def state_checks(nodes: list[Node]) -> list[CheckResult]:
    """``status`` without ``--ssh``: running nodes pass, lost nodes fail, the rest abstain."""
    return [
        CheckResult(n.id, "state", True, attempts=0, address=n.address) for n in nodes if n.state == RUNNING
    ] + lost_checks(nodes)


def verdict(checks: list[CheckResult]) -> None:
    """Raise the right error for failed checks: partial (3) if some passed, failure (1) if none."""
    failed = {c.node_id for c in checks if not c.ok}
    if not failed:
        return
    total = len({c.node_id for c in checks})
    raise verdict_error(len(failed), total, f"{len(failed)} of {total} node(s) failed: " + describe_failures(checks))


def verdict_error(failed: int, total: int, message: str) -> EssError:
    """The one rule for every per-node verdict (checks, exec, push): partial success (exit 3)
    when some nodes passed, failure (exit 1) when none did."""
    return (PartialFailure if failed < total else EssError)(message)


def select(backend: Backend, settings: Settings, targets: list[str]) -> list[Node]:
    """The cluster's nodes named by ``targets`` ("all" or ids); unknown ids are a usage error."""
    return select_from(backend.nodes(settings), backend, settings, targets)


def select_from(current: list[Node], backend: Backend, settings: Settings, targets: list[str]) -> list[Node]:
    """:func:`select` among ``current`` (the cluster as just listed)."""
    if targets == ["all"]:
        return current
    by_id = {n.id: n for n in current}
    unknown = [t for t in targets if t not in by_id]
    if unknown:
        raise UsageError(
            f"{unknown[0]}: not a node of cluster {settings.cluster!r} "
            f"(ess instance {backend.name} list shows its nodes; nothing was changed)"
        )
    return [by_id[t] for t in dict.fromkeys(targets)]


def power_targets(nodes: list[Node], verb: str) -> list[Node]:
    """The nodes ``stop`` (``verb="stop"``) or ``start`` acts on, of those selected.

    Those not already in the wanted state, plus, for ``stop``, a lost node that is already
    down: stopping it is how the user says "leave it down", so it stops failing verify.
    """
    wanted = {STOPPED, STOPPING} if verb == "stop" else {RUNNING, PENDING}
    # A node that is gone (a lost node EC2 still lists as terminated) can be neither stopped
    # nor started: it is left out of the confirmation and the work, not skipped by the backend.
    return [
        n
        for n in nodes
        if n.state not in (TERMINATED, SHUTTING_DOWN)
        and (n.state not in wanted or (verb == "stop" and n.lost and n.state == STOPPED))
    ]


def terminate_targets(nodes: list[Node], all_nodes: bool, include_adopted: bool) -> tuple[list[Node], list[Node]]:
    """The selected nodes ``terminate`` acts on, and the adopted ones it keeps.

    A lost node that is already terminated (EC2 lists one for about an hour) has nothing
    left to terminate: it is neither acted on nor reported. With ``all_nodes``, machines
    adopted with ``add`` are kept unless ``include_adopted`` (ess did not launch them).
    """
    chosen = [n for n in nodes if n.state != TERMINATED]
    if not all_nodes or include_adopted:
        return chosen, []
    return (
        [n for n in chosen if n.tags.get(TAG_ADOPTED) != "true"],
        [n for n in chosen if n.tags.get(TAG_ADOPTED) == "true"],
    )


def terminate(
    backend: Backend, settings: Settings, nodes: list[Node], progress: Progress, *, before: list[Node] | None = None
) -> None:
    """Terminate ``nodes`` (from :func:`select`); a Ctrl-C or SIGTERM waits for the backend.

    ``before`` is the whole cluster as listed, given when nodes are named on purpose
    (``terminate ID...``): the survivors then record the smaller intended size, so
    ``heal`` does not bring the terminated nodes back (:func:`shrink`).
    """
    if not nodes:
        return
    with interruptible(backend, "terminate"):
        get_plugin_manager().hook.ess_before_terminate(settings=settings, nodes=nodes)
        with deferred_interrupts(progress):
            backend.terminate(settings, nodes, progress)
    progress.finish()
    if before is not None:
        shrink(backend, settings, before, nodes, progress)


def power(backend: Backend, settings: Settings, nodes: list[Node], verb: str, progress: Progress) -> None:
    """``stop`` or ``start`` (``verb``) ``nodes``, as chosen by :func:`power_targets`.

    SIGTERM is a Ctrl-C here as in ``create`` (exit 130, not -15): the nodes carry the
    cluster's tags whatever moment it lands, so ``list`` and ``terminate all`` find them.
    """
    if not nodes:
        return
    action = backend.stop if verb == "stop" else backend.start
    with interruptible(backend, verb):
        action(settings, nodes, progress)
    progress.finish()


def adopt(
    backend: Backend, settings: Settings, nodes: list[Node], progress: Progress, tags: dict[str, str] | None = None
) -> None:
    """Make ``nodes`` (from ``backend.adoptable``) members of the cluster (``add``), with
    ``tags`` (default :func:`membership_tags`; the CLI passes those it showed)."""
    with interruptible(backend, "add"):
        backend.adopt(settings, nodes, tags if tags is not None else membership_tags(settings), progress)
    progress.finish()


def release(backend: Backend, settings: Settings, nodes: list[Node], progress: Progress) -> None:
    """Let ``nodes`` (from :func:`select`) leave the cluster, running (``remove``)."""
    with interruptible(backend, "remove"):
        backend.release(settings, nodes, progress)
    progress.finish()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while nodes are launched or changed, so cleanup runs and
    the exit code is 130 (interrupted) instead of death by signal with nothing said.

    Inside a hold (:func:`deferred_interrupts`) it installs nothing: the hold keeps the
    signals until its work is done, and a flow it calls must not turn them into exceptions.
    """
    if _holds:
        yield
        return
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interruptible(backend: Backend, command: str) -> Iterator[None]:
    """A flow that changes nodes: SIGTERM acts as Ctrl-C, and either is :class:`Interrupted`
    (exit 130) naming where the cluster stands, never a bare KeyboardInterrupt."""
    try:
        with sigterm_as_interrupt():
            yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted during {command} (see where the cluster stands with: ess instance {backend.name} list)"
        ) from None


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


#: The signals each hold in force has received, innermost last (main thread only: only it
#: can install signal handlers). Non-empty means SIGINT and SIGTERM are being held.
_holds: list[list[int]] = []
#: What a signal during cleanup is told.
CLEANUP_NOTE = "ess: cleaning up the nodes of this run; please wait"


@contextmanager
def deferred_interrupts(progress: Progress, note: str = CLEANUP_NOTE, *, reraise: bool = True) -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM while work that must not be cut runs (a cleanup, the search
    for what an unanswered launch made, the bookkeeping after :func:`create` succeeded).

    Each signal that arrives is noted (``note`` on stderr) and the work goes on; the list
    yielded collects them. Afterwards, with ``reraise``, one KeyboardInterrupt is raised if
    any came (the interruption happens, just later); without it the caller decides.
    Inside another hold nothing is installed: the outer hold keeps the signals and decides
    what they do, so a cleanup nested in a commit never turns into an interruption.
    """
    if _holds:
        yield _holds[-1]
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)
        warn(note, progress)

    try:
        previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: nothing to install
        yield pending
        return
    _holds.append(pending)
    try:
        yield pending
    finally:
        _holds.pop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending and reraise:
        raise KeyboardInterrupt


# -- the intended size, and heal -------------------------------------------------------
def grow(backend: Backend, settings: Settings, request: LaunchRequest) -> LaunchRequest:
    """``request`` (from :func:`prepare`) on a cluster that may have nodes already.

    One list: the nodes that still exist go in ``request.existing`` and the new nodes record
    the grown intended size (the cluster's, else the count of its launched nodes, plus this
    launch); the caller gives the older nodes that size once :func:`create` succeeded
    (:func:`record_size`). With no launched node still there (all gone: terminated behind
    ess's back, or only adopted machines left), the launched part starts afresh at this
    launch's count: a size recorded by nodes that are all gone is no longer anyone's intent.
    """
    existing = [n for n in backend.nodes(settings) if n.state not in GONE]
    if not existing:
        return request
    launched = [n for n in existing if not adopted(n)]
    before = intended_size(existing) if launched else 0
    if before is None:
        before = len(launched)
    return replace(request, existing=tuple(existing), tags={**request.tags, TAG_SIZE: str(before + request.count)})


def can_heal(backend: Backend) -> bool:
    """Whether ``heal`` is offered: the backend launches nodes (hosts registers machines it is
    given by address, and cannot invent the missing ones)."""
    return backend.supports("create") and not backend.create_arguments


def record_size(backend: Backend, settings: Settings, nodes: list[Node], size: int, progress: Progress) -> None:
    """Give the launched ``nodes`` that still exist ``ess:size=size`` (one retag call).

    Bookkeeping: a backend without ``retag``, or a failed call, is one warning naming what
    ``heal`` will then believe; the nodes themselves are fine either way. Nothing at all
    where there is no ``heal`` (:func:`can_heal`).
    """
    todo = [n for n in nodes if not adopted(n) and n.state not in GONE and recorded_size(n) != size]
    if not todo or not can_heal(backend):
        return
    if not backend.supports("retag"):
        warn(
            f"ess: backend {backend.name} cannot retag nodes: {len(todo)} node(s) keep their old "
            f"{TAG_SIZE}, so `heal` may aim for another size than {size}",
            progress,
        )
        return
    try:
        backend.retag(settings, todo, {TAG_SIZE: str(size)}, progress)
    except EssError as exc:
        warn(f"ess: could not record the cluster's intended size {size} on {len(todo)} node(s): {exc}", progress)
    progress.finish()


def shrink(
    backend: Backend, settings: Settings, before: list[Node], terminated: list[Node], progress: Progress
) -> None:
    """After nodes were terminated on purpose: the survivors record the intended size less
    the launched nodes that went (adopted ones never counted), so ``heal`` leaves it there."""
    intended = intended_size(before)
    dropped = [n for n in terminated if not adopted(n)]
    gone = {n.id for n in terminated}
    survivors = [n for n in before if n.id not in gone and not adopted(n) and n.state not in GONE]
    if intended is None or not dropped or not survivors:
        return
    record_size(backend, settings, survivors, max(1, intended - len(dropped)), progress)


@dataclass
class HealResult:
    """What ``heal`` found and did: the cluster counted before (``before``), the new nodes
    (``created``, None when it was whole) and the lost nodes they replaced (``replaced``)."""

    before: Census
    created: CreateResult | None = None
    replaced: list[Node] = field(default_factory=list)

    @property
    def nodes(self) -> list[Node]:
        return self.created.nodes if self.created is not None else []


#: ``confirm=`` of :func:`heal`: sees the launch and the census before anything is launched.
HealConfirm = Callable[[LaunchRequest, Census], None]


def heal(
    backend: Backend,
    settings: Settings,
    progress: Progress,
    *,
    verify: bool = True,
    confirm: HealConfirm | None = None,
) -> HealResult:
    """Bring the cluster back to its intended size (``ess:size``, see :mod:`ess.census`).

    Lists the cluster once; launches exactly the missing count with the cluster's settings
    through :func:`prepare`'s checks and :func:`create` (wait, verify; a failure or Ctrl-C
    terminates the new nodes only, never the others); then terminates the lost nodes ess
    launched that they replace (crashed, stopped or terminated behind ess's back), so the
    cluster stops failing ``verify``. Adopted lost nodes are only named: ess did not launch them.
    Once the new nodes passed, they are kept: a Ctrl-C or SIGTERM from then on is held until
    the replaced nodes are terminated and the new size recorded, and the result is returned.
    """
    from .hints import create_example, empty_cluster

    nodes = backend.nodes(settings)
    if not nodes:
        raise EssError(f"heal: {empty_cluster(backend, settings.cluster)}")
    census = Census.of(nodes)
    if census.intended is None:
        raise EssError(
            f"heal: cluster {settings.cluster!r} records no intended size (no node carries {TAG_SIZE}: "
            f"launched by an older ess, or only adopted); add nodes with: {create_example(backend)}"
        )
    if census.missing == 0:
        return HealResult(before=census)
    # The replacements end with the cluster (its ess:expires), not now + the config's limit.
    launching = lifetime.for_replacements(settings, list(census.present))
    request = preflight(
        backend, launching, launch_request(launching, census.missing, size=census.intended), verify=verify
    )
    if confirm is not None:
        confirm(request, census)
    intended = census.intended  # not None (checked above); named for the closure
    outcome = HealResult(before=census)

    def settle(created: CreateResult) -> None:
        # Run by create() once the new nodes passed, with Ctrl-C and SIGTERM held: the new
        # nodes are kept from here, so the command finishes and shows them.
        outcome.created = created
        foreign = [n for n in census.lost if adopted(n)]
        if foreign:
            warn(
                f"ess: {len(foreign)} adopted node(s) are lost and left alone (ess did not launch them): "
                f"{some(n.id for n in foreign)} (`ess instance {backend.name} remove ID` releases one)",
                progress,
            )
        replaced = [n for n in census.lost if not adopted(n)]
        try:
            terminate(backend, settings, replaced, progress)
        except Interrupted:
            raise  # not from a signal (held here): a plugin's own; the lost ones stay listed
        except EssError as exc:
            warn(
                f"ess: the cluster is whole again, but the lost nodes it replaced could not all be terminated "
                f"({exc}); retry with: ess instance {backend.name} terminate {' '.join(n.id for n in replaced)} --yes",
                progress,
            )
            replaced = []
        outcome.replaced = replaced
        record_size(backend, settings, list(census.present), intended, progress)

    create(backend, launching, request, progress, verify=verify, afterwards=settle)
    return outcome
