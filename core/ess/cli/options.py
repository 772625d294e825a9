"""The options every command shares, and where one invocation keeps them.

``--config``, ``--json`` and ``--debug`` are accepted before or after any subcommand
(``ess --json instance local list`` and ``ess instance local list --json``), so each command
declares them (:func:`common_options`) and every level writes what it was given into one
:class:`Invocation` held by the root click context. Nothing here is global: two runs in one
process (the test suite does thousands) never see each other's options.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from ..log import configure as configure_logging  # re-exported: the CLI's logging is ess.log's
from ..progress import Progress

if TYPE_CHECKING:  # ``ess --help`` does not import the backend or settings modules
    from ..backend import Backend
    from ..models import Settings

EXIT_CODES_HELP = (
    "Exit codes: 0 success, 1 failure (or a declined prompt), 2 bad input (nothing was done), "
    "3 partial success, 130 interrupted."
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass
class Invocation:
    """The shared options of one ``ess ...`` run, whichever level they were given at."""

    config: str | None = None
    debug: bool = False
    json: bool = False
    #: Where this run's progress lines and warnings go (stderr; results go to stdout). One
    #: object for the run, so a warning never tears the progress line being redrawn.
    progress: Progress = field(default_factory=lambda: Progress(sys.stderr))


def invocation(ctx: click.Context | None = None) -> Invocation:
    """This run's :class:`Invocation`: the root context's ``obj`` (made on first use, so a
    context built without ``obj=``, as tests and help walkers do, works too)."""
    root = (ctx or click.get_current_context()).find_root()
    if not isinstance(root.obj, Invocation):
        root.obj = Invocation()
    return root.obj


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        # A flag left out at this level must not undo the same flag given at another level.
        if value not in (None, False):
            setattr(invocation(ctx), name, value)
            if name == "debug":
                configure_logging(debug=True)
        return value

    return callback


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config/--debug/--json on every command, so they work in either position."""
    func = click.option(
        "--json",
        "json_",
        is_flag=True,
        default=False,
        expose_value=False,
        callback=_remember("json"),
        help="Print results as JSON.",
    )(func)
    func = click.option(
        "--debug",
        is_flag=True,
        default=False,
        expose_value=False,
        callback=_remember("debug"),
        help="Log details to stderr and show tracebacks (secrets stay masked).",
    )(func)
    func = click.option(
        "--config",
        metavar="PATH",
        default=None,
        expose_value=False,
        callback=_remember("config"),
        help="Config file (default: $ESS_CONFIG, ./instance.conf, ./instance.toml, then the user config folder).",
    )(func)
    return func


class WholeNumber(click.ParamType):
    """An int option whose error names the flag and an example (``--min 3``)."""

    name = "N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            flag = param.opts[0] if param is not None and param.opts else "the option"
            self.fail(f"{value!r} is not a whole number (try {flag} 3)", param, ctx)


# -- settings on the command line --------------------------------------------------------
def setting_options(backend: Backend, command: str) -> Decorator:
    """click options for the settings whose ``flag`` applies to ``command``.

    Each becomes a ``setting__<key>`` parameter; :func:`load_settings` reads them back.
    """
    from ..settings import specs_for

    # (flag, spec) pairs: a spec without a flag has no option, and the pair keeps the type narrow.
    flagged = [
        (s.flag, s)
        for s in specs_for(backend.settings).values()
        if s.flag and (command in s.commands or "*" in s.commands)
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for flag, spec in reversed(flagged):
            shown = spec.default_help or spec.default
            default = f" [default: {shown}]" if shown not in (None, "", []) else ""
            if spec.type == "bool":
                func = click.option(flag, f"setting__{spec.key}", is_flag=True, default=None, help=spec.help)(func)
            else:
                metavar = {"int": "N", "float": "SECONDS" if "timeout" in spec.key else "X"}.get(spec.type, "VALUE")
                func = click.option(
                    flag, f"setting__{spec.key}", default=None, metavar=metavar, help=spec.help + default
                )(func)
        return func

    return decorate


def setting_values(flags: dict[str, Any]) -> dict[str, Any]:
    """Settings given on the command line: ``setting__<key>`` parameters that were used."""
    return {
        name[len("setting__") :]: value
        for name, value in flags.items()
        if name.startswith("setting__") and value not in (None, False)
    }


def load_settings(backend: Backend, flags: dict[str, Any]) -> Settings:
    """The backend's settings: this run's --config file, the environment, then ``flags``."""
    from ..settings import find_config
    from ..settings import load_settings as resolve

    path, _ = find_config(invocation().config, os.environ)
    return resolve(backend, path, cli=setting_values(flags))


def progress() -> Progress:
    """Where a command's stage lines and warnings go: this run's stderr progress."""
    return invocation().progress
