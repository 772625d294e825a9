"""``ess instance <backend> heal``: bring the cluster back to the size it was created with.

The flow is :func:`ess.provision.heal` (through :meth:`ess.Cluster.heal`); this command
only confirms and presents.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from ..log import some
from ..output import emit, emit_json, nodes_json, nodes_table
from .options import EXIT_CODES_HELP, common_options, invocation, progress, setting_options
from .options import load_settings as load

if TYPE_CHECKING:
    from ..backend import Backend
    from ..census import Census
    from ..models import LaunchRequest


def heal_command(backend: Backend) -> click.Command:
    name = backend.name

    @click.command(
        "heal",
        epilog=EXIT_CODES_HELP,
        help=f"""Bring the cluster back to the size it was created with.

    Launches as many nodes as are missing (lost ones: crashed, or stopped or terminated
    behind ess's back) with the cluster's settings, waits, verifies them, then terminates
    the lost nodes they replace. All or nothing: if anything fails (or you press Ctrl-C),
    the new nodes are terminated and the others are left as they were.

    The size is the ess:size tag of the cluster's newest node: `create` sets it, `create`
    on a cluster with nodes grows it, `terminate ID` shrinks it. Nodes stopped with `stop`
    are not missing (`start` resumes them); adopted nodes count as running. On a billable
    backend heal asks first on a terminal; off a terminal it needs --yes when it would
    terminate lost nodes that still exist.

    \b
    Examples:
      ess instance {name} heal
      ess instance {name} heal --yes --json
    """,
    )
    @click.option("--no-verify", is_flag=True, help="Skip the SSH check of the new nodes.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @setting_options(backend, "heal")
    @common_options
    def heal(no_verify: bool, yes: bool, **flags: Any) -> None:
        from ..api import Cluster
        from .prompts import ask, launch_question

        settings = load(backend, flags)
        cluster = settings.cluster

        def confirm_heal(request: LaunchRequest, census: Census) -> None:
            # Every check passed; nothing is launched yet: say what will change, first.
            doomed = census.replaceable
            then = f", then terminating the {len(doomed)} lost node(s) they replace: " if doomed else ""
            click.echo(
                f"cluster {cluster!r}: {census.summary()}; launching {request.count} to make it whole"
                + (then + some(n.id for n in doomed) if doomed else ""),
                err=True,
            )
            if not backend.billable or yes:
                return
            if sys.stdin.isatty():
                ask(launch_question(backend, settings, request.count))
            elif doomed:
                raise UsageError(
                    "--yes: required off a terminal when heal terminates lost nodes that still exist "
                    "(nothing was launched)"
                )

        result = Cluster.from_settings(settings, progress=progress()).heal(verify=not no_verify, confirm=confirm_heal)
        before = result.before
        checks = None if no_verify or result.created is None else result.created.checks
        if invocation().json:
            emit_json(
                nodes_json(
                    name,
                    cluster,
                    result.nodes,
                    checks,
                    intended=before.intended,
                    before=before.to_dict(),
                    launched=[n.id for n in result.nodes],
                    replaced=[n.id for n in result.replaced],
                )
            )
            return
        if result.created is None:
            emit(f"cluster {cluster!r} is whole: {before.summary()}")
            if before.stopped:  # paused on purpose: not missing, and not heal's to resume
                click.echo(
                    f"ess: {len(before.stopped)} node(s) were stopped with `stop`; resume them with: "
                    f"ess instance {name} start",
                    err=True,
                )
            if before.lost:  # more members than intended cover for them: nothing to launch
                click.echo(
                    f"ess: {len(before.lost)} lost node(s) stay: {some(n.id for n in before.lost)} "
                    f"(ess instance {name} terminate ID... removes one)",
                    err=True,
                )
            return
        emit(nodes_table(result.nodes, checks))
        replaced = f" in place of {len(result.replaced)} lost node(s)" if result.replaced else ""
        emit(
            f"healed cluster {cluster!r}: launched {len(result.nodes)} node(s){replaced}; "
            f"intended size {before.intended}"
        )

    return heal
