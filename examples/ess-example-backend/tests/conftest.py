"""Isolate every test: ESS_HOME in a temp folder, fake AWS credentials (from ess.testing)."""

import pytest


@pytest.fixture(autouse=True)
def _isolated(ess_home, fake_aws):
    from ess import plugins

    plugins.reset()
    yield
    plugins.reset()
