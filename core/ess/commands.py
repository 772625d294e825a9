"""``ess instance <backend> ...``: the per-backend commands, built from the backend's settings.

Each setting that declares a ``flag`` becomes an option on the commands it names, so a
third-party backend gets ``--region``-style options without touching the core.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from .backend import Backend
from .cli import EXIT_CODES_HELP, OPTIONS, WholeNumber, common_options, setting_values
from .errors import PartialFailure, UsageError
from .models import Node, Settings
from .output import emit, emit_json, nodes_json, nodes_table
from .progress import Progress

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def setting_options(backend: Backend, command: str) -> Decorator:
    """click options for the settings whose ``flag`` applies to ``command``."""
    from .settings import specs_for

    specs = [s for s in specs_for(backend.settings).values()
             if s.flag and (command in s.commands or "*" in s.commands)]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for spec in reversed(specs):
            default = f" [default: {spec.default}]" if spec.default not in (None, "", []) else ""
            if spec.type == "bool":
                func = click.option(spec.flag, f"setting__{spec.key}", is_flag=True, default=None,
                                    help=spec.help)(func)
            else:
                metavar = {"int": "N", "float": "SECONDS" if "timeout" in spec.key else "X"}.get(
                    spec.type, "VALUE")
                func = click.option(spec.flag, f"setting__{spec.key}", default=None, metavar=metavar,
                                    help=spec.help + default)(func)
        return func
    return decorate


def load(backend: Backend, flags: dict[str, Any]) -> Settings:
    from .settings import find_config, load_settings

    path, _ = find_config(OPTIONS.config, os.environ)
    return load_settings(backend, path, cli=setting_values(flags))


def progress() -> Progress:
    return Progress(sys.stderr)


def backend_group(backend: Backend) -> click.Group:
    group = click.Group(backend.name, help=f"{backend.description}\n\n\b\nExample:\n"
                        f"  ess instance {backend.name} create --number 2\n"
                        f"  ess instance {backend.name} list", epilog=EXIT_CODES_HELP)
    for make in (create_command, list_command, verify_command, terminate_command):
        group.add_command(make(backend))
    return group


def create_command(backend: Backend) -> click.Command:
    name = backend.name

    @click.command("create", epilog=EXIT_CODES_HELP, help=f"""Launch nodes, wait until they run, verify them.

    All or nothing by default: if anything fails after the launch (or you press Ctrl-C),
    the nodes of this run are terminated unless --keep-on-failure.

    \b
    Examples:
      ess instance {name} create
      ess instance {name} create --number 3 --no-verify
      ess instance {name} create --number 10 --min 8   # keep 8+ good nodes, drop failures
    """)
    @click.option("--min", "min_count", type=WholeNumber(), default=None,
                  help="Accept a partial cluster of at least this many verified nodes (exit code 3).")
    @click.option("--no-verify", is_flag=True, help="Skip the SSH check of the new nodes.")
    @click.option("--keep-on-failure", is_flag=True,
                  help="On failure, keep what was launched (for debugging) instead of terminating it.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @setting_options(backend, "create")
    @common_options
    def create(min_count: int | None, no_verify: bool, keep_on_failure: bool, yes: bool,
               **flags: Any) -> None:
        from . import provision

        settings = load(backend, flags)
        count = int(settings.get("instance_count", 1))
        request = provision.launch_request(settings, count, min_count)
        provision.preflight(backend, settings, request)
        if backend.billable and not yes and sys.stdin.isatty():
            kind = settings.get("instance_type") or "node"
            click.confirm(f"Launch {count} x {kind} for cluster {settings.cluster!r} on {name}?",
                          abort=True, err=True)
        result = provision.create(backend, settings, request, progress(), verify=not no_verify,
                                  keep_on_failure=keep_on_failure)
        checks = None if no_verify else result.checks
        if OPTIONS.json:
            emit_json(nodes_json(name, settings.cluster, result.nodes, checks,
                                 dropped=[n.id for n in result.dropped]))
        else:
            emit(nodes_table(result.nodes, checks))
        if result.dropped:
            raise PartialFailure(f"kept {len(result.nodes)} of {request.count} nodes; dropped "
                                 + ", ".join(n.id for n in result.dropped))
    return create


def list_command(backend: Backend) -> click.Command:
    @click.command("list", help=f"""Show the cluster's nodes (found by their ess:cluster tag).

    \b
    Examples:
      ess instance {backend.name} list
      ess instance {backend.name} list --json | jq -r '.nodes[].address'
    """)
    @setting_options(backend, "list")
    @common_options
    def list_(**flags: Any) -> None:
        settings = load(backend, flags)
        nodes = backend.list(settings)
        if OPTIONS.json:
            emit_json(nodes_json(backend.name, settings.cluster, nodes))
        elif nodes:
            emit(nodes_table(nodes))
        else:
            click.echo(f"cluster {settings.cluster!r} has no nodes on {backend.name}", err=True)
    return list_


def verify_command(backend: Backend) -> click.Command:
    @click.command("verify", epilog=EXIT_CODES_HELP, help=f"""Check every running node over SSH.

    Exit code 0 only if every node passed; 3 if some failed; 1 if all failed.

    \b
    Example:
      ess instance {backend.name} verify --timeout 30
    """)
    @setting_options(backend, "verify")
    @common_options
    def verify(**flags: Any) -> None:
        from . import provision

        settings = load(backend, flags)
        nodes, checks = provision.verify(backend, settings, progress())
        if OPTIONS.json:
            emit_json(nodes_json(backend.name, settings.cluster, nodes, checks))
        else:
            emit(nodes_table(nodes, checks))
        provision.verdict(checks)
    return verify


def terminate_command(backend: Backend) -> click.Command:
    @click.command("terminate", help=f"""Terminate all of the cluster's nodes, or the ones named.

    Only nodes carrying this cluster's ess:cluster tag are ever touched. Asks first on a
    terminal; elsewhere --yes is required.

    \b
    Examples:
      ess instance {backend.name} terminate all
      ess instance {backend.name} terminate all --yes
      ess instance {backend.name} terminate ID [ID...]
    """)
    @click.argument("targets", nargs=-1, metavar="all|ID...")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @setting_options(backend, "terminate")
    @common_options
    def terminate(targets: tuple[str, ...], yes: bool, **flags: Any) -> None:
        from . import provision

        if not targets:
            raise UsageError(f"terminate: name what to terminate (ess instance {backend.name} "
                             "terminate all, or node ids)")
        if "all" in targets and len(targets) > 1:
            raise UsageError("terminate: give either `all` or node ids, not both")
        settings = load(backend, flags)
        nodes = provision.select(backend, settings, list(targets))
        if not nodes:
            click.echo(f"nothing to terminate: cluster {settings.cluster!r} has no nodes on "
                       f"{backend.name}", err=True)
            if OPTIONS.json:
                emit_json({"backend": backend.name, "cluster": settings.cluster, "terminated": []})
            return
        confirm(f"Terminate {len(nodes)} node(s) of cluster {settings.cluster!r} on {backend.name}",
                nodes, yes)
        provision.terminate(backend, settings, nodes, progress())
        if OPTIONS.json:
            emit_json({"backend": backend.name, "cluster": settings.cluster,
                       "terminated": [n.id for n in nodes]})
        else:
            emit(f"terminated {len(nodes)} node(s): {', '.join(n.id for n in nodes)}")
    return terminate


def confirm(action: str, nodes: list[Node], yes: bool) -> None:
    """Show what will change; ask on a terminal; require --yes elsewhere."""
    creators = sorted({n.tags.get("ess:created-by", "?") for n in nodes})
    shown = ", ".join(n.id for n in nodes[:10]) + (f" and {len(nodes) - 10} more" if len(nodes) > 10 else "")
    click.echo(f"{action}: {shown} (created by {', '.join(creators)})", err=True)
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("--yes: required to confirm when stdin is not a terminal (nothing was changed)")
    click.confirm("Proceed?", abort=True, err=True)
