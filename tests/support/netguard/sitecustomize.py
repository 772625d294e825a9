"""Test-only network guard, loaded into ess subprocesses through PYTHONPATH.

Tests may reach only loopback and the integration tier's own network namespaces
(10.213.0.0/16). moto hands out plausible public and private addresses for fake
instances; a test that forgot --no-verify must fail fast here, never send a packet.
"""

from __future__ import annotations

import os

if os.environ.get("ESS_TEST_NETGUARD") == "1":
    import ess_netguard

    ess_netguard.install()
