"""ess's pytest plugin (entry point ``pytest11: ess``): fixtures for plugin authors.

Installed with ess, so a third-party backend's tests get these fixtures without imports:

* ``fake_aws``: fake credentials, a region and an endpoint that refuses connections, so
  nothing can ever reach real AWS.
* ``moto_server`` / ``moto_endpoint``: a moto server on 127.0.0.1 (one per session, reset
  for each test) and the environment pointing boto3 at it.
* ``ess_home``: ESS_HOME in a temporary folder, so state and known_hosts stay out of ~.
* ``ssh_node``: a factory of in-process SSH servers on 127.0.0.1 (:mod:`ess.testing.sshd`)
  that accept a generated cluster key; stopped after the test.

The backend contract suite lives in :mod:`ess.testing.contract`.
"""

from __future__ import annotations

from .fixtures import (
    FAKE_ACCESS_KEY,
    FAKE_SECRET_KEY,
    ess_home,
    fake_aws,
    moto_endpoint,
    moto_server,
    ssh_node,
)

__all__ = ["FAKE_ACCESS_KEY", "FAKE_SECRET_KEY", "ess_home", "fake_aws", "moto_endpoint", "moto_server",
           "ssh_node"]
