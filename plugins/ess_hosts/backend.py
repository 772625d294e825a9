"""The hosts backend: existing machines as workers (Essentia's ``ess instance local ip1 ip2``).

``create`` registers the given machines in this cluster (after the usual SSH check, unless
``--no-verify``); ``terminate`` forgets them. ess never starts, stops or changes the
machines themselves: the registry is a file on this machine, one per cluster.

A registered machine should always be running (``desired`` is running): ``list`` reports
its state from a quick TCP probe of its SSH port (:mod:`ess_hosts.probe`), so a machine
whose sshd is gone is shown as lost, with the reason. ``verify``, ``exec`` and ``push``
skip the probe: their own first SSH connect fails such a machine at once, with the reason.
"""

from __future__ import annotations

import getpass
import ipaddress
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ess.backend import Backend
from ess.errors import UsageError
from ess.files import locked_json
from ess.models import RUNNING, UNKNOWN, Access, LaunchRequest, Node, Settings, SettingSpec
from ess.names import USERNAME, USERNAME_HELP
from ess.paths import state_dir
from ess.progress import Progress

from .probe import probe_all

HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


def parse_machine(entry: str, default_port: int, where: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address → (host, port)."""
    text = entry.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = _port(rest.lstrip(":"), entry, where)
    elif text.count(":") == 1:
        host, raw = text.split(":")
        port = _port(raw, entry, where)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOSTNAME.match(host):
            raise UsageError(
                f"{where}: {entry!r} is not an address or host name "
                "(write 10.0.0.5, node1.example.com or 10.0.0.5:2222)"
            ) from None
    return host, port


def _port(raw: str, entry: str, where: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UsageError(f"{where}: {entry!r} has no valid port (write host:2222)")
    return int(raw)


def node_id(host: str, port: int) -> str:
    return host if port == 22 else f"{host}:{port}"


class HostsBackend(Backend):
    name = "hosts"
    description = "Machines you already run, registered as workers (nothing is launched or stopped)."
    create_arguments = "hosts"
    # terminate only forgets the machines: the CLI says "released", not "terminated".
    ends_nodes = False
    example_node_id = "10.0.0.5"
    settings = (
        SettingSpec(
            "hosts",
            type="list",
            default=[],
            commands=("create",),
            help="The machines: addresses or names, host:port for another SSH port. "
            "`ess instance hosts create 10.0.0.5 10.0.0.6` sets them on the command line.",
        ),
        SettingSpec(
            "port", type="int", default=22, minimum=1, maximum=65535, help="SSH port of machines listed without one."
        ),
        SettingSpec(
            "username",
            default=getpass.getuser(),
            default_help="your login name",
            pattern=USERNAME.pattern,
            pattern_help=USERNAME_HELP,
            help="SSH user on the machines.",
        ),
        SettingSpec(
            "key_file", type="path", required=True, help="Private key that logs in to the machines (mode 0600)."
        ),
    )

    def _registry(self, settings: Settings, write: bool = False) -> Any:
        return locked_json(state_dir() / "hosts" / f"{settings.cluster}.json", write=write)

    def _machines(self, settings: Settings) -> list[tuple[str, int]]:
        where = settings.where("hosts")
        machines = [parse_machine(h, int(settings["port"]), where) for h in settings["hosts"]]
        if not machines:
            raise UsageError(
                f"{where}: no machines given (ess instance hosts create 10.0.0.5 10.0.0.6, or hosts: in the config)"
            )
        seen: set[tuple[str, int]] = set()
        for machine in machines:
            if machine in seen:
                raise UsageError(f"{where}: {node_id(*machine)} is listed twice")
            seen.add(machine)
        return machines

    def requested_count(self, settings: Settings) -> int:
        return len(settings["hosts"])

    def preflight(self, settings: Settings, request: LaunchRequest) -> None:
        machines = self._machines(settings)
        self._key(settings)
        with self._registry(settings) as registry:
            known = [node_id(*m) for m in machines if node_id(*m) in registry]
        if known:
            raise UsageError(
                f"{settings.where('hosts')}: {known[0]} is already in cluster "
                f"{settings.cluster!r} (ess instance hosts list)"
            )

    def _key(self, settings: Settings) -> Path:
        key = settings.path("key_file")
        if key is None:
            raise UsageError(
                f"{settings.where('key_file')}: required: the private key for the machines "
                "(set key_file in the [hosts] section or ESS_KEY_FILE)"
            )
        if not key.is_file():
            raise UsageError(f"{settings.where('key_file')}: no such key file {key}")
        return key

    def create(self, settings: Settings, request: LaunchRequest, progress: Progress) -> list[Node]:
        now = datetime.now(timezone.utc).isoformat()
        with self._registry(settings, write=True) as registry:
            for host, port in self._machines(settings):
                registry[node_id(host, port)] = {
                    "host": host,
                    "port": port,
                    "tags": dict(request.tags),
                    "registered_at": now,
                }
            return [self._node(key, registry[key]) for key in (node_id(*m) for m in self._machines(settings))]

    def nodes(self, settings: Settings) -> list[Node]:
        rows = self._rows(settings)
        found = probe_all([(row["host"], row["port"]) for _, row in rows])
        return [self._node(key, row, found[(row["host"], row["port"])]) for key, row in rows]

    def nodes_to_connect(self, settings: Settings) -> list[Node]:
        """The registered machines, unprobed: the SSH step's first connect is the probe."""
        return [replace(self._node(key, row), unprobed=True) for key, row in self._rows(settings)]

    def _rows(self, settings: Settings) -> list[tuple[str, dict[str, Any]]]:
        """The registry's machines, by id."""
        with self._registry(settings) as registry:
            return sorted(registry.items())

    def terminate(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        progress.stage("forgetting machines", len(nodes))
        with self._registry(settings, write=True) as registry:
            for node in nodes:
                registry.pop(node.id, None)
        progress.update(len(nodes))

    def access(self, settings: Settings) -> Access:
        return Access(self.name, settings.cluster, settings["username"], self._key(settings))

    @staticmethod
    def _node(key: str, row: dict[str, Any], unreachable: str = "") -> Node:
        """A registered machine: running if its SSH port answered (``unreachable`` is why not).

        The state is "unknown", not "stopped", when the port does not answer: ess cannot
        tell a machine that is down from one whose sshd is.
        """
        # No launched_at: ess did not launch these machines and does not know when they booted
        # (the SSH check treats a recent launch as "may still be installing its key", and
        # fails a refused connection fast only for nodes that were not just launched).
        return Node(
            id=key,
            state=UNKNOWN if unreachable else RUNNING,
            address=row["host"],
            port=row["port"],
            instance_type="host",
            tags=row["tags"],
            desired=RUNNING,
            reason=unreachable,
        )
