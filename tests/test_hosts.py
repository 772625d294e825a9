"""The hosts backend: existing machines (in-process SSH servers here) registered as workers."""

from __future__ import annotations

import json

import pytest

from ess.testing.contract import BackendContract, ContractTarget
from ess_hosts.backend import HostsBackend, parse_machine


@pytest.fixture
def machines(ssh_node):
    """Three in-process SSH servers accepting one cluster key (ess.testing's ssh_node)."""
    return ssh_node.key_file, [ssh_node.start(username="worker") for _ in range(3)]


class TestHostsContract(BackendContract):
    @pytest.fixture
    def contract_target(self, machines):
        key_file, servers = machines
        return ContractTarget(
            backend=HostsBackend(),
            settings={
                "hosts": ",".join(f"127.0.0.1:{s.port}" for s in servers[:2]),
                "username": "worker",
                "key_file": str(key_file),
            },
            bad_settings=[
                ({"hosts": ""}, "no machines given"),
                ({"hosts": "bad host!"}, "is not an address or host name"),
                ({"hosts": "127.0.0.1:99999"}, "has no valid port"),
                ({"hosts": "10.0.0.5,10.0.0.5"}, "is listed twice"),
                ({"key_file": "/nonexistent/key"}, "no such key file"),
            ],
        )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("10.0.0.5", ("10.0.0.5", 22)),
        ("10.0.0.5:2222", ("10.0.0.5", 2222)),
        ("node1.example.com", ("node1.example.com", 22)),
        ("[fe80::1]:2200", ("fe80::1", 2200)),
        ("fe80::1", ("fe80::1", 22)),
    ],
)
def test_machine_spellings(entry, expected):
    assert parse_machine(entry, 22, "x") == expected


@pytest.fixture
def hosts_conf(tmp_path, machines):
    key_file, servers = machines
    conf = tmp_path / "instance.conf"
    conf.write_text(f"[hosts]\nusername: worker\nkey_file: {key_file}\n")
    return conf, [f"127.0.0.1:{s.port}" for s in servers]


def test_create_registers_after_ssh_check_and_terminate_only_forgets(ess, hosts_conf, machines):
    conf, addresses = hosts_conf
    r = ess("instance", "hosts", "create", *addresses[:2], "--config", str(conf), "--json")
    assert r.code == 0, r
    created = json.loads(r.out)["nodes"]
    assert [n["id"] for n in created] == addresses[:2]
    assert all(n["checks"][0]["ok"] for n in created)
    listed = json.loads(ess("instance", "hosts", "list", "--json", "--config", str(conf)).out)["nodes"]
    assert sorted(n["id"] for n in listed) == sorted(addresses[:2])
    again = ess("instance", "hosts", "create", addresses[0], "--config", str(conf))
    assert again.code == 2 and f"{addresses[0]} is already in cluster 'default'" in again.err
    _, servers = machines
    before = [list(s.commands) for s in servers]
    r = ess("instance", "hosts", "terminate", "all", "--yes", "--config", str(conf))
    assert r.code == 0
    assert ess("instance", "hosts", "list", "--json", "--config", str(conf)).out.count('"id"') == 0
    # Listing the cluster opens (and closes) a TCP connection to each SSH port, to learn
    # which machines answer; nothing logs in, nothing runs.
    assert [list(s.commands) for s in servers] == before, "terminate must not touch the machines"
    assert all(s.auth_failures == 0 for s in servers)


def test_unreachable_machine_is_not_registered(ess, hosts_conf):
    conf, addresses = hosts_conf
    dead = "127.0.0.1:9"
    r = ess("instance", "hosts", "create", addresses[0], dead, "--config", str(conf), "--timeout", "1")
    assert r.code == 1 and "connection refused" in r.err
    # hosts forgets machines, it does not end them: the cleanup line says so.
    assert "cleaned up: released 2 node(s) launched by this run" in r.err and "terminated" not in r.err
    assert json.loads(ess("instance", "hosts", "list", "--json", "--config", str(conf)).out)["nodes"] == []


def test_min_keeps_the_reachable_machines(ess, hosts_conf):
    conf, addresses = hosts_conf
    r = ess(
        "instance",
        "hosts",
        "create",
        *addresses,
        "127.0.0.1:9",
        "--min",
        "3",
        "--timeout",
        "1",
        "--config",
        str(conf),
        "--json",
    )
    assert r.code == 3, r
    assert sorted(n["id"] for n in json.loads(r.out)["nodes"]) == sorted(addresses)


def test_create_without_key_is_exit_2(ess, tmp_path):
    r = ess("instance", "hosts", "create", "10.0.0.5")
    assert r.code == 2 and "key_file: required for create" in r.err


def test_ssh_node_fixture_gives_a_reachable_node(ssh_node):
    """The plugin-author fixture, used as a third party would: one server, one check."""
    from ess import provision
    from ess.progress import Progress
    from ess.settings import load_settings

    server = ssh_node.start()
    backend = HostsBackend()
    settings = load_settings(
        backend,
        cli={"hosts": f"127.0.0.1:{server.port}", "username": ssh_node.username, "key_file": str(ssh_node.key_file)},
    )
    results = provision.check(backend, settings, [server.node("n1")], Progress(quiet=True))
    assert [r.ok for r in results] == [True]


# -- the truth about each machine (#13): a TCP probe of its SSH port, lost when it fails -------
def test_list_verify_and_exec_report_a_host_whose_sshd_is_gone(ess, hosts_conf, machines):
    conf, addresses = hosts_conf
    _, servers = machines
    assert ess("instance", "hosts", "create", *addresses[:2], "--config", str(conf)).code == 0
    servers[1].stop()  # sshd killed: the port now refuses
    port = servers[1].port
    listed = {
        n["id"]: n for n in json.loads(ess("instance", "hosts", "list", "--json", "--config", str(conf)).out)["nodes"]
    }
    gone = listed[addresses[1]]
    assert (gone["state"], gone["desired"], gone["lost"], gone["reason"]) == (
        "unknown",
        "running",
        True,
        f"port {port} refused",
    )
    assert (listed[addresses[0]]["state"], listed[addresses[0]]["lost"]) == ("running", False)
    table = ess("instance", "hosts", "list", "--config", str(conf)).out
    assert f"unknown (lost: port {port} refused)" in table

    # verify and exec do not probe first: their own first connect fails the machine at once,
    # with the same reason (one attempt, not the 5 s refused grace of a booting node).
    verify = ess("instance", "hosts", "verify", "--config", str(conf), "--timeout", "30")
    assert verify.code == 3, verify
    assert f"{addresses[1]}: port {port} refused: nothing listens for SSH there" in verify.err
    assert "for 5s" not in verify.err
    run = ess("instance", "hosts", "exec", "--config", str(conf), "--timeout", "30", "--", "echo up")
    assert run.code == 3, run
    assert run.out.strip() == f"{addresses[0]} | up"
    assert f"{addresses[1]} (port {port} refused" in run.err


def test_ssh_steps_reach_each_machine_once_and_list_probes_it_once(ess, hosts_conf, machines, tmp_path):
    """verify, exec and push open one TCP connection per machine: no probe before the SSH
    step (each probe makes a real sshd fork); list and status, which have no SSH step, probe."""
    conf, addresses = hosts_conf
    _, servers = machines
    assert ess("instance", "hosts", "create", *addresses, "--config", str(conf), "--no-verify").code == 0
    payload = tmp_path / "data.txt"
    payload.write_text("x")
    for command in (
        ("verify",),
        ("exec", "--", "true"),
        ("push", str(payload), "--dest", str(tmp_path / "pushed")),
        ("list",),
        ("status",),
    ):
        before = [s.connections for s in servers]
        result = ess("instance", "hosts", *command[:1], "--config", str(conf), *command[1:])
        # These in-process servers have no SFTP subsystem: push connects, then fails on each.
        expected = (1, "offers no SFTP") if command[0] == "push" else (0, "")
        assert (result.code, expected[1] in result.err) == (expected[0], True), (command, result)
        assert accepted(servers, before) == [1, 1, 1], command


def accepted(servers, before, settle: float = 0.5):
    """Connections each server accepted since ``before``: a probe's connect completes in the
    kernel before the server's accept loop counts it, so wait for every count to move and
    then ``settle`` longer for any second connection still in the backlog."""
    import time

    def counts():
        return [s.connections - b for s, b in zip(servers, before, strict=True)]

    deadline = time.monotonic() + 30
    while min(counts()) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(settle)
    return counts()


def test_create_on_a_refused_port_fails_in_seconds_naming_host_and_port(ess, hosts_conf):
    from ess.testing.sshd import free_port

    conf, _ = hosts_conf
    port = free_port()
    # --timeout 60 only so that a regression cannot hang the suite for the default 300 s.
    r = ess("instance", "hosts", "create", f"localhost:{port}", "--config", str(conf), "--timeout", "60")
    assert r.code == 1, r
    assert f"connection refused by localhost port {port} for 5s: nothing listens for SSH there" in r.err
    assert "still failing after 60s" not in r.err


def test_probes_run_at_the_same_time(monkeypatch):
    """Each probe waits at a barrier that opens only when all three are connecting at once."""
    import socket
    import threading

    from ess_hosts import probe

    barrier = threading.Barrier(3, timeout=30)

    def connecting(address, timeout):  # stands in for the network: refuse, after the barrier
        barrier.wait()
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", connecting)
    found = probe.probe_all([("10.0.0.5", 22), ("10.0.0.6", 22), ("10.0.0.7", 2222)])
    assert found == {
        ("10.0.0.5", 22): "port 22 refused",
        ("10.0.0.6", 22): "port 22 refused",
        ("10.0.0.7", 2222): "port 2222 refused",
    }
