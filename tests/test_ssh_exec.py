"""``exec``: the ess_run_command hook of the SSH plugin, and ``ess instance local exec`` end to end."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes
from support.ssh_helpers import make_access, make_settings, quiet_progress

from ess.models import RUNNING, Node
from ess.plugins import get_plugin_manager
from ess.testing.sshd import SshNode, free_port, generate_ed25519_key, write_private_key
from ess_local.state import ClusterStore
from ess_ssh.connect import Connector


@pytest.fixture(autouse=True)
def _no_leftover_nodes(ess_home: Path):
    yield
    kill_test_nodes(ess_home)


# -- hook level: in-process SSH servers ------------------------------------------------------
def test_run_command_hook_reports_exit_code_and_output_per_node(tmp_path: Path) -> None:
    key = generate_ed25519_key()
    key_file = write_private_key(key, tmp_path / "k")

    def handler(command: str) -> tuple[int, bytes, bytes]:
        return 4, b"out \xff\n", b"err line\n"  # \xff: not UTF-8, must not break decoding

    with SshNode(authorized_keys=[key]) as ok, SshNode(authorized_keys=[key], handler=handler) as odd:
        results = get_plugin_manager().hook.ess_run_command(
            nodes=[ok.node("a"), odd.node("b")],
            command="echo hi; echo warn >&2",
            access=make_access(key_file),
            settings=make_settings(),
            progress=quiet_progress()[0],
            output=None,
        )
    a, b = results
    assert (a.node_id, a.exit_code, a.stdout, a.stderr, a.error, a.ok) == ("a", 0, "hi\n", "warn\n", "", True)
    assert (b.node_id, b.exit_code, b.stdout, b.stderr, b.ok) == ("b", 4, "out \ufffd\n", "err line\n", False)
    assert a.seconds > 0 and b.seconds > 0
    assert ok.commands == ["echo hi; echo warn >&2"] and odd.commands == ["echo hi; echo warn >&2"]


def test_one_node_down_fails_alone_and_the_others_succeed(tmp_path: Path) -> None:
    key = generate_ed25519_key()
    key_file = write_private_key(key, tmp_path / "k")
    down = Node(id="down", state=RUNNING, address="127.0.0.1", port=free_port())  # nothing listens
    with SshNode(authorized_keys=[key]) as first, SshNode(authorized_keys=[key]) as second:
        results = get_plugin_manager().hook.ess_run_command(
            nodes=[first.node("n1"), down, second.node("n2")],
            command="echo up",
            access=make_access(key_file),
            settings=make_settings(ssh_timeout=1.0),
            progress=quiet_progress()[0],
            output=None,
        )
    by_id = {r.node_id: r for r in results}
    assert [r.node_id for r in results] == ["n1", "down", "n2"]
    assert by_id["n1"].ok and by_id["n1"].stdout == "up\n"
    assert by_id["n2"].ok and by_id["n2"].stdout == "up\n"
    assert by_id["down"].exit_code is None and not by_id["down"].ok
    assert by_id["down"].error.startswith("connection refused")
    assert first.commands == ["echo up"] and second.commands == ["echo up"]  # never retried


def test_wrong_key_is_not_retried_and_names_the_key(tmp_path: Path) -> None:
    key, other = generate_ed25519_key(), generate_ed25519_key()
    key_file = write_private_key(other, tmp_path / "other")
    with SshNode(authorized_keys=[key]) as server:
        (result,) = get_plugin_manager().hook.ess_run_command(
            nodes=[server.node("n1")],
            command="true",
            access=make_access(key_file),
            settings=make_settings(ssh_timeout=30.0),
            progress=quiet_progress()[0],
            output=None,
        )
    assert result.exit_code is None and result.error.startswith(f"authentication failed with key {key_file}")
    assert server.commands == [] and server.connections == 1


def test_exec_and_push_take_the_ssh_flags() -> None:
    keys = {spec.key: spec for specs in get_plugin_manager().hook.ess_settings() for spec in specs or []}
    for key in ("ssh_timeout", "ssh_parallel"):
        assert {"exec", "push", "status", "create", "verify"} <= set(keys[key].commands)


# -- CLI level: local nodes (real asyncssh servers in their own processes) -------------------
def test_exec_on_local_nodes_through_the_cli(ess) -> None:
    created = ess("instance", "local", "create", "--number", "3")
    assert created.code == 0, created
    ids = sorted(ClusterStore("default").read().nodes)
    assert len(ids) == 3

    hi = ess("instance", "local", "exec", "--timeout", "60", "--parallel", "2", "--", "echo hi; hostname")
    assert hi.code == 0, hi
    lines = hi.out.splitlines()
    assert len(lines) == 6
    for node_id in ids:
        assert f"{node_id} | hi" in lines
        assert f"{node_id} | {socket.gethostname()}" in lines

    both = ess("instance", "local", "exec", "--", "echo out; echo oops >&2")
    assert both.code == 0, both
    assert all(f"{node_id} | oops" in both.err for node_id in ids)
    assert "oops" not in both.out

    failed = ess("instance", "local", "exec", "--", "exit 3")
    assert failed.code == 1, failed  # every node failed
    assert all(f"{node_id} | ess: exit code 3" in failed.err for node_id in ids)
    assert failed.err.strip().splitlines()[-1].startswith("ess: command failed on 3 of 3 node(s)")

    # Only the first node (sorted by id) fails: some failed -> 3.
    some = ess("instance", "local", "exec", "--", f'case "$HOME" in *{ids[0]}*) exit 7;; esac; echo fine')
    assert some.code == 3, some
    assert f"{ids[0]} (exit 7)" in some.err

    shaped = ess("instance", "local", "exec", "--json", "--", "echo j; echo e >&2; exit 2")
    assert shaped.code == 1, shaped
    payload = json.loads(shaped.out)
    assert set(payload) == {"backend", "cluster", "command", "results"}
    assert (payload["backend"], payload["cluster"], payload["command"]) == (
        "local",
        "default",
        "echo j; echo e >&2; exit 2",
    )
    assert sorted(r["node"] for r in payload["results"]) == ids
    for result in payload["results"]:
        assert set(result) == {"node", "ok", "exit_code", "stdout", "stderr", "error", "seconds", "truncated"}
        assert (
            result["ok"],
            result["exit_code"],
            result["stdout"],
            result["stderr"],
            result["error"],
            result["truncated"],
        ) == (False, 2, "j\n", "e\n", "", False)


def test_exec_on_50_local_nodes_uses_one_connection_and_one_command_per_node(
    ess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    created = ess("instance", "local", "create", "--number", "50", "--no-verify")
    assert created.code == 0, created
    homes = {
        node_id: str(ClusterStore("default").dir / "nodes" / node_id / "home")
        for node_id in ClusterStore("default").read().nodes
    }
    assert len(homes) == 50

    connects: Counter[str] = Counter()
    lock = threading.Lock()
    real_connect = Connector.connect

    def counting_connect(self: Connector, node, deadline=None):  # type: ignore[no-untyped-def]
        with lock:
            connects[node.id] += 1
        return real_connect(self, node, deadline)

    monkeypatch.setattr(Connector, "connect", counting_connect)
    marker = tmp_path / "ran.txt"
    done = ess("instance", "local", "exec", "--parallel", "50", "--", f'echo "$HOME" >> {marker}; echo ok')
    assert done.code == 0, done
    assert connects == Counter({node_id: 1 for node_id in homes})  # one SSH connection per node
    ran = marker.read_text().splitlines()
    assert sorted(ran) == sorted(homes.values())  # each node ran the command exactly once
    assert sorted(done.out.splitlines()) == sorted(f"{node_id} | ok" for node_id in homes)


# -- streaming with bounded memory (#12) -------------------------------------------------------
def ess_popen(*args: str, **options) -> subprocess.Popen:
    """A real `ess` process (ESS_HOME comes from the ess_home fixture's environment)."""
    return subprocess.Popen([sys.executable, "-m", "ess", *args], **options)


def test_exec_prints_each_line_as_it_arrives(ess, tmp_path: Path) -> None:
    """The node prints `first`, then waits for a file the test writes only after reading `first`."""
    assert ess("instance", "local", "create", "--number", "1", "--no-verify").code == 0
    marker = tmp_path / "go"
    command = f"echo first; while [ ! -e {marker} ]; do sleep 0.05; done; echo second"
    proc = ess_popen(
        "instance",
        "local",
        "exec",
        "--timeout",
        "60",
        "--",
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stdout.readline()
    marker.touch()
    rest, err = proc.communicate(timeout=120)
    assert first.endswith(" | first\n"), (first, err)
    assert rest.endswith(" | second\n") and proc.returncode == 0, (rest, err)


def test_long_lines_come_in_pieces_and_json_keeps_a_tail(ess) -> None:
    from ess.prefixed import LINE_LIMIT
    from ess_ssh.tail import TAIL_BYTES

    assert ess("instance", "local", "create", "--number", "2", "--no-verify").code == 0
    long_line = "printf 'x%.0s' $(seq 70000); echo; echo end"
    text = ess("instance", "local", "exec", "--", long_line)
    assert text.code == 0, text.err
    for node_id in ClusterStore("default").read().nodes:
        pieces = [line.split(" | ", 1)[1] for line in text.out.splitlines() if line.startswith(node_id)]
        assert [len(p) for p in pieces] == [LINE_LIMIT] * 4 + [70000 - 4 * LINE_LIMIT, 3]
        assert "".join(pieces[:-1]) == "x" * 70000 and pieces[-1] == "end"

    shaped = ess("instance", "local", "exec", "--json", "--", "head -c 300000 /dev/zero | tr '\\0' a; echo; echo last")
    results = json.loads(shaped.out)["results"]
    for result in results:
        assert result["truncated"] is True and result["ok"] is True
        assert len(result["stdout"]) == TAIL_BYTES and result["stdout"].endswith("a\nlast\n")
    small = json.loads(ess("instance", "local", "exec", "--json", "--", "echo hi").out)["results"]
    assert all(r["truncated"] is False and r["stdout"] == "hi\n" for r in small)


#: Runs a command and writes its peak RSS (KiB) to a file. Why not wait4() from the test: a
#: child forked from this pytest process inherits pytest's high-water mark (Linux records the
#: old address space's peak at execve, and vfork lends the child pytest's), so after a few
#: hundred tests every child "peaked" at pytest's 1.2 GB. A fresh, small parent measures
#: only its child.
PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)


def test_exec_memory_stays_bounded_whatever_the_nodes_print(ess, tmp_path: Path) -> None:
    """4 local nodes print 200 MB each (no newline at all) into a real `ess exec` process.

    ess used to hold everything (>= 800 MB, then decoded it once more); streaming with a
    64 KiB tail per stream keeps its peak RSS near its start-up size. The bound is on
    memory only, measured by a small parent process (see PEAK_RSS).
    """
    nodes, size = 4, 200_000_000
    assert ess("instance", "local", "create", "--number", str(nodes), "--no-verify").code == 0
    peak_file = tmp_path / "peak-kib"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PEAK_RSS,
            str(peak_file),
            sys.executable,
            "-m",
            "ess",
            "instance",
            "local",
            "exec",
            "--timeout",
            "600",
            "--",
            f"head -c {size} /dev/zero",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    peak_mb = int(peak_file.read_text()) / 1024
    assert peak_mb < 150, f"ess peaked at {peak_mb:.0f} MB while {nodes} nodes printed {size // 10**6} MB each"


def test_streamed_exec_on_a_terminal_draws_no_progress_line_among_the_output(ess, monkeypatch) -> None:
    """On a terminal the progress line is redrawn in place: between streamed lines it would garble them."""
    import io

    from ess.cli import remote
    from ess.progress import Progress

    assert ess("instance", "local", "create", "--number", "1", "--no-verify").code == 0
    terminal = io.StringIO()
    monkeypatch.setattr(remote, "progress", lambda: Progress(terminal, tty=True))
    r = ess("instance", "local", "exec", "--", "echo hi")
    assert r.code == 0 and r.out.endswith(" | hi\n"), r
    assert terminal.getvalue() == ""
