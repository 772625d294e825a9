"""The backend contract suite from ess.testing, run against the local backend."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes

from ess.testing.contract import BackendContract, ContractTarget
from ess_local.backend import LocalBackend


def _tree(root: Path) -> list[tuple[str, int]]:
    """Every file and folder under ``root`` with its mode: preflight must change none."""
    if not root.exists():
        return []
    return sorted((str(path.relative_to(root)), path.stat().st_mode) for path in root.rglob("*"))


class TestLocalContract(BackendContract):
    @pytest.fixture
    def contract_target(self, ess_home: Path, tmp_path: Path) -> Iterator[ContractTarget]:
        sleepers: list[subprocess.Popen[bytes]] = []

        def foreign_node() -> str:
            # A process ess did not start; its id can never appear in a cluster's list.
            sleepers.append(subprocess.Popen(["sleep", "300"]))
            return f"local-foreign-{sleepers[-1].pid}"

        def node_exists(node_id: str) -> bool:
            pid = int(node_id.rsplit("-", 1)[1])
            return any(proc.pid == pid and proc.poll() is None for proc in sleepers)

        yield ContractTarget(
            backend=LocalBackend(),
            bad_settings=[
                ({"key_file": str(tmp_path / "absent.pem")}, "absent.pem does not exist"),
                ({"instance_count": 0}, "too small"),
            ],
            snapshot=lambda: _tree(ess_home / "state"),  # the backend's state, not ess's caches
            foreign_node=foreign_node,
            node_exists=node_exists,
            verify=True,
            count=2,
        )
        for proc in sleepers:
            proc.kill()
            proc.wait()
        kill_test_nodes(ess_home)
