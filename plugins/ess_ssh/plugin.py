"""The SSH plugin: SSH settings, the ``ess_check_nodes`` checker, and ``exec`` / ``push``.

Import-light on purpose (``ess --help`` loads it): paramiko is imported only inside
:mod:`ess_ssh.check`, :mod:`ess_ssh.run`, :mod:`ess_ssh.push` and the modules they use,
when a check, command or copy actually runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import ess
from ess.errors import EssError
from ess.models import SettingSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from ess.models import Access, CheckResult, CommandResult, Node, Settings
    from ess.progress import Progress

#: The commands that connect to nodes, so take --timeout and --parallel.
SSH_COMMANDS = ("create", "verify", "exec", "push", "status")

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "verify_command",
        "str",
        default="true",
        help="Command run on every node over SSH to call it healthy; it must exit 0 "
        "(e.g. 'test -f /var/lib/cloud/instance/boot-finished').",
    ),
    SettingSpec(
        "ssh_timeout",
        "float",
        default=300.0,
        flag="--timeout",
        commands=SSH_COMMANDS,
        minimum=0.1,
        help="Seconds to wait for every node to accept SSH and pass verify_command (for exec and "
        "push: to connect and finish the command or copy); nodes still failing then are "
        "reported with their last error.",
    ),
    SettingSpec(
        "ssh_parallel",
        "int",
        default=32,
        flag="--parallel",
        commands=SSH_COMMANDS,
        minimum=1,
        maximum=1024,
        help="How many nodes to connect to at the same time.",
    ),
    SettingSpec(
        "ssh_connect_timeout",
        "float",
        default=10.0,
        minimum=0.1,
        help="Seconds allowed for each step of one connection attempt (TCP connect, SSH banner, "
        "authentication, opening a session) before that attempt is retried.",
    ),
    SettingSpec(
        "strict_host_keys",
        "bool",
        default=False,
        help="Refuse nodes whose SSH host key is not already in the cluster's known_hosts file "
        "(or given by the backend), instead of trusting it on first use.",
    ),
    SettingSpec(
        "insecure_skip_host_key_check",
        "bool",
        default=False,
        help="Accept any SSH host key without checking or recording it. Unsafe: anyone on the "
        "network path can impersonate a node. For throwaway test setups only.",
    ),
)


@ess.hookimpl
def ess_settings() -> list[SettingSpec]:
    """The SSH settings; they apply to every backend."""
    return list(SETTINGS)


def usable(access: Access) -> Access:
    """``access`` if its fields have the types :class:`ess.models.Access` gives them.

    A backend's ``access()`` is third-party code: ``key_file=None`` is its bug, to be told
    as such (which backend, which field) before a connection thread trips over it.
    """
    problem = None
    if not isinstance(access.key_file, Path):
        problem = f"key_file={access.key_file!r}, not a pathlib.Path to the private key"
    elif not isinstance(access.username, str) or not access.username:
        problem = f"username={access.username!r}, not a login name"
    elif access.known_hosts is not None and not isinstance(access.known_hosts, Path):
        problem = f"known_hosts={access.known_hosts!r}, not a pathlib.Path or None"
    if problem is None:
        return access
    from ess.plugins import backend_plugin

    provider = backend_plugin(access.backend)
    of = f" (plugin {provider!r})" if provider else ""
    raise EssError(
        f"backend {access.backend!r}{of}: access() returned {problem}; the SSH plugin cannot log in "
        "without it (fix the backend's access())"
    )


@ess.hookimpl
def ess_before_create(access: Access | None, verify: bool) -> None:
    """Refuse to launch when the key the check will need is unusable (mode, format, passphrase).

    Without this, a garbled .pem is only found by the check, after paying for the nodes.
    """
    # A key that does not exist yet is the backend's to make (local generates one on first
    # use; ec2's preflight already requires the .pem): only an existing key is judged here.
    if verify and access is not None and usable(access).key_file.exists():
        from .keys import load_private_key

        load_private_key(access.key_file)


@ess.hookimpl
def ess_check_nodes(
    nodes: list[Node], access: Access, settings: Settings, progress: Progress
) -> list[CheckResult] | None:
    """Verify every node over SSH (see :mod:`ess_ssh.check`)."""
    from .check import check_nodes

    return check_nodes(nodes, usable(access), settings, progress)


@ess.hookimpl
def ess_run_command(
    nodes: list[Node],
    command: str,
    access: Access,
    settings: Settings,
    progress: Progress,
    output: Callable[[str, str, bytes], None] | None,
) -> list[CommandResult] | None:
    """Run ``command`` once on every node over SSH (see :mod:`ess_ssh.run`).

    Output streams to ``output`` as it arrives; the results keep each stream's last 64 KiB
    (less per node above 256 nodes: 16 MiB per stream over the whole cluster, at least 4 KiB).
    """
    from ess.models import CommandResult

    from .run import run_command

    return [
        CommandResult(
            node_id=out.node_id,
            exit_code=out.exit_code,
            stdout=out.stdout.decode("utf-8", "replace"),
            stderr=out.stderr.decode("utf-8", "replace"),
            error=out.error,
            seconds=out.seconds,
            truncated=out.truncated,
        )
        for out in run_command(nodes, command, usable(access), settings, progress, output=output)
    ]


@ess.hookimpl
def ess_push_files(
    nodes: list[Node], source: Path, destination: str, access: Access, settings: Settings, progress: Progress
) -> list[CommandResult] | None:
    """Copy a file or folder to every node over SFTP (see :mod:`ess_ssh.push`).

    A node that was never reached has ``exit_code`` None; a copy that started and failed has
    exit code 1; ``stdout`` says what was copied where.
    """
    from ess.models import CommandResult

    from .push import push_files

    results = []
    for out in push_files(nodes, source, destination, usable(access), settings, progress):
        summary = f"copied {out.files} file(s), {out.bytes} bytes to {out.destination}\n" if out.connected else ""
        code = 0 if out.ok else (1 if out.connected else None)
        results.append(
            CommandResult(node_id=out.node_id, exit_code=code, stdout=summary, error=out.error, seconds=out.seconds)
        )
    return results
