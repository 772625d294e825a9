"""The base class every backend plugin subclasses.

A backend owns one kind of machine (EC2 instances, local processes, a static host list).
It does the cloud work and nothing else: the core owns the flow (preflight, create, wait,
verify, rollback), the output and the errors. Methods a backend cannot support raise
:class:`ess.errors.NotSupported`, which the CLI reports as a one-line error.

What a backend supports is derived from the class itself: :meth:`Backend.supports`
is true for an operation the subclass overrides. The CLI shows only the commands whose
operations are supported (``stop``/``start`` need ``stop``/``start``; ``add`` needs
``adoptable`` and ``adopt``; ``remove`` needs ``release``; ``exec``/``push``/``ssh``/
``ssh-config`` need ``access``; ``terminate all --purge`` needs ``purge``), and names a
command that helps when one that is not offered is typed. Nothing to declare by hand.

State per command, not per backend: one Backend object serves many commands (a CLI
process runs one; an :class:`ess.Cluster` or a test runs many), so it keeps nothing a
command learned. Each command loads one :class:`~ess.models.Settings` object and passes
that same object to every call, which is how a backend tells commands apart:

* What ``preflight`` resolved (ids, images, a price) is its return value, the *plan*.
  :func:`ess.provision.prepare` puts it in ``request.plan`` and ``create`` launches from
  it, so a launch asks the cloud each question once. ``create`` must still work with
  ``request.plan`` None (a caller that skipped preflight): then it checks for itself.
* A cloud session or what the cloud said during the command (ec2 keeps both in an
  ``Ec2Session``, found from the Settings object and dropped with it) belongs to that
  command; never to the backend, and never in a module-global keyed on anything else.
* Test seams (ec2's ``sleep`` and ``clock``) are public attributes; tests read a
  backend's public behaviour (results, counted API calls), never its private attributes.

Rules every backend must follow (the contract suite in ``ess.testing`` checks them):

* ``preflight`` has no side effects and raises :class:`UsageError` for bad settings.
* ``create`` attaches ``request.tags`` to every node *in the launch call itself*.
* ``nodes`` returns the cluster's nodes and never a foreign node; not the ones ess terminated,
  though a *lost* node (terminated behind ess's back, ``desired`` running) may be listed
  while the cloud still shows it.
* ``terminate`` acts only on the nodes it is given, which the core took from ``nodes``;
  it is idempotent, and it waits until they are gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .errors import NotSupported
from .models import Access, ClusterInventory, LaunchRequest, Node, Settings, SettingSpec
from .progress import Progress


class Backend:
    #: The name in ``ess instance <name> ...`` and the config section (case-insensitive).
    name: ClassVar[str] = ""
    #: One line for ``ess instance --help`` and ``ess plugins``.
    description: ClassVar[str] = ""
    #: The settings this backend reads, declared so the core can parse, validate,
    #: document (docs/config.md) and show them (``ess config show``).
    settings: ClassVar[tuple[SettingSpec, ...]] = ()
    #: True when nodes cost money: ``create`` then asks for confirmation on a terminal
    #: (``--yes`` skips it) and shows what it is about to launch.
    billable: ClassVar[bool] = False
    #: A list setting that ``create``'s positional arguments fill, e.g. "hosts" makes
    #: ``ess instance hosts create 10.0.0.5 10.0.0.6`` set ``hosts``. None: no arguments.
    create_arguments: ClassVar[str | None] = None
    #: False when ``terminate`` only forgets machines ess does not own (hosts): the CLI
    #: then says "release"/"released" instead of "terminate"/"terminated".
    ends_nodes: ClassVar[bool] = True
    #: A node id as this backend writes it, for the examples in ``--help`` ("i-0abc123").
    example_node_id: ClassVar[str] = "NODE_ID"
    #: True when the nodes end themselves at ``max_lifetime`` and after ``idle_timeout``
    #: (the tags of :func:`ess.lifetime.launch_tags` ask for it); False: ``create`` says
    #: in one line that the limits are not enforced there (docs/lifetime.md).
    enforces_lifetime: ClassVar[bool] = False
    #: Where a node keeps its own copy of its deadline (``EPOCH STAMP``), which ``extend``
    #: rewrites over SSH; None when the node reads the deadline from its ess:expires tag/record.
    deadline_file: ClassVar[str | None] = None

    def supports(self, operation: str) -> bool:
        """True when this backend implements ``operation`` (a method name of this class):
        the subclass overrides it. ``create``, ``nodes`` and ``terminate`` are required;
        ``stop``, ``start``, ``adoptable``/``adopt``, ``release``, ``retag``, ``purge``, ``clusters``,
        ``nodes_to_connect`` and ``access`` are optional, and the CLI offers only the commands
        whose operations are supported.
        """
        base = getattr(Backend, operation, None)
        if not callable(base):
            raise ValueError(f"{operation!r} is not a Backend operation")
        return getattr(type(self), operation, base) is not base

    def requested_count(self, settings: Settings) -> int:
        """How many nodes ``create`` makes: ``instance_count``, unless the backend knows better."""
        return int(settings.get("instance_count", 1))

    def preflight(self, settings: Settings, request: LaunchRequest) -> Any:
        """Check everything a launch needs, without side effects; raise UsageError.

        Return the plan ``create`` needs (anything; the core only carries it, in
        ``request.plan``), or None when there is nothing to carry.
        """
        return None

    def create(self, settings: Settings, request: LaunchRequest, progress: Progress) -> list[Node]:
        """Launch ``request.count`` nodes tagged with ``request.tags``; return them (maybe pending).

        ``request.plan`` is what :meth:`preflight` returned for this request (None if the
        caller did not run it).
        """
        raise NotSupported(f"backend {self.name} cannot create nodes")

    def wait(self, settings: Settings, nodes: list[Node], progress: Progress, timeout: float) -> list[Node]:
        """Block until ``nodes`` are running (or ``timeout`` seconds pass); return them refreshed."""
        return nodes

    def nodes(self, settings: Settings) -> list[Node]:
        """The cluster's current nodes (not those ess terminated; lost ones may show), never a foreign one."""
        raise NotSupported(f"backend {self.name} cannot list nodes")

    def nodes_to_connect(self, settings: Settings) -> list[Node]:
        """The cluster's nodes as ``verify``, ``exec`` and ``push`` need them, just before they
        connect to each one over SSH. Optional; the default is :meth:`nodes`.

        A backend whose :meth:`nodes` can tell whether a node is up only by connecting to its
        SSH port (hosts: a TCP probe) returns the same nodes here without that connect, as
        running with ``unprobed=True``: the SSH step's own first connect is then the probe,
        and each node is reached once instead of twice (every probe makes an sshd fork).
        """
        return self.nodes(settings)

    def may_change(self, settings: Settings, verb: str) -> None:
        """Raise UsageError if this machine may not ``verb`` the cluster's nodes ("terminate",
        "stop", "start", "release"). Optional (since hook API 1.5); the default allows it.

        Called before ess asks the user to confirm, so a refusal comes before the question,
        not after a "yes". Advice only: the change itself must check again (a caller of the
        Python API may not ask this first).
        """

    def terminate(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Remove exactly ``nodes`` (chosen by the core from ``list``) and wait until gone."""
        raise NotSupported(f"backend {self.name} cannot terminate nodes")

    def access(self, settings: Settings) -> Access:
        """The user name and private key that log in to this cluster's nodes."""
        raise NotSupported(f"backend {self.name} has no SSH access")

    def stop(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Pause ``nodes`` (EC2 StopInstances); optional."""
        raise NotSupported(f"backend {self.name} cannot stop nodes (terminate them instead)")

    def start(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Resume stopped ``nodes``; optional."""
        raise NotSupported(f"backend {self.name} cannot start stopped nodes")

    def adoptable(self, settings: Settings, ids: list[str]) -> list[Node]:
        """The existing machines ``ids`` name, ready to adopt; no side effects.

        Raise UsageError for an unknown id or one that belongs to another ess cluster.
        """
        raise NotSupported(f"backend {self.name} cannot adopt existing machines")

    def adopt(self, settings: Settings, nodes: list[Node], tags: Mapping[str, str], progress: Progress) -> None:
        """Attach ``tags`` (the cluster's) to ``nodes`` from :meth:`adoptable`."""
        raise NotSupported(f"backend {self.name} cannot adopt existing machines")

    def release(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Remove ess's tags from ``nodes`` without stopping them: they leave the cluster."""
        raise NotSupported(f"backend {self.name} cannot release nodes")

    def retag(self, settings: Settings, nodes: list[Node], tags: Mapping[str, str], progress: Progress) -> None:
        """Set ``tags`` (added or replaced, others kept) on the cluster's ``nodes``.

        The core uses it for ess's own bookkeeping tags, e.g. ``ess:size`` after nodes are
        terminated on purpose and ``ess:expires`` after ``extend``. One batched call where
        the cloud allows it; only nodes of ``settings.cluster`` are ever changed.
        """
        raise NotSupported(f"backend {self.name} cannot change the tags of its nodes")

    def purge(self, settings: Settings, progress: Progress) -> list[str]:
        """After ``terminate all --purge``: delete the cluster's supporting resources that ess
        created (ec2: security group, key pair), never ones it did not; say what went."""
        raise NotSupported(f"backend {self.name} has nothing to purge (drop --purge)")

    def clusters(self, settings: Settings, all_regions: bool, progress: Progress) -> ClusterInventory:
        """Every ess cluster these credentials can see, whatever config made it (``ess clusters``).

        Read-only. ``settings`` are the backend's settings from whatever config was found
        (its credentials and region); ``settings.cluster`` is ignored. ``all_regions``
        asks every region the account has, not only the configured one. Nodes ess did not
        launch or adopt never appear; nodes ess terminated are left out. A place the backend
        could not ask goes in ``failures`` while the others are still returned; raise
        :class:`ess.errors.EssError` only when nothing could be asked at all. Optional.
        """
        raise NotSupported(f"backend {self.name} cannot list its clusters")

    def commands(self) -> list[Any]:
        """Extra click commands under ``ess instance <name>`` (e.g. ec2's security-group)."""
        return []
