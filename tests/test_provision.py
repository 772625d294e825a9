"""The core's flow on the in-memory backend: rollback, --min, hooks, terminate scoping."""

from __future__ import annotations

import json

import pytest


def nodes(ess, *extra: str) -> list[dict]:
    r = ess("instance", "memory", "list", "--json", *extra)
    assert r.code == 0, r
    return json.loads(r.out)["nodes"]


def test_create_list_terminate(ess, memory):
    r = ess("instance", "memory", "create", "--number", "3", "--json")
    assert r.code == 0, r
    created = json.loads(r.out)["nodes"]
    assert len(created) == 3
    assert all(c["checks"][0]["ok"] for c in created)
    launch = {c["tags"]["ess:launch"] for c in created}
    assert len(launch) == 1 and all(c["tags"]["ess:cluster"] == "default" for c in created)
    assert {c["tags"]["ess:created-at"][:2] for c in created} == {"20"}
    assert [n["id"] for n in nodes(ess)] == [c["id"] for c in created]
    assert [c for c in memory.CALLS if c != "list"][:3] == ["preflight", "create", "wait"]
    r = ess("instance", "memory", "terminate", "all", "--yes")
    assert r.code == 0 and "terminated 3 node(s)" in r.out
    assert nodes(ess) == []
    again = ess("instance", "memory", "terminate", "all", "--yes")
    assert again.code == 0 and "nothing to terminate" in again.err


@pytest.mark.parametrize("phase", ["create", "wait", "verify", "after_create"])
def test_failure_after_launch_rolls_back_exactly_this_run(ess, memory, monkeypatch, phase):
    assert ess("instance", "memory", "create", "--number", "2").code == 0
    survivors = {n["id"] for n in nodes(ess)}
    monkeypatch.setenv("ESS_FAIL_AT", phase)
    r = ess("instance", "memory", "create", "--number", "3")
    assert r.code == 1, r
    assert "cleaned up: terminated 3 node(s) launched by this run" in r.err
    monkeypatch.delenv("ESS_FAIL_AT")
    assert {n["id"] for n in nodes(ess)} == survivors


def test_keep_on_failure_keeps_and_says_how_to_remove(ess, memory, monkeypatch):
    monkeypatch.setenv("ESS_FAIL_AT", "wait")
    r = ess("instance", "memory", "create", "--number", "2", "--keep-on-failure")
    assert r.code == 1
    assert "--keep-on-failure: keeping the nodes of this run" in r.err
    assert "ess instance memory terminate all" in r.err
    monkeypatch.delenv("ESS_FAIL_AT")
    assert len(nodes(ess)) == 2


def test_min_keeps_good_nodes_and_drops_failed_ones(ess, memory, monkeypatch):
    monkeypatch.setenv("ESS_FAIL_AT", "verify")
    monkeypatch.setenv("ESS_FAIL_NODES", "2")
    r = ess("instance", "memory", "create", "--number", "5", "--min", "3", "--json")
    assert r.code == 3, r
    out = json.loads(r.out)
    assert len(out["nodes"]) == 3 and len(out["dropped"]) == 2
    assert "kept 3 of 5 nodes" in r.err
    monkeypatch.delenv("ESS_FAIL_AT")
    assert {n["id"] for n in nodes(ess)} == {n["id"] for n in out["nodes"]}


def test_min_not_reached_rolls_back_everything(ess, memory, monkeypatch):
    monkeypatch.setenv("ESS_FAIL_AT", "verify")
    monkeypatch.setenv("ESS_FAIL_NODES", "3")
    r = ess("instance", "memory", "create", "--number", "4", "--min", "2")
    assert r.code == 1 and "verification failed on 3 of 4 node(s)" in r.err
    monkeypatch.delenv("ESS_FAIL_AT")
    assert nodes(ess) == []


def test_min_larger_than_count_is_a_usage_error(ess, memory):
    r = ess("instance", "memory", "create", "--number", "2", "--min", "3")
    assert r.code == 2 and "--min: 3 must be between 1 and the node count 2" in r.err
    assert memory.CALLS == []


def test_terminate_refuses_foreign_ids_and_changes_nothing(ess, memory, monkeypatch):
    assert ess("instance", "memory", "create", "--number", "2").code == 0
    monkeypatch.setenv("ESS_CLUSTER", "other")
    assert ess("instance", "memory", "create", "--number", "1").code == 0
    foreign = nodes(ess)[0]["id"]
    monkeypatch.delenv("ESS_CLUSTER")
    mine = [n["id"] for n in nodes(ess)]
    r = ess("instance", "memory", "terminate", mine[0], foreign, "--yes")
    assert r.code == 2 and f"{foreign}: not a node of cluster 'default'" in r.err
    assert [n["id"] for n in nodes(ess)] == mine
    r = ess("instance", "memory", "terminate", mine[0], "--yes")
    assert r.code == 0
    assert [n["id"] for n in nodes(ess)] == mine[1:]
    assert [n["id"] for n in nodes(ess, "--cluster", "other")] == [foreign]


def test_terminate_without_a_terminal_needs_yes(ess, memory):
    assert ess("instance", "memory", "create", "--number", "1").code == 0
    r = ess("instance", "memory", "terminate", "all")
    assert r.code == 2 and "--yes: required to confirm" in r.err
    assert len(nodes(ess)) == 1


def test_verify_exit_codes(ess, memory, monkeypatch):
    assert ess("instance", "memory", "create", "--number", "3").code == 0
    assert ess("instance", "memory", "verify").code == 0
    monkeypatch.setenv("ESS_FAIL_AT", "verify")
    r = ess("instance", "memory", "verify")
    assert r.code == 3 and "1 of 3 node(s) failed" in r.err
    monkeypatch.setenv("ESS_FAIL_NODES", "3")
    assert ess("instance", "memory", "verify").code == 1


def test_verify_with_no_nodes_says_how_to_get_some(ess, memory):
    r = ess("instance", "memory", "verify")
    assert r.code == 1 and "has no nodes on memory (create some with: ess instance memory create --number 2)" in r.err


def test_before_create_veto_launches_nothing(ess, memory, monkeypatch):
    from ess import hookimpl
    from ess.errors import UsageError
    from ess.plugins import get_plugin_manager

    class Budget:
        @hookimpl
        def ess_before_create(self, settings, count):
            if count > 2:
                raise UsageError(f"budget: {count} nodes is over the limit of 2")

    pm = get_plugin_manager()
    pm.register(Budget())
    from ess.cli import run

    assert run(["instance", "memory", "create", "--number", "3"]) == 2
    assert "create" not in memory.CALLS


# -- lost nodes (#13): a node ess wants running that is not is a failure, never left out ---------
def test_verify_fails_a_lost_node_by_name_with_state_and_reason(ess, memory):
    assert ess("instance", "memory", "create", "--number", "3").code == 0
    victim = nodes(ess)[1]["id"]
    memory.lose(victim, reason="process exited")
    r = ess("instance", "memory", "verify")
    assert r.code == 3, r
    assert victim in r.out and "stopped (lost: process exited)" in r.out
    assert f"{victim}: stopped, expected running (process exited)" in r.err
    assert "1 of 3 node(s) failed" in r.err
    shown = json.loads(ess("instance", "memory", "verify", "--json").out)["nodes"]
    lost = next(n for n in shown if n["id"] == victim)
    assert (lost["lost"], lost["desired"], lost["state"], lost["reason"]) == (
        True,
        "running",
        "stopped",
        "process exited",
    )
    assert lost["checks"][0]["ok"] is False


def test_verify_with_every_node_lost_is_exit_1(ess, memory):
    assert ess("instance", "memory", "create", "--number", "2").code == 0
    for node in nodes(ess):
        memory.lose(node["id"], state="terminated", reason="terminated behind ess's back")
    r = ess("instance", "memory", "verify")
    assert r.code == 1 and "2 of 2 node(s) failed" in r.err and "terminated, expected running" in r.err


def test_status_fails_a_lost_node_without_and_with_ssh(ess, memory):
    assert ess("instance", "memory", "create", "--number", "2").code == 0
    assert ess("instance", "memory", "status").code == 0
    victim = nodes(ess)[0]["id"]
    memory.lose(victim)
    for extra in ((), ("--ssh",)):
        r = ess("instance", "memory", "status", *extra)
        assert r.code == 3, r
        assert f"{victim}: stopped, expected running (crashed)" in r.err


def test_stopped_on_purpose_is_not_lost_and_the_hint_says_start(ess, memory):
    assert ess("instance", "memory", "create", "--number", "2").code == 0
    memory.lose(nodes(ess)[0]["id"])  # down already: `stop` still takes it, so it is not lost after
    assert ess("instance", "memory", "stop", "--yes").code == 0
    assert ess("instance", "memory", "status").code == 0
    r = ess("instance", "memory", "verify")
    assert r.code == 1 and "(2 stopped; start them with: ess instance memory start)" in r.err
    assert ess("instance", "memory", "start").code == 0
    assert ess("instance", "memory", "verify").code == 0


def test_a_backend_that_cannot_tell_keeps_todays_behaviour(ess, memory):
    """desired=None: a stopped node is left out of verify, as before Node.desired existed."""
    assert ess("instance", "memory", "create", "--number", "2").code == 0
    rows = memory.load()
    memory.save(
        [
            {**{k: v for k, v in r.items() if k != "desired"}, "state": "stopped" if i == 0 else r["state"]}
            for i, r in enumerate(rows)
        ]
    )
    r = ess("instance", "memory", "verify", "--json")
    assert r.code == 0, r
    assert [n["id"] for n in json.loads(r.out)["nodes"]] == [rows[1]["id"]]


def test_a_hook_api_1_0_runner_without_output_still_works_and_lost_nodes_fail(ess, memory, capsys):
    """A runner that does not take `output` (hook API 1.0): its results are printed at the end."""
    from ess import hookimpl
    from ess.models import CommandResult
    from ess.plugins import get_plugin_manager

    class OldRunner:
        @hookimpl
        def ess_run_command(self, nodes, command):
            return [CommandResult(n.id, 0, stdout=f"ran {command}\npartial", stderr="warn\n") for n in nodes]

    assert ess("instance", "memory", "create", "--number", "3").code == 0
    ids = [n["id"] for n in nodes(ess)]
    memory.lose(ids[2], reason="crashed")
    get_plugin_manager().register(OldRunner())
    from ess.cli import run

    assert run(["instance", "memory", "exec", "--", "true"]) == 3
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{ids[0]} | ran true",
        f"{ids[0]} | partial",
        f"{ids[1]} | ran true",
        f"{ids[1]} | partial",
    ]
    assert f"{ids[0]} | warn" in err and f"{ids[2]} | ess: stopped, expected running (crashed)" in err


@pytest.mark.parametrize(
    ("flags", "start", "end"),
    [
        ((), "ess: cleaned up: terminated 50 node(s) launched by this run (", ", ... (40 more))"),
        (("--keep-on-failure",), "ess: --keep-on-failure: keeping the nodes of this run (", "terminate all"),
    ],
    ids=["rolled back", "kept"],
)
def test_the_lines_about_a_large_failed_run_stay_short(ess, memory, monkeypatch, flags, start, end):
    # They listed every id: 1,000 of them made one 20 KB line on stderr.
    monkeypatch.setenv("ESS_FAIL_AT", "wait")
    r = ess("instance", "memory", "create", "--number", "50", *flags)
    assert r.code == 1, r
    line = next(line for line in r.err.splitlines() if line.startswith(start))
    assert line.endswith(end) and "... (40 more)" in line and len(line) < 400


def test_some_ids_names_ten_and_counts_the_rest():
    from ess.log import some

    assert some([]) == ""
    assert some(["a", "b"]) == "a, b"
    assert some(f"i-{k}" for k in range(1000)) == ", ".join(f"i-{k}" for k in range(10)) + ", ... (990 more)"
