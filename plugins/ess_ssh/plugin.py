"""The SSH plugin: settings for SSH verification, and the ``ess_check_nodes`` checker.

Import-light on purpose (``ess --help`` loads it): paramiko is imported only inside
:mod:`ess_ssh.check` and the modules it uses, when a check actually runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ess
from ess.models import SettingSpec

if TYPE_CHECKING:
    from ess.models import Access, CheckResult, Node, Settings
    from ess.progress import Progress

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "verify_command", "str", default="true",
        help="Command run on every node over SSH to call it healthy; it must exit 0 "
             "(e.g. 'test -f /var/lib/cloud/instance/boot-finished').",
    ),
    SettingSpec(
        "ssh_timeout", "float", default=300.0, flag="--timeout", commands=("create", "verify"),
        minimum=0.1,
        help="Seconds to wait for every node to accept SSH and pass verify_command; nodes still "
             "failing then are reported with their last error.",
    ),
    SettingSpec(
        "ssh_parallel", "int", default=32, flag="--parallel", commands=("create", "verify"),
        minimum=1, maximum=1024,
        help="How many nodes to connect to at the same time.",
    ),
    SettingSpec(
        "ssh_connect_timeout", "float", default=10.0, minimum=0.1,
        help="Seconds allowed for each step of one connection attempt (TCP connect, SSH banner, "
             "authentication, opening a session) before that attempt is retried.",
    ),
    SettingSpec(
        "strict_host_keys", "bool", default=False,
        help="Refuse nodes whose SSH host key is not already in the cluster's known_hosts file "
             "(or given by the backend), instead of trusting it on first use.",
    ),
    SettingSpec(
        "insecure_skip_host_key_check", "bool", default=False,
        help="Accept any SSH host key without checking or recording it. Unsafe: anyone on the "
             "network path can impersonate a node. For throwaway test setups only.",
    ),
)


@ess.hookimpl
def ess_settings() -> list[SettingSpec]:
    """The SSH settings; they apply to every backend."""
    return list(SETTINGS)


@ess.hookimpl
def ess_check_nodes(nodes: list[Node], access: Access, settings: Settings,
                    progress: Progress) -> list[CheckResult] | None:
    """Verify every node over SSH (see :mod:`ess_ssh.check`)."""
    from .check import check_nodes

    return check_nodes(nodes, access, settings, progress)
