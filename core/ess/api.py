"""The Python API: what ``ess instance <backend> ...`` does, callable from a program.

    import ess

    cluster = ess.Cluster("local", cluster="demo")
    created = cluster.create(2)
    print(cluster.exec("hostname"))
    cluster.terminate()

A :class:`Cluster` holds one backend and its resolved settings; each method runs one of the
core's flows (:mod:`ess.provision`, the remote-execution hooks) and returns typed models
(:class:`~ess.models.Node`, :class:`~ess.models.CheckResult`,
:class:`~ess.models.CommandResult`, :class:`~ess.provision.CreateResult`). Problems are
raised as the errors of :mod:`ess.errors`, never turned into ``sys.exit``; nothing is
printed unless a progress sink is given. The CLI is the other caller of the same flows:
it parses, confirms and presents, and leaves the work to them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from .errors import NotSupported, UsageError
from .log import some, warn, warnings_to
from .models import (
    TAG_SIZE,
    CheckResult,
    CommandResult,
    LaunchRequest,
    Node,
    Settings,
)
from .progress import Progress

if TYPE_CHECKING:  # keep `import ess.api` as light as `import ess`
    from .backend import Backend
    from .census import Census
    from .deadlines import Extended
    from .provision import CreateResult, HealResult

__all__ = ["Cluster", "VerifyResult"]

#: ``ids`` of stop/start/terminate: every node of the cluster, or the ids named.
Ids: TypeAlias = "str | Sequence[str]"
#: ``confirm=`` of stop/terminate: sees the nodes about to change; raising cancels.
Confirm: TypeAlias = "Callable[[list[Node]], None]"


def _warnings_to_sink(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a :class:`Cluster` method with :func:`ess.log.warn` going to its progress sink.

    Core and plugins warn without a progress object at hand (a config writable by everyone,
    instances skipped by ownership); in the API those lines belong to the cluster's sink,
    which prints nothing unless the caller gave one.
    """

    @functools.wraps(method)
    def wrapper(self: Cluster, *args: Any, **kwargs: Any) -> Any:
        with warnings_to(self.progress):
            return method(self, *args, **kwargs)

    return wrapper


def _sink(progress: Progress | TextIO | None) -> Progress:
    """The Progress behind ``progress=``: as given, around a text stream, or silent."""
    if isinstance(progress, Progress):
        return progress
    return Progress(quiet=True) if progress is None else Progress(progress)


@dataclass(frozen=True)
class VerifyResult:
    """What :meth:`Cluster.verify` found: the nodes it checked and every check's result.

    A node passed only if all its checks passed; ``ok`` says whether every node did.
    """

    nodes: list[Node]
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def __str__(self) -> str:
        """One line for ``print(cluster.verify())``: how many passed, then each failure."""
        failed = {c.node_id for c in self.failed}
        total = len({n.id for n in self.nodes} | {c.node_id for c in self.checks})
        text = f"{total - len(failed)} of {total} node(s) passed"
        return text + "".join(f"; {c.node_id}: {c.message}" for c in self.failed)


class Cluster:
    """One cluster on one backend: ``Cluster("ec2", config="instance.conf", cluster="default")``.

    ``config`` is the config file (default: ``$ESS_CONFIG``, then ``./instance.conf`` or
    ``./instance.toml``, then the user config folder, as for the CLI). ``cluster`` names
    the cluster (default: the config's ``cluster`` key, else ``default``). Any other
    keyword overrides a setting of the backend, as its command-line option would:
    ``Cluster("ec2", instance_type="t3.large", region="eu-west-1")``.

    ``progress`` is where stage lines and notes go (a text stream such as ``sys.stderr``,
    or a :class:`~ess.progress.Progress`); by default nothing is printed.

    Settings are read and validated here, so a bad config raises
    :class:`~ess.errors.UsageError` at construction, before anything was done.
    """

    def __init__(
        self,
        backend: str,
        config: str | os.PathLike[str] | None = None,
        cluster: str | None = None,
        *,
        progress: Progress | TextIO | None = None,
        **settings: Any,
    ) -> None:
        from .settings import find_config, load_settings

        chosen = _backend(backend)
        overrides = dict(settings)
        if cluster is not None:
            overrides["cluster"] = cluster
        sink = _sink(progress)
        try:
            path, _ = find_config(os.fspath(config) if config is not None else None, os.environ)
            _check_overrides(chosen, overrides)
            with warnings_to(sink):
                resolved = load_settings(chosen, path, cli=overrides)
        except UsageError as exc:
            # The one line says it all. The exception it was raised from can quote the config
            # text (configparser's ParsingError quotes the bad line, maybe a pasted secret), and
            # a pipeline's logging.exception() would print that chain.
            exc.__cause__ = None
            exc.__suppress_context__ = True
            raise
        given = {key: f"Cluster({key}=...)" for key, value in overrides.items() if value is not None}
        self._setup(chosen, _relabelled(resolved, given), sink)

    @classmethod
    def from_settings(cls, settings: Settings, *, progress: Progress | TextIO | None = None) -> Cluster:
        """A cluster from settings already resolved (the CLI resolves them from its options,
        so its errors name ``--number`` rather than a Python argument)."""
        self = cls.__new__(cls)
        self._setup(_backend(settings.backend), settings, progress)
        return self

    def _setup(self, backend: Backend, settings: Settings, progress: Progress | TextIO | None) -> None:
        self.backend = backend
        self.settings = settings
        self.progress = _sink(progress)

    def __repr__(self) -> str:
        return f"Cluster({self.backend.name!r}, cluster={self.name!r})"

    @property
    def name(self) -> str:
        """The cluster's name (its nodes carry the tag ``ess:cluster=<name>``)."""
        return self.settings.cluster

    # -- lifecycle ---------------------------------------------------------------------
    @_warnings_to_sink
    def create(
        self,
        count: int | None = None,
        *,
        min_count: int | None = None,
        verify: bool = True,
        keep_on_failure: bool = False,
        confirm: Callable[[LaunchRequest], None] | None = None,
    ) -> CreateResult:
        """Launch ``count`` nodes (default: the ``instance_count`` setting), wait until they
        run, verify them over SSH (unless ``verify=False``) and return them.

        All or nothing: a failure after the launch terminates what this call launched and
        raises, unless ``keep_on_failure``. With ``min_count``, nodes that fail
        verification are terminated and the rest kept if at least ``min_count`` passed:
        the result then lists them in ``dropped``. Once the new nodes passed, they are kept:
        a Ctrl-C or SIGTERM after that point is held until this call returns them.

        ``confirm(request)`` is called after every check passed and before anything is
        launched; raising there (the CLI's "Launch 2 x m3.medium?" prompt) launches nothing.
        """
        from . import provision

        settings = self.settings
        if count is not None:
            settings = self._with_count(count)
        total = self.backend.requested_count(settings)
        if min_count is not None:
            _whole_number("min_count", min_count, least=1, most=total)
        request = provision.prepare(self.backend, settings, total, min_count, verify=verify)
        request = provision.grow(self.backend, settings, request)  # on a cluster with nodes: adds to it
        if confirm is not None:
            confirm(request)

        def grown(_: CreateResult) -> None:
            # The older nodes learn the grown intended size too. Run by provision.create once
            # the new nodes passed, with Ctrl-C and SIGTERM held: a signal during this retag
            # no longer loses the result of a create that succeeded (the caller shows it).
            if request.existing:
                provision.record_size(
                    self.backend, settings, list(request.existing), int(request.tags[TAG_SIZE]), self.progress
                )

        return provision.create(
            self.backend,
            settings,
            request,
            self.progress,
            verify=verify,
            keep_on_failure=keep_on_failure,
            afterwards=grown,
        )

    @_warnings_to_sink
    def heal(
        self, *, verify: bool = True, confirm: Callable[[LaunchRequest, Census], None] | None = None
    ) -> HealResult:
        """Bring the cluster back to the size it was created with (the ``ess:size`` its nodes
        carry): launch the missing count with the cluster's settings, wait, verify, then
        terminate the lost nodes they replace. A failure or Ctrl-C terminates the new nodes
        only. ``result.created`` is None when nothing was missing (``result.before`` says
        how whole it was). ``confirm(request, census)`` is called before anything is
        launched; raising there launches nothing.
        """
        from . import provision

        return provision.heal(self.backend, self.settings, self.progress, verify=verify, confirm=confirm)

    @_warnings_to_sink
    def nodes(self) -> list[Node]:
        """The cluster's nodes now, in every state but terminated."""
        from . import provision

        return provision.select(self.backend, self.settings, ["all"])

    @_warnings_to_sink
    def verify(self, *, check: bool = False) -> VerifyResult:
        """Run every health check (the SSH plugin's) on the cluster's running nodes.

        Failed checks are data: see ``result.ok`` and ``result.failed``. With
        ``check=True`` they raise instead, as the CLI's exit code does:
        :class:`~ess.errors.PartialFailure` if some nodes passed, ``EssError`` if none did.
        No running node at all raises :class:`~ess.errors.EssError`.
        """
        from . import provision

        nodes, checks = provision.verify(self.backend, self.settings, self.progress)
        if check:
            provision.verdict(checks)
        return VerifyResult(nodes=nodes, checks=checks)

    @_warnings_to_sink
    def stop(self, ids: Ids = "all", *, confirm: Confirm | None = None) -> list[Node]:
        """Stop the cluster's running nodes (or those named); return them as they are now.

        ``confirm(nodes)`` sees the nodes about to stop first; raising there stops none."""
        return self._power("stop", ids, confirm)

    @_warnings_to_sink
    def start(self, ids: Ids = "all") -> list[Node]:
        """Start the cluster's stopped nodes (or those named); return them as they are now."""
        return self._power("start", ids, None)

    @_warnings_to_sink
    def terminate(
        self, ids: Ids = "all", *, include_adopted: bool = False, confirm: Confirm | None = None
    ) -> list[Node]:
        """Terminate every node of the cluster, or the ids named; return the terminated nodes.

        Only nodes carrying this cluster's tag are ever touched; with ``"all"``, machines
        adopted with ``ess instance <backend> add`` are kept unless ``include_adopted``.
        No confirmation is asked: the caller decides, or passes ``confirm(nodes)``, called
        with the nodes about to go before any is touched (raising there terminates none).
        Nodes named by id go on purpose: the survivors record the smaller intended size,
        so :meth:`heal` does not bring them back.
        """
        from . import provision

        targets = _targets(ids)
        current = self.backend.nodes(self.settings)
        named = targets != ["all"]
        nodes, kept = provision.terminate_targets(
            provision.select_from(current, self.backend, self.settings, targets), not named, include_adopted
        )
        if kept:
            warn(
                f"keeping {len(kept)} adopted node(s) ess did not launch: "
                f"{some(n.id for n in kept)} (include_adopted=True terminates them too)",
                self.progress,
            )
        if nodes and confirm is not None:
            confirm(nodes)
        # Named nodes go on purpose: the cluster's intended size shrinks with them (heal).
        provision.terminate(self.backend, self.settings, nodes, self.progress, before=current if named else None)
        return nodes

    @_warnings_to_sink
    def purge(self) -> list[str]:
        """Delete what ess created for the cluster (ec2: its security group and key pair);
        call it after ``terminate()``. Returns what went. NotSupported if nothing can be."""
        self._require("purge", "has nothing to purge")
        purged = self.backend.purge(self.settings, self.progress)
        self.progress.finish()
        return purged

    @_warnings_to_sink
    def extend(self, ttl: str, ids: Ids = "all") -> Extended:
        """Move the deadline of the cluster's nodes (all, or ``ids``) to now + ``ttl`` ("4h"),
        as ``extend --ttl`` does (docs/lifetime.md). ``result.on_node`` has a failed result
        for each node whose own copy of the deadline (ec2, over SSH) did not move."""
        from .deadlines import extend
        from .settings import coerce

        where = f"extend(ttl={ttl!r})"
        spec = self.settings.specs["max_lifetime"]
        settings = _relabelled(self.settings, {"max_lifetime": where}, {"max_lifetime": coerce(spec, ttl, where)})
        targets = _targets(ids)
        return extend(self.backend, settings, [] if targets == ["all"] else targets, self.progress)

    @_warnings_to_sink
    def add(self, ids: Sequence[str], *, confirm: Confirm | None = None) -> list[Node]:
        """Adopt existing machines (ec2 instance ids) into the cluster by tagging them; nothing
        restarts. Returns them. ``confirm(nodes)`` sees them first; raising adopts none."""
        from . import provision

        self._require("adopt", "cannot adopt existing machines")
        wanted = _node_ids(ids, "add")
        nodes = self.backend.adoptable(self.settings, wanted)
        if confirm is not None:
            confirm(nodes)
        provision.adopt(self.backend, self.settings, nodes, self.progress)
        return nodes

    @_warnings_to_sink
    def remove(self, ids: Sequence[str], *, confirm: Confirm | None = None) -> list[Node]:
        """Release nodes from the cluster without stopping them (ess's tags go); returns them.

        They leave on purpose: the survivors record the smaller intended size, so
        :meth:`heal` does not replace them."""
        from . import provision

        self._require("release", "cannot release nodes")
        current = self.backend.nodes(self.settings)
        nodes = provision.select_from(current, self.backend, self.settings, _node_ids(ids, "remove"))
        if confirm is not None:
            confirm(nodes)
        provision.release(self.backend, self.settings, nodes, self.progress)
        provision.shrink(self.backend, self.settings, current, nodes, self.progress)
        return nodes

    # -- remote execution ----------------------------------------------------------------
    @_warnings_to_sink
    def exec(
        self,
        command: str | Sequence[str],
        *,
        check: bool = False,
        output: Callable[[str, str, bytes], None] | None = None,
    ) -> list[CommandResult]:
        """Run a shell command on every running node in parallel; one result per node.

        ``command`` is a shell command line, or a list of words quoted for you. A node where
        the command failed (or a lost node, see :attr:`~ess.models.Node.lost`) is a result
        with ``ok`` False; ``check=True`` raises instead (:class:`~ess.errors.PartialFailure`
        if some nodes succeeded). ``output(node_id, stream, chunk)`` receives each chunk of
        bytes as a node prints it (``stream`` is "stdout" or "stderr"), from any thread; the
        results keep a bounded tail of each stream (``truncated`` says when more was printed).
        """
        from .remote import run_command, verdict

        self._require("access", "has no SSH access to its nodes", "exec")
        line = command if isinstance(command, str) else shlex.join(command)
        if not line.strip():
            raise UsageError("exec: the command is empty (give a shell command line)")
        results = run_command(self.backend, self.settings, line, self.progress, output=output)
        self.progress.finish()
        if check:
            verdict(results, "command")
        return results

    @_warnings_to_sink
    def push(self, source: str | os.PathLike[str], dest: str = ".", *, check: bool = False) -> list[CommandResult]:
        """Copy a file or folder into the folder ``dest`` on every running node (created if
        missing; relative to the home folder); one result per node, as for :meth:`exec`."""
        from .remote import push_files, verdict

        self._require("access", "has no SSH access to its nodes", "push")
        path = Path(source).expanduser()
        if not path.exists():
            raise UsageError(f"push {source}: no such file or folder (check the path)")
        if not (path.is_file() or path.is_dir()):
            raise UsageError(f"push {source}: not a regular file or folder")
        results = push_files(self.backend, self.settings, path, dest, self.progress)
        self.progress.finish()
        if check:
            verdict(results, "push")
        return results

    # -- internals -----------------------------------------------------------------------
    def _with_count(self, count: int) -> Settings:
        """The settings with ``instance_count`` replaced, bounds checked as the option's are."""
        spec = self.settings.specs.get("instance_count")
        if spec is None:
            raise UsageError(
                f"count: backend {self.backend.name} takes no count (its settings decide how "
                "many nodes it makes; call create() without one)"
            )
        least = 1 if spec.minimum is None else int(spec.minimum)
        most = None if spec.maximum is None else int(spec.maximum)
        _whole_number("count", count, least=least, most=most)
        return _relabelled(self.settings, {"instance_count": f"create(count={count})"}, {"instance_count": count})

    def _require(self, operation: str, cannot: str, verb: str | None = None) -> None:
        """NotSupported before anything is listed or changed, when the backend lacks ``operation``."""
        if not self.backend.supports(operation):
            raise NotSupported(f"{verb or operation}: backend {self.backend.name} {cannot}")

    def _power(self, verb: str, ids: Ids, confirm: Confirm | None) -> list[Node]:
        from . import provision

        self._require(verb, f"cannot {verb} nodes")
        nodes = provision.select(self.backend, self.settings, _targets(ids))
        todo = provision.power_targets(nodes, verb)  # the CLI's stop/start choose the same way
        if todo and confirm is not None:
            confirm(todo)
        provision.power(self.backend, self.settings, todo, verb, self.progress)
        chosen = {n.id for n in nodes}
        return [n for n in provision.select(self.backend, self.settings, ["all"]) if n.id in chosen]


def _backend(name: str) -> Backend:
    from .plugins import backends

    found = backends()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UsageError(f"backend {name!r}: not installed (installed: {known}; `ess plugins` lists them)")
    return found[name]


def _check_overrides(backend: Backend, overrides: Mapping[str, Any]) -> None:
    """Each keyword must name a setting and hold a valid value; say which one is wrong."""
    from .settings import coerce, did_you_mean, specs_for

    specs = specs_for(backend.settings)
    for key, value in overrides.items():
        if key not in specs:
            hint = did_you_mean(key, specs)
            if hint.startswith(" (remove"):
                hint = " (`ess config show` lists the known keys)"
            raise UsageError(f"Cluster({key}=...): not a setting of backend {backend.name}{hint}")
        if value is not None:
            coerce(specs[key], value, f"Cluster({key}=...)")


def _relabelled(settings: Settings, sources: Mapping[str, str], values: Mapping[str, Any] | None = None) -> Settings:
    """A copy of ``settings`` whose ``sources`` keys name the Python argument they came from,
    so an error names ``Cluster(instance_type=...)`` rather than the CLI's ``--type``."""
    from .models import Value

    changed = dict(settings.values)
    for key, source in sources.items():
        value = (values or {}).get(key, changed[key].value)
        changed[key] = Value(value, source)
    return dataclasses.replace(settings, values=changed)


def _whole_number(name: str, value: Any, *, least: int, most: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name}: {value!r} is not a whole number (pass an int such as 3)")
    if value < least or (most is not None and value > most):
        bounds = f"between {least} and {most}" if most is not None else f"at least {least}"
        raise UsageError(f"{name}: {value} is out of range (it must be {bounds}); nothing was launched")


def _node_ids(ids: Sequence[str], verb: str) -> list[str]:
    """Explicit node ids, never "all" (adopting or releasing everything by accident)."""
    wanted = [ids] if isinstance(ids, str) else list(ids)
    if not wanted or not all(isinstance(i, str) and i for i in wanted) or "all" in wanted:
        raise UsageError(f"{verb}: name node ids ({ids!r} is not a list of ids; 'all' is not accepted here)")
    return list(dict.fromkeys(wanted))


def _targets(ids: Ids) -> list[str]:
    if isinstance(ids, str):
        return [ids]
    targets = list(ids)
    if not targets or not all(isinstance(i, str) and i for i in targets):
        raise UsageError(f"ids: {ids!r} is not 'all' or a list of node ids")
    if "all" in targets and len(targets) > 1:
        raise UsageError("ids: give either 'all' or node ids, not both")
    return targets
