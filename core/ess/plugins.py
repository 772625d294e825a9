"""The plugin manager: discovery through entry points, one plugin at a time.

Built-in plugins (ec2, ssh, local, the config loaders) register through the same ``ess``
entry-point group as third-party ones. A plugin that fails to import, or implements a
misspelled hook, becomes one warning and a row in ``ess plugins``; the rest keeps working.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from . import hookspecs
from .files import atomic_write

if TYPE_CHECKING:
    from .backend import Backend

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
        pm = pluggy.PluginManager("ess")
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
        _load_errors.append(LoadError(name, f"rejected: {exc}"))
        return "rejected"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        _load_errors.append(LoadError(name, f"rejected: {exc}"))
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
    """Every registered backend by name; a duplicate name is a load error, first one kept."""
    found: dict[str, Backend] = {}
    for plugin_name, provided in _backends_by_plugin().items():
        for backend in provided:
            if backend.name in found:
                _record(LoadError(plugin_name, f"backend name {backend.name!r} is taken"))
                continue
            found[backend.name] = backend
    return found


def _backends_by_plugin() -> dict[str, list[Backend]]:
    """What each plugin's ``ess_backends`` returns, in pluggy's call order (last registered first).

    Each plugin is asked through its own pluggy subset caller (not by calling the function
    directly), so hook tracing, call monitoring and ``--debug`` see every call, and one
    plugin that raises costs only its own backends (a load error), not everyone's.
    """
    pm = get_plugin_manager()
    impls = pm.hook.ess_backends.get_hookimpls()
    results: dict[str, list[Backend]] = {}
    for impl in reversed(impls):  # get_hookimpls lists the call order backwards
        others = [other.plugin for other in impls if other.plugin is not impl.plugin]
        caller = pm.subset_hook_caller("ess_backends", remove_plugins=others)
        try:
            answers = caller()
        except Exception as exc:
            _record(LoadError(impl.plugin_name, f"ess_backends failed: {type(exc).__name__}: {exc}"))
            results[impl.plugin_name] = []
            continue
        results[impl.plugin_name] = [backend for answer in answers for backend in (answer or [])]
    return results


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
    owners = {name: [backend.name for backend in provided] for name, provided in _backends_by_plugin().items()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        infos.append(PluginInfo(name, _version(_dists.get(name)), module, tuple(hooks), tuple(owners.get(name, []))))
    return sorted(infos, key=lambda info: info.name)
