"""The plugin manager: discovery through entry points, one plugin at a time.

Built-in plugins (ec2, ssh, local, the config loaders) register through the same ``ess``
entry-point group as third-party ones. A plugin that fails to import, or implements a
misspelled hook, becomes one warning and a row in ``ess plugins``; the rest keeps working.
``ESS_PLUGINS=mod1,mod2`` loads extra modules by import path (handy while developing a
plugin before it is packaged, and in tests); ``ESS_DISABLE_PLUGINS=name1,name2`` skips
installed plugins by entry-point name (to work around a broken one).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from . import hookspecs

if TYPE_CHECKING:
    from .backend import Backend

ENTRY_POINT_GROUP = "ess"


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


_manager: pluggy.PluginManager | None = None
_load_errors: list[LoadError] = []
_dists: dict[str, str] = {}


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
            _register(pm, module_name, lambda m=module_name: importlib.import_module(m))
        _manager = pm
    return _manager


def _names(variable: str) -> list[str]:
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing ESS_PLUGINS)."""
    global _manager
    _manager = None
    _dists.clear()


def load_errors() -> list[LoadError]:
    get_plugin_manager()
    return list(_load_errors)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for name, value, dist in _entry_points():
        if pm.is_blocked(name):
            continue
        _dists[name] = dist
        _register(pm, name, lambda value=value: _load(value))


def _load(value: str) -> object:
    """Import an entry point's object: ``module`` or ``module:attribute``."""
    module_name, _, attribute = value.partition(":")
    target: object = importlib.import_module(module_name.strip())
    for part in filter(None, attribute.strip().split(".")):
        target = getattr(target, part)
    return target


def _entry_points() -> list[tuple[str, str, str]]:
    """(name, value, distribution) of every ``ess`` entry point, from a cache when it is fresh.

    Scanning every installed distribution costs ~40 ms (importlib.metadata and the scan),
    a sixth of ``ess --help``. The cache is keyed by the Python version and the mtimes of
    the folders on sys.path: installing, upgrading or removing a package changes its
    site-packages folder, so a stale cache is never used.
    """
    key = _fingerprint()
    cache = _cache_file()
    try:
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return [tuple(row) for row in data["entry_points"]]  # type: ignore[misc]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from importlib.metadata import entry_points

    seen: dict[str, tuple[str, str, str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # The same distribution can be visible twice (e.g. an editable install plus a
        # build directory on sys.path); keep each entry-point name once.
        dist = getattr(ep, "dist", None)
        seen.setdefault(ep.name, (ep.name, ep.value, dist.name if dist is not None else ""))
    rows = list(seen.values())
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "entry_points": rows}))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs the scan next time
    return rows


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


def _register(pm: pluggy.PluginManager, name: str, load) -> None:
    try:
        plugin = load()
    except Exception as exc:  # a broken third-party plugin must not break ess
        _load_errors.append(LoadError(name, f"failed to import: {type(exc).__name__}: {exc}"))
        return
    if pm.is_registered(plugin) or pm.get_plugin(name) is not None:
        return
    try:
        pm.register(plugin, name=name)
    except Exception as exc:
        _load_errors.append(LoadError(name, f"rejected: {exc}"))
        return
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        _load_errors.append(LoadError(name, f"rejected: {exc}"))


def backends() -> dict[str, Backend]:
    """Every registered backend by name; a duplicate name is a load error, first one kept."""
    pm = get_plugin_manager()
    found: dict[str, Backend] = {}
    for impl in reversed(pm.hook.ess_backends.get_hookimpls()):
        try:
            provided = impl.function() or []
        except Exception as exc:
            _record(LoadError(impl.plugin_name, f"ess_backends failed: {type(exc).__name__}: {exc}"))
            continue
        for backend in provided:
            if backend.name in found:
                _record(LoadError(impl.plugin_name, f"backend name {backend.name!r} is taken"))
                continue
            found[backend.name] = backend
    return found


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
    owners: dict[str, list[str]] = {}
    for impl in pm.hook.ess_backends.get_hookimpls():
        try:
            owners[impl.plugin_name] = [b.name for b in (impl.function() or [])]
        except Exception:
            owners[impl.plugin_name] = []
    infos = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        infos.append(PluginInfo(name, _version(_dists.get(name)), module, tuple(hooks),
                                tuple(owners.get(name, []))))
    return sorted(infos, key=lambda info: info.name)
