"""Every test runs with fake AWS credentials, a dead endpoint, its own ESS_HOME, and a
network guard that refuses any connection beyond loopback and the test namespaces
(in this process and, through PYTHONPATH, in every ess subprocess)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The fixture modules are imported here (for the fake secret) before pytest_plugins loads
# them: let pytest rewrite their asserts all the same.
pytest.register_assert_rewrite("ess.testing", "ess_ec2.testing")

from ess import plugins  # noqa: E402
from ess_ec2.testing import FAKE_SECRET_KEY  # noqa: E402

# ess's pytest fixtures are opt-in (docs/plugins.md says why): ess_home and ssh_node from
# the core, fake_aws and the moto fixtures from the EC2 plugin.
pytest_plugins = ["ess.testing", "ess_ec2.testing"]

TESTS = Path(__file__).resolve().parent
NETGUARD = TESTS / "support" / "netguard"
sys.path.insert(0, str(NETGUARD))
import ess_netguard  # noqa: E402

ess_netguard.install()
os.environ["ESS_TEST_NETGUARD"] = "1"
# Subprocesses get the guard (its sitecustomize) and tests/, so an ess child can load a test
# plugin such as ESS_PLUGINS=support.fault_plugins.faults.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), str(TESTS), os.environ.get("PYTHONPATH")]))


# -- secrets scan ------------------------------------------------------------------------
# Every test's captured stdout, stderr and log records, and every in-process CLI result,
# are searched for the fake AWS secret and for private-key material. A hit fails the test.
FORBIDDEN = (FAKE_SECRET_KEY, "PRIVATE KEY-----", "PRIVATE KEY----- ")
SCANNED = {"texts": 0, "chars": 0, "leaks": 0}


def secrets_in(text: str) -> list[str]:
    SCANNED["texts"] += 1
    SCANNED["chars"] += len(text)
    found = [marker for marker in FORBIDDEN if marker in text]
    SCANNED["leaks"] += bool(found)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    for title, content in report.sections:
        if not title.endswith(report.when):
            continue  # later phases repeat earlier sections; scan each once
        found = secrets_in(content)
        if found and not report.failed:
            report.outcome = "failed"
            report.longrepr = f"secret material {found} appeared in '{title}'"


def pytest_sessionfinish(session):
    log = os.environ.get("ESS_RELIABILITY_LOG")
    if log:
        import json

        with open(log, "a") as handle:
            handle.write(json.dumps({"kind": "secrets_scan", **SCANNED}) + "\n")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.needs("ssh", ...)``: skip without the programs, fail under ESS_INTEGRATION=1."""
    for mark in item.iter_markers("needs"):
        from support.tools import require  # here: a pytester copy of this file has no `support`

        require(*mark.args)


@pytest.fixture(autouse=True)
def _no_packets_beyond_loopback():
    before = len(ess_netguard.BLOCKED)
    yield
    blocked = ess_netguard.BLOCKED[before:]
    assert not blocked, f"the test tried to connect beyond loopback: {blocked[:3]}"


@pytest.fixture(autouse=True)
def _isolated(fake_aws, ess_home, monkeypatch):
    monkeypatch.delenv("ESS_CONFIG", raising=False)
    monkeypatch.delenv("ESS_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def ess(capsys):
    """Run the real CLI entry point in-process: ``ess("instance", "local", "list")``."""
    from ess.cli import run

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        plugins.reset()
        code = run(list(args))
        captured = capsys.readouterr()
        leaked = secrets_in(captured.out) + secrets_in(captured.err)
        assert not leaked, f"`ess {' '.join(args)}` printed secret material {leaked}"
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def memory(monkeypatch):
    """The in-memory test backend, with the SSH plugin switched off."""
    import importlib

    # The module ESS_PLUGINS loads is sys.modules' entry; after a pytester run restored
    # sys.modules, the package attribute `ess.testing.memory` can be a stale copy.
    memory_backend = importlib.import_module("ess.testing.memory")

    monkeypatch.setenv("ESS_PLUGINS", "ess.testing.memory")
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    memory_backend.CALLS.clear()
    plugins.reset()
    return memory_backend
