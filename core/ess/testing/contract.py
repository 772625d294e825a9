"""The backend contract suite: what every ess backend must do, as tests an author inherits.

Use it from a backend's own tests::

    from ess.testing.contract import BackendContract, ContractTarget

    class TestMyBackendContract(BackendContract):
        @pytest.fixture
        def contract_target(self, tmp_path):
            return ContractTarget(backend=MyBackend(), settings={"region": "x"},
                                  bad_settings=[({"region": "nowhere"}, "unknown region")])

Every ``test_contract_*`` method below then runs against ``MyBackend``: settings declared
and documented; preflight free of side effects and strict about bad input; create returns
exactly the nodes asked for, tagged; list finds them and only them; the optional
``clusters`` shows each cluster whole and no stranger; terminate is scoped and idempotent;
a failure mid-create leaves nothing behind; nodes pass the health checks. And what the
command line needs of a plugin: its ``ess_backends`` hook answers as ess expects, and the
nodes have the field types ``list``, ``status`` and ``--json`` print.
``pytest -k contract`` runs just these.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import pytest

from ess import hookspecs, provision
from ess.backend import Backend
from ess.errors import EssError, Interrupted, NotSupported, UsageError
from ess.models import RUNNING, STATES, TAG_CLUSTER, TAG_LAUNCH, Node, Settings
from ess.output import nodes_json, nodes_table, status_json, status_table
from ess.plugins import answer_problem, backend_name_problem
from ess.progress import Progress
from ess.settings import coerce, load_settings

SETTING_TYPES = {"str", "int", "float", "bool", "path", "list"}


@dataclass
class ContractTarget:
    """What a backend author hands the contract suite.

    backend:       the backend object under test.
    config:        a config file to read settings from (optional).
    settings:      setting overrides applied to every test, as if given on the command line.
    bad_settings:  (overrides, message fragment) pairs that preflight must reject with a
                   one-line UsageError, without side effects. At least one is required.
    snapshot:      returns the backend's outside state (API-visible resources, files...);
                   it must be equal before and after preflight.
    foreign_node:  creates a node that ess did not launch and returns its id (optional:
                   e.g. an EC2 instance with the same Name but no ess tags).
    node_exists:   tells whether a node id (the foreign one) still exists.
    verify:        True if this machine can reach the nodes through the health checks;
                   False also tells the plugins' ess_before_create that nothing is verified.
    count:         nodes per create in the suite (keep it small: the suite creates often).
    plugin:        the plugin module (or its import path) whose ``ess_backends`` provides
                   the backend. Default: the backend class's module, else ``<package>.plugin``,
                   if it implements ``ess_backends``; without one that check is skipped.
    """

    backend: Backend
    config: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    bad_settings: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    snapshot: Callable[[], Any] | None = None
    foreign_node: Callable[[], str] | None = None
    node_exists: Callable[[str], bool] | None = None
    verify: bool = True
    count: int = 2
    plugin: ModuleType | str | None = None

    def settings_for(self, cluster: str, /, **overrides: Any) -> Settings:
        """Settings for ``cluster``; ``overrides`` win (a bad_settings case may override cluster)."""
        cli = {**self.settings, "cluster": cluster, **overrides}
        if self.counts:
            cli.setdefault("instance_count", self.count)
        else:
            cli.pop("instance_count", None)
        return load_settings(self.backend, self.config, cli=cli)

    @property
    def counts(self) -> bool:
        """Whether the backend takes a node count (``hosts`` registers a given list instead)."""
        return "instance_count" in {s.key for s in self.backend.settings}


def _quiet() -> Progress:
    return Progress(quiet=True)


def plugin_of(target: ContractTarget) -> object | None:
    """The plugin whose ``ess_backends`` should provide ``target.backend`` (see ContractTarget.plugin)."""
    if isinstance(target.plugin, str):
        return importlib.import_module(target.plugin)
    if target.plugin is not None:
        return target.plugin
    module = type(target.backend).__module__
    package = module.rpartition(".")[0]
    for name in (module, *([f"{package}.plugin"] if package else [])):
        try:
            candidate = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(candidate, "ess_backends"):
            return candidate
    return None


def _optional(kind: type | tuple[type, ...]) -> Callable[[Any], bool]:
    return lambda value: value is None or isinstance(value, kind)


def _text(value: Any) -> bool:
    return isinstance(value, str)


#: Each Node field, what ``list``, ``status`` and ``--json`` need it to be, and the test.
NODE_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "id": ("a non-empty str", lambda v: isinstance(v, str) and v != ""),
    "state": (f"one of {', '.join(STATES)}", lambda v: v in STATES),
    "address": ("a str or None", _optional(str)),
    "port": ("an int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "public_ip": ("a str or None", _optional(str)),
    "private_ip": ("a str or None", _optional(str)),
    "instance_type": ("a str or None", _optional(str)),
    "launched_at": (
        "a timezone-aware datetime or None",
        lambda v: v is None or (isinstance(v, datetime) and v.tzinfo is not None),
    ),
    "host_keys": ("a tuple of str", lambda v: isinstance(v, tuple) and all(map(_text, v))),
    "tags": ("a mapping of str to str", lambda v: isinstance(v, Mapping) and all(map(_text, [*v, *v.values()]))),
    "desired": ("a str or None", _optional(str)),
    "reason": ("a str", _text),
    "zone": ("a str or None", _optional(str)),
    "lifecycle": ("a str or None", _optional(str)),
    "unprobed": ("a bool", lambda v: isinstance(v, bool)),
}


def cli_views(backend: str, cluster: str, nodes: list[Node]) -> dict[str, Callable[[], object]]:
    """The command line's own output code over ``nodes``, by the command that prints it."""
    return {
        "list": lambda: nodes_table(nodes),
        "verify": lambda: nodes_table(nodes, []),
        "status": lambda: status_table(nodes),
        "list --json": lambda: json.dumps(nodes_json(backend, cluster, nodes)),
        "status --json": lambda: json.dumps(status_json(backend, cluster, nodes)),
    }


def node_field_problems(node: Node) -> list[str]:
    """``Node.<field> is <value>, not <what the CLI needs>`` for each field of the wrong type."""
    problems = []
    for name, (wanted, fits) in NODE_FIELDS.items():
        value = getattr(node, name)
        if not fits(value):
            problems.append(f"Node.{name} is {value!r} ({type(value).__name__}), not {wanted}")
    return problems


class BackendContract:
    """Inherit this in a test class and define a ``contract_target`` fixture."""

    @pytest.fixture
    def contract_target(self) -> ContractTarget:
        pytest.fail("define a `contract_target` fixture returning ess.testing.contract.ContractTarget")

    @pytest.fixture
    def clusters(self, contract_target: ContractTarget) -> Iterator[Callable[[], str]]:
        """Fresh cluster names; every node left in them is terminated at teardown."""
        made: list[str] = []

        def new() -> str:
            made.append(f"contract-{uuid.uuid4().hex[:8]}")
            return made[-1]

        yield new
        for name in made:
            settings = contract_target.settings_for(name)
            backend = contract_target.backend
            leftover = backend.nodes(settings)
            if leftover:
                backend.terminate(settings, leftover, _quiet())

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def launch(target: ContractTarget, cluster: str, count: int | None = None) -> tuple[list[Node], str]:
        settings = target.settings_for(cluster, **({"instance_count": count} if count else {}))
        request = provision.prepare(target.backend, settings, verify=target.verify)
        nodes = target.backend.create(settings, request, _quiet())
        nodes = target.backend.wait(settings, nodes, _quiet(), timeout=120)
        return nodes, request.launch_id

    @staticmethod
    def ids(nodes: list[Node]) -> set[str]:
        return {n.id for n in nodes}

    # -- the contract -------------------------------------------------------------------
    def test_contract_names_itself(self, contract_target: ContractTarget) -> None:
        backend = contract_target.backend
        assert isinstance(backend, Backend), "a backend subclasses ess.backend.Backend"
        problem = backend_name_problem(backend.name)  # the rule ess applies when it loads backends
        assert problem is None, f"name {backend.name!r} {problem}"
        assert backend.description.strip(), "description is shown by `ess instance --help`"

    def test_contract_plugin_provides_the_backend(self, contract_target: ContractTarget) -> None:
        """The plugin as ess loads it: registered with pluggy, its ``ess_backends`` answering
        a list of Backend instances (``return MyCloud()`` breaks every ess command's start)."""
        plugin = plugin_of(contract_target)
        if plugin is None:
            pytest.skip("give ContractTarget(plugin=...) the module whose ess_backends provides the backend")
        pm = pluggy.PluginManager("ess")
        pm.add_hookspecs(hookspecs)
        pm.register(plugin)  # a hook argument ess does not pass fails here
        pm.check_pending()  # a misspelled hook name fails here
        answers = [answer for answer in pm.hook.ess_backends() if answer is not None]
        assert answers, f"{plugin!r}: its ess_backends provides no backend"
        for answer in answers:
            problem = answer_problem("ess_backends", answer)
            assert problem is None, f"ess_backends {problem}"
        names = [backend.name for answer in answers for backend in answer]
        for name in names:
            problem = backend_name_problem(name)
            assert problem is None, f"backend name {name!r} {problem}"
        assert contract_target.backend.name in names, f"ess_backends provides {names}, not the backend under test"

    def test_contract_settings_are_declared_and_documented(self, contract_target: ContractTarget) -> None:
        specs = contract_target.backend.settings
        keys = [s.key for s in specs]
        assert len(keys) == len(set(keys)), f"duplicate setting keys: {keys}"
        for spec in specs:
            assert spec.key.isidentifier() and spec.key == spec.key.lower(), spec.key
            assert spec.type in SETTING_TYPES, f"{spec.key}: type {spec.type!r} not in {SETTING_TYPES}"
            assert spec.help.strip(), f"{spec.key}: every setting needs help text (docs/config.md)"
            if spec.flag is not None:
                assert spec.flag.startswith("--"), f"{spec.key}: flag {spec.flag!r} must start with --"
            if spec.default is not None:
                coerce(spec, spec.default, f"default of {spec.key}")

    def test_contract_preflight_has_no_side_effects(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        cluster = clusters()
        settings = contract_target.settings_for(cluster)
        before = contract_target.snapshot() if contract_target.snapshot else None
        provision.prepare(contract_target.backend, settings, verify=contract_target.verify)
        after = contract_target.snapshot() if contract_target.snapshot else None
        assert before == after, "preflight changed the backend's state"
        assert contract_target.backend.nodes(settings) == [], "preflight launched nodes"

    def test_contract_preflight_rejects_bad_settings(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        assert contract_target.bad_settings, "give at least one bad_settings case"
        cluster = clusters()
        for overrides, fragment in contract_target.bad_settings:
            before = contract_target.snapshot() if contract_target.snapshot else None
            with pytest.raises(UsageError) as info:
                provision.prepare(
                    contract_target.backend,
                    contract_target.settings_for(cluster, **overrides),
                    verify=contract_target.verify,
                )
            message = str(info.value)
            assert fragment in message, f"{overrides}: {message!r} lacks {fragment!r}"
            assert "\n" not in message, f"{overrides}: errors are one line: {message!r}"
            after = contract_target.snapshot() if contract_target.snapshot else None
            assert before == after, f"{overrides}: a rejected preflight changed state"

    def test_contract_create_returns_the_requested_nodes(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        cluster = clusters()
        nodes, launch_id = self.launch(contract_target, cluster)
        expected = contract_target.backend.requested_count(contract_target.settings_for(cluster))
        assert len(nodes) == expected
        assert len(self.ids(nodes)) == expected, "node ids must be unique"
        for node in nodes:
            assert node.state == RUNNING, f"{node.id} is {node.state} after wait()"
            assert node.address, f"{node.id} has no address"
            assert node.tags.get(TAG_CLUSTER) == cluster, f"{node.id} lacks {TAG_CLUSTER}={cluster}"
            assert node.tags.get(TAG_LAUNCH) == launch_id, f"{node.id} lacks {TAG_LAUNCH}"

    def test_contract_nodes_have_the_types_the_cli_shows(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        """Every field as ``ess.models.Node`` types it, then the real ``list``, ``status`` and
        ``--json`` output code run over the nodes (a node the CLI cannot print makes
        ``create`` fail after the launch, and ``list`` fail for good)."""
        cluster = clusters()
        created, _ = self.launch(contract_target, cluster)
        backend = contract_target.backend
        listed = backend.nodes(contract_target.settings_for(cluster))
        for where, nodes in (("create/wait", created), ("nodes()", listed)):
            for node in nodes:
                problems = node_field_problems(node)
                assert not problems, f"{where} returned node {node.id!r}: " + "; ".join(problems)
            for command, show in cli_views(backend.name, cluster, nodes).items():
                try:
                    show()
                except Exception as exc:
                    pytest.fail(f"`ess instance {backend.name} {command}` cannot show what {where} returned: {exc!r}")

    def test_contract_create_needs_no_plan(self, contract_target: ContractTarget, clusters: Callable[[], str]) -> None:
        """``request.plan`` is an optimisation: a request that did not go through preflight
        (plan None) launches the same nodes, so no state may hide between the two calls."""
        cluster = clusters()
        backend = contract_target.backend
        settings = contract_target.settings_for(cluster)
        request = provision.launch_request(settings, backend.requested_count(settings))
        assert request.plan is None
        nodes = backend.wait(settings, backend.create(settings, request, _quiet()), _quiet(), timeout=120)
        assert len(nodes) == backend.requested_count(settings)
        assert all(n.tags.get(TAG_LAUNCH) == request.launch_id for n in nodes)
        backend.terminate(settings, backend.nodes(settings), _quiet())
        assert backend.nodes(settings) == []

    def test_contract_list_finds_them_and_only_them(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        first, second = clusters(), clusters()
        mine, _ = self.launch(contract_target, first)
        theirs, _ = self.launch(contract_target, second, count=1)
        foreign = contract_target.foreign_node() if contract_target.foreign_node else None
        listed = contract_target.backend.nodes(contract_target.settings_for(first))
        assert self.ids(listed) == self.ids(mine)
        other = contract_target.backend.nodes(contract_target.settings_for(second))
        assert self.ids(other) == self.ids(theirs)
        assert foreign not in self.ids(listed)
        for node in listed:
            assert node.tags.get(TAG_CLUSTER) == first

    def test_contract_nodes_to_connect_are_the_listed_nodes(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        """``nodes_to_connect`` (what verify, exec and push reach) is ``nodes`` without the
        probe, never another set: same ids, same order, same addresses and ports; a node it
        marks ``unprobed`` is handed over as running, for the SSH step to judge."""
        first, second = clusters(), clusters()
        self.launch(contract_target, first)
        self.launch(contract_target, second, count=1)
        backend, settings = contract_target.backend, contract_target.settings_for(first)
        listed = backend.nodes(settings)
        reached = backend.nodes_to_connect(settings)
        assert [(n.id, n.address, n.port) for n in reached] == [(n.id, n.address, n.port) for n in listed]
        for node in reached:
            assert node.tags.get(TAG_CLUSTER) == first
            if node.unprobed:
                assert node.state == RUNNING, f"{node.id}: an unprobed node is handed over as running"

    def test_contract_clusters_shows_each_cluster_whole_and_no_stranger(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        """The optional ``clusters`` (``ess clusters``): every cluster the backend can see,
        each with all its nodes under its name, and never a node ess did not launch."""
        backend = contract_target.backend
        if not backend.supports("clusters"):
            # Optional: a backend without it must say so the way the core expects (the
            # CLI then leaves it out of ``ess clusters``), not crash or answer garbage.
            with pytest.raises(NotSupported):
                backend.clusters(contract_target.settings_for(clusters()), False, _quiet())
            return
        first, second = clusters(), clusters()
        mine, _ = self.launch(contract_target, first)
        theirs, _ = self.launch(contract_target, second, count=1)
        foreign = contract_target.foreign_node() if contract_target.foreign_node else None
        found = backend.clusters(contract_target.settings_for(first), False, _quiet())
        assert found.failures == (), f"clusters() could not see everything: {found.failures}"
        seen: dict[str, set[str]] = {}
        for summary in found.clusters:
            assert summary.backend == backend.name
            assert all(n.tags.get(TAG_CLUSTER) == summary.cluster for n in summary.nodes), summary.cluster
            seen.setdefault(summary.cluster, set()).update(self.ids(list(summary.nodes)))
        assert seen.get(first) == self.ids(mine)
        assert seen.get(second) == self.ids(theirs)
        assert foreign is None or all(foreign not in ids for ids in seen.values()), "clusters() shows a stranger"

    def test_contract_terminate_is_scoped_and_idempotent(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        first, second = clusters(), clusters()
        backend = contract_target.backend
        mine, _ = self.launch(contract_target, first)
        theirs, _ = self.launch(contract_target, second, count=1)
        foreign = contract_target.foreign_node() if contract_target.foreign_node else None
        settings = contract_target.settings_for(first)
        victim, *rest = sorted(mine, key=lambda n: n.id)
        backend.terminate(settings, [victim], _quiet())
        assert self.ids(backend.nodes(settings)) == self.ids(rest), "terminate touched other nodes"
        backend.terminate(settings, [victim], _quiet())  # idempotent: a second time is fine
        assert self.ids(backend.nodes(contract_target.settings_for(second))) == self.ids(theirs), (
            "terminate touched another cluster"
        )
        if foreign is not None and contract_target.node_exists is not None:
            assert contract_target.node_exists(foreign), "terminate touched a node ess did not launch"
        backend.terminate(settings, backend.nodes(settings), _quiet())
        assert backend.nodes(settings) == []

    @pytest.mark.parametrize("fault", ["error", "ctrl-c"])
    def test_contract_failure_while_waiting_leaves_nothing(
        self, contract_target: ContractTarget, clusters: Callable[[], str], monkeypatch: pytest.MonkeyPatch, fault: str
    ) -> None:
        def broken_wait(*args: Any, **kwargs: Any) -> list[Node]:
            raise KeyboardInterrupt if fault == "ctrl-c" else EssError("injected: wait failed")

        monkeypatch.setattr(contract_target.backend, "wait", broken_wait)
        self._assert_rolled_back(contract_target, clusters())

    def test_contract_lost_launch_reply_leaves_nothing(
        self, contract_target: ContractTarget, clusters: Callable[[], str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The launch succeeded but its reply was lost: the core can only find the nodes by tag."""
        real_create = contract_target.backend.create

        def lossy_create(*args: Any, **kwargs: Any) -> list[Node]:
            real_create(*args, **kwargs)
            raise EssError("injected: launch reply lost")

        monkeypatch.setattr(contract_target.backend, "create", lossy_create)
        self._assert_rolled_back(contract_target, clusters())

    def _assert_rolled_back(self, target: ContractTarget, cluster: str) -> None:
        settings = target.settings_for(cluster)
        request = provision.prepare(target.backend, settings, verify=target.verify)
        with pytest.raises((EssError, Interrupted)):
            provision.create(target.backend, settings, request, _quiet(), verify=False)
        left = target.backend.nodes(settings)
        assert left == [], f"nodes leaked after a failed create: {sorted(self.ids(left))}"

    def test_contract_nodes_pass_the_health_checks(
        self, contract_target: ContractTarget, clusters: Callable[[], str]
    ) -> None:
        cluster = clusters()
        settings = contract_target.settings_for(cluster)
        if not contract_target.verify:
            # The nodes cannot be reached from this machine (an emulated cloud): check only
            # that the backend names a coherent login, or says it has none.
            try:
                access = contract_target.backend.access(settings)
            except NotSupported:
                return
            assert access.cluster == cluster and access.username and access.backend == contract_target.backend.name
            assert isinstance(access.key_file, Path), (
                f"Access.key_file is {access.key_file!r}, not a pathlib.Path to the private key (SSH logs in with it)"
            )
            assert access.known_hosts is None or isinstance(access.known_hosts, Path), (
                f"Access.known_hosts is {access.known_hosts!r}, not a pathlib.Path or None"
            )
            return
        nodes, _ = self.launch(contract_target, cluster)
        access = contract_target.backend.access(settings)
        assert access.cluster == cluster and access.username
        results = provision.check(contract_target.backend, settings, nodes, _quiet())
        assert results, "no health check ran: is ess's SSH plugin installed?"
        assert self.ids(nodes) <= {r.node_id for r in results}
        failed = [(r.node_id, r.message) for r in results if not r.ok]
        assert not failed, f"nodes failed their health checks: {failed}"
