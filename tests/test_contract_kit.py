"""Test the tests: the contract suite passes a correct backend and catches broken ones."""

from __future__ import annotations

import pytest
from support.kit import MEMORY_ONLY_CONFTEST

pytest_plugins = ["pytester"]

TEST_TEMPLATE = """
import pytest
from ess.testing import memory as memory_backend
from ess.errors import UsageError
from ess.testing.contract import BackendContract, ContractTarget


class Backend(memory_backend.MemoryBackend):
{body}


class TestBrokenContract(BackendContract):
    @pytest.fixture
    def contract_target(self):
        return ContractTarget(backend=Backend(), snapshot=memory_backend.load,
                              bad_settings=[({{"fail_at": "nonsense"}}, "is not one of")])
"""

CORRECT = "    pass"
BROKEN = {
    # terminate wipes every node it can see, whatever it was asked to remove
    "terminate_touches_other_nodes": (
        "    def terminate(self, settings, nodes, progress):\n        memory_backend.save([])\n",
        ["test_contract_terminate_is_scoped_and_idempotent"],
    ),
    # nodes are launched without the launch tag, so a lost reply leaks them
    "create_leaks_on_failure": (
        "    def create(self, settings, request, progress):\n"
        "        from dataclasses import replace\n"
        "        tags = {k: v for k, v in request.tags.items() if k != 'ess:launch'}\n"
        "        return super().create(settings, replace(request, tags=tags), progress)\n",
        ["test_contract_lost_launch_reply_leaves_nothing", "test_contract_create_returns_the_requested_nodes"],
    ),
    # preflight writes state
    "preflight_with_side_effects": (
        "    def preflight(self, settings, request):\n"
        "        memory_backend.save(memory_backend.load() + [{'id': 'x', 'state': 'running', 'tags': {}}])\n",
        ["test_contract_preflight_has_no_side_effects"],
    ),
    # list returns nodes of every cluster
    "list_shows_foreign_nodes": (
        "    def nodes(self, settings):\n        return [memory_backend.as_node(r) for r in memory_backend.load()]\n",
        ["test_contract_list_finds_them_and_only_them"],
    ),
    # create depends on state preflight left on the backend object (per-command state that
    # outlives the command): a create without preflight fails
    "create_needs_preflight_state": (
        "    launches = {}\n"
        "    def preflight(self, settings, request):\n"
        "        type(self).launches[request.launch_id] = request.count\n"
        "    def create(self, settings, request, progress):\n"
        "        type(self).launches.pop(request.launch_id)\n"
        "        return super().create(settings, request, progress)\n",
        ["test_contract_create_needs_no_plan"],
    ),
    # a name that cannot be a command or a config section (ess refuses to load it)
    "name_not_an_identifier": (
        "    name = 'My Cloud'\n",
        ["test_contract_names_itself"],
    ),
    # an undocumented setting
    "undocumented_setting": (
        "    settings = memory_backend.MemoryBackend.settings + (memory_backend.SettingSpec('zone'),)\n",
        ["test_contract_settings_are_declared_and_documented"],
    ),
}


def run_suite(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makeconftest(MEMORY_ONLY_CONFTEST)
    pytester.makepyfile(test_backend=TEST_TEMPLATE.format(body=body))
    return pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")


def test_a_correct_backend_passes_the_whole_suite(pytester):
    result = run_suite(pytester, CORRECT)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 10


@pytest.mark.parametrize("flaw", sorted(BROKEN))
def test_the_suite_catches_a_broken_backend(pytester, flaw):
    body, expected = BROKEN[flaw]
    result = run_suite(pytester, body)
    failed = {
        r.nodeid.split("::")[-1].split("[")[0] for r in result.reprec.getreports("pytest_runtest_logreport") if r.failed
    }
    for name in expected:
        assert name in failed, f"{flaw}: {name} did not fail\n{result.stdout.str()}"
