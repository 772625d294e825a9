"""Integration tier: real OpenSSH sshd on loopback and in network namespaces.

Runs only with ESS_INTEGRATION=1 (CI sets it after tests/integration/setup.sh). When it
is set, a missing sshd or ``ip netns`` is a FAILURE, never a skip: CI must not silently
lose this tier.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from support.tools import require

from ess.testing.openssh import kill_leftovers, leftover_processes

ENABLED = os.environ.get("ESS_INTEGRATION") == "1"
SSHD = "/usr/sbin/sshd"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" not in str(item.path).replace(os.sep, "/"):
            continue
        item.add_marker(pytest.mark.integration)
        if not ENABLED:
            item.add_marker(
                pytest.mark.skip(reason="integration tier: set ESS_INTEGRATION=1 (after tests/integration/setup.sh)")
            )


@pytest.fixture(scope="session")
def tools() -> None:
    """Fail (not skip) when the tier is on but the machine lacks what it needs."""
    require(SSHD, "ip", "ssh", "ssh-keygen")  # fails: this tier only runs under ESS_INTEGRATION=1
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.fail(
            f"ESS_INTEGRATION=1 but `ip netns` does not work: {probe.stderr.strip()} (needs root / CAP_SYS_ADMIN)"
        )
    os.makedirs("/run/sshd", exist_ok=True)


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """Every sshd a test started, and every per-connection child and command of it, is gone
    when the test ends: an orphan `sshd: root@notty` once outlived its network namespace."""
    yield
    left = leftover_processes()
    if left:
        described = [_describe(pid) for pid in left]
        kill_leftovers()  # so one leak does not fail every later test too
        pytest.fail(f"the test left {len(left)} process(es) running: {described}")


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        return f"{pid} {command}"
    except OSError:
        return str(pid)
