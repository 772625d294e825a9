"""ess_check_nodes over real SSH servers on 127.0.0.1 (ess.testing.sshd)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from support.ssh_helpers import make_access, make_settings, quiet_progress

from ess.errors import UsageError
from ess.testing.sshd import (
    Gauge,
    SshNode,
    free_port,
    generate_ed25519_key,
    generate_rsa_key,
    write_private_key,
)
from ess_ssh.check import check_nodes
from ess_ssh.connect import Connector
from ess_ssh.hostkeys import known_hosts_path


@pytest.fixture(scope="module")
def user_key():
    return generate_ed25519_key()


@pytest.fixture
def key_file(user_key, tmp_path: Path) -> Path:
    return write_private_key(user_key, tmp_path / "id_ed25519")


def run(nodes, key_file, username="ess", **cli):
    progress, stream = quiet_progress()
    cli.setdefault("ssh_timeout", 5.0)
    results = check_nodes(nodes, make_access(key_file, username), make_settings(**cli), progress)
    return results, stream.getvalue()


def test_success_records_host_key_and_runs_command(user_key, key_file):
    with SshNode(authorized_keys=[user_key]) as server:
        results, log = run([server.node("n1")], key_file, verify_command="echo ok")
    [result] = results
    assert result.ok, result.message
    assert (result.check, result.node_id, result.attempts) == ("ssh", "n1", 1)
    assert server.commands == ["echo ok"]
    assert "ssh ready" in log
    text = known_hosts_path("test", "c1").read_text()
    assert text == f"[127.0.0.1]:{server.port} {server.host_key_line}\n"


def test_rsa_pem_key_works(tmp_path):
    key = generate_rsa_key()
    pem = write_private_key(key, tmp_path / "cluster.pem")
    assert pem.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    with SshNode(authorized_keys=[key]) as server:
        [result], _ = run([server.node()], pem)
    assert result.ok, result.message


def test_wrong_key_fails_at_once_naming_key_and_user(key_file):
    other = generate_ed25519_key()
    with SshNode(authorized_keys=[other]) as server:
        [result], _ = run([server.node()], key_file, ssh_timeout=60.0)
    assert not result.ok
    assert result.message == f"authentication failed with key {key_file} for user ess"
    assert result.attempts == 1  # not retried until the 60 s deadline


def test_wrong_user_fails(user_key, key_file):
    with SshNode(authorized_keys=[user_key], username="ec2-user") as server:
        [result], _ = run([server.node()], key_file, username="ubuntu", ssh_timeout=60.0)
    assert result.message == f"authentication failed with key {key_file} for user ubuntu"
    assert result.attempts == 1


def test_closed_port_retries_until_deadline(key_file):
    from ess.models import Node

    node = Node("n1", "running", address="127.0.0.1", port=free_port())
    [result], _ = run([node], key_file, ssh_timeout=1.5)
    assert not result.ok
    assert result.message.startswith("connection refused (still failing after 1.5s")
    assert result.attempts > 1


def test_unprobed_node_whose_port_refuses_fails_on_the_first_attempt(key_file):
    """A node handed over unprobed (hosts): the first connect is the probe, and its verdict."""
    from ess.models import Node

    port = free_port()
    node = Node("n1", "running", address="127.0.0.1", port=port, unprobed=True)
    [result], _ = run([node], key_file, ssh_timeout=60.0)
    assert not result.ok
    assert result.attempts == 1  # not the 5 s refused grace, not the 60 s deadline
    assert result.message == (
        f"port {port} refused: nothing listens for SSH there (is sshd running? is the port right?)"
    )


@pytest.mark.parametrize("unprobed", [True, False])
def test_unprobed_node_gets_the_probe_time_limit_and_no_retry(key_file, monkeypatch, unprobed):
    """A TCP connect that times out: final after the probe's 2 s limit for an unprobed node;
    retried with the full connect timeout for any other node (a booting instance)."""
    import socket

    from ess.models import UNPROBED_CONNECT_TIMEOUT, Node
    from ess_ssh import connect

    limits: list[float] = []

    def dropped(address, timeout):  # a machine that is off: SYNs go unanswered
        limits.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(connect.socket, "create_connection", dropped)
    assert socket.create_connection is dropped
    node = Node("n1", "running", address="10.0.0.5", port=22, unprobed=unprobed)
    # 30 s would let an unprobed node retry for long; 3 s keeps the probed case's retries short.
    [result], _ = run([node], key_file, ssh_timeout=30.0 if unprobed else 3.0, ssh_connect_timeout=10.0)
    assert not result.ok
    if unprobed:
        assert (result.attempts, limits) == (1, [UNPROBED_CONNECT_TIMEOUT])
        assert result.message == "port 22 did not answer within 2s (is the machine up? does a firewall drop it?)"
    else:
        assert result.attempts > 1, limits
        assert limits[0] > UNPROBED_CONNECT_TIMEOUT  # the connect timeout, capped by the 3 s deadline
        assert "still failing after 3s" in result.message


def test_no_banner(key_file):
    with SshNode(mode="silent") as server:
        [result], _ = run([server.node()], key_file, ssh_timeout=2.0, ssh_connect_timeout=0.5)
    assert not result.ok
    assert result.message.startswith("no SSH banner within")


def after_first_connect(monkeypatch: pytest.MonkeyPatch, then) -> list[str]:
    """Run ``then()`` right after ess's first connect returns or fails; the connects made.

    What a booting node does "a moment later" happens here after the first try, not on a
    timer: a timer raced the check's own start, and on a loaded machine the first try came
    after it, so the retry under test never happened.
    """
    real_connect = Connector.connect
    tries: list[str] = []

    def first_then(self, node, deadline):
        tries.append(node.id)
        try:
            return real_connect(self, node, deadline)
        finally:
            if len(tries) == 1:
                then()

    monkeypatch.setattr(Connector, "connect", first_then)
    return tries


def test_server_that_comes_up_late_is_retried(user_key, key_file, monkeypatch):
    """The node's sshd starts right after ess's first connect was refused."""
    server = SshNode(authorized_keys=[user_key])
    server.port = free_port()
    tries = after_first_connect(monkeypatch, server.start)
    try:
        [result], _ = run([server.node()], key_file, ssh_timeout=20.0)
    finally:
        server.stop()
    assert result.ok, result.message
    assert result.attempts > 1 and len(tries) == result.attempts


def test_failing_command_is_reported(user_key, key_file):
    with SshNode(authorized_keys=[user_key]) as server:
        [result], _ = run([server.node()], key_file, verify_command="echo nope >&2; exit 3", ssh_timeout=1.0)
    assert not result.ok
    assert result.message.startswith("command 'echo nope >&2; exit 3' exited 3: nope (still failing")


def test_a_retry_cut_by_the_deadline_keeps_the_exit_an_earlier_attempt_saw(user_key, key_file, tmp_path):
    # On a busy CI machine the last retry of a command that fails at once was cut short by
    # the deadline, and the verdict said "did not finish in time" instead of why it failed.
    marker = tmp_path / "tried"
    command = f"if [ -e {marker} ]; then sleep 4; else touch {marker}; echo nope >&2; exit 3; fi"
    with SshNode(authorized_keys=[user_key]) as server:
        [result], _ = run([server.node()], key_file, verify_command=command, ssh_timeout=2.0)
    assert not result.ok and result.attempts >= 2
    assert result.message.startswith(f"command {command!r} exited 3: nope (still failing after 2s")


def test_changed_host_key_is_refused_with_line_number(user_key, key_file):
    path = known_hosts_path("test", "c1")
    with SshNode(authorized_keys=[user_key]) as first:
        port = first.port
        path.write_text("# comment\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr1\n")
        [result], _ = run([first.node()], key_file)
        assert result.ok
    assert path.read_text().splitlines()[2].startswith(f"[127.0.0.1]:{port} ssh-ed25519 ")
    with SshNode(authorized_keys=[user_key], port=port) as impostor:
        [result], _ = run([impostor.node()], key_file, ssh_timeout=60.0)
    assert not result.ok
    assert result.attempts == 1
    assert result.message.startswith(f"host key changed: remove line 3 of {path}")
    assert impostor.commands == []


def test_out_of_band_host_key_is_trusted_without_tofu(user_key, key_file):
    with SshNode(authorized_keys=[user_key]) as server:
        node = server.node(host_keys=(server.host_key_line,))
        [result], _ = run([node], key_file, strict_host_keys=True)
        assert result.ok, result.message
        wrong = server.node(host_keys=(SshNode().host_key_line,))
        [bad], _ = run([wrong], key_file)
    assert not bad.ok and "does not match the key the test backend reported" in bad.message
    assert not known_hosts_path("test", "c1").exists()


def test_strict_mode_refuses_unknown_key(user_key, key_file):
    with SshNode(authorized_keys=[user_key]) as server:
        [result], _ = run([server.node()], key_file, strict_host_keys=True, ssh_timeout=60.0)
    assert not result.ok and result.attempts == 1
    assert "is not known and strict_host_keys is on" in result.message
    assert server.commands == []


def test_insecure_mode_accepts_anything_and_warns_once(user_key, key_file):
    path = known_hosts_path("test", "c1")
    with SshNode(authorized_keys=[user_key]) as one, SshNode(authorized_keys=[user_key]) as two:
        path.write_text(f"[127.0.0.1]:{one.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr1\n")
        results, log = run([one.node("a"), two.node("b")], key_file, insecure_skip_host_key_check=True)
    assert all(r.ok for r in results), results
    assert log.count("WARNING: insecure_skip_host_key_check is on") == 1
    assert path.read_text().count("\n") == 1  # nothing recorded


def test_key_readable_by_others_is_refused(user_key, tmp_path):
    loose = write_private_key(user_key, tmp_path / "loose.pem", mode=0o644)
    with pytest.raises(UsageError, match=rf"permissions 0644 are too open .*\(chmod 600 {loose}\)"):
        run([], loose) if False else check_nodes(
            [SshNode().node()], make_access(loose), make_settings(), quiet_progress()[0]
        )


def test_garbled_key_is_a_usage_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot really\n-----END RSA PRIVATE KEY-----\n")
    bad.chmod(0o600)
    with pytest.raises(UsageError, match=f"{bad}: not a private key ess can read") as info:
        check_nodes([SshNode().node()], make_access(bad), make_settings(), quiet_progress()[0])
    assert "not really" not in str(info.value)


def test_key_loaded_once_per_run(user_key, key_file, monkeypatch):
    import ess_ssh.connect as connect

    calls = []
    real = connect.load_private_key
    monkeypatch.setattr(connect, "load_private_key", lambda path: calls.append(path) or real(path))
    servers = [SshNode(authorized_keys=[user_key]).start() for _ in range(3)]
    try:
        results, _ = run([s.node(f"n{i}") for i, s in enumerate(servers)], key_file)
    finally:
        for server in servers:
            server.stop()
    assert all(r.ok for r in results) and len(calls) == 1


def test_fifty_nodes_in_parallel(user_key, key_file):
    gauge = Gauge()
    # Every command waits until all 50 are running at once: only true parallelism passes.
    barrier = threading.Barrier(50, timeout=30)

    def handler(command: str) -> tuple[int, bytes, bytes]:
        barrier.wait()
        return 0, b"", b""

    servers = [SshNode(authorized_keys=[user_key], handler=handler, gauge=gauge).start() for _ in range(50)]
    try:
        results, log = run(
            [s.node(f"n{i}") for i, s in enumerate(servers)], key_file, ssh_parallel=64, ssh_timeout=60.0
        )
    finally:
        for server in servers:
            server.stop()
    assert [r.ok for r in results] == [True] * 50, [r.message for r in results if not r.ok]
    assert gauge.peak == 50
    assert "ssh ready 0/50" in log and "ssh ready 50/50 done" in log
    assert len(known_hosts_path("test", "c1").read_text().splitlines()) == 50


def test_parallelism_is_bounded(user_key, key_file):
    gauge = Gauge()
    servers = [
        SshNode(authorized_keys=[user_key], gauge=gauge, handler=lambda c: (0, b"", b"")).start() for _ in range(20)
    ]
    try:
        results, _ = run([s.node(f"n{i}") for i, s in enumerate(servers)], key_file, ssh_parallel=4)
    finally:
        for server in servers:
            server.stop()
    assert all(r.ok for r in results)
    assert 1 <= gauge.peak <= 4 and gauge.total == 20


def test_straggler_reported_at_deadline_while_others_pass(user_key, key_file):
    good = [SshNode(authorized_keys=[user_key]).start() for _ in range(3)]
    hung = SshNode(mode="silent").start()
    try:
        nodes = [s.node(f"ok{i}") for i, s in enumerate(good)] + [hung.node("hung")]
        # 5 s, not less: the three good handshakes share 2 cores with a second test worker.
        results, _ = run(nodes, key_file, ssh_timeout=5.0, ssh_connect_timeout=30.0)
    finally:
        for server in [*good, hung]:
            server.stop()
    assert [r.ok for r in results] == [True, True, True, False], [r.message for r in results]
    assert results[3].message.startswith("no SSH banner within 5s (still failing after 5s")


def test_nodes_still_queued_at_the_deadline_are_reported_not_tried(user_key, key_file):
    """With one worker held by a silent node until the deadline, the others were never
    connected to; they were reported "timed out (still failing after 2s, 1 attempt)"."""
    hung = SshNode(mode="silent").start()
    good = [SshNode(authorized_keys=[user_key]).start() for _ in range(2)]
    try:
        nodes = [hung.node("hung")] + [s.node(f"ok{i}") for i, s in enumerate(good)]
        results, _ = run(nodes, key_file, ssh_timeout=2.0, ssh_connect_timeout=30.0, ssh_parallel=1)
    finally:
        for server in [hung, *good]:
            server.stop()
    assert results[0].message.startswith("no SSH banner within 2s (still failing after 2s, 1 attempt)")
    assert [r.message for r in results[1:]] == ["not tried within 2s: raise ssh_parallel (1) or ssh_timeout"] * 2


def test_a_step_cut_by_the_deadline_names_its_seconds_not_zero(key_file):
    with SshNode(mode="silent") as server:
        [result], _ = run([server.node()], key_file, ssh_timeout=1.0, ssh_connect_timeout=0.3)
    assert not result.ok and " within 0s" not in result.message, result.message


def test_plugin_import_does_not_load_paramiko():
    import subprocess

    code = "import sys, ess_ssh.plugin as p; p.ess_settings(); sys.exit('paramiko' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_key_refused_by_a_just_booted_node_is_retried_until_authorized(user_key, key_file, monkeypatch):
    """EC2: sshd can answer before cloud-init writes authorized_keys; a fresh node gets retries."""
    from dataclasses import replace
    from datetime import datetime, timezone

    with SshNode(authorized_keys=[]) as server:
        tries = after_first_connect(
            monkeypatch, lambda: server.authorized.add((user_key.get_name(), user_key.get_base64()))
        )
        fresh = replace(server.node(), launched_at=datetime.now(timezone.utc))
        [result], _ = run([fresh], key_file, ssh_timeout=20.0)
    assert result.ok, result.message
    assert result.attempts > 1 and len(tries) == result.attempts


def test_key_refused_by_a_long_running_node_is_final(user_key, key_file):
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    with SshNode(authorized_keys=[]) as server:
        old = replace(server.node(), launched_at=datetime.now(timezone.utc) - timedelta(hours=1))
        [result], _ = run([old], key_file, ssh_timeout=60.0)
    assert not result.ok and result.attempts == 1


# -- connection refused (#13): seconds for a node that was not just launched, not ssh_timeout ---
def test_refused_by_a_node_not_just_launched_fails_after_a_short_grace(key_file, monkeypatch):
    from ess.models import Node
    from ess_ssh import connect

    monkeypatch.setattr(connect, "REFUSED_GRACE", 0.5)
    port = free_port()
    node = Node("host1", "running", address="127.0.0.1", port=port)  # hosts: no launch time
    [result], _ = run([node], key_file, ssh_timeout=60.0)
    assert not result.ok
    assert result.message == (
        f"connection refused by 127.0.0.1 port {port} for 0.5s: nothing listens for "
        "SSH there (is sshd running? is the port right?)"
    )
    assert result.attempts > 1  # a sshd restart still gets its few seconds


def test_refused_by_a_just_launched_node_is_retried_until_the_deadline(key_file, monkeypatch):
    from datetime import datetime, timezone

    from ess.models import Node
    from ess_ssh import connect

    monkeypatch.setattr(connect, "REFUSED_GRACE", 0.2)
    node = Node("i-1", "running", address="127.0.0.1", port=free_port(), launched_at=datetime.now(timezone.utc))
    [result], _ = run([node], key_file, ssh_timeout=1.5)
    assert result.message.startswith("connection refused (still failing after 1.5s")


def test_exec_gives_up_on_a_refused_port_after_the_grace_too(key_file, monkeypatch):
    from ess.models import Node
    from ess.plugins import get_plugin_manager
    from ess_ssh import connect

    monkeypatch.setattr(connect, "REFUSED_GRACE", 0.5)
    port = free_port()
    (result,) = get_plugin_manager().hook.ess_run_command(
        nodes=[Node("host1", "running", address="127.0.0.1", port=port)],
        command="true",
        access=make_access(key_file),
        settings=make_settings(ssh_timeout=60.0),
        progress=quiet_progress()[0],
        output=None,
    )
    assert result.exit_code is None
    assert result.error.startswith(f"connection refused by 127.0.0.1 port {port} for 0.5s")
