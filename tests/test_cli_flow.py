"""What the commands say and do: growing a cluster, prompts, iplist, the terminate verb,
one number format, and logging in with the real OpenSSH client."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes


class Terminal(io.StringIO):
    """stdin as a terminal that types ``answer`` (or presses Ctrl-C when answer is None)."""

    def __init__(self, answer: str | None) -> None:
        super().__init__(answer or "")
        self.interrupt = answer is None

    def isatty(self) -> bool:
        return True

    def readline(self, *args: object) -> str:
        if self.interrupt:
            raise KeyboardInterrupt
        return super().readline(*args)


def node_ids(ess, backend: str = "memory", *extra: str) -> list[str]:
    r = ess("instance", backend, "list", "--json", *extra)
    assert r.code == 0, r
    return [n["id"] for n in json.loads(r.out)["nodes"]]


def test_create_twice_says_it_grows_the_cluster_and_json_has_the_total(ess, memory):
    first = ess("instance", "memory", "create", "--number", "3", "--no-verify", "--json")
    assert first.code == 0 and "already has" not in first.err
    assert json.loads(first.out)["total"] == 3
    second = ess("instance", "memory", "create", "--number", "3", "--no-verify", "--json")
    assert second.code == 0, second
    assert "cluster 'default' already has 3 node(s); adding 3 more" in second.err
    data = json.loads(second.out)
    assert len(data["nodes"]) == 3 and data["total"] == 6
    assert len(node_ids(ess)) == 6


def test_create_on_a_terminal_asks_before_growing(ess, memory, monkeypatch):
    assert ess("instance", "memory", "create", "--number", "2", "--no-verify").code == 0
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    r = ess("instance", "memory", "create", "--number", "2", "--no-verify")
    assert r.code == 1, r
    assert r.err.strip().splitlines()[-1].endswith("? [y/N]: ess: aborted at the prompt; nothing was done")
    assert "Add 2 node(s) to cluster 'default' on memory?" in r.err
    assert len(node_ids(ess)) == 2
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert ess("instance", "memory", "create", "--number", "2", "--no-verify").code == 0
    assert len(node_ids(ess)) == 4
    # --yes skips the question (the terminal would say no).
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert ess("instance", "memory", "create", "--number", "1", "--no-verify", "--yes").code == 0
    assert len(node_ids(ess)) == 5


def test_declined_confirmation_exits_1_and_ctrl_c_exits_130(ess, memory, monkeypatch):
    assert ess("instance", "memory", "create", "--number", "2", "--no-verify").code == 0
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    declined = ess("instance", "memory", "terminate", "all")
    assert declined.code == 1, declined
    # The terminal echoes the typed "n" and its newline; this fake one does not.
    assert declined.err.strip().splitlines()[-1] == "Proceed? [y/N]: ess: aborted at the prompt; nothing was done"
    monkeypatch.setattr(sys, "stdin", Terminal(None))
    interrupted = ess("instance", "memory", "terminate", "all")
    assert interrupted.code == 130, interrupted
    assert interrupted.err.strip().splitlines()[-1].endswith("ess: interrupted at the prompt; nothing was changed")
    assert len(node_ids(ess)) == 2 and "terminate" not in memory.CALLS


def test_config_show_prints_one_number_format(ess):
    r = ess("config", "show", "--json")
    rows = {}
    for backend in ("ec2", "local"):
        shown = ess("config", "show", "--backend", backend)
        assert shown.code == 0, shown
        rows[backend] = next(line.split()[2] for line in shown.out.splitlines() if " wait_timeout " in line)
    assert r.code == 0
    assert rows == {"ec2": "600", "local": "600"}


@pytest.fixture
def hosts_conf(tmp_path, ssh_node):
    servers = [ssh_node.start(username="worker") for _ in range(2)]
    conf = tmp_path / "instance.conf"
    conf.write_text(f"[hosts]\nusername: worker\nkey_file: {ssh_node.key_file}\n")
    return conf, [f"127.0.0.1:{s.port}" for s in servers]


def test_hosts_terminate_says_released_and_iplist_has_ports(ess, hosts_conf):
    conf, machines = hosts_conf
    assert ess("instance", "hosts", "create", *machines, "--config", str(conf)).code == 0
    for flag in ((), ("--private",), ("--public",)):
        r = ess("instance", "hosts", "iplist", *flag, "--config", str(conf))
        assert r.code == 0, r
        assert sorted(r.out.split()) == sorted(machines), flag
    r = ess("instance", "hosts", "terminate", "all", "--yes", "--config", str(conf))
    assert r.code == 0, r
    assert r.out.startswith("released 2 node(s): ") and "terminated" not in r.out
    assert "Release 2 node(s) of cluster 'default' on hosts" in r.err


@pytest.fixture
def local_cluster(ess, ess_home: Path):
    created = ess("instance", "local", "create", "--number", "2", "--no-verify")
    assert created.code == 0, created
    yield created
    kill_test_nodes(ess_home)


def test_local_iplist_prints_address_and_port(ess, local_cluster):
    nodes = json.loads(ess("instance", "local", "list", "--json").out)["nodes"]
    r = ess("instance", "local", "iplist")
    assert r.out.split() == [f"127.0.0.1:{n['port']}" for n in nodes]


def test_create_login_hint_names_the_first_row_of_the_table(ess, local_cluster):
    table = local_cluster.out.strip().splitlines()
    first = table[1].split()[0]
    hint = [line for line in local_cluster.err.splitlines() if line.startswith("log in by hand: ")]
    assert len(hint) == 1 and hint[0].endswith(f"(or: ess instance local ssh {first})")
    port = table[1].split()[2].rsplit(":", 1)[1]
    assert f" -p {port} " in hint[0] and "StrictHostKeyChecking=yes" in hint[0]


def test_stop_progress_counts_the_stopped_nodes(ess, local_cluster):
    r = ess("instance", "local", "stop", "--yes")
    assert r.code == 0, r
    assert "stopping local nodes 2/2 done" in r.err


def test_no_running_nodes_hint_for_ssh(ess, local_cluster):
    assert ess("instance", "local", "stop", "--yes").code == 0
    r = ess("instance", "local", "ssh")
    assert r.code == 1
    assert r.err.strip() == (
        "ess: cluster 'default' has no running nodes (2 stopped; start them with: ess instance local start)"
    )
    r = ess("instance", "local", "ssh", "local-nope")
    assert r.code == 2 and "NODE: 'local-nope' is not a node of cluster 'default'" in r.err


@pytest.mark.needs("ssh", "scp")
def test_ssh_config_works_with_the_real_openssh_client(ess, local_cluster, tmp_path):
    r = ess("instance", "local", "ssh-config")
    assert r.code == 0, r
    config = tmp_path / "nodes.ssh"
    config.write_text(r.out)
    ids = node_ids(ess, "local")
    assert [line.split()[1] for line in r.out.splitlines() if line.startswith("Host ")] == ids
    assert "StrictHostKeyChecking yes" in r.out
    for node in ids:
        proc = subprocess.run(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", node, "echo", "hello"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (proc.returncode, proc.stdout.strip()) == (0, "hello"), proc.stderr
    # The iplist/ssh-config help's copy loop: scp by node id through the snippet.
    payload = tmp_path / "data.csv"
    payload.write_text("a,b\n")
    copied = subprocess.run(
        ["scp", "-F", str(config), "-o", "BatchMode=yes", str(payload), f"{ids[0]}:"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert copied.returncode == 0, copied.stderr
    proc = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", ids[0], "cat data.csv"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout == "a,b\n", proc.stderr
    data = json.loads(ess("instance", "local", "ssh-config", "--json").out)
    assert [h["Host"] for h in data["hosts"]] == ids


@pytest.mark.needs("ssh")
def test_ess_ssh_logs_in_to_the_first_node_with_openssh(ess, local_cluster, tmp_path):
    env = {**os.environ, "ESS_HOME": os.environ["ESS_HOME"]}
    ids = node_ids(ess, "local")
    proc = subprocess.run(
        [sys.executable, "-m", "ess", "instance", "local", "ssh", "--", "echo", "first", "-a"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "first -a"), proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "ess", "instance", "local", "ssh", ids[1], "--", "exit 7"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 7, proc.stderr


@pytest.mark.parametrize(
    ("backend", "command"),
    [("hosts", "ess instance hosts create 10.0.0.5 10.0.0.6"), ("local", "ess instance local create --number 2")],
)
def test_empty_list_names_a_create_that_works_on_the_backend(ess, backend, command):
    r = ess("instance", backend, "list")
    assert r.code == 0
    assert r.err.strip() == f"cluster 'default' has no nodes on {backend} (create some with: {command})"


@pytest.mark.needs("ssh")
def test_hosts_ssh_config_uses_the_host_keys_verify_recorded(ess, hosts_conf, tmp_path):
    conf, machines = hosts_conf
    assert ess("instance", "hosts", "create", *machines, "--config", str(conf)).code == 0
    r = ess("instance", "hosts", "ssh-config", "--config", str(conf))
    assert r.code == 0, r
    config = tmp_path / "hosts.ssh"
    config.write_text(r.out)
    from ess.paths import known_hosts_file

    assert f"UserKnownHostsFile {known_hosts_file('hosts', 'default')}" in r.out
    proc = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", machines[0], "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
