"""Benchmark: create N local nodes, then run one command on each over SSH; terminate.

    python bench/local_create.py [--nodes 10] [--runs 3]

Runs in a throwaway ESS_HOME. Prints the time of create+wait, of the SSH exec on all
nodes (paramiko, one thread per node), and of terminate, per run and as the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["ESS_HOME"] = tempfile.mkdtemp(prefix="ess-bench-")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.local_helpers import run

    from ess.models import LaunchRequest
    from ess.progress import Progress
    from ess.settings import load_settings
    from ess_local.backend import LocalBackend

    backend = LocalBackend()
    settings = load_settings(backend, None, env={})
    rows = []
    for _ in range(args.runs):
        request = LaunchRequest(count=args.nodes, min_count=args.nodes, launch_id=uuid.uuid4().hex, tags={})
        started = time.perf_counter()
        nodes = backend.create(settings, request, Progress(quiet=True))
        nodes = backend.wait(settings, nodes, Progress(quiet=True), 60)
        created = time.perf_counter()
        access = backend.access(settings)
        with ThreadPoolExecutor(len(nodes)) as pool:
            replies = pool.map(
                partial(run, username=access.username, key_file=access.key_file, command="uname -n"), nodes
            )
            codes = [reply[0] for reply in replies]
        assert codes == [0] * len(nodes), codes
        executed = time.perf_counter()
        backend.terminate(settings, backend.nodes(settings), Progress(quiet=True))
        ended = time.perf_counter()
        rows.append((created - started, executed - created, ended - executed))
        print(
            f"create+wait {rows[-1][0]:.2f} s, ssh exec on {len(nodes)} {rows[-1][1]:.2f} s, "
            f"terminate {rows[-1][2]:.2f} s"
        )
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    print(
        f"median of {args.runs}: create+wait {medians[0]:.2f} s, exec {medians[1]:.2f} s, "
        f"terminate {medians[2]:.2f} s, create+exec {medians[0] + medians[1]:.2f} s"
    )


if __name__ == "__main__":
    main()
