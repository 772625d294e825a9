"""Typed values that cross the boundary between the core and plugins.

Everything a plugin receives or returns is one of these dataclasses, so a plugin author
can read this file and know the whole data model. They are plain data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

#: Node states, in the vocabulary of EC2 (other backends map onto it).
PENDING = "pending"
RUNNING = "running"
STOPPING = "stopping"
STOPPED = "stopped"
SHUTTING_DOWN = "shutting-down"
TERMINATED = "terminated"
UNKNOWN = "unknown"
STATES = (PENDING, RUNNING, STOPPING, STOPPED, SHUTTING_DOWN, TERMINATED, UNKNOWN)

#: Tags the core asks every backend to attach to each node at launch.
TAG_CLUSTER = "ess:cluster"
TAG_LAUNCH = "ess:launch"
TAG_CREATED_BY = "ess:created-by"
TAG_CREATED_AT = "ess:created-at"
#: Set by ``add`` on machines ess adopted rather than launched.
TAG_ADOPTED = "ess:adopted"
#: The size the cluster was meant to have when this node was launched (``heal`` restores it).
TAG_SIZE = "ess:size"
#: When this node ends itself (UTC, ``YYYY-MM-DDTHH:MM:SSZ``), set by ``create --ttl``.
TAG_EXPIRES = "ess:expires"

#: Seconds a TCP connect to a machine's SSH port may take before the machine counts as down
#: (the hosts backend's probe, and the SSH step's first connect to an ``unprobed`` node): a
#: live SSH port answers within one round trip.
UNPROBED_CONNECT_TIMEOUT = 2.0


@dataclass(frozen=True)
class Node:
    """One worker as a backend sees it right now.

    ``address`` is what ess connects to (EC2 picks public or private per
    ``use_private_ip``); ``host_keys`` are OpenSSH public-key lines ("ssh-ed25519 AAAA...")
    the backend learned out of band, which the SSH plugin trusts instead of trust-on-first-use.

    ``desired`` is the state ess last asked this node to be in: ``running`` after
    ``create``/``start``/``add``, ``stopped`` after ``stop``; None when the backend cannot
    tell. A node whose ``desired`` is ``running`` but whose ``state`` is not (its process
    died, the instance was stopped or terminated behind ess's back, the host's sshd is
    gone) is *lost*: ``verify``, ``exec``, ``push`` and ``status`` report it as a failed
    node instead of leaving it out. ``reason`` says, in a few words, why the backend
    sees the node in that state ("process exited", "port 22 refused").

    ``zone`` (availability zone or equivalent) and ``lifecycle`` (``"spot"`` or
    ``"on-demand"``) are None where a backend has no such notion.

    ``unprobed`` marks a node whose ``state`` the backend did not look up because the only
    way to look is to connect to its SSH port, which the SSH step about to run does anyway
    (hosts, in :meth:`ess.backend.Backend.nodes_to_connect`). The SSH step then takes its
    own first TCP connect as that look: a node that refuses it, or does not answer within
    :data:`UNPROBED_CONNECT_TIMEOUT`, fails at once, as a lost node would, instead of being
    retried like a booting one.
    """

    id: str
    state: str
    address: str | None = None
    port: int = 22
    public_ip: str | None = None
    private_ip: str | None = None
    instance_type: str | None = None
    launched_at: datetime | None = None
    host_keys: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    desired: str | None = None
    reason: str = ""
    zone: str | None = None
    lifecycle: str | None = None
    unprobed: bool = False

    @property
    def lost(self) -> bool:
        """Ess wants this node running and it is not (see the class docstring)."""
        return self.desired == RUNNING and self.state not in (RUNNING, PENDING)

    @property
    def launch_id(self) -> str | None:
        return self.tags.get(TAG_LAUNCH)

    @property
    def cluster(self) -> str | None:
        return self.tags.get(TAG_CLUSTER)

    @property
    def expires(self) -> str | None:
        return self.tags.get(TAG_EXPIRES)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of a node (documented in docs/commands.md)."""
        return {
            "id": self.id,
            "state": self.state,
            "address": self.address,
            "port": self.port,
            "public_ip": self.public_ip,
            "private_ip": self.private_ip,
            "instance_type": self.instance_type,
            "launched_at": self.launched_at.isoformat() if self.launched_at else None,
            "cluster": self.cluster,
            "tags": dict(self.tags),
            "desired": self.desired,
            "lost": self.lost,
            "reason": self.reason,
            "zone": self.zone,
            "lifecycle": self.lifecycle,
            "expires": self.expires,
        }


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster a backend found while surveying everything it can see (``ess clusters``).

    A backend groups its ess-tagged nodes into clusters and hands them over whole; the
    core derives the rest (nodes by state, instance types, age, who created it, expiry,
    the config file it came from) from the nodes' fields and tags, so every backend's rows
    read the same.

    ``region`` is where the cluster lives in the backend's terms (an EC2 region), None
    where there is no such notion. ``key_pair`` is the SSH key pair its nodes were
    launched with, where the backend has one: two configs with different key pairs are
    two clusters even under one name, since each config's commands act only on its own.
    ``selectors`` are the settings that point ``ess instance <backend> ...`` at exactly
    this cluster besides ``cluster`` (ec2: ``region`` and ``key_name``); the core writes
    them into the terminate command it prints, as the setting's flag where it has one,
    else as its environment variable.
    """

    backend: str
    cluster: str
    nodes: tuple[Node, ...]
    region: str | None = None
    key_pair: str | None = None
    selectors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterInventory:
    """What :meth:`ess.backend.Backend.clusters` found: the clusters, and what it could not see.

    ``failures`` are one line each naming a place the backend could not ask ("eu-west-1:
    AuthFailure ..."): the view is then partial and ``ess clusters`` exits 3. ``notes`` are
    things worth a line that are not clusters (instances that carry ``ess:cluster`` but
    that ess neither launched nor adopted).
    """

    clusters: tuple[ClusterSummary, ...] = ()
    failures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """What one health check found on one node.

    ``message`` is empty on success; on failure it is a reason a user can act on
    ("authentication failed with key ~/.ssh/k.pem for user ec2-user").
    """

    node_id: str
    check: str
    ok: bool
    message: str = ""
    seconds: float = 0.0
    attempts: int = 1
    address: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "check": self.check,
            "ok": self.ok,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "attempts": self.attempts,
            "address": self.address,
        }


@dataclass(frozen=True)
class CommandResult:
    """A command (``exec``) or a copy (``push``) on one node.

    ``exit_code`` is None when it never ran; ``error`` then says why (connection refused,
    authentication failed...). Output is decoded as UTF-8 with replacement characters.
    ``stdout`` and ``stderr`` may hold only the end of what the command printed (a runner
    keeps a bounded tail so a chatty command cannot exhaust memory): ``truncated`` says so.
    """

    node_id: str
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    seconds: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.error

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class Access:
    """How to log in to a cluster's nodes; built by the backend, used by SSH plugins.

    ``known_hosts`` is the OpenSSH known_hosts file that holds the nodes' host keys, for
    ``ess instance <backend> ssh`` and ``ssh-config`` (which hand it to OpenSSH with
    ``StrictHostKeyChecking yes``). A backend that writes its own (local) names it; None
    means the per-cluster file the SSH plugin keeps, ``ess.paths.known_hosts_file()``.
    """

    backend: str
    cluster: str
    username: str
    key_file: Path
    known_hosts: Path | None = None


@dataclass(frozen=True)
class LaunchRequest:
    """What the core asks a backend to launch.

    ``tags`` must be attached to every instance (and volume) in the launch call itself,
    so a crash at any moment leaves nodes that ``list`` and ``terminate all`` can find.
    ``launch_id`` is unique per ``create`` run: the backend may use it as an idempotency
    token, and the core uses it to roll back exactly what this run launched.
    ``plan`` is what the backend's ``preflight`` returned (its findings, opaque to the
    core): :func:`ess.provision.prepare` puts it here so ``create`` launches from it
    without asking the cloud again, and nothing is kept on the long-lived backend object.
    """

    count: int
    min_count: int
    launch_id: str
    tags: Mapping[str, str]
    plan: Any = field(default=None, compare=False, repr=False)
    #: The cluster's nodes when this launch was prepared (:func:`ess.provision.grow`): a
    #: ``create`` on a cluster that has nodes grows it, and says so. Backends ignore it.
    existing: tuple[Node, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class SettingSpec:
    """One setting a plugin declares: key, type, default and help.

    ``type`` is one of "str", "int", "float", "bool", "path", "list" (comma-separated in
    INI and env, an array in TOML). ``flag`` adds a command-line option (e.g. "--number")
    to the backend's ``commands``. ``secret`` values are masked wherever they are shown.
    ``pattern`` is checked by the core when settings are resolved, before anything starts.
    """

    key: str
    type: str = "str"
    default: Any = None
    help: str = ""
    required: bool = False
    secret: bool = False
    flag: str | None = None
    commands: tuple[str, ...] = ("create",)
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    #: A regular expression a "str" or "path" value must match whole (e.g.
    #: ``ess.names.USERNAME.pattern``), and what to write instead when it does not.
    pattern: str | None = None
    pattern_help: str = ""
    #: The default in words, where its value depends on the machine (e.g. "your login
    #: name"): the reference and ``--help`` show this instead of the value found there.
    default_help: str = ""

    @property
    def env(self) -> str:
        """The environment variable that sets this key, e.g. ESS_INSTANCE_TYPE."""
        return "ESS_" + self.key.upper()


@dataclass(frozen=True)
class Value:
    """A resolved setting value and where it came from (shown by `ess config show`)."""

    value: Any
    source: str


@dataclass
class Settings:
    """The resolved settings of one backend for one command.

    Read a value with ``settings["key"]``; ``settings.where("key")`` names its origin for
    error messages ("instance.conf [EC2] key_name"); ``settings.path("key")`` resolves a
    relative file name against the config file's folder.
    """

    backend: str
    values: dict[str, Value]
    specs: dict[str, SettingSpec]
    config_path: Path | None = None
    section: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key].value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None or value.value is None else value.value

    def source(self, key: str) -> str:
        return self.values[key].source

    def where(self, key: str) -> str:
        """Where a key was set, for one-line errors: file+section+key, option or env var."""
        value = self.values.get(key)
        if value is None or value.source == "default":
            if self.config_path is not None:
                return f"{self.config_path} [{self.section or self.backend}] {key}"
            return f"setting {key}"
        if value.source.startswith(("--", "ESS_")):
            return value.source
        if value.source.endswith("]"):  # the user config's "PATH [defaults]" names its own table
            return f"{value.source} {key}"
        section = f" [{self.section}]" if self.section else ""
        return f"{value.source}{section} {key}"

    @property
    def config_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    def path(self, key: str) -> Path | None:
        raw = self.get(key)
        if raw in (None, ""):
            return None
        path = Path(str(raw)).expanduser()
        return path if path.is_absolute() else self.config_dir / path

    @property
    def cluster(self) -> str:
        return str(self.get("cluster", "default"))

    def masked(self) -> dict[str, Any]:
        """Values with secrets replaced, safe to print or log (``ess config show``).

        A ``secret`` setting is masked whole. Every other text value, and every list item,
        is masked by shape (:func:`ess.redact.mask_credentials`): users paste the key itself
        into a setting that names a file (``aws_credential``), and no spec can know that.
        """
        from .redact import MASK, mask_credentials

        def shown(spec: SettingSpec | None, value: Any) -> Any:
            if spec is not None and spec.secret and value:
                return MASK
            if isinstance(value, str):
                return mask_credentials(value)
            if isinstance(value, list):
                return [mask_credentials(item) if isinstance(item, str) else item for item in value]
            return value

        return {key: shown(self.specs.get(key), v.value) for key, v in self.values.items()}
