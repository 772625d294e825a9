"""A misbehaving plugin costs only itself, and is named: what the core does with its answers.

Each test loads a tiny plugin written here the way an author would load theirs while
developing it (``ESS_PLUGINS=module``), next to the in-memory backend, and drives the real
command line in-process. docs/plugins.md states the rules these tests hold ess to.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from support.kit import MEMORY_ONLY_CONFTEST

from ess import plugins

pytest_plugins = ["pytester"]

HEADER = """
import os
from pathlib import Path

from ess import hookimpl
from ess.backend import Backend
from ess.models import Access, CheckResult, CommandResult
from ess.testing.memory import MemoryBackend
"""

LoadPlugin = Callable[..., str]


@pytest.fixture
def load_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoadPlugin:
    """Write a plugin module and load it with ESS_PLUGINS (after the memory backend, if used)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def load(source: str, name: str = "ess_test_broken", *, with_memory: bool = True) -> str:
        (folder / f"{name}.py").write_text(HEADER + textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, name, raising=False)  # another test's plugin of that name
        importlib.invalidate_caches()
        loaded = [m for m in plugins._names("ESS_PLUGINS") if m != "ess.testing.memory" or with_memory]
        if with_memory and "ess.testing.memory" not in loaded:
            loaded.insert(0, "ess.testing.memory")
        monkeypatch.setenv("ESS_PLUGINS", ",".join([*loaded, name]))
        plugins.reset()
        return name

    return load


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("ess: warning: plugin")]


def one_warning(err: str, fragment: str) -> bool:
    """Exactly one plugin warning on stderr: about the test plugin, saying ``fragment``."""
    lines = warnings_in(err)
    return len(lines) == 1 and lines[0].startswith("ess: warning: plugin 'ess_test_broken': ") and fragment in lines[0]


def node_ids(ess) -> list[str]:
    return [n["id"] for n in json.loads(ess("instance", "memory", "list", "--json").out)["nodes"]]


# -- finding 1: an answer must cover the nodes asked about ------------------------------------
SHORT_RUNNER = """
@hookimpl
def ess_run_command(nodes, command):
    keep = int(os.environ["KEEP"])
    return [CommandResult(n.id, 0, stdout="ran\\n") for n in nodes[:keep]] + [CommandResult("ghost-1", 0)]


@hookimpl
def ess_push_files(nodes):
    keep = int(os.environ["KEEP"])
    return [CommandResult(n.id, 0) for n in nodes[:keep]]
"""


@pytest.mark.parametrize(("keep", "code"), [(0, 1), (1, 3)], ids=["none answered", "one of two answered"])
@pytest.mark.parametrize("command", ["exec", "push"])
def test_exec_and_push_fail_for_each_node_the_answering_plugin_left_out(
    ess, memory, load_plugin, monkeypatch, tmp_path, keep, code, command
):
    load_plugin(SHORT_RUNNER)
    monkeypatch.setenv("KEEP", str(keep))
    assert ess("instance", "memory", "create", "--number", "2").code == 0
    left_out = node_ids(ess)[keep:]
    args = ["--", "true"] if command == "exec" else [str(tmp_path)]
    r = ess("instance", "memory", command, "--json", *args)
    assert r.code == code, r
    results = {item["node"]: item for item in json.loads(r.out)["results"]}
    assert set(results) == set(node_ids(ess)), "a result per node asked about, none for a stranger"
    for node_id in left_out:
        assert results[node_id]["error"] == "no result from plugin 'ess_test_broken'", results
    assert (command == "exec") == ("ghost-1" in r.err and "not asked about" in r.err), r.err


def test_the_api_exec_with_check_raises_when_the_runner_answered_for_no_node(ess, memory, load_plugin, monkeypatch):
    from ess.api import Cluster
    from ess.errors import EssError

    load_plugin(SHORT_RUNNER)
    monkeypatch.setenv("KEEP", "0")
    assert ess("instance", "memory", "create", "--number", "2").code == 0
    with pytest.raises(EssError, match="no result from plugin 'ess_test_broken'") as info:
        Cluster("memory").exec("exit 1", check=True)
    assert info.value.exit_code == 1


STRANGE_CHECKER = """
@hookimpl
def ess_check_nodes(nodes):
    first = sorted(nodes, key=lambda n: n.id)[0]
    return [CheckResult(first.id, "strange", True), CheckResult("i-notmine", "strange", False, "x")]
"""


def test_verify_ignores_results_for_unknown_nodes_and_fails_a_node_without_one(ess, memory, load_plugin):
    load_plugin(STRANGE_CHECKER)
    assert ess("instance", "memory", "create", "--number", "2", "--no-verify").code == 0
    first, second = sorted(node_ids(ess))
    r = ess("instance", "memory", "verify")
    assert r.code == 3, r
    assert "ess: warning: plugin 'ess_test_broken' answered ess_check_nodes for node(s) not asked about: " in r.err
    assert "i-notmine (ignored)" in r.err
    assert r.err.strip().splitlines()[-1] == (
        f"ess: 1 of 2 node(s) failed: {second}: no result from plugin 'ess_test_broken'"
    )


# -- findings 2 and 4: a broken load-time answer is a load error, not an outage ----------------
LOAD_TIME = {
    "backend instead of a list": (
        "@hookimpl\ndef ess_backends():\n    return MemoryBackend()\n",
        "failed in ess_backends: returned one MemoryBackend, not a list (return [MemoryBackend(...)])",
    ),
    "backend class": (
        "@hookimpl\ndef ess_backends():\n    return [MemoryBackend]\n",
        "failed in ess_backends: returned a list holding the class MemoryBackend",
    ),
    "backends raise": (
        "@hookimpl\ndef ess_backends():\n    import missing_sdk\n",
        "failed in ess_backends: ModuleNotFoundError: No module named 'missing_sdk' (ignored)",
    ),
    "settings raise": (
        "@hookimpl\ndef ess_settings():\n    raise RuntimeError('boom')\n",
        "failed in ess_settings: RuntimeError: boom (ignored)",
    ),
    "settings garbage": (
        "@hookimpl\ndef ess_settings():\n    return ['verify_command']\n",
        "failed in ess_settings: returned a list holding a str, not only SettingSpec objects",
    ),
    "commands raise": (
        "@hookimpl\ndef ess_register_commands(cli):\n    raise RuntimeError('boom')\n",
        "failed in ess_register_commands: RuntimeError: boom (ignored)",
    ),
    "commands replace instance": (
        "import click\n@hookimpl\ndef ess_register_commands(cli):\n"
        "    @cli.command('instance')\n    def hijack():\n        click.echo('hijacked')\n",
        "failed in ess_register_commands: it would replace the command 'instance'",
    ),
    "config garbage": (
        "@hookimpl\ndef ess_load_config(path, text):\n    return {'memory': 'junk'}\n",
        "failed in ess_load_config: returned section 'memory' as a str, not a dict of settings (ignored)",
    ),
}


@pytest.mark.parametrize("case", sorted(LOAD_TIME))
def test_a_broken_load_time_hook_is_one_warning_and_a_load_error_and_ess_keeps_working(
    ess, memory, load_plugin, tmp_path, case
):
    source, fragment = LOAD_TIME[case]
    load_plugin(source)
    config = tmp_path / "instance.conf"
    config.write_text("[memory]\ninstance_count: 1\n")
    for args in (["--help"], ["instance", "--help"], ["config", "show", "--backend", "memory"]):
        assert ess(*args).code == 0, (args, ess(*args))
    r = ess("instance", "memory", "list", "--config", str(config))
    assert r.code == 0, r
    assert r.out == "" and one_warning(r.err, fragment), r
    listed = ess("plugins", "--json")
    assert listed.code == 0, listed
    assert "memory" in {b for p in json.loads(listed.out)["plugins"] for b in p["backends"]}
    if case == "config garbage":
        return  # `ess plugins` reads no config file: a loader is judged when a command reads one
    errors = json.loads(listed.out)["errors"]
    assert [e["name"] for e in errors] == ["ess_test_broken"] and fragment in errors[0]["error"], errors
    assert one_warning(listed.err, fragment), listed.err


def test_the_replaced_command_keeps_working_and_the_plugin_is_named(ess, memory, load_plugin):
    load_plugin(LOAD_TIME["commands replace instance"][0])
    r = ess("--help")
    assert r.code == 0 and "hijack" not in r.out, r
    assert len(warnings_in(r.err)) == 1 and "would replace the command 'instance'" in r.err, r.err
    shown = ess("plugins")
    assert "load error: ess_test_broken: failed in ess_register_commands: it would replace" in shown.out, shown


RAISING_CHECKER = """
@hookimpl
def ess_check_nodes(nodes, access):
    raise RuntimeError("checker blew up")
"""


def test_a_hook_that_raises_at_run_time_is_named_and_create_still_rolls_back(ess, memory, load_plugin):
    load_plugin(RAISING_CHECKER)
    created = ess("instance", "memory", "create", "--number", "2")
    assert created.code == 1, created
    assert created.err.strip().splitlines()[-1] == (
        "ess: plugin 'ess_test_broken' failed in ess_check_nodes: RuntimeError: checker blew up"
    )
    assert "ess: cleaned up: terminated 2 node(s) launched by this run" in created.err
    assert node_ids(ess) == []
    assert ess("instance", "memory", "create", "--number", "1", "--no-verify").code == 0
    verified = ess("instance", "memory", "verify")
    assert (verified.code, verified.err.strip().splitlines()[-1]) == (
        1,
        "ess: plugin 'ess_test_broken' failed in ess_check_nodes: RuntimeError: checker blew up",
    )


# -- finding 3: who keeps a backend name -------------------------------------------------------
NAMED_BACKENDS = """
class Impostor(MemoryBackend):
    description = "Someone else's code."


def backend(name):
    made = Impostor()
    made.name = name
    return made


@hookimpl
def ess_backends():
    return [backend(name) for name in os.environ["NAMES"].split(",")] + [backend("mine")]
"""


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        ("local", "backend name 'local' is taken by plugin 'local'; that backend is not loaded"),
        ("memory", "backend name 'memory' is taken by plugin 'ess.testing.memory'; that backend is not loaded"),
        ("", "backend name '' is not a lowercase identifier"),
        ("Evil Backend!", "backend name 'Evil Backend!' is not a lowercase identifier"),
    ],
)
def test_a_taken_or_invalid_backend_name_is_the_newcomers_load_error(
    ess, memory, load_plugin, monkeypatch, names, fragment
):
    monkeypatch.setenv("NAMES", names)
    load_plugin(NAMED_BACKENDS)
    help_ = ess("instance", "--help")
    assert help_.code == 0, help_
    assert "Someone else's code." in help_.out  # its other backend, `mine`, is loaded
    assert one_warning(help_.err, fragment), help_.err
    if names in ("local", "memory"):
        own = ess("instance", names, "--help")
        assert "Someone else's code." not in own.out, own
    listed = ess("plugins", "--json")
    errors = json.loads(listed.out)["errors"]
    assert [e["name"] for e in errors] == ["ess_test_broken"] and fragment in errors[0]["error"], errors
    provided = {p["name"]: p["backends"] for p in json.loads(listed.out)["plugins"]}
    assert provided["ess_test_broken"] == ["mine"], provided
    assert provided["local"] == ["local"] and provided["ess.testing.memory"] == ["memory"]


# -- finding 6: Access with the wrong types; the kit's verify=False ----------------------------
KEYLESS = """
class Keyless(MemoryBackend):
    name = "keyless"
    description = "Nodes whose access names no key file."

    def access(self, settings):
        return Access("keyless", settings.cluster, "tester", None)


@hookimpl
def ess_backends():
    return [Keyless()]
"""


def test_access_without_a_key_file_is_named_not_an_attribute_error(ess, load_plugin, monkeypatch):
    monkeypatch.delenv("ESS_DISABLE_PLUGINS", raising=False)  # the SSH plugin is the one that needs the key
    load_plugin(KEYLESS, with_memory=False)
    expected = (
        "ess: backend 'keyless' (plugin 'ess_test_broken'): access() returned key_file=None, not a pathlib.Path "
        "to the private key; the SSH plugin cannot log in without it (fix the backend's access())"
    )
    created = ess("instance", "keyless", "create", "--number", "1")
    assert (created.code, created.err.strip().splitlines()) == (1, [expected]), created
    assert ess("instance", "keyless", "create", "--number", "1", "--no-verify").code == 0
    for args in (["verify"], ["exec", "--", "true"]):
        r = ess("instance", "keyless", *args)
        assert (r.code, r.err.strip().splitlines()[-1]) == (1, expected), r


RECORDER = """
SEEN = []


@hookimpl
def ess_before_create(verify):
    SEEN.append(verify)
"""


def test_the_contract_kit_tells_the_plugins_when_nothing_will_be_verified(memory, load_plugin):
    from ess.testing.contract import BackendContract, ContractTarget

    load_plugin(RECORDER, "ess_test_recorder")
    plugins.get_plugin_manager()
    seen = importlib.import_module("ess_test_recorder").SEEN
    target = ContractTarget(backend=memory.MemoryBackend(), verify=False, count=1)
    nodes, _ = BackendContract.launch(target, "kit")
    assert len(nodes) == 1 and seen == [False]


# -- finding 5: the kit checks what the command line needs -------------------------------------
KIT_PLUGIN = """
from dataclasses import replace

from ess import hookimpl
from ess.testing import memory


class MyCloud(memory.MemoryBackend):
    name = "mycloud"
{body}


@hookimpl
def ess_backends():
    return {answer}
"""

KIT_TEST = """
import pytest
from ess.testing import memory
from ess.testing.contract import BackendContract, ContractTarget

from ess_kit_plugin import MyCloud


class TestMyCloud(BackendContract):
    @pytest.fixture
    def contract_target(self):
        return ContractTarget(backend=MyCloud(), snapshot=memory.load,
                              bad_settings=[({"fail_at": "nonsense"}, "is not one of")])
"""

STRING_DATES = """
    def create(self, settings, request, progress):
        return [replace(n, launched_at="2026-01-01T00:00:00+00:00") for n in super().create(settings, request, progress)]
"""


@pytest.mark.parametrize(
    ("body", "answer", "test", "message"),
    [
        ("    pass", "[MyCloud()]", None, None),
        (
            "    pass",
            "MyCloud()",
            "test_contract_plugin_provides_the_backend",
            "ess_backends returned one MyCloud, not a list (return [MyCloud(...)])",
        ),
        (
            STRING_DATES,
            "[MyCloud()]",
            "test_contract_nodes_have_the_types_the_cli_shows",
            "Node.launched_at is '2026-01-01T00:00:00+00:00' (str), not a timezone-aware datetime or None",
        ),
    ],
    ids=["correct", "bare backend", "launched_at as text"],
)
def test_the_contract_kit_fails_a_plugin_the_command_line_cannot_run(pytester, body, answer, test, message):
    pytester.makeconftest(MEMORY_ONLY_CONFTEST)
    pytester.makepyfile(ess_kit_plugin=KIT_PLUGIN.format(body=body, answer=answer), test_kit=KIT_TEST)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-k", "contract")
    failed = [r.nodeid.split("::")[-1] for r in result.reprec.getreports("pytest_runtest_logreport") if r.failed]
    assert failed == ([test] if test else []), result.stdout.str()
    if message:
        assert message in result.stdout.str()


# -- finding 9: extend only where it works -----------------------------------------------------
@pytest.mark.parametrize(("backend", "offered"), [("local", True), ("ec2", True), ("hosts", False), ("memory", False)])
def test_extend_is_offered_only_by_backends_whose_nodes_end_themselves(ess, memory, backend, offered):
    r = ess("instance", backend, "--help")
    assert r.code == 0, r
    assert ("extend" in r.out.split("Commands:")[1].split()) == offered, r.out
    if not offered:
        refused = ess("instance", backend, "extend", "--ttl", "4h")
        assert refused.code == 2 and refused.err == (
            f"ess: extend: backend {backend} has no time limits to extend (its nodes do not end themselves)\n"
        ), refused


BAD_ARGUMENT = """
@hookimpl
def ess_after_create(nodes):
    raise RuntimeError("a rejected plugin must not run")


@hookimpl
def ess_check_nodes(nodez):
    return None
"""


def test_a_hook_with_an_unknown_argument_rejects_the_whole_plugin_in_one_line(ess, memory, load_plugin):
    load_plugin(BAD_ARGUMENT)
    r = ess("instance", "memory", "create", "--number", "1")
    assert r.code == 0, r  # its ess_after_create, registered before the bad hook, is gone too
    assert one_warning(r.err, "rejected: Plugin 'ess_test_broken' for hook 'ess_check_nodes' hookimpl definition"), r
    listed = json.loads(ess("plugins", "--json").out)
    assert "ess_test_broken" not in {p["name"] for p in listed["plugins"]}
    assert [e["name"] for e in listed["errors"]] == ["ess_test_broken"]
