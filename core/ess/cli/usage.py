"""click's usage errors in ess's one-line shape: ``--number: 'abc' is not ... (try ...)``."""

from __future__ import annotations

import shlex

import click

from .groups import NoSuchCommand


def format_usage_error(exc: click.UsageError, argv: list[str] | None = None) -> str:
    """click's usage errors in ess's one-line shape: ``--number: 'abc' is not ... (try ...)``."""
    command = exc.ctx.command_path if exc.ctx else "ess"
    see = f"(see `{command} --help`)"
    if isinstance(exc, NoSuchCommand):
        hint = f" (did you mean {exc.close[0]}?)" if exc.close else f" {see}"
        return f"{exc.name}: no such command for `{command}`{hint}"
    if isinstance(exc, click.NoSuchOption):
        close = sorted(exc.possibilities or [])
        hint = f" (did you mean {close[0]}?)" if close else f" {see}"
        passthrough = _passthrough_argument(exc.ctx)
        if not close and passthrough is not None:
            # `exec uname -a`: the option was meant for the remote command, not for ess.
            hint = f" (to pass it to the command, put the command after `--`: `{_with_dashes(command, argv)}`)"
        return f"{exc.option_name}: no such option for `{command}`{hint}"
    if isinstance(exc, click.MissingParameter) and exc.param is not None:
        name = exc.param.opts[0] if isinstance(exc.param, click.Option) else exc.param.human_readable_name
        what = "option" if isinstance(exc.param, click.Option) else "argument"
        return f"{name}: missing {what} {see}"
    if isinstance(exc, click.BadParameter) and exc.param is not None:
        name = exc.param.opts[0] if isinstance(exc.param, click.Option) else exc.param.human_readable_name
        message = exc.message
        if "(try" not in message:
            message = f"{message} {see}"
        return f"{name}: {message}"
    return f"{command}: {exc.format_message()} {see}"


def _with_dashes(command: str, argv: list[str] | None) -> str:
    """``ess instance local exec uname -a`` rewritten as ``... exec -- uname -a``."""
    name = command.split()[-1]
    words = list(argv or [])
    if name not in words:
        return f"{command} -- ..."
    rest = words[len(words) - words[::-1].index(name) :]
    return f"{command} -- {shlex.join(rest)}" if rest else f"{command} -- ..."


def _passthrough_argument(ctx: click.Context | None) -> click.Argument | None:
    """The command's argument that takes a whole command line after ``--`` (``exec``), if any."""
    if ctx is None:
        return None
    for param in ctx.command.params:
        if isinstance(param, click.Argument) and param.nargs == -1 and (param.metavar or "").startswith("--"):
            return param
    return None
