"""The local backend end to end through its Python API: real node processes, real SSH."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.local_helpers import (
    kill_test_nodes,
    pid_alive,
    port_accepts,
    quiet,
    request,
    run,
    settings_for,
    ssh_client,
)

from ess.errors import EssError, UsageError
from ess.models import RUNNING, STOPPED, TAG_CLUSTER, TAG_LAUNCH
from ess_local.backend import LocalBackend
from ess_local.state import ClusterStore


@pytest.fixture
def backend(ess_home: Path):
    yield LocalBackend()
    kill_test_nodes(ess_home)


def _pids(backend: LocalBackend, settings) -> dict[str, int]:
    state = ClusterStore(settings.cluster).read()
    return {node_id: record.pid for node_id, record in state.nodes.items()}


def test_create_list_exec_terminate_all(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    req = request(2)
    backend.preflight(settings, req)
    created = backend.create(settings, req, quiet())
    created = backend.wait(settings, created, quiet(), timeout=30)
    assert len(created) == 2 and all(node.state == RUNNING for node in created)

    listed = backend.nodes(settings)
    assert {node.id for node in listed} == {node.id for node in created}
    assert all(node.state == RUNNING and node.address == "127.0.0.1" for node in listed)
    assert len({node.port for node in listed}) == 2
    for node in listed:
        assert node.tags[TAG_LAUNCH] == req.launch_id and node.tags[TAG_CLUSTER] == "default"
        assert node.tags["Name"] == "ess local node"
        assert node.host_keys[0].startswith("ssh-ed25519 ")

    access = backend.access(settings)
    assert access.backend == "local" and access.cluster == "default"
    for node in listed:
        code, out, err = run(node, access.username, access.key_file, "echo out; echo err >&2; exit 7")
        assert (code, out, err) == (7, "out\n", "err\n")
        # The server proves the host key recorded in state (the client uses RejectPolicy).
        client = ssh_client(node, access.username, access.key_file)
        served = client.get_transport().get_remote_server_key()
        client.close()
        assert f"{served.get_name()} {served.get_base64()}" == node.host_keys[0]

    pids = _pids(backend, settings)
    backend.terminate(settings, backend.nodes(settings), quiet())
    assert backend.nodes(settings) == []
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not any(port_accepts(node.port) for node in listed)
    assert not ClusterStore("default").dir.exists()
    # Idempotent: terminating gone nodes again is harmless.
    backend.terminate(settings, listed, quiet())


def test_node_killed_from_outside_shows_stopped(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    nodes = backend.create(settings, request(2), quiet())
    victim = nodes[0]
    pid = _pids(backend, settings)[victim.id]
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # the test process is the parent: reap so the pid is really gone
    states = {node.id: node.state for node in backend.nodes(settings)}
    assert states == {victim.id: STOPPED, nodes[1].id: RUNNING}
    backend.terminate(settings, backend.nodes(settings), quiet())
    assert backend.nodes(settings) == []


def test_terminate_one_node_leaves_the_others(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    nodes = backend.create(settings, request(3), quiet())
    pids = _pids(backend, settings)
    backend.terminate(settings, [nodes[1]], quiet())
    left = backend.nodes(settings)
    assert [node.id for node in left] == sorted([nodes[0].id, nodes[2].id], key=[n.id for n in left].index)
    assert {node.id for node in left} == {nodes[0].id, nodes[2].id}
    assert all(node.state == RUNNING for node in left)
    assert not pid_alive(pids[nodes[1].id])
    assert pid_alive(pids[nodes[0].id]) and pid_alive(pids[nodes[2].id])
    known_hosts = ClusterStore("default").known_hosts.read_text()
    assert str(nodes[1].port) not in known_hosts and f"]:{nodes[0].port} " in known_hosts


def test_rollback_finds_and_terminates_one_launch_by_tag(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    first = request(2)
    backend.create(settings, first, quiet())
    second = request(1)
    kept = backend.create(settings, second, quiet())
    # What the core does on rollback: list, keep this launch's nodes, terminate them.
    found = [node for node in backend.nodes(settings) if node.launch_id == first.launch_id]
    assert len(found) == 2
    backend.terminate(settings, found, quiet())
    assert [node.id for node in backend.nodes(settings)] == [kept[0].id]


def test_concurrent_creates_lose_no_node(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    results: list[list] = []
    errors: list[BaseException] = []

    def launch() -> None:
        try:
            results.append(LocalBackend().create(settings, request(3), quiet()))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    created = {node.id for batch in results for node in batch}
    assert len(created) == 6
    listed = backend.nodes(settings)
    assert {node.id for node in listed} == created
    assert all(node.state == RUNNING for node in listed)
    assert len({node.port for node in listed}) == 6


def test_concurrent_creates_from_two_processes(backend: LocalBackend, ess_home: Path) -> None:
    script = (
        "import sys, uuid\n"
        "from ess.models import LaunchRequest\n"
        "from ess.progress import Progress\n"
        "from ess.settings import load_settings\n"
        "from ess_local.backend import LocalBackend\n"
        "b = LocalBackend()\n"
        "s = load_settings(b, None, env={})\n"
        "r = LaunchRequest(count=2, min_count=2, launch_id=uuid.uuid4().hex, tags={})\n"
        "print(' '.join(n.id for n in b.create(s, r, Progress(quiet=True))))\n"
    )
    env = {**os.environ, "ESS_HOME": str(ess_home)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    created = {node_id for out in outputs for node_id in out.split()}
    assert len(created) == 4
    listed = backend.nodes(settings_for(backend))
    assert {node.id for node in listed} == created
    assert all(node.state == RUNNING for node in listed)


@pytest.mark.parametrize("forge_start_time", [False, True])
def test_stale_pid_of_another_process_is_never_killed(backend: LocalBackend, forge_start_time: bool) -> None:
    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    store = ClusterStore("default")
    real_pid = _pids(backend, settings)[node.id]
    # The node itself dies first: ess finds live nodes in the process table, so only the
    # stale pid in the record points anywhere, and it points at a stranger.
    os.kill(real_pid, signal.SIGKILL)
    os.waitpid(real_pid, 0)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with store.locked() as state:
            record = state.nodes[node.id]
            record.pid = sleeper.pid
            if forge_start_time:
                # Even a matching start time is not enough: the command line must be our node's.
                stat_text = Path(f"/proc/{sleeper.pid}/stat").read_text()
                record.start_time = stat_text[stat_text.rindex(")") + 2 :].split()[19]
            store.save(state)
        assert [n.state for n in backend.nodes(settings)] == [STOPPED]
        backend.terminate(settings, backend.nodes(settings), quiet())
        assert sleeper.poll() is None, "ess killed a process that was not its node"
        assert backend.nodes(settings) == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_generated_keys_are_private(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    access = backend.access(settings)
    store = ClusterStore("default")
    assert access.key_file == store.generated_key
    host_key = store.node_dir(node.id) / "ssh_host_ed25519_key"
    for private in (access.key_file, host_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    assert access.key_file.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert Path(str(access.key_file) + ".pub").read_text().startswith("ssh-ed25519 ")
    # The key logs in; the private key text never leaks into state or known_hosts.
    assert run(node, access.username, access.key_file, "true")[0] == 0
    secret = access.key_file.read_text().splitlines()[1]
    assert secret not in store.state_path.read_text() and secret not in store.known_hosts.read_text()


def test_only_the_cluster_key_and_user_get_in(backend: LocalBackend, tmp_path: Path) -> None:
    import paramiko

    from ess_local.keys import generate_ed25519

    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    access = backend.access(settings)
    with pytest.raises(paramiko.AuthenticationException):
        run(node, "somebody-else", access.key_file, "true")
    stranger = tmp_path / "stranger"
    generate_ed25519(stranger, "stranger")
    with pytest.raises(paramiko.AuthenticationException):
        run(node, access.username, stranger, "true")


def test_configured_key_file_and_username(backend: LocalBackend, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # An EC2-style RSA PEM key, as a user would point key_file at.
    pem = tmp_path / "pem_file.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    pem.chmod(0o600)
    settings = settings_for(backend, key_file=str(pem), username="ec2-user", instance_type="m3.medium")
    req = request(1)
    backend.preflight(settings, req)
    node = backend.create(settings, req, quiet())[0]
    assert node.instance_type == "m3.medium"
    access = backend.access(settings)
    assert (access.username, access.key_file) == ("ec2-user", pem)
    assert run(node, "ec2-user", pem, "echo $USER") == (0, "ec2-user\n", "")
    assert not ClusterStore("default").generated_key.exists()


def test_preflight_rejects_bad_settings(backend: LocalBackend, tmp_path: Path) -> None:
    missing = settings_for(backend, key_file=str(tmp_path / "nope.pem"))
    with pytest.raises(UsageError, match=r"^--key_file: .*nope.pem does not exist \(") as caught:
        backend.preflight(missing, request(1))
    assert "\n" not in str(caught.value)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(UsageError, match="is not an SSH private key"):
        backend.preflight(settings_for(backend, key_file=str(junk)), request(1))
    with pytest.raises(UsageError, match="is not a valid cluster"):
        backend.preflight(settings_for(backend, cluster="../evil"), request(1))
    assert not (tmp_path / "ess-home" / "state" / "local").exists()


def test_sftp_put_lands_in_the_node_home(backend: LocalBackend, tmp_path: Path) -> None:
    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    access = backend.access(settings)
    source = tmp_path / "payload.txt"
    source.write_text("pushed over sftp\n")
    client = ssh_client(node, access.username, access.key_file)
    try:
        sftp = client.open_sftp()
        sftp.put(str(source), "payload.txt")
        sftp.close()
    finally:
        client.close()
    assert run(node, access.username, access.key_file, "cat payload.txt") == (0, "pushed over sftp\n", "")
    assert (ClusterStore("default").node_dir(node.id) / "home" / "payload.txt").is_file()


def test_stdin_reaches_the_command(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    access = backend.access(settings)
    client = ssh_client(node, access.username, access.key_file)
    try:
        stdin, stdout, _ = client.exec_command("wc -c")
        stdin.write(b"x" * 100_000)
        stdin.channel.shutdown_write()
        assert stdout.read().decode().strip() == "100000"
        assert stdout.channel.recv_exit_status() == 0
    finally:
        client.close()


def test_stop_and_start_keep_port_and_host_key(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    nodes = backend.create(settings, request(2), quiet())
    target = nodes[0]
    old_pid = _pids(backend, settings)[target.id]
    backend.stop(settings, [target], quiet())
    states = {node.id: node.state for node in backend.nodes(settings)}
    assert states == {target.id: STOPPED, nodes[1].id: RUNNING}
    assert not pid_alive(old_pid) and not port_accepts(target.port)

    backend.start(settings, [target], quiet())
    again = {node.id: node for node in backend.nodes(settings)}[target.id]
    assert again.state == RUNNING
    assert (again.port, again.host_keys) == (target.port, target.host_keys)
    access = backend.access(settings)
    assert run(again, access.username, access.key_file, "echo back")[0] == 0


def test_start_reports_a_taken_port(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    backend.stop(settings, [node], quiet())
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", node.port))
    squatter.listen()
    try:
        with pytest.raises(EssError, match=rf"{node.id}: cannot listen on 127.0.0.1:{node.port}"):
            backend.start(settings, [node], quiet())
    finally:
        squatter.close()
    assert [n.state for n in backend.nodes(settings)] == [STOPPED]


def test_node_exits_when_its_folder_is_deleted(backend: LocalBackend) -> None:
    import shutil

    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    pid = _pids(backend, settings)[node.id]
    shutil.rmtree(ClusterStore("default").dir)
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


def test_state_file_is_plain_json(backend: LocalBackend) -> None:
    settings = settings_for(backend, cluster="team-a")
    node = backend.create(settings, request(1, cluster="team-a"), quiet())[0]
    data = json.loads(ClusterStore("team-a").state_path.read_text())
    assert data["cluster"] == "team-a" and data["version"] == 1
    [record] = data["nodes"]
    assert record["id"] == node.id and record["port"] == node.port
    assert backend.nodes(settings_for(backend)) == []  # another cluster sees nothing of it


def test_exec_signal_status_and_environment(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    access = backend.access(settings)
    assert run(node, access.username, access.key_file, "kill -TERM $$")[0] == 128 + signal.SIGTERM
    client = ssh_client(node, access.username, access.key_file)
    try:
        # Locale variables pass; anything else a client sends (LD_PRELOAD...) is dropped.
        _, stdout, _ = client.exec_command(
            "echo $LC_FOO/$LD_PRELOAD/$USER", environment={"LC_FOO": "bar", "LD_PRELOAD": "/x.so"}
        )
        assert stdout.read().decode() == f"bar//{access.username}\n"
    finally:
        client.close()


def test_a_session_can_have_a_terminal(backend: LocalBackend) -> None:
    settings = settings_for(backend)
    node = backend.create(settings, request(1), quiet())[0]
    access = backend.access(settings)
    client = ssh_client(node, access.username, access.key_file)
    try:
        _, stdout, _ = client.exec_command("test -t 0 && echo tty; stty size; exit 3", get_pty=True)
        assert stdout.read() == b"tty\r\n24 80\r\n"
        assert stdout.channel.recv_exit_status() == 3
        shell = client.invoke_shell(width=100, height=40)
        shell.sendall(b"echo $((6*7)); stty size; exit 5\n")
        output = b""
        while True:
            chunk = shell.recv(4096)  # returns b"" once the shell has exited and closed the channel
            if not chunk:
                break
            output += chunk
        assert b"42\r\n40 100\r\n" in output  # after the echoed input and maybe a prompt
        assert shell.recv_exit_status() == 5
    finally:
        client.close()
