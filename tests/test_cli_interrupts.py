"""Ctrl-C and SIGTERM outside a prompt: exit 130, and a line that says what may be left.

"interrupted at the prompt; nothing was changed" is for a question the user interrupted.
exec may leave the command running on the nodes and push may leave partial copies; SIGTERM
is a Ctrl-C there as in the node-changing flows (docs/commands.md, exit codes).
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ess import plugins

#: Stands in for the SSH plugin: each hook signals that it runs (a file), then either is
#: interrupted at once (INTERRUPT=now) or waits for the test to send SIGTERM.
SLOW_PLUGIN = """
import os
import time
from pathlib import Path

from ess import hookimpl


def _wait():
    Path(os.environ["READY"]).write_text("running")
    if os.environ.get("INTERRUPT") == "now":
        raise KeyboardInterrupt
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # short sleeps: the signal is handled at once
        time.sleep(0.02)


@hookimpl
def ess_run_command(nodes):
    _wait()


@hookimpl
def ess_push_files(nodes):
    _wait()


@hookimpl
def ess_check_nodes(nodes):
    _wait()
"""

LINES = {
    "exec": "ess: interrupted; the command may still be running on the nodes",
    "push": "ess: interrupted; partial copies may be left on the nodes",
    "verify": "ess: interrupted during verify",
}


@pytest.fixture
def slow(ess, memory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two memory nodes, and the slow plugin loaded next to the memory backend."""
    (tmp_path / "ess_test_slow.py").write_text(SLOW_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ess_test_slow", raising=False)
    importlib.invalidate_caches()
    assert ess("instance", "memory", "create", "--number", "2", "--no-verify").code == 0
    monkeypatch.setenv("ESS_PLUGINS", "ess.testing.memory,ess_test_slow")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]))
    monkeypatch.setenv("READY", str(tmp_path / "ready"))
    plugins.reset()
    return tmp_path


def args_for(command: str, folder: Path) -> list[str]:
    return {"exec": ["exec", "--", "sleep 600"], "push": ["push", str(folder)], "verify": ["verify"]}[command]


@pytest.mark.parametrize("command", sorted(LINES))
def test_ctrl_c_outside_a_prompt_says_what_may_be_left_not_nothing_changed(ess, slow, monkeypatch, command):
    monkeypatch.setenv("INTERRUPT", "now")
    r = ess("instance", "memory", *args_for(command, slow))
    assert r.code == 130, r
    assert r.err.strip().splitlines()[-1] == LINES[command], r.err
    assert "at the prompt" not in r.err and "nothing was changed" not in r.err, r.err


def test_ctrl_c_in_a_command_without_a_prompt_is_not_called_a_prompt_interruption(ess, memory, monkeypatch):
    def interrupted(self, settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(memory.MemoryBackend, "nodes", interrupted)
    r = ess("instance", "memory", "list")
    assert r.code == 130, r
    assert r.err.strip().splitlines()[-1] == "ess: interrupted", r.err


@pytest.mark.parametrize("command", sorted(LINES))
def test_sigterm_during_exec_push_and_verify_is_ctrl_c(slow, command):
    proc = subprocess.Popen(
        ["ess", "instance", "memory", *args_for(command, slow)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (slow / "ready").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=5)
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == LINES[command], err
    assert "Traceback" not in err
