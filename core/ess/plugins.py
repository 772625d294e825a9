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
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
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
_versions: dict[str, str | None] = {}


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
    _versions.clear()


def load_errors() -> list[LoadError]:
    get_plugin_manager()
    return list(_load_errors)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    seen: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # The same distribution can be visible twice (e.g. an editable install plus a
        # build directory on sys.path); register each entry-point name once.
        if ep.name in seen:
            continue
        seen.add(ep.name)
        if pm.is_blocked(ep.name):
            continue
        dist = getattr(ep, "dist", None)
        _versions[ep.name] = dist.version if dist is not None else None
        _register(pm, ep.name, ep.load)


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
        infos.append(PluginInfo(name, _versions.get(name), module, tuple(hooks),
                                tuple(owners.get(name, []))))
    return sorted(infos, key=lambda info: info.name)
