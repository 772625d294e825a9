"""The plugin manager: discovery through entry points, one plugin at a time.

Built-in plugins (ec2, ssh, local, the config loaders) register through the same ``ess``
entry-point group as third-party ones. A plugin that fails to import, or implements a
misspelled hook, becomes one warning and a row in ``ess plugins``; the rest keeps working.
So does a plugin whose hook raises or answers in the wrong shape while ess builds its
commands and settings; at run time the same bug is one error line naming the plugin
(:class:`PluginFailed`), never an "internal error" of ess (see "What a plugin's answer must be").
``ESS_PLUGINS=mod1,mod2`` loads extra modules by import path (handy while developing a
plugin before it is packaged, and in tests); ``ESS_DISABLE_PLUGINS=name1,name2`` skips
installed plugins by entry-point name (to work around a broken one).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import EssError
from .files import atomic_write

if TYPE_CHECKING:  # imported where used: `ess --help` loads this module, not the models
    from .backend import Backend
    from .models import Node

ENTRY_POINT_GROUP = "ess"
#: The distribution whose entry points are the built-in plugins (registered first).
BUILTIN_DISTRIBUTION = "ess"


@dataclass(frozen=True)
class LoadError:
    """A plugin that could not be loaded, and why (one line)."""

    name: str
    error: str


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    module: str
    hooks: tuple[str, ...]
    backends: tuple[str, ...]


log = logging.getLogger(__name__)

_manager: pluggy.PluginManager | None = None
_load_errors: list[LoadError] = []
_dists: dict[str, str] = {}
#: Entry-point names of installed plugins that are not loaded (disabled, or failed to load).
_unloaded: set[str] = set()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading plugins on first use."""
    global _manager
    if _manager is None:
        pm = GuardedManager("ess")
        pm.add_hookspecs(hookspecs)
        for name in _names("ESS_DISABLE_PLUGINS"):
            pm.set_blocked(name)
        _load_errors.clear()
        _load_entry_points(pm)
        for module_name in _names("ESS_PLUGINS"):
            _register(
                pm,
                module_name,
                functools.partial(importlib.import_module, module_name),
                source=f"ESS_PLUGINS module {module_name}",
            )
        _manager = pm
    # Debug logging turned on since the last call (the CLI parses --debug after loading the
    # plugins; a library user may call logging.basicConfig): trace from now on. One cached
    # level check per call; the monitoring itself stays off in a normal run.
    if _tracing.undo is None and log.isEnabledFor(logging.DEBUG):
        trace_hook_calls(True)
    return _manager


def _names(variable: str) -> list[str]:
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing ESS_PLUGINS)."""
    global _manager
    _manager = None
    _dists.clear()
    _unloaded.clear()
    _unlogged_loads.clear()
    _tracing.undo = None


def load_errors() -> list[LoadError]:
    get_plugin_manager()
    return list(_load_errors)


#: Who hears of a load error the moment it is found (see :func:`reporting_load_errors`).
_reporter: Callable[[LoadError], None] | None = None


@contextmanager
def reporting_load_errors(report: Callable[[LoadError], None]) -> Iterator[None]:
    """``report`` every load error known now, then each one found inside, once each.

    Most are found at start-up (a plugin that fails to import), but a plugin's backends,
    settings and commands are asked for only when a command needs them: a broken answer
    there is found mid-command, and must be told as well (the CLI warns on stderr).
    """
    global _reporter
    previous, _reporter = _reporter, report
    try:
        for error in load_errors():
            report(error)
        yield
    finally:
        _reporter = previous


def record_load_error(plugin: str, error: str) -> None:
    """A plugin's contribution refused while ess builds itself: a row in ``ess plugins``
    and one warning (the CLI refuses a command that would replace another this way)."""
    _record(LoadError(plugin, error))


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    rows, clashes = ordered_entry_points(_entry_points())
    _load_errors.extend(clashes)
    for clash in clashes:
        _log_load(f"plugin {clash.name}: {clash.error}")
    for name, value, dist in rows:
        if pm.is_blocked(name):
            _unloaded.add(name)
            _log_load(f"plugin {name}: disabled by ESS_DISABLE_PLUGINS (entry point {value})")
            continue
        _dists[name] = dist
        _register(
            pm,
            name,
            functools.partial(_load, value),
            source=f"entry point {name} = {value} ({dist or 'unknown package'})",
        )
        if pm.get_plugin(name) is None:
            _unloaded.add(name)


def _load(value: str) -> object:
    """Import an entry point's object: ``module`` or ``module:attribute``."""
    module_name, _, attribute = value.partition(":")
    target: object = importlib.import_module(module_name.strip())
    for part in filter(None, attribute.strip().split(".")):
        target = getattr(target, part)
    return target


Row = tuple[str, str, str]


def ordered_entry_points(rows: list[Row]) -> tuple[list[Row], list[LoadError]]:
    """The registration order, and the entry points dropped because their name is taken.

    Built-ins (the ``ess`` distribution's own entry points) come first, then third
    parties, each group sorted by entry-point name: pluggy calls the last
    registered first, so this order decides which plugin answers a "first result wins"
    hook, and it must not depend on the order the filesystem lists site-packages in.
    A name used by two distributions keeps the built-in (or the first by distribution
    name) and reports the other as a load error; the same distribution seen twice (an
    editable install plus a build folder on sys.path) is not a clash.
    """
    kept: dict[str, Row] = {}
    clashes: list[LoadError] = []
    for row in sorted(rows, key=lambda row: (not _is_builtin(row[2]), row[0], row[2], row[1])):
        name, _, dist = row
        first = kept.get(name)
        if first is None:
            kept[name] = row
        elif first[2] != dist:
            owner = "the built-in plugin" if _is_builtin(first[2]) else f"{first[2] or 'another package'}"
            clashes.append(
                LoadError(
                    name,
                    f"from {dist or 'an unknown package'} not loaded: the entry-point "
                    f"name is taken by {owner} (rename it in its package)",
                )
            )
    return list(kept.values()), clashes


def _is_builtin(dist: str) -> bool:
    return dist.lower() == BUILTIN_DISTRIBUTION


def _entry_points() -> list[Row]:
    """(name, value, distribution) of every ``ess`` entry point, from a cache when it is fresh.

    Scanning every installed distribution costs ~40 ms (importlib.metadata and the scan),
    a sixth of ``ess --help``. The cache is keyed by the Python version and the mtimes of
    the folders on sys.path: installing, upgrading or removing a package changes its
    site-packages folder, so a stale cache is never used. The cache is advisory: anything
    wrong with it (unreadable, not JSON, the wrong shape) only means "scan again".
    """
    key = _fingerprint()
    cache = _cache_file()
    cached = _read_cache(cache, key)
    if cached is not None:
        return cached
    from importlib.metadata import entry_points

    rows: list[Row] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        row = (ep.name, ep.value, dist.name if dist is not None else "")
        if row not in rows:  # one distribution visible twice on sys.path
            rows.append(row)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, json.dumps({"key": key, "entry_points": rows}), mode=0o644)
    except OSError:
        pass  # a read-only home only costs the scan next time
    return rows


def _read_cache(cache: Path, key: list[object]) -> list[Row] | None:
    """The cached rows if the file is fresh and exactly the shape written, else None."""
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(key)):
        return None
    rows = data.get("entry_points")
    if not isinstance(rows, list):
        return None
    if not all(isinstance(row, list) and len(row) == 3 and all(isinstance(part, str) for part in row) for row in rows):
        return None
    return [(name, value, dist) for name, value, dist in rows]


def _fingerprint() -> list[object]:
    stamps: list[object] = [sys.version, sys.prefix]
    for folder in sys.path:
        try:
            stamps.append([folder, os.stat(folder or ".").st_mtime_ns])
        except OSError:
            stamps.append([folder, None])
    return stamps


def _cache_file() -> Path:
    if os.environ.get("ESS_HOME"):
        base = Path(os.environ["ESS_HOME"]) / "cache"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ess"
    return base / "entry-points.json"


def _register(pm: pluggy.PluginManager, name: str, load: Callable[[], object], source: str) -> None:
    started = time.perf_counter()
    outcome = _try_register(pm, name, load)
    _log_load(f"plugin {name}: {outcome} from {source} in {(time.perf_counter() - started) * 1000:.1f} ms")


def _try_register(pm: pluggy.PluginManager, name: str, load: Callable[[], object]) -> str:
    """Import and register one plugin; what happened, in a word or two (for the debug log)."""
    try:
        plugin = load()
    except Exception as exc:  # a broken third-party plugin must not break ess
        _load_errors.append(LoadError(name, f"failed to import: {type(exc).__name__}: {exc}"))
        return "failed to import"
    if pm.is_registered(plugin) or pm.get_plugin(name) is not None:
        return "already registered"
    try:
        pm.register(plugin, name=name)
    except Exception as exc:
        if pm.get_plugin(name) is not None:  # pluggy keeps the hooks it took before the bad one
            pm.unregister(name=name)
        _load_errors.append(LoadError(name, "rejected: " + " ".join(str(exc).split())))  # one line, as every error
        return "rejected"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        # pluggy says it in three lines; a load error is one line (a warning, a row).
        _load_errors.append(LoadError(name, "rejected: " + " ".join(str(exc).split())))
        return "rejected"
    return "loaded"


# -- debug log: plugin loading and hook calls -------------------------------------------------
#: Plugin-load lines not logged yet. The CLI loads plugins before it has parsed --debug
#: (it warns about broken ones first), so the lines wait here until tracing is turned on.
_unlogged_loads: list[str] = []


def _log_load(line: str) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s", line)
    else:
        _unlogged_loads.append(line)


@dataclass
class _Tracing:
    """Hook-call monitoring state: how to remove it from the manager (None: not installed)."""

    undo: Callable[[], None] | None = None
    #: Loggers of third-party plugin packages opened at DEBUG, to close when tracing stops.
    opened: list[str] = field(default_factory=list)


_tracing = _Tracing()
_call_starts = threading.local()  # a stack per thread: hooks are called from worker threads too


def trace_hook_calls(on: bool) -> None:
    """Log every hook call (name, plugins, duration) at DEBUG, or stop doing so.

    Called by :func:`ess.log.configure`, and by :func:`get_plugin_manager` once it sees debug
    logging on. Off by default: pluggy's monitoring wraps every hook call, which a normal run
    need not pay for. Turning it on also logs the plugin loads that happened before (see
    :data:`_unlogged_loads`), if debug logging is on by then.
    """
    if not on:
        if _tracing.undo is not None:
            _tracing.undo()
            _tracing.undo = None
        for name in _tracing.opened:
            logging.getLogger(name).setLevel(logging.NOTSET)
        _tracing.opened.clear()
        _unlogged_loads.clear()
        return
    if log.isEnabledFor(logging.DEBUG):
        for line in _unlogged_loads:
            log.debug("%s", line)
        _unlogged_loads.clear()
    if _manager is not None and _tracing.undo is None:
        _tracing.undo = _manager.add_hookcall_monitoring(_before_hook, _after_hook)
        _open_plugin_loggers(_manager)


def _open_plugin_loggers(pm: pluggy.PluginManager) -> None:
    """Third-party plugins log under their own package's name: show their DEBUG lines too.

    Only loggers nobody configured (level NOTSET) are opened, and :func:`trace_hook_calls`
    closes them again; the built-ins' loggers are set by :func:`ess.log.configure`.
    """
    for _, plugin in pm.list_name_plugin():
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        package = module.partition(".")[0]
        logger = logging.getLogger(package)
        if package and logger.level == logging.NOTSET:
            logger.setLevel(logging.DEBUG)
            _tracing.opened.append(package)


def _before_hook(hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, object]) -> None:
    stack = getattr(_call_starts, "stack", None)
    if stack is None:
        stack = _call_starts.stack = []
    stack.append(time.perf_counter())


def _after_hook(
    outcome: pluggy.Result[object], hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, object]
) -> None:
    # One line per call, written when it returns. Argument names only: their values
    # (settings, nodes) are large, and what a plugin did with them is in its own lines.
    stack = getattr(_call_starts, "stack", None)
    elapsed = (time.perf_counter() - stack.pop()) * 1000 if stack else 0.0
    plugins = ", ".join(impl.plugin_name for impl in reversed(hook_impls)) or "no plugin"
    ended = "done" if outcome.exception is None else f"raised {type(outcome.exception).__name__}"
    log.debug("hook %s(%s) -> %s: %s in %.1f ms", hook_name, ", ".join(kwargs), plugins, ended, elapsed)


def backends() -> dict[str, Backend]:
    """Every usable backend by name (see :func:`_claims` for who keeps a name)."""
    return {name: backend for name, (_, backend) in _claims().items()}


def backend_plugin(name: str) -> str | None:
    """The name of the plugin that provides backend ``name`` (for error messages)."""
    claim = _claims().get(name)
    return claim[0] if claim else None


def backend_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a backend, or None: it is a command (``ess instance NAME``)
    and a config section, so a lowercase identifier. The contract kit checks the same rule."""
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        return "is not a lowercase identifier (it names a command and a config section)"
    return None


def _claims() -> dict[str, tuple[str, Backend]]:
    """Each backend name with the plugin that holds it, and its backend.

    The first plugin registered keeps a name: built-ins register first, so a third party
    cannot take over ``ess instance local`` (it would be answered by someone else's code).
    The newcomer's backend is not loaded and the newcomer is the load error, naming both.
    """
    held: dict[str, tuple[str, Backend]] = {}
    for plugin, provided in reversed(list(_backends_by_plugin().items())):  # registration order
        for backend in provided:
            problem = backend_name_problem(backend.name)
            if problem is None and backend.name in held:
                problem = f"is taken by plugin {held[backend.name][0]!r}"
            if problem is None:
                held[backend.name] = (plugin, backend)
            else:
                _record(LoadError(plugin, f"backend name {backend.name!r} {problem}; that backend is not loaded"))
    return held


def _backends_by_plugin() -> dict[str, list[Backend]]:
    """What each plugin's ``ess_backends`` returns, in pluggy's call order (last registered first).

    Each plugin is asked on its own (:func:`each_plugin`), so one plugin that raises or
    answers garbage costs only its own backends (a load error, see :class:`GuardedManager`).
    """
    return {plugin: [b for answer in call() for b in (answer or [])] for plugin, call in each_plugin("ess_backends")}


def each_plugin(hook: str) -> list[tuple[str, Callable[..., Any]]]:
    """Every plugin implementing ``hook``, in pluggy's call order, with a caller for it alone.

    For the core to know which plugin did what. Each is a pluggy subset caller, not the
    function itself, so hook tracing, call monitoring and ``--debug`` see every call.
    """
    pm = get_plugin_manager()
    impls = getattr(pm.hook, hook).get_hookimpls()
    callers: list[tuple[str, Callable[..., Any]]] = []
    for impl in reversed(impls):  # get_hookimpls lists the call order backwards
        others = [other.plugin for other in impls if other.plugin is not impl.plugin]
        callers.append((impl.plugin_name, pm.subset_hook_caller(hook, remove_plugins=others)))
    return callers


def unloaded_names() -> set[str]:
    """Entry-point names of installed plugins that are not loaded: disabled or broken.

    A config section named after one of these is not a typo, although no backend reads it
    now (``ESS_DISABLE_PLUGINS=ec2`` with an ``[EC2]`` section in the file).
    """
    get_plugin_manager()
    return set(_unloaded)


def _record(error: LoadError) -> None:
    if error not in _load_errors:
        _load_errors.append(error)
        if _reporter is not None:
            _reporter(error)


def _version(dist: str | None) -> str | None:
    """A distribution's version, read only when shown (parsing METADATA is not free)."""
    if not dist:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def plugin_infos() -> list[PluginInfo]:
    """What ``ess plugins`` shows: every registered plugin with its hooks and backends."""
    pm = get_plugin_manager()
    owners: dict[str, list[str]] = {}
    for backend, (provider, _) in sorted(_claims().items()):
        owners.setdefault(provider, []).append(backend)
    pm.hook.ess_settings()  # only for its load errors: `ess plugins` shows every one
    infos = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        infos.append(PluginInfo(name, _version(_dists.get(name)), module, tuple(hooks), tuple(owners.get(name, []))))
    return sorted(infos, key=lambda info: info.name)


# -- what a plugin's answer must be ----------------------------------------------------------
class PluginFailed(EssError):
    """A plugin's hook raised something other than an ess error, or answered in the wrong shape.

    A bug in that plugin, not in ess and not the user's: the one line names the plugin and
    the hook, so the user knows whom to tell and what ``ESS_DISABLE_PLUGINS`` would skip.
    """

    def __init__(self, plugin: str, hook: str, problem: str) -> None:
        super().__init__(f"plugin {plugin!r} failed in {hook}: {problem}")
        self.plugin, self.hook = plugin, hook


@dataclass(frozen=True)
class _Rule:
    """How ess holds one hook's implementations to the contract in :mod:`ess.hookspecs`."""

    #: Why an answer is unusable (None: it is fine); None: the answer is not used.
    problem: Callable[[object], str | None] | None = None
    #: Called while ess builds its commands and settings: a failure costs the plugin this
    #: hook's contribution (a load error, its answer ignored), not every command of ess.
    loading: bool = False
    #: What a plugin raises on purpose, passed on as it is (UsageError, NotSupported...).
    passes: tuple[type[BaseException], ...] = (EssError,)
    #: The answer is one result per node of the ``nodes`` argument (see :func:`_per_node`).
    per_node: bool = False


def _shape(value: object) -> str:
    if value is None:
        return "None"
    if isinstance(value, type):
        return f"the class {value.__name__} (not an instance of it)"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _model(name: str) -> type:
    """The class ``name`` of ess.models (or ess.backend's Backend), imported on first use."""
    if name == "Backend":
        from .backend import Backend

        return Backend
    from . import models

    return getattr(models, name)


def _list_of(kind_name: str, what: str) -> Callable[[object], str | None]:
    def problem(answer: object) -> str | None:
        kind = _model(kind_name)
        if isinstance(answer, kind):  # the likeliest slip: `return MyCloud()`
            return f"returned one {type(answer).__name__}, not a list (return [{type(answer).__name__}(...)])"
        if not isinstance(answer, (list, tuple)):
            return f"returned {_shape(answer)}, not a list of {what}"
        wrong = next((item for item in answer if not isinstance(item, kind)), answer)
        return None if wrong is answer else f"returned a list holding {_shape(wrong)}, not only {what}"

    return problem


def _sections_problem(answer: object) -> str | None:
    if not isinstance(answer, Mapping):
        return f"returned {_shape(answer)}, not a dict of sections"
    for section, values in answer.items():
        if not isinstance(section, str) or not isinstance(values, Mapping):
            return f"returned section {section!r} as {_shape(values)}, not a dict of settings"
        if not all(isinstance(key, str) for key in values):
            return f"returned a setting name in section {section!r} that is not text"
    return None


_RESULTS = _list_of("CommandResult", "CommandResult objects")
_RULES: dict[str, _Rule] = {
    # A loader that claims a file it cannot parse raises UsageError on purpose.
    "ess_load_config": _Rule(_sections_problem, loading=True),
    "ess_settings": _Rule(_list_of("SettingSpec", "SettingSpec objects"), loading=True, passes=()),
    "ess_backends": _Rule(_list_of("Backend", "Backend objects"), loading=True, passes=()),
    "ess_register_commands": _Rule(loading=True, passes=()),
    "ess_check_nodes": _Rule(_list_of("CheckResult", "CheckResult objects"), per_node=True),
    "ess_run_command": _Rule(_RESULTS, per_node=True),
    "ess_push_files": _Rule(_RESULTS, per_node=True),
}


def answer_problem(hook: str, answer: object) -> str | None:
    """Why ``answer`` (not None) breaks ``hook``'s contract, or None; the contract kit asks too."""
    rule = _RULES.get(hook)
    return rule.problem(answer) if rule is not None and rule.problem is not None else None


class GuardedManager(pluggy.PluginManager):
    """pluggy's manager, with every implementation it registers held to :data:`_RULES`.

    Each hook implementation is wrapped where it is registered, because only there are both
    the plugin and its answer known: whoever calls the hook (settings, provision, remote, a
    test) gets answers that keep the contract, and a broken one is told by the plugin's name.
    """

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        for caller in self.get_hookcallers(plugin) or []:
            if caller.spec is None:
                continue  # not a hook (a typo): check_pending turns it into a load error
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    _guard(caller.name, impl)
        return registered


def _guard(hook: str, impl: pluggy.HookImpl) -> None:
    """Put ``impl`` behind its hook's rule (exceptions, answer shape, one result per node).

    pluggy has no seam for wrapping one implementation (its wrappers see all of them at
    once, so they cannot tell whose answer is whose): the registered ``HookImpl`` gets the
    guarded function in place. Its attributes are plain slots, typed Final only for readers.
    """
    rule = _RULES.get(hook, _Rule())
    function, plugin = impl.function, impl.plugin_name
    # A per-node check needs the nodes asked about (and progress, to warn) even when the
    # plugin does not take them: pluggy passes what argnames lists, the plugin gets its own.
    wanted = ("nodes", "progress") if rule.per_node else ()
    own = len(impl.argnames)
    argnames = (*impl.argnames, *(name for name in wanted if name not in impl.argnames))
    at = {name: argnames.index(name) for name in wanted}

    def guarded(*args: Any) -> Any:
        try:
            answer = function(*args[:own])
        except rule.passes:
            raise
        except Exception as exc:
            return _failed(rule, plugin, hook, f"{type(exc).__name__}: {exc}", exc)
        if answer is None or rule.problem is None:
            return answer
        problem = rule.problem(answer)
        if problem is not None:
            return _failed(rule, plugin, hook, problem, None)
        if rule.per_node:
            return _per_node(plugin, hook, answer, args[at["nodes"]], args[at["progress"]])
        return answer

    setattr(impl, "argnames", argnames)  # noqa: B010 - Final in pluggy's types, see above
    setattr(impl, "function", guarded)  # noqa: B010


def _failed(rule: _Rule, plugin: str, hook: str, problem: str, cause: Exception | None) -> None:
    if rule.loading:
        _record(LoadError(plugin, f"failed in {hook}: {problem} (ignored)"))
        return None
    raise PluginFailed(plugin, hook, problem) from cause


def _per_node(plugin: str, hook: str, answer: Any, nodes: Sequence[Node], progress: object) -> list[Any]:
    """``answer`` with one result at least for every node asked about, and none for another.

    A node the plugin left out is a failure naming the plugin (``exec`` must not report
    success for a node where nothing ran); a node it was not asked about is dropped with a
    warning (a verdict must not count a stranger).
    """
    from .models import CheckResult, CommandResult
    from .progress import Progress

    asked = {node.id for node in nodes}
    strangers = list(dict.fromkeys(r.node_id for r in answer if r.node_id not in asked))
    answered = {r.node_id for r in answer} & asked
    if not strangers and len(answered) == len(asked):
        return list(answer)
    if strangers and isinstance(progress, Progress):
        shown = ", ".join(map(str, strangers[:5])) + (f" and {len(strangers) - 5} more" if len(strangers) > 5 else "")
        progress.note(f"ess: warning: plugin {plugin!r} answered {hook} for node(s) not asked about: {shown} (ignored)")
    missing = f"no result from plugin {plugin!r}"
    kept = [r for r in answer if r.node_id in asked]
    left_out = [n for n in nodes if n.id not in answered]
    if hook == "ess_check_nodes":
        return kept + [CheckResult(n.id, plugin, False, missing, attempts=0, address=n.address) for n in left_out]
    return kept + [CommandResult(n.id, None, error=missing) for n in left_out]
