"""``backend_command``: how a plugin adds its own subcommands under ``ess instance <backend>``.

A backend returns click commands from :meth:`ess.backend.Backend.commands`; built with
this helper they take ``--config``, ``--json``, ``--debug`` and the backend's setting
flags like every built-in command, and receive the settings already resolved::

    from ess.cli import BackendCall, backend_command

    def commands(self):
        @backend_command(self, "quota")
        @click.option("--all", "show_all", is_flag=True, help="Every region.")
        def quota(call: BackendCall, show_all: bool) -> None:
            \"\"\"Show the account's instance quota.\"\"\"
            rows = my_quota(call.settings, show_all)
            if call.out.json:
                call.out.emit_json(rows)
            else:
                call.out.table(rows, ["region", "limit"])
        return [quota]

docs/plugins.md ("Adding commands") is the reference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from .groups import SuggestingGroup
from .options import EXIT_CODES_HELP, common_options, invocation, load_settings, setting_options

if TYPE_CHECKING:
    from ..backend import Backend
    from ..models import Settings
    from ..output import Output


@dataclass(frozen=True)
class BackendCall:
    """What a plugin's command receives first: its backend, the resolved settings
    (config file, environment and flags, validated) and how to present the result."""

    backend: Backend
    settings: Settings
    out: Output


def backend_command(
    backend: Backend, name: str, *, settings_of: str | None = None, **command: Any
) -> Callable[[Callable[..., None]], click.Command]:
    """Decorate ``func(call: BackendCall, **params)`` into the click command ``name``.

    Stack ``@click.option``/``@click.argument`` below it, as with ``@click.command``; the
    docstring is the help (or pass ``help=``; any other keyword goes to ``click.Command``).
    The command takes the setting flags declared for ``settings_of`` (default: ``name``)
    in :attr:`SettingSpec.commands <ess.models.SettingSpec.commands>`, and those for ``"*"``.
    Raise :mod:`ess.errors` for failures: the CLI turns them into one line and an exit code.
    """
    command.setdefault("epilog", EXIT_CODES_HELP)

    def decorate(func: Callable[..., None]) -> click.Command:
        @functools.wraps(func)  # carries func's click parameters and docstring
        def run(**params: Any) -> None:
            from ..output import Output

            flags = {k: params.pop(k) for k in list(params) if k.startswith("setting__")}
            call = BackendCall(backend, load_settings(backend, flags), Output(json=invocation().json))
            func(call, **params)

        # Our own copy: the options added below must not land on ``func``'s list.
        run.__click_params__ = list(getattr(func, "__click_params__", []))  # type: ignore[attr-defined]
        decorated = common_options(setting_options(backend, settings_of or name)(run))
        return click.command(name, **command)(decorated)

    return decorate


def backend_group(name: str, *commands: click.Command, help: str | None = None) -> click.Group:
    """A group of a plugin's commands (``ess instance ec2 security-group ...``) that takes
    ``--config``/``--json``/``--debug`` at its own level too and answers a typo with the
    closest command, like every group of ess."""

    @click.group(name, cls=SuggestingGroup, help=help)
    @common_options
    def group() -> None:
        pass

    for command in commands:
        group.add_command(command)
    return group
