"""``ess instance <backend> ...``: the per-backend commands, built from the backend's settings.

Each setting that declares a ``flag`` becomes an option on the commands it names, so a
third-party backend gets ``--region``-style options without touching the core.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..backend import Backend
from ..errors import PartialFailure, UsageError
from ..hints import create_example, empty_cluster, has_flag, terminate_verb
from ..log import some
from ..models import RUNNING, LaunchRequest, Node
from ..output import emit, emit_json, nodes_json, nodes_table
from .groups import SuggestingGroup
from .options import EXIT_CODES_HELP, WholeNumber, common_options, invocation, progress, setting_options
from .options import load_settings as load
from .prompts import ask, confirm, launch_question

#: The Backend operations each optional command needs (see Backend.supports): a command
#: is offered only when the backend implements all of them.
NEEDS: dict[str, tuple[str, ...]] = {
    "stop": ("stop",),
    "start": ("start",),
    "add": ("adoptable", "adopt"),
    "remove": ("release",),
    "exec": ("access",),
    "push": ("access",),
    "ssh": ("access",),
    "ssh-config": ("access",),
}


class BackendGroup(SuggestingGroup):
    """``ess instance <backend>``: offers only what the backend supports; a command it does
    not support is refused (exit 2) with the command that helps instead."""

    def __init__(self, *args: Any, refused: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = refused

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.refused:
            raise UsageError(self.refused[cmd_name])
        return super().get_command(ctx, cmd_name)


def refusals(backend: Backend) -> dict[str, str]:
    """Why each command the backend cannot do is refused, and what to run instead."""
    name, verb = backend.name, terminate_verb(backend)
    instead = {
        "stop": f"`ess instance {name} terminate all` {verb}s the nodes"
        + ("" if backend.ends_nodes else " (the machines keep running)"),
        "start": f"`{create_example(backend)}` adds new nodes",
        "add": f"`{create_example(backend)}` "
        + ("registers machines" if backend.create_arguments else "starts new nodes"),
        "remove": f"`ess instance {name} terminate {backend.example_node_id}` {verb}s a node"
        + ("" if backend.ends_nodes else " and leaves the machine running"),
    }
    refused = {}
    for command, operations in NEEDS.items():
        if not all(backend.supports(op) for op in operations):
            hint = instead.get(command, "it has no SSH access to its nodes")
            refused[command] = f"{command}: backend {name} does not support `{command}`; {hint}"
    if not (backend.enforces_lifetime and backend.supports("retag")):
        # Also refused by the flow itself (ess.deadlines.extend), with the same line.
        refused["extend"] = f"extend: backend {name} has no time limits to extend (its nodes do not end themselves)"
    from ..provision import can_heal

    if not can_heal(backend):  # heal launches nodes; it cannot invent machines
        refused["heal"] = (
            f"heal: backend {name} does not support `heal` (it cannot launch nodes); "
            f"`{create_example(backend)}` adds machines"
        )
    return refused


def backend_group(backend: Backend) -> click.Group:
    refused = refusals(backend)

    @click.group(
        backend.name,
        cls=BackendGroup,
        refused=refused,
        epilog=EXIT_CODES_HELP,
        help=f"{backend.description}\n\n\b\nExample:\n  {create_example(backend)}\n  ess instance {backend.name} list",
    )
    @common_options
    def group() -> None:
        pass

    from .heal import heal_command
    from .lifetime import extend_command
    from .remote import exec_command, push_command, ssh_command, ssh_config_command

    makers = {
        "create": create_command,
        "list": list_command,
        "verify": verify_command,
        "terminate": terminate_command,
        "status": status_command,
        "iplist": iplist_command,
        "stop": stop_command,
        "start": start_command,
        "add": add_command,
        "remove": remove_command,
        "exec": exec_command,
        "push": push_command,
        "ssh": ssh_command,
        "ssh-config": ssh_config_command,
        "extend": extend_command,
        "heal": heal_command,
    }
    for command, make in makers.items():
        if command not in refused:
            group.add_command(make(backend))
    for command in backend.commands():
        group.add_command(command)
    return group


def create_command(backend: Backend) -> click.Command:
    name = backend.name
    if backend.create_arguments:
        examples = (
            f"  ess instance {name} create 10.0.0.5 10.0.0.6\n"
            f"      ess instance {name} create node1:2222 node2:2222 --no-verify"
        )
    elif has_flag(backend, "--number"):
        examples = (
            f"  ess instance {name} create\n"
            f"      ess instance {name} create --number 3 --no-verify\n"
            f"      ess instance {name} create --number 10 --min 8   # keep 8+ good nodes, drop failures"
        )
    else:
        examples = f"  ess instance {name} create\n      ess instance {name} create --no-verify"

    @click.command(
        "create",
        epilog=EXIT_CODES_HELP,
        help=f"""Launch nodes, wait until they run, verify them.

    All or nothing by default: if anything fails after the launch (or you press Ctrl-C),
    the nodes of this run are terminated unless --keep-on-failure. On a cluster that
    already has nodes, create adds to it: it says so, and asks first on a terminal.

    \b
    Examples:
    {examples}
    """,
    )
    @click.option(
        "--min",
        "min_count",
        type=WholeNumber(),
        default=None,
        help="Accept a partial cluster of at least this many verified nodes (exit code 3).",
    )
    @click.option("--no-verify", is_flag=True, help="Skip the SSH check of the new nodes.")
    @click.option(
        "--keep-on-failure",
        is_flag=True,
        help="On failure, keep what was launched (for debugging) instead of terminating it.",
    )
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @setting_options(backend, "create")
    @common_options
    def create(min_count: int | None, no_verify: bool, keep_on_failure: bool, yes: bool, **flags: Any) -> None:
        from .. import provision
        from ..api import Cluster

        items = flags.pop("items", ())
        if items:
            flags[f"setting__{backend.create_arguments}"] = ",".join(items)
        settings = load(backend, flags)
        count = backend.requested_count(settings)
        # The API names its own argument (min_count=); the command line names --min.
        provision.check_min_count(min_count, count)
        existing: list[Node] = []

        def confirm_launch(request: LaunchRequest) -> None:
            # Every check passed and nothing is launched yet. A second create grows the
            # cluster (the API listed it once: request.existing): say so, never silently.
            existing.extend(request.existing)
            if existing:
                click.echo(
                    f"cluster {settings.cluster!r} already has {len(existing)} node(s); adding {count} more", err=True
                )
            if (backend.billable or existing) and not yes and sys.stdin.isatty():
                ask(launch_question(backend, settings, count))

        cluster = Cluster.from_settings(settings, progress=progress())
        result = cluster.create(
            min_count=min_count, verify=not no_verify, keep_on_failure=keep_on_failure, confirm=confirm_launch
        )
        # The nodes are kept: a Ctrl-C or SIGTERM now must not cost the table naming them.
        with provision.deferred_interrupts(progress(), provision.READY_NOTE, reraise=False):
            checks = None if no_verify else result.checks
            if invocation().json:
                emit_json(
                    nodes_json(
                        name,
                        settings.cluster,
                        result.nodes,
                        checks,
                        dropped=[n.id for n in result.dropped],
                        total=len(existing) + len(result.nodes),
                    )
                )
            else:
                emit(nodes_table(result.nodes, checks))
            if result.nodes and backend.supports("access"):
                from ..login import login_hint

                # The first row of the table just printed, so the hint and the table agree.
                click.echo(login_hint(backend, settings, result.nodes[0]), err=True)
        if result.dropped:
            raise PartialFailure(
                f"kept {len(result.nodes)} of {count} nodes; dropped " + some(n.id for n in result.dropped)
            )

    if backend.create_arguments:
        create = click.argument("items", nargs=-1, metavar=f"[{backend.create_arguments.upper()}...]")(create)
    return create


def list_command(backend: Backend) -> click.Command:
    @click.command(
        "list",
        help=f"""Show the cluster's nodes (found by their ess:cluster tag).

    \b
    Examples:
      ess instance {backend.name} list
      ess instance {backend.name} list --json | jq -r '.nodes[].address'
    """,
    )
    @setting_options(backend, "list")
    @common_options
    def list_(**flags: Any) -> None:
        from ..api import Cluster

        settings = load(backend, flags)
        # The stderr sink: list draws no stages, but warnings (skipped instances) go there.
        nodes = Cluster.from_settings(settings, progress=progress()).nodes()
        if invocation().json:
            emit_json(nodes_json(backend.name, settings.cluster, nodes))
        elif nodes:
            emit(nodes_table(nodes))
        else:
            click.echo(empty_cluster(backend, settings.cluster), err=True)

    return list_


def verify_command(backend: Backend) -> click.Command:
    @click.command(
        "verify",
        epilog=EXIT_CODES_HELP,
        help=f"""Check every running node over SSH.

    A lost node (ess expects it running and it is not: its process died, it was stopped
    behind ess's back, its sshd is gone) fails without a connection attempt. Exit code 0
    only if every node passed; 3 if some failed; 1 if all failed.

    \b
    Example:
      ess instance {backend.name} verify --timeout 30
    """,
    )
    @setting_options(backend, "verify")
    @common_options
    def verify(**flags: Any) -> None:
        from .. import provision
        from ..api import Cluster
        from .remote import interrupts_say

        settings = load(backend, flags)
        with interrupts_say("interrupted during verify"):
            result = Cluster.from_settings(settings, progress=progress()).verify()
        if invocation().json:
            emit_json(nodes_json(backend.name, settings.cluster, result.nodes, result.checks))
        else:
            emit(nodes_table(result.nodes, result.checks))
        provision.verdict(result.checks)  # presented first, then the exit code

    return verify


def terminate_command(backend: Backend) -> click.Command:
    verb = terminate_verb(backend)

    @click.command(
        "terminate",
        help=f"""{verb.capitalize()} all of the cluster's nodes, or the ones named.

    Only nodes carrying this cluster's ess:cluster tag are ever touched. Asks first on a
    terminal; elsewhere --yes is required. Nodes named by id go on purpose: the cluster's
    intended size shrinks with them, so `heal` does not bring them back.{
            ""
            if backend.ends_nodes
            else " On this backend the machines are only released: they keep running, ess forgets them."
        }

    \b
    Examples:
      ess instance {backend.name} terminate all
      ess instance {backend.name} terminate all --yes
      ess instance {backend.name} terminate {backend.example_node_id} --yes
    """,
    )
    @click.argument("targets", nargs=-1, metavar="all|ID...")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @click.option(
        "--include-adopted",
        is_flag=True,
        help="With `all`, also terminate machines adopted with `add` (ess did not launch them).",
    )
    @click.option(
        "--purge",
        is_flag=True,
        help="With `all`: afterwards delete what ess created for the cluster (ec2: its security "
        "group and key pair), never what it did not create.",
    )
    @setting_options(backend, "terminate")
    @common_options
    def terminate(targets: tuple[str, ...], yes: bool, include_adopted: bool, purge: bool, **flags: Any) -> None:
        from .. import provision

        if not targets:
            raise UsageError(
                f"terminate: name what to terminate (ess instance {backend.name} terminate all, or node ids)"
            )
        if "all" in targets and len(targets) > 1:
            raise UsageError("terminate: give either `all` or node ids, not both")
        if purge and targets != ("all",):
            raise UsageError("--purge: only with `terminate all` (the cluster's resources go with its last node)")
        if purge and not backend.supports("purge"):
            raise UsageError(f"--purge: backend {backend.name} has nothing to purge (drop --purge)")
        settings = load(backend, flags)
        current = backend.nodes(settings)
        named = targets != ("all",)
        nodes, kept = provision.terminate_targets(
            provision.select_from(current, backend, settings, list(targets)), not named, include_adopted
        )
        if kept:
            click.echo(
                f"keeping {len(kept)} adopted node(s) ess did not launch: {some(n.id for n in kept)} "
                "(--include-adopted terminates them too; `remove` releases them)",
                err=True,
            )
        purged: list[str] = []
        if not nodes:
            click.echo(f"nothing to terminate: cluster {settings.cluster!r} has no nodes on {backend.name}", err=True)
        else:
            backend.may_change(settings, "terminate")  # a refusal before the question, not after a yes
            confirm(
                f"{verb.capitalize()} {len(nodes)} node(s) of cluster {settings.cluster!r} on {backend.name}"
                + (" and purge its resources" if purge else ""),
                nodes,
                yes,
            )
            # Nodes named go on purpose: the cluster's intended size shrinks with them (heal).
            provision.terminate(backend, settings, nodes, progress(), before=current if named else None)
        if purge:
            if not nodes and not yes and not sys.stdin.isatty():
                raise UsageError("--yes: required to confirm --purge when stdin is not a terminal")
            purged = backend.purge(settings, progress())
        if invocation().json:
            emit_json(
                {
                    "backend": backend.name,
                    "cluster": settings.cluster,
                    "terminated": [n.id for n in nodes],
                    "purged": purged,
                }
            )
            return
        if nodes:
            emit(f"{verb}d {len(nodes)} node(s): {', '.join(n.id for n in nodes)}")
        for item in purged:
            emit(f"purged {item}")

    return terminate


def status_command(backend: Backend) -> click.Command:
    @click.command(
        "status",
        help=f"""Per node: state, public and private address, type, uptime.

    With --ssh, also check each running node over SSH. A lost node (ess expects it
    running and it is not) fails status either way: exit 3, or 1 if none is healthy.

    \b
    Examples:
      ess instance {backend.name} status
      ess instance {backend.name} status --ssh --json
    """,
    )
    @click.option("--ssh", "with_ssh", is_flag=True, help="Also run the health checks on running nodes.")
    @setting_options(backend, "status")
    @common_options
    def status(with_ssh: bool, **flags: Any) -> None:
        from .. import provision
        from ..output import status_json, status_table

        settings = load(backend, flags)
        nodes = backend.nodes(settings)
        checks = None
        if with_ssh:
            checks = provision.health_checks(backend, settings, nodes, progress())
        if invocation().json:
            emit_json(status_json(backend.name, settings.cluster, nodes, checks))
        elif nodes:
            emit(status_table(nodes, checks))
        else:
            click.echo(empty_cluster(backend, settings.cluster), err=True)
        # A lost node (ess wants it running, it is not) fails status, with or without --ssh.
        provision.verdict(checks if checks is not None else provision.state_checks(nodes))

    return status


def iplist_command(backend: Backend) -> click.Command:
    @click.command(
        "iplist",
        help=f"""Print one address per running node, for scripts.

    By default the address ess itself uses (private or public per use_private_ip), as
    ADDRESS, or ADDRESS:PORT when the node's SSH port is not 22. A backend that knows one
    address per node (hosts, local) prints it for --private and --public too. To copy
    files with OpenSSH, log in by node id through `ssh-config` (it carries the port, user,
    key and known_hosts), or use `push`.

    \b
    Examples:
      ess instance {backend.name} iplist --json
      ess instance {backend.name} ssh-config > nodes.ssh
      for n in $(ess instance {backend.name} list --json | jq -r '.nodes[].id'); do scp -F nodes.ssh data.csv $n:; done
    """,
    )
    @click.option("--private", "which", flag_value="private", help="Private addresses.")
    @click.option("--public", "which", flag_value="public", help="Public addresses.")
    @setting_options(backend, "iplist")
    @common_options
    def iplist(which: str | None, **flags: Any) -> None:
        settings = load(backend, flags)
        field = {"private": "private_ip", "public": "public_ip"}.get(which or "", "address")
        running = [n for n in backend.nodes(settings) if n.state == RUNNING]
        addresses = [_ip_of(n, field) for n in running]
        missing = [n.id for n, a in zip(running, addresses, strict=True) if not a]
        if missing:
            click.echo(f"ess: warning: no {which or ''} address for {', '.join(missing)}".replace("  ", " "), err=True)
        if invocation().json:
            emit_json([a for a in addresses if a])
        elif any(addresses):
            emit("\n".join(a for a in addresses if a))

    return iplist


def _ip_of(node: Node, field: str) -> str | None:
    """``field``'s address, with ``:port`` when the port is not 22 (a script needs it).

    A node with neither a public nor a private address (hosts) has only ``address``: it
    is the answer to --private and --public too.
    """
    address = getattr(node, field)
    if address is None and node.public_ip is None and node.private_ip is None:
        address = node.address
    if address and node.port not in (22, 0):
        return f"{address}:{node.port}"
    return address


def _power_command(backend: Backend, verb: str) -> click.Command:
    @click.command(
        verb,
        help=f"""{verb.capitalize()} the cluster's nodes (all, or the ids given).

    {
            "Stopped nodes keep their disks and cost no compute; `start` resumes them."
            if verb == "stop"
            else "Resumes stopped nodes; they may come back with new public addresses."
        }

    \b
    Example:
      ess instance {backend.name} {verb} --yes
    """,
    )
    @click.argument("targets", nargs=-1, metavar="[ID...]")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @setting_options(backend, verb)
    @common_options
    def power(targets: tuple[str, ...], yes: bool, **flags: Any) -> None:
        from .. import provision

        settings = load(backend, flags)
        nodes = provision.select(backend, settings, list(targets) or ["all"])
        todo = provision.power_targets(nodes, verb)  # a lost node already down still goes to `stop`
        if not todo:
            click.echo(f"nothing to {verb}: no node of cluster {settings.cluster!r} needs it", err=True)
            return
        backend.may_change(settings, verb)
        if verb == "stop":
            confirm(f"Stop {len(todo)} node(s) of cluster {settings.cluster!r} on {backend.name}", todo, yes)
        provision.power(backend, settings, todo, verb, progress())
        done = {n.id for n in todo}
        after = [n for n in backend.nodes(settings) if n.id in done]
        if invocation().json:
            emit_json(nodes_json(backend.name, settings.cluster, after))
        else:
            emit(nodes_table(after))

    return power


def stop_command(backend: Backend) -> click.Command:
    return _power_command(backend, "stop")


def start_command(backend: Backend) -> click.Command:
    return _power_command(backend, "start")


def add_command(backend: Backend) -> click.Command:
    @click.command(
        "add",
        help=f"""Adopt existing machines into the cluster (tags them; nothing restarts).

    \b
    Example:
      ess instance {backend.name} add {backend.example_node_id} --yes
    """,
    )
    @click.argument("ids", nargs=-1, required=True, metavar="ID...")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @setting_options(backend, "add")
    @common_options
    def add(ids: tuple[str, ...], yes: bool, **flags: Any) -> None:
        from .. import provision

        settings = load(backend, flags)
        nodes = backend.adoptable(settings, list(dict.fromkeys(ids)))
        tags = provision.membership_tags(settings)
        confirm(
            f"Add {len(nodes)} machine(s) to cluster {settings.cluster!r} on {backend.name} "
            f"(tags: {', '.join(f'{k}={v}' for k, v in tags.items())})",
            nodes,
            yes,
        )
        provision.adopt(backend, settings, nodes, progress(), tags)
        emit(f"added {len(nodes)} node(s) to cluster {settings.cluster!r}: {', '.join(n.id for n in nodes)}")

    return add


def remove_command(backend: Backend) -> click.Command:
    @click.command(
        "remove",
        help=f"""Release nodes from the cluster without stopping them (removes ess's tags).

    \b
    Example:
      ess instance {backend.name} remove {backend.example_node_id} --yes
    """,
    )
    @click.argument("ids", nargs=-1, required=True, metavar="ID...")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @setting_options(backend, "remove")
    @common_options
    def remove(ids: tuple[str, ...], yes: bool, **flags: Any) -> None:
        from ..api import Cluster

        settings = load(backend, flags)
        if "all" in ids:
            raise UsageError("remove: name node ids (`all` is not accepted here, to avoid accidents)")
        backend.may_change(settings, "release")
        nodes = Cluster.from_settings(settings, progress=progress()).remove(
            list(ids),
            confirm=lambda nodes: confirm(
                f"Remove {len(nodes)} node(s) from cluster {settings.cluster!r} (they keep running)", nodes, yes
            ),
        )
        emit(f"removed {len(nodes)} node(s) from cluster {settings.cluster!r}: {', '.join(n.id for n in nodes)}")

    return remove
