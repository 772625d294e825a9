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
