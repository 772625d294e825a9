"""Isolate every test: ESS_HOME in a temp folder (the ess_home fixture of ess.testing)."""

import pytest

# ess's fixtures and contract suite are opt-in: a plugin author asks for them here.
pytest_plugins = ["ess.testing"]


@pytest.fixture(autouse=True)
def _isolated(ess_home):
    from ess import plugins

    plugins.reset()
    yield
    plugins.reset()
