"""``ess config show``: every setting ess would use, its value and where it came from."""

from __future__ import annotations

import os
from typing import Any

import click

from ..errors import UsageError
from .groups import SuggestingGroup
from .options import common_options, invocation, setting_values


@click.group("config", cls=SuggestingGroup)
@common_options
def config_group() -> None:
    """Inspect the configuration ess would use.

    \b
    Example:
      ess config show --backend local
    """


def _all_setting_flags() -> list[tuple[str, str]]:
    """(flag, key) for every setting any backend or plugin exposes on the command line."""
    from ..plugins import backends
    from ..settings import specs_for

    pairs: dict[str, str] = {}
    for backend in backends().values():
        for spec in specs_for(backend.settings).values():
            if spec.flag:
                pairs.setdefault(spec.flag, spec.key)
    return sorted(pairs.items())


class ConfigShowCommand(click.Command):
    """Adds every setting flag lazily, so defining the command loads no plugin."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_flags_added", False):
            self._flags_added = True
            for flag, key in _all_setting_flags():
                self.params.append(
                    click.Option([flag, f"setting__{key}"], default=None, metavar="VALUE", help=f"Override {key}.")
                )
        return super().get_params(ctx)


@config_group.command("show", cls=ConfigShowCommand)
@click.option(
    "--backend",
    "backend_name",
    metavar="NAME",
    help="Show this backend's settings (default: those with a section in the file, else all).",
)
@common_options
def config_show(backend_name: str | None, **flags: Any) -> None:
    """Show every setting, its value and where it came from (secrets masked).

    \b
    Example:
      ess config show --config configs/instance.conf --type t3.large
    """
    from ..output import emit, emit_json, table
    from ..plugins import backends
    from ..settings import find_config, find_section, load_settings, read_config, user_config_path

    path, _ = find_config(invocation().config, os.environ)
    sections = read_config(path) if path else {}
    found = backends()
    if backend_name is not None:
        if backend_name not in found:
            raise UsageError(f"--backend: no backend named {backend_name!r} (installed: {', '.join(sorted(found))})")
        names = [backend_name]
    else:
        names = [n for n in sorted(found) if find_section(sections, n)] or sorted(found)
    cli_values = setting_values(flags)
    shown: dict[str, dict[str, Any]] = {}
    for name in names:
        backend = found[name]
        relevant = {k: v for k, v in cli_values.items()}
        settings = load_settings(backend, path, cli=relevant)
        masked = settings.masked()
        shown[name] = {key: {"value": masked[key], "source": settings.source(key)} for key in settings.values}
    user = user_config_path()
    user_file = str(user) if user.is_file() else None
    if invocation().json:
        emit_json({"config": str(path) if path else None, "user_defaults": user_file, "backends": shown})
        return
    emit(f"config file: {path if path else '(none found; defaults apply)'}")
    if user_file:
        emit(f"user defaults: {user_file} [defaults]")
    rows = [(name, key, _show(v["value"]), v["source"]) for name, keys in shown.items() for key, v in keys.items()]
    emit(table(rows, ["backend", "key", "value", "source"]))


def _show(value: Any) -> Any:
    # One number format whatever type a backend declared (ec2's int 600, local's float 600.0).
    if isinstance(value, float):
        return f"{value:g}"
    return ", ".join(value) if isinstance(value, list) else value
