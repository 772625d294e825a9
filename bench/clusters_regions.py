"""Benchmark 5: `ess clusters --all-regions`: API calls, and what asking regions in parallel saves.

    python bench/clusters_regions.py [--rtt 0.15] [--repeat 3] [--no-write]

A moto server runs in this process on 127.0.0.1 (nothing leaves the machine), with an ess
cluster in us-east-1 and one in eu-west-1. ``ess clusters --all-regions --json`` runs
in-process (the real CLI entry point), once with the regions asked one after another
(``ess_ec2.inventory.MAX_PARALLEL = 1``) and once as shipped (8 at once). Every EC2 call
is counted by region at the client seam (``ess_ec2.client.build_client``), which also adds
a fixed round trip per call (``--rtt`` seconds, slept before the request is sent) to stand
in for the distance to far regions: moto answers in about a millisecond, EC2 from another
continent in 100-300 ms. Rewrites the clusters section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtt", type=float, default=0.15, help="seconds added to every EC2 call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="ess-bench-clusters-")
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIABENCHFAKEKEY0001",
        AWS_SECRET_ACCESS_KEY="bench/fake/secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        MOTO_EC2_LOAD_DEFAULT_AMIS="false",
        ESS_HOME=home,
        ESS_DISABLE_PLUGINS="ssh,local",
    )
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    try:
        two_clusters()
        rows, regions, calls = measure(args.rtt, args.repeat)
    finally:
        server.stop()
    body = render(rows, regions, calls, args.rtt, args.repeat)
    print(body)
    if not args.no_write:
        report.write_section("clusters", body)


def two_clusters() -> None:
    """Raw ess-tagged launches (ess:cluster, ess:launch, a key pair) in two regions."""
    import boto3

    for region, cluster, count in (("us-east-1", "alpha", 2), ("eu-west-1", "euro", 3)):
        ec2 = boto3.client("ec2", region_name=region)
        ec2.create_key_pair(KeyName="pem_file")
        image = ec2.register_image(Name="al2023-bench", Architecture="x86_64", RootDeviceName="/dev/xvda")["ImageId"]
        tags = [{"Key": "ess:cluster", "Value": cluster}, {"Key": "ess:launch", "Value": f"bench-{cluster}"}]
        ec2.run_instances(
            ImageId=image,
            MinCount=count,
            MaxCount=count,
            KeyName="pem_file",
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )


def measure(rtt: float, repeat: int) -> tuple[list[list[str]], int, collections.Counter]:
    from ess.cli import run
    from ess_ec2 import client as ec2_client
    from ess_ec2 import inventory

    made: list[tuple[str, str]] = []
    original = ec2_client.build_client

    building: list[float] = []

    def seam(session: Any, service: str, region: str, max_attempts: int) -> Any:
        started = time.perf_counter()
        client = original(session, service, region, max_attempts)
        building.append(time.perf_counter() - started)
        client.meta.events.register("before-parameter-build", lambda model, **_: made.append((region, model.name)))
        client.meta.events.register("before-send", lambda **_: time.sleep(rtt))
        return client

    ec2_client.build_client = seam  # type: ignore[assignment]
    rows: list[list[str]] = []
    regions = 0
    calls: collections.Counter = collections.Counter()
    shipped = inventory.MAX_PARALLEL
    for label, parallel in (("one region at a time", 1), (f"{shipped} at once (as shipped)", shipped)):
        inventory.MAX_PARALLEL = parallel
        walls, builds = [], []
        for _ in range(repeat):
            made.clear()
            building.clear()
            out = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                code = run(["clusters", "--all-regions", "--json"])
            walls.append(time.perf_counter() - started)
            builds.append(sum(building))
            found = sorted((c["region"], c["cluster"]) for c in json.loads(out.getvalue())["clusters"])
            assert code == 0 and found == [("eu-west-1", "euro"), ("us-east-1", "alpha")], (code, found)
        calls = collections.Counter(op for _, op in made)
        regions = len({region for region, op in made if op == "DescribeInstances"})
        rest = [wall - build for wall, build in zip(walls, builds, strict=True)]
        rows.append(
            [
                label,
                f"{statistics.median(walls):.2f}",
                f"{statistics.median(builds):.2f}",
                f"{statistics.median(rest):.2f}",
            ]
        )
    inventory.MAX_PARALLEL = shipped
    return rows, regions, calls


def render(rows: list[list[str]], regions: int, calls: collections.Counter, rtt: float, repeat: int) -> str:
    per = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
    return "\n".join(
        [
            "## 5. `ess clusters --all-regions`: calls and the parallel regions",
            "",
            report.machine(["boto3", "moto"], f"Load average at the end: {report.load_average()}."),
            "",
            f"Two clusters (us-east-1, eu-west-1) in a moto account of {regions} regions; every EC2 call "
            f"costs {rtt * 1000:.0f} ms more (slept before sending, standing in for far regions). "
            f"Calls per run: {per} (one DescribeRegions, one DescribeInstances per region, "
            f"whatever the count of clusters or instances). Wall time of the whole command, "
            f"{repeat} runs each, medians (`python bench/clusters_regions.py`); building clients is "
            "the time spent making the boto3 clients, the rest is the wall time without it:",
            "",
            report.table(["regions asked", "wall s", "building clients s", "the rest s"], rows),
            "",
            "Reading: the calls are 1 + one per region, as designed. Asked one at a time, the "
            "regions' round trips add up (the rest is about one round trip per region); asked "
            "8 at once, the rest is about one round trip per 8 regions, plus grouping. What is "
            "left is building one boto3 client per region (botocore builds a client class of "
            "~770 methods each time: 0.07-0.1 s of CPU on a quiet core, several times that on a "
            "loaded one), in the calling thread since a boto3 session is not thread-safe; "
            "each region's describe starts as soon as its client exists, so the two overlap.",
        ]
    )


if __name__ == "__main__":
    main()
