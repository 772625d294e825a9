"""The pool backend against ess's contract suite, with in-process SSH servers as machines."""

from __future__ import annotations

import json
import subprocess

import pytest

from ess.testing.contract import BackendContract, ContractTarget
from ess_example_pool.backend import PoolBackend


@pytest.fixture
def machines(ssh_node):
    """The pool: three in-process SSH servers (ess.testing's ssh_node fixture) and their key."""
    return ssh_node.key_file, [ssh_node.start(username="worker") for _ in range(3)]


class TestPoolContract(BackendContract):
    @pytest.fixture
    def contract_target(self, machines):
        key_file, servers = machines
        backend = PoolBackend()
        return ContractTarget(
            backend=backend,
            settings={
                "hosts": ",".join(f"127.0.0.1:{s.port}" for s in servers),
                "username": "worker",
                "key_file": str(key_file),
            },
            bad_settings=[
                ({"hosts": ""}, "no hosts in the pool"),
                ({"hosts": "127.0.0.1:notaport"}, "is not host or host:port"),
                ({"instance_count": 9}, "only 3 of 3 machines are free"),
                ({"key_file": "/nonexistent/key"}, "no such key file"),
            ],
            snapshot=lambda: backend.state_file().read_text() if backend.state_file().exists() else None,
        )


def test_ess_plugins_lists_the_pool_backend():
    out = subprocess.run(["ess", "plugins", "--json"], capture_output=True, text=True, check=True).stdout
    pool = next(p for p in json.loads(out)["plugins"] if p["name"] == "pool")
    assert pool["backends"] == ["pool"] and pool["version"] == "0.1.0"
