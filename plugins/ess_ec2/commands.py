"""EC2's own commands under ``ess instance ec2``: ``security-group create`` and ``key-pair create``.

Built with the core's public helper :func:`ess.cli.backend_command`, so ``--config``,
``--cluster``, ``--region``, ``--profile``, ``--json`` and ``--debug`` mean what they mean
everywhere else.
Imported only when the ``ec2`` command group is built (never by ``ess --help``).
"""

from __future__ import annotations

import click

from ess.backend import Backend
from ess.cli import BackendCall, backend_command, backend_group
from ess.models import TAG_ADOPTED, Settings

from . import client as aws_client
from . import keys, security_group

#: The group name when neither NAME nor a name in ``security_groups`` gives one.
DEFAULT_GROUP_NAME = "essentia-access"


def creation_tags(settings: Settings) -> dict[str, str]:
    """ess:cluster, ess:created-by, ess:created-at: what marks a resource as ess's own."""
    from ess.provision import membership_tags

    return {k: v for k, v in membership_tags(settings).items() if k != TAG_ADOPTED}


def default_group_name(settings: Settings) -> str:
    names = [str(g) for g in settings.get("security_groups", []) or [] if not str(g).startswith("sg-")]
    return names[0] if names else DEFAULT_GROUP_NAME


def security_group_group(backend: Backend) -> click.Group:
    """``ess instance ec2 security-group ...``."""
    return backend_group(
        "security-group",
        security_group_create(backend),
        help="The cluster's security group: SSH from your address only.\n\n"
        "\b\nExample:\n  ess instance ec2 security-group create",
    )


def security_group_create(backend: Backend) -> click.Command:
    @backend_command(
        backend,
        "create",
        settings_of="security-group",
        help=f"""Create or complete the cluster's security group.

    Rules: SSH (22) from this machine's public address as a /32 (or --cidr), and SSH plus
    the worker ports (TCP) from the group itself. Never 0.0.0.0/0 unless you pass
    --cidr 0.0.0.0/0. Running it again adds only missing rules. NAME defaults to the first
    name in security_groups, else {DEFAULT_GROUP_NAME}. A group of that name that ess did not
    create is changed only with --yes (and is never deleted by --purge).

    Your address is asked of {security_group.CHECKIP_URL} unless --cidr or
    ${security_group.MY_IP_ENV} gives it.

    \b
    Examples:
      ess instance ec2 security-group create
      ess instance ec2 security-group create essentia-access --cidr 203.0.113.0/24
    """,
    )
    @click.argument("name", required=False)
    @click.option(
        "--cidr", metavar="CIDR", help="Allow SSH from this address or block instead of your own public address."
    )
    @click.option(
        "--worker-ports",
        default=security_group.DEFAULT_WORKER_PORTS,
        show_default=True,
        metavar="PORTS",
        help="TCP ports open between the nodes: a range or comma-separated list.",
    )
    @click.option("--yes", "-y", is_flag=True, help="Also add rules to a group of that name ess did not create.")
    def create(call: BackendCall, name: str | None, cidr: str | None, worker_ports: str, yes: bool) -> None:
        settings, out = call.settings, call.out
        ports = security_group.parse_ports(worker_ports, "--worker-ports")
        source, wide = security_group.caller_cidr(cidr)
        name = name or default_group_name(settings)
        if wide:
            out.note(f"ess: warning: --cidr {source} opens SSH (port 22) of every node to the whole internet")
        result = aws_client.call(
            settings,
            f"create or update security group {name}",
            lambda aws: security_group.ensure(aws, settings, name, source, ports, creation_tags(settings), force=yes),
        )
        did = "created" if result.created else "found"
        out.note(
            f"{did} security group {name} ({result.group_id}) in {result.vpc_id}; added {len(result.added)} rule(s)"
        )
        if not result.managed:
            out.note(f"ess: note: ess did not create {name}: it was not tagged, and --purge will never delete it")
        for rule in security_group.world_open(result):
            if rule.source != source:
                out.note(
                    f"ess: warning: {name} already allows port 22 from {rule.source} (ess did not "
                    "add it; revoke it in the EC2 console unless you mean it)"
                )
        configured = [str(g) for g in settings.get("security_groups", []) or []]
        if name not in configured and result.group_id not in configured:
            out.note(f"ess: note: add `security_groups: {name}` to the [EC2] section so create uses it")
        if out.json:
            out.emit_json(
                {
                    "backend": backend.name,
                    "cluster": settings.cluster,
                    "group_id": result.group_id,
                    "group_name": name,
                    "vpc_id": result.vpc_id,
                    "created": result.created,
                    "managed": result.managed,
                    "rules": [dict(rule.to_dict(), status=status) for rule, status in result.rules],
                }
            )
        else:
            out.table(
                [(r.protocol, r.ports, r.source, status, r.description) for r, status in result.rules],
                ["protocol", "ports", "source", "status", "description"],
            )

    return create


def key_pair_group(backend: Backend) -> click.Group:
    """``ess instance ec2 key-pair ...``."""
    return backend_group(
        "key-pair",
        key_pair_create(backend),
        help="An EC2 key pair made by ess, its private key saved next to the config.\n\n"
        "\b\nExample:\n  ess instance ec2 key-pair create pem_file",
    )


def key_pair_create(backend: Backend) -> click.Command:
    @backend_command(
        backend,
        "create",
        settings_of="key-pair",
        help="""Create an EC2 key pair and save its private key.

    The key is saved as NAME.pem (mode 0600) in the config file's folder, where create
    looks for it. NAME defaults to key_name. The key pair is tagged as ess's, so
    `terminate all --purge` deletes it (the .pem file is kept).

    \b
    Example:
      ess instance ec2 key-pair create pem_file
    """,
    )
    @click.argument("name", required=False)
    def create(call: BackendCall, name: str | None) -> None:
        settings, out = call.settings, call.out
        # Checked before the session is even built: a name ess could not save, or never use
        # again as key_name, must create nothing in the account.
        if name is not None:
            keys.check_key_pair_name(name, "key-pair create NAME")
        else:
            name = keys.check_key_pair_name(keys.key_pair_name(settings), settings.where("key_name"))
        path = aws_client.call(
            settings,
            f"create key pair {name}",
            lambda aws: keys.create_key_pair(aws, settings, name, creation_tags(settings)),
        )
        if out.json:
            out.emit_json(
                {"backend": backend.name, "cluster": settings.cluster, "key_name": name, "key_file": str(path)}
            )
        else:
            out.emit(f"created key pair {name}; private key saved to {path} (mode 0600)")

    return create
