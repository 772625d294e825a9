"""ess's pytest plugin (entry point ``pytest11: ess``): fixtures for plugin authors.

Installed with ess, so a third-party backend's tests get these fixtures without imports:

* ``fake_aws`` (autouse-free): fake credentials, a region and an endpoint that refuses
  connections, so nothing can ever reach real AWS.
* ``moto_endpoint``: a moto server on 127.0.0.1 (one per session, reset for each test) and
  the environment pointing boto3 at it.
* ``ess_home``: ESS_HOME in a temporary folder, so state and known_hosts stay out of ~.

The backend contract suite lives in :mod:`ess.testing.contract`.
"""

from __future__ import annotations

from .fixtures import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, ess_home, fake_aws, moto_endpoint, moto_server

__all__ = ["FAKE_ACCESS_KEY", "FAKE_SECRET_KEY", "ess_home", "fake_aws", "moto_endpoint",
           "moto_server"]
