"""The node agent (core/ess/agent/ess-agent.sh) run under a real POSIX shell, not read.

Each test gives it a fake clock (a file holding the epoch), a fake load, a fake session
count and a fake "shutdown" that appends to a file, through the environment variables the
agent documents, then runs ``idle``/``deadline``/``tick`` the way the timer would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ess.lifetime import agent_script

#: /bin/sh (dash here), and bash in POSIX mode where installed: the shells images ship.
SHELLS = ["sh"] + (["bash"] if shutil.which("bash") else [])


class Agent:
    """One node's agent: its files under ``folder``, and knobs for the fakes."""

    def __init__(self, folder: Path, shell: str = "sh") -> None:
        self.folder = folder
        self.shell = shell
        self.clock = folder / "clock"
        self.load = folder / "load"
        self.sessions = folder / "sessions"
        self.calls = folder / "shutdowns"
        self.log = folder / "agent.log"
        self.busy = folder / "busy"
        self.expires = folder / "expires"
        self.set(now=1_000, load="0.02", sessions=0)

    def set(self, now: int | None = None, load: str | None = None, sessions: int | None = None) -> None:
        if now is not None:
            self.clock.write_text(f"{now}\n")
        if load is not None:
            self.load.write_text(f"{load}\n")
        if sessions is not None:
            self.sessions.write_text(f"{sessions}\n")

    def run(self, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
        argv = [self.shell, *(["--posix"] if self.shell == "bash" else []), str(agent_script()), mode]
        environment = {
            "PATH": os.environ["PATH"],
            "ESS_AGENT_CONF": str(self.folder / "agent.conf"),
            "ESS_IDLE_TIMEOUT": "60",
            "ESS_IDLE_STATE": str(self.folder / "run" / "last-busy"),
            "ESS_BUSY_DIR": str(self.busy),
            "ESS_EXPIRES_FILE": str(self.expires),
            "ESS_AGENT_LOG": str(self.log),
            "ESS_AGENT_SYSLOG": "0",
            "ESS_NOW_CMD": f"cat {self.clock}",
            "ESS_LOAD_CMD": f"cat {self.load}",
            "ESS_SESSIONS_CMD": f"cat {self.sessions}",
            "ESS_SHUTDOWN_CMD": f"echo shutdown >> {self.calls}",
            **env,
        }
        return subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=30, check=False)

    @property
    def shutdowns(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0

    @property
    def logged(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture(params=SHELLS)
def agent(request: pytest.FixtureRequest, tmp_path: Path) -> Agent:
    return Agent(tmp_path, request.param)


def test_acts_after_the_idle_window_and_logs_why(agent: Agent) -> None:
    assert agent.run("idle").returncode == 0  # first look: the window starts now
    agent.set(now=1_059)
    agent.run("idle")
    assert agent.shutdowns == 0, agent.logged
    agent.set(now=1_060)
    result = agent.run("idle")
    assert result.returncode == 0, result.stderr
    assert agent.shutdowns == 1
    assert "idle for 60s (idle_timeout 60s): no ssh session, no running command, load 0.02 < 0.5" in agent.logged
    assert "running: echo shutdown" in agent.logged


def test_an_open_ssh_session_restarts_the_window(agent: Agent) -> None:
    agent.run("idle")
    agent.set(now=1_050, sessions=2)
    agent.run("idle")  # busy at 1050: the window restarts there
    agent.set(now=1_100, sessions=0)
    agent.run("idle")
    assert agent.shutdowns == 0
    agent.set(now=1_110)
    agent.run("idle")
    assert agent.shutdowns == 1
    assert "idle for 60s" in agent.logged


def test_a_marker_of_a_live_command_keeps_the_node(agent: Agent) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        agent.busy.mkdir()
        (agent.busy / "exec-1").write_text(f"{sleeper.pid}\n")
        agent.run("idle")
        for now in (1_100, 1_500, 5_000):
            agent.set(now=now)
            agent.run("idle")
        assert agent.shutdowns == 0, agent.logged
    finally:
        sleeper.kill()
        sleeper.wait()
    # The command ended: its marker counts for nothing and the window starts at the last busy look.
    agent.set(now=5_059)
    agent.run("idle")
    assert agent.shutdowns == 0
    agent.set(now=5_060)
    agent.run("idle")
    assert agent.shutdowns == 1


def test_a_marker_of_a_dead_process_does_not_count(agent: Agent) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    agent.busy.mkdir()
    (agent.busy / "exec-7").write_text(f"{dead.pid}\n")
    (agent.busy / "garbage").write_text("not a pid\n")
    agent.run("idle")
    agent.set(now=1_060)
    agent.run("idle")
    assert agent.shutdowns == 1


def test_high_load_keeps_the_node(agent: Agent) -> None:
    agent.set(load="1.75")
    agent.run("idle")
    agent.set(now=2_000)
    agent.run("idle")
    assert agent.shutdowns == 0
    agent.set(now=2_059, load="0.49")
    agent.run("idle")
    agent.set(now=2_060)
    agent.run("idle")
    assert agent.shutdowns == 1
    assert "load 0.49 < 0.5" in agent.logged
    # The threshold is a setting too.
    agent.calls.unlink()
    agent.set(now=3_000, load="0.8")
    agent.run("idle", ESS_IDLE_LOAD_MAX="1.0")
    assert agent.shutdowns == 1


def test_no_idle_timeout_means_no_idle_check(agent: Agent) -> None:
    agent.run("idle", ESS_IDLE_TIMEOUT="")
    agent.set(now=900_000)
    agent.run("idle", ESS_IDLE_TIMEOUT="")
    assert agent.shutdowns == 0 and agent.logged == ""


def test_deadline_acts_once_past_and_not_before(agent: Agent) -> None:
    agent.expires.write_text("1500 2026-11-30T22:00:00Z\n")
    agent.set(now=1_499)
    agent.run("deadline")
    assert agent.shutdowns == 0
    agent.set(now=1_500)
    agent.run("deadline")
    assert agent.shutdowns == 1
    assert "deadline 2026-11-30T22:00:00Z passed (max_lifetime)" in agent.logged


def test_deadline_file_moved_by_extend_is_read_again(agent: Agent) -> None:
    agent.expires.write_text("1500 2026-11-30T22:00:00Z\n")
    agent.set(now=1_600)
    agent.expires.write_text("9000 2026-12-01T00:00:00Z\n")  # what `extend` writes over SSH
    agent.run("tick")
    assert agent.shutdowns == 0


def test_tick_does_both_and_acts_once(agent: Agent) -> None:
    agent.expires.write_text("1100\n")
    agent.run("tick")
    agent.set(now=5_000)
    agent.run("tick")  # past the deadline and idle for long: one shutdown, for the deadline
    assert agent.shutdowns == 1
    assert "deadline 1100 passed" in agent.logged


def test_settings_come_from_the_conf_file_and_the_environment_wins(agent: Agent) -> None:
    (agent.folder / "agent.conf").write_text(': "${ESS_IDLE_TIMEOUT:=30}"\n')
    env = {"ESS_IDLE_TIMEOUT": ""}
    # Empty in the environment counts as unset for := : the conf's 30 s applies.
    agent.run("idle", **env)
    agent.set(now=1_030)
    agent.run("idle", **env)
    assert agent.shutdowns == 1
    agent.calls.unlink()
    (agent.folder / "run" / "last-busy").unlink()
    agent.run("idle", ESS_IDLE_TIMEOUT="300")
    agent.set(now=1_100)
    agent.run("idle", ESS_IDLE_TIMEOUT="300")
    assert agent.shutdowns == 0


def test_loop_mode_ticks_until_stopped(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agent.expires.write_text("900\n")  # already past: the first tick acts
    proc = subprocess.Popen(
        ["sh", str(agent_script()), "loop"],
        env={
            "PATH": os.environ["PATH"],
            "ESS_AGENT_CONF": "/dev/null",
            "ESS_EXPIRES_FILE": str(agent.expires),
            "ESS_AGENT_LOG": str(agent.log),
            "ESS_AGENT_SYSLOG": "0",
            "ESS_AGENT_INTERVAL": "1",
            "ESS_NOW_CMD": f"cat {agent.clock}",
            "ESS_SHUTDOWN_CMD": f"echo shutdown >> {agent.calls}; kill $$",
        },
    )
    assert proc.wait(timeout=30) != 0  # the fake shutdown ended the loop, as a real one would
    assert agent.shutdowns == 1


def test_unknown_mode_is_a_usage_error(tmp_path: Path) -> None:
    result = Agent(tmp_path).run("bogus")
    assert result.returncode == 2 and "usage:" in result.stderr


def test_the_script_is_plain_posix_sh() -> None:
    """dash -n parses it as POSIX; bash --posix too (no bashisms that parse elsewhere only)."""
    for shell in [s for s in ("dash", "bash") if shutil.which(s)]:
        flags = ["-n"] if shell == "dash" else ["--posix", "-n"]
        result = subprocess.run([shell, *flags, str(agent_script())], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


def test_the_agent_is_installed_with_the_package() -> None:
    """Package data: the agent sits next to ess/lifetime.py wherever ess is installed."""
    assert agent_script().is_file()
    assert agent_script().read_text().startswith("#!/bin/sh\n")
    assert sys.modules["ess.lifetime"].__file__ is not None


def test_a_clock_set_back_restarts_the_window_instead_of_freezing_it(agent: Agent) -> None:
    agent.set(now=50_000)
    agent.run("idle")
    agent.set(now=1_000)  # NTP stepped the clock back
    agent.run("idle")
    agent.set(now=1_060)
    agent.run("idle")
    assert agent.shutdowns == 1


def test_the_busy_folder_is_made_open_to_all_and_sticky(agent: Agent) -> None:
    """Any user's job may hold the node with a marker; none may remove another's."""
    agent.run("idle")
    assert agent.busy.is_dir() and agent.busy.stat().st_mode & 0o7777 == 0o1777
