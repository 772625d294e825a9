"""status, iplist, stop/start, add/remove on the in-memory backend: the core's side of them."""

from __future__ import annotations

import json


def listed(ess, *extra: str) -> list[dict]:
    r = ess("instance", "memory", "list", "--json", *extra)
    assert r.code == 0, r
    return json.loads(r.out)["nodes"]


def test_status_and_iplist(ess, memory):
    assert ess("instance", "memory", "create", "--number", "3", "--no-verify").code == 0
    r = ess("instance", "memory", "status")
    assert r.code == 0
    header = r.out.splitlines()[0].split()
    assert header == ["ID", "STATE", "PUBLIC_IP", "PRIVATE_IP", "TYPE", "UPTIME"]
    status = json.loads(ess("instance", "memory", "status", "--json").out)
    assert [n["state"] for n in status["nodes"]] == ["running"] * 3 and "uptime" in status["nodes"][0]
    nodes = listed(ess)
    assert ess("instance", "memory", "iplist").out.split() == [n["address"] for n in nodes]
    assert ess("instance", "memory", "iplist", "--private").out.split() == [n["private_ip"] for n in nodes]
    assert ess("instance", "memory", "iplist", "--public").out.split() == [n["public_ip"] for n in nodes]


def test_status_ssh_runs_the_checks(ess, memory, monkeypatch):
    assert ess("instance", "memory", "create", "--number", "2", "--no-verify").code == 0
    r = ess("instance", "memory", "status", "--ssh")
    assert r.code == 0 and r.out.splitlines()[0].split()[-1] == "SSH"
    monkeypatch.setenv("ESS_FAIL_AT", "verify")
    r = ess("instance", "memory", "status", "--ssh")
    assert r.code == 3 and "FAILED: injected" in r.out


def test_stop_start_and_iplist_skips_stopped(ess, memory):
    assert ess("instance", "memory", "create", "--number", "2", "--no-verify").code == 0
    assert ess("instance", "memory", "stop").code == 2  # needs --yes without a terminal
    assert {n["state"] for n in listed(ess)} == {"running"}
    r = ess("instance", "memory", "stop", "--yes")
    assert r.code == 0, r
    assert {n["state"] for n in listed(ess)} == {"stopped"}
    assert ess("instance", "memory", "iplist").out == ""
    again = ess("instance", "memory", "stop", "--yes")
    assert again.code == 0 and "nothing to stop" in again.err
    assert ess("instance", "memory", "start").code == 0
    assert {n["state"] for n in listed(ess)} == {"running"}
    assert memory.CALLS.count("stop") == 1 and memory.CALLS.count("start") == 1


def test_add_remove_and_terminate_all_keeps_adopted(ess, memory):
    assert ess("instance", "memory", "create", "--number", "1", "--no-verify").code == 0
    memory.add_unmanaged("vm-legacy-1")
    memory.add_unmanaged("vm-legacy-2")
    assert ess("instance", "memory", "add", "vm-legacy-1").code == 2  # --yes needed, nothing changed
    assert len(listed(ess)) == 1
    r = ess("instance", "memory", "add", "vm-legacy-1", "vm-legacy-2", "--yes")
    assert r.code == 0 and "added 2 node(s)" in r.out
    assert "ess:adopted=true" in r.err
    assert {n["id"] for n in listed(ess)} >= {"vm-legacy-1", "vm-legacy-2"}
    r = ess("instance", "memory", "remove", "vm-legacy-2", "--yes")
    assert r.code == 0
    assert "vm-legacy-2" not in {n["id"] for n in listed(ess)}
    assert any(row["id"] == "vm-legacy-2" for row in memory.load()), "remove must not terminate"
    r = ess("instance", "memory", "terminate", "all", "--yes")
    assert r.code == 0 and "keeping 1 adopted node(s) ess did not launch: vm-legacy-1" in r.err
    assert [n["id"] for n in listed(ess)] == ["vm-legacy-1"]
    r = ess("instance", "memory", "terminate", "all", "--yes", "--include-adopted")
    assert r.code == 0 and listed(ess) == []


def test_bad_ids_are_rejected_with_no_change(ess, memory, monkeypatch):
    assert ess("instance", "memory", "create", "--number", "1", "--no-verify").code == 0
    monkeypatch.setenv("ESS_CLUSTER", "other")
    assert ess("instance", "memory", "create", "--number", "1", "--no-verify").code == 0
    theirs = listed(ess)[0]["id"]
    monkeypatch.delenv("ESS_CLUSTER")
    before = memory.load()
    for argv, fragment in [
        (["add", "vm-nope", "--yes"], "vm-nope: no such machine"),
        (["add", theirs, "--yes"], f"{theirs}: already in ess cluster 'other'"),
        (["remove", theirs, "--yes"], f"{theirs}: not a node of cluster 'default'"),
        (["remove", "vm-nope", "--yes"], "vm-nope: not a node of cluster 'default'"),
        (["terminate", theirs, "--yes"], f"{theirs}: not a node of cluster 'default'"),
        (["stop", theirs, "--yes"], f"{theirs}: not a node of cluster 'default'"),
        (["remove", "all", "--yes"], "`all` is not accepted here"),
    ]:
        r = ess("instance", "memory", *argv)
        assert r.code == 2, (argv, r)
        assert len(r.err.strip().splitlines()) == 1 and fragment in r.err, (argv, r.err)
        assert memory.load() == before, argv


def test_exec_without_a_runner_is_a_clear_error(ess, memory):
    assert ess("instance", "memory", "create", "--number", "1", "--no-verify").code == 0
    r = ess("instance", "memory", "exec", "--", "true")
    assert r.code == 2 and "no installed plugin runs commands" in r.err


def test_backend_without_stop_says_so(ess, memory, monkeypatch):
    from ess.backend import Backend

    monkeypatch.setattr(memory.MemoryBackend, "stop", Backend.stop)
    assert ess("instance", "memory", "create", "--number", "1", "--no-verify").code == 0
    r = ess("instance", "memory", "stop", "--yes")
    assert r.code == 2 and r.err.strip().splitlines() == [
        "ess: stop: backend memory does not support `stop`; `ess instance memory terminate all` terminates the nodes"
    ]
    assert "stop" not in ess("instance", "memory", "--help").out.split("Commands:")[1].split()
    assert "stop" not in memory.CALLS
