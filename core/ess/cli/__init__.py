"""The ``ess`` command line: parse, confirm, present; the work is in :mod:`ess.api` and the flows.

Backend commands (``ess instance <backend> ...``) are built from the registered backends
and their declared settings, never from a hard-coded list. Results go to stdout, progress
and logs to stderr; every error is one line (``--debug`` adds the traceback).

The package, one concept a module; imports flow one way, from here down:

    ess.cli            the root group, ``instance``, ``plugins``; main() and run()
    ess.cli.options    --config/--json/--debug (held per run in the click context), setting flags
    ess.cli.groups     groups that answer a typo with the closest command
    ess.cli.usage      click's usage errors as ess's one line
    ess.cli.config     ``ess config show``
    ess.cli.clusters   ``ess clusters``: every cluster on every backend
    ess.cli.instance   ``ess instance <backend> ...``: the lifecycle commands
    ess.cli.remote     exec, push, ssh, ssh-config
    ess.cli.extend     backend_command(): how a plugin adds its own backend subcommands

Nothing outside this package imports it (a test walks the imports), except the console
script and plugins using the public helpers re-exported here.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import traceback
from typing import NoReturn, TextIO

import click

from .. import __version__
from ..errors import EssError, Interrupted, UsageError
from ..log import warn, warnings_to
from ..plugins import LoadError, reporting_load_errors
from ..redact import scrub
from .clusters import clusters_command
from .config import config_group
from .extend import BackendCall, backend_command, backend_group
from .groups import SuggestingGroup
from .options import EXIT_CODES_HELP, Invocation, common_options, configure_logging, invocation
from .usage import format_usage_error

__all__ = [
    "EXIT_CODES_HELP",
    "BackendCall",
    "Invocation",
    "backend_command",
    "backend_group",
    "cli",
    "common_options",
    "configure_logging",
    "invocation",
    "main",
    "run",
]


# -- the command tree --------------------------------------------------------------------
class RootGroup(SuggestingGroup):
    """Adds commands that plugins register through ``ess_register_commands``, lazily."""

    #: The plugin manager whose plugins' commands were added, and the commands before that:
    #: in one process (tests, a notebook) the plugins can change between runs.
    _extended_by: object | None = None
    _own: dict[str, click.Command] | None = None

    def _extend(self) -> None:
        from ..plugins import each_plugin, get_plugin_manager, record_load_error

        pm = get_plugin_manager()
        if self._extended_by is pm:
            return
        self._extended_by = pm
        if self._own is None:
            self._own = dict(self.commands)
        self.commands = dict(self._own)
        # One plugin at a time, to know whose commands replaced one already there: a plugin
        # that took over `instance` would answer every backend command with its own code.
        for plugin, register in each_plugin("ess_register_commands"):
            before = dict(self.commands)
            register(cli=self)
            replaced = sorted(name for name, command in before.items() if self.commands.get(name) is not command)
            if replaced:
                self.commands = before
                record_load_error(
                    plugin,
                    f"failed in ess_register_commands: it would replace the command {replaced[0]!r} "
                    "(none of its commands were added)",
                )

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._extend()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._extend()
        return super().get_command(ctx, cmd_name)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", prog_name="ess")
@common_options
def cli() -> None:
    """ess: launch, verify and tear down worker clusters for a master node.

    \b
    Try it offline, on this machine:
      ess instance local create --number 3
      ess instance local list
      ess instance local terminate all --yes
    \b
    On AWS, with Essentia's instance.conf in the current folder:
      ess instance ec2 create --number 2 --type m3.medium
      ess instance ec2 terminate all
    """


class InstanceGroup(SuggestingGroup):
    """One subcommand per registered backend."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from ..plugins import backends

        return sorted(backends())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from ..plugins import backends
        from ..settings import did_you_mean

        found = backends()
        if cmd_name not in found:
            hint = did_you_mean(cmd_name, found).replace(" (remove it; `ess config show` lists the known keys)", "")
            raise UsageError(
                f"instance {cmd_name}: no such backend{hint} "
                f"(installed: {', '.join(sorted(found)) or 'none'}; see `ess plugins`)"
            )
        from .instance import backend_group

        return backend_group(found[cmd_name])


@cli.group(cls=InstanceGroup, epilog=EXIT_CODES_HELP)
@common_options
def instance() -> None:
    """Manage a cluster's nodes on one backend (ec2, local, or a plugin's).

    \b
    Example:
      ess instance local create --number 3
    """


@cli.command("plugins")
@common_options
def plugins_command() -> None:
    """List installed plugins, the hooks they implement and the backends they provide.

    \b
    Example:
      ess plugins --json
    """
    from ..hookspecs import ESS_HOOK_API
    from ..output import emit, emit_json, table
    from ..plugins import load_errors, plugin_infos

    infos = plugin_infos()
    errors = load_errors()
    if invocation().json:
        emit_json(
            {
                "hook_api": ESS_HOOK_API,
                "plugins": [
                    {
                        "name": i.name,
                        "version": i.version,
                        "module": i.module,
                        "hooks": list(i.hooks),
                        "backends": list(i.backends),
                    }
                    for i in infos
                ],
                "errors": [{"name": e.name, "error": e.error} for e in errors],
            }
        )
        return
    emit(
        table(
            [(i.name, i.version, ", ".join(i.backends), ", ".join(i.hooks)) for i in infos],
            ["plugin", "version", "backends", "hooks"],
        )
    )
    for error in errors:
        emit(f"load error: {error.name}: {error.error}")


cli.add_command(config_group)
cli.add_command(clusters_command)


# -- entry point -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> NoReturn:
    """The console script: :func:`run`, then end the process at once (:func:`exit_now`)."""
    _reopen_closed_streams()
    exit_now(run(argv))


def _reopen_closed_streams() -> None:
    """A standard stream closed before ess started (``ess list >&-``, a daemon's stdin) is
    None in Python: give it /dev/null, so output is dropped, prompts see no terminal (and
    ask for --yes), and nothing fails on ``None.write``."""
    import os

    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode))  # noqa: SIM115 - lives as long as the process


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` without tearing the interpreter down.

    A normal exit frees every object one by one; after an EC2 command that is botocore's
    service models and the rest of a large heap: about 0.3 s on a quiet core (measured:
    ``python bench/startup.py``), a wait between ess's last API answer and the shell
    prompt. Everything of a normal exit that has an effect outside the process is done
    first: atexit handlers (a plugin's, logging's flush), then stdout and stderr are
    flushed. Not waited for: threads still running (ess's own have finished; a plugin
    must not leave work in a thread past the command). In-process callers use :func:`run`.
    """
    import atexit
    import contextlib
    import os

    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython: what exit would run
    if run_exit_handlers is not None:
        run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        if code == Interrupted.exit_code:
            # Interrupted: a stdout nobody reads (a stalled pipe, a terminal paused with
            # Ctrl-S) must not hold ess, whose workers may be blocked writing to it.
            _flush_within(stream, FLUSH_ON_INTERRUPT)
            continue
        # A reader that went away (| head), or a stream closed: nothing left to deliver.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


#: How long an interrupted ess waits for its output to be taken, in seconds.
FLUSH_ON_INTERRUPT = 1.0


def _flush_within(stream: TextIO, seconds: float) -> None:
    import contextlib
    import threading

    def flush() -> None:
        with contextlib.suppress(OSError, ValueError):
            stream.flush()

    flusher = threading.Thread(target=flush, daemon=True)
    flusher.start()
    flusher.join(seconds)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and map every outcome to one stderr line and an exit code."""
    # This run's options live in the root context's obj, made here so that the error
    # handling below, which runs after click has closed its contexts, still sees --debug.
    options = Invocation()
    configure_logging(debug=False)
    try:
        # The command line is the one that renders warnings (ess.log.warn), on stderr with
        # its progress lines; the Python API stays silent unless given a sink.
        with warnings_to(options.progress), reporting_load_errors(_warn_load_error):
            result = cli.main(args=argv, prog_name="ess", standalone_mode=False, obj=options)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        _fail(options, format_usage_error(exc, sys.argv[1:] if argv is None else argv))
        return 2
    except click.Abort as exc:
        # Ctrl-C (or end of input) at a prompt is an Abort raised "from None"; a "no" answer
        # is ess.errors.Declined (exit 1), so 130 stays the code of an interruption. Anywhere
        # else click turns the KeyboardInterrupt into an Abort "from" it: nothing was asked,
        # and "nothing was changed" would be a guess (commands that know say more: exec, push).
        if exc.__cause__ is not None:
            _fail(options, "interrupted")
            return Interrupted.exit_code
        if sys.stderr.isatty():
            sys.stderr.write("\n")  # the terminal's cursor is still on the prompt line, after ^C
        _fail(options, "interrupted at the prompt; nothing was changed")
        return Interrupted.exit_code
    except EssError as exc:
        _fail(options, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _fail(options, "interrupted")
        return Interrupted.exit_code
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS:
            _fail(options, _internal_error(exc))
            return 1
        # Output that cannot be written: a full disk behind `> file`, a reader gone (| head).
        with contextlib.suppress(OSError, ValueError):
            _fail(options, f"cannot write the output: {exc.strerror}")
        return 1
    except Exception as exc:
        _fail(options, _internal_error(exc))
        return 1
    finally:
        # An in-process caller (a test, a notebook) runs commands one after another: one
        # run's --debug must not leave the next one logging at DEBUG.
        configure_logging(debug=False)


#: errno values of a write that cannot go on, named as such rather than as ess's bug.
_OUTPUT_ERRNOS = (errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _internal_error(exc: BaseException) -> str:
    return (
        f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback, and please report it)"
    )


def _warn_load_error(error: LoadError) -> None:
    warn(f"ess: warning: plugin {error.name!r}: {error.error}")


def _fail(options: Invocation, message: str) -> None:
    if options.debug:
        sys.stderr.write(scrub(traceback.format_exc()))
    line = " ".join(message.split("\n")).strip()
    sys.stderr.write(scrub(f"ess: {line}") + "\n")
