"""What the tests of the contract kit share: the conftest of a pytester run of the kit."""

#: Only the in-memory backend, in a fresh ESS_HOME, with the SSH plugin off.
MEMORY_ONLY_CONFTEST = """
import pytest
from ess import plugins


@pytest.fixture(autouse=True)
def _memory_only(monkeypatch, tmp_path):
    monkeypatch.setenv("ESS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ESS_PLUGINS", "ess.testing.memory")
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    plugins.reset()
    yield
    plugins.reset()
"""
