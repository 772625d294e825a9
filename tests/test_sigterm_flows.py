"""SIGTERM during a flow that changes nodes is a clean interruption, as in `create`.

A real `ess instance local start` is sent SIGTERM as soon as its first node process exists
(observed in the process table, not timed). It must exit 130 (interrupted) rather than die
by the signal (-15) with nothing said, and every node must stay findable: `list` shows each
live node process, and `terminate all` stops them all.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes, node_pids, quiet, request, settings_for

from ess.errors import Interrupted
from ess.models import PENDING, RUNNING
from ess_local.backend import LocalBackend

COUNT = 3


@pytest.fixture
def home(ess_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield ess_home
    kill_test_nodes(ess_home)


def sigterm_when_first_node_runs(args: list[str], ess_home: Path) -> tuple[int, str]:
    """Run `ess ARGS`; SIGTERM it once a node process exists; (exit code, stderr)."""
    proc = subprocess.Popen(["ess", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if node_pids(ess_home):
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.001)
        else:
            pytest.fail("ess start ended (or hung) before any node process appeared")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def test_sigterm_during_start_exits_130_and_leaves_every_node_findable(home: Path, ess) -> None:
    backend = LocalBackend()
    settings = settings_for(backend)
    nodes = backend.create(settings, request(COUNT), quiet())
    backend.stop(settings, nodes, quiet())
    assert node_pids(home) == []
    code, err = sigterm_when_first_node_runs(["instance", "local", "start"], home)
    assert code == Interrupted.exit_code == 130, err
    assert "Traceback" not in err and "interrupted during start" in err, err
    live = node_pids(home)
    listed = [n for n in backend.nodes(settings_for(backend)) if n.state in (PENDING, RUNNING)]
    assert len(listed) >= len(live) >= 1, err  # a child inside execve may become a node later
    gone = ess("instance", "local", "terminate", "all", "--yes")
    assert gone.code == 0, gone
    assert node_pids(home) == []
    assert backend.nodes(settings_for(backend)) == []


@pytest.mark.parametrize("verb", ["stop", "terminate", "remove"])
def test_sigterm_inside_a_node_changing_call_is_interrupted_not_death(memory, monkeypatch, verb: str) -> None:
    """The API on the main thread: a real SIGTERM while the backend works raises Interrupted
    (exit 130) naming how to see the cluster; without the flow's handler it would end pytest."""
    import os

    from ess.api import Cluster

    cluster = Cluster("memory")
    cluster.create(2, verify=False)
    operation = {"stop": "stop", "terminate": "terminate", "remove": "release"}[verb]
    real = getattr(memory.MemoryBackend, operation)

    def signalled(self, settings, nodes, progress):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self, settings, nodes, progress)

    monkeypatch.setattr(memory.MemoryBackend, operation, signalled)
    ids = [n.id for n in cluster.nodes()]
    with pytest.raises(Interrupted) as info:
        cluster.stop() if verb == "stop" else cluster.terminate() if verb == "terminate" else cluster.remove(ids)
    assert info.value.exit_code == 130
    assert f"interrupted during {verb} (see where the cluster stands with: ess instance memory list)" == str(info.value)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler does not outlive the call
