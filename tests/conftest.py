"""Every test runs with fake AWS credentials, a dead endpoint and its own ESS_HOME."""

from __future__ import annotations

import pytest

from ess import plugins


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
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def memory(monkeypatch):
    """The in-memory test backend, with the SSH plugin switched off."""
    import memory_backend

    monkeypatch.setenv("ESS_PLUGINS", "memory_backend")
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    memory_backend.CALLS.clear()
    plugins.reset()
    return memory_backend
