"""Benchmark 1: EC2 API calls and wall time of `ess instance ec2 create` + `terminate all`.

    python bench/cloud_calls.py [--sizes 1,10,100,1000] [--repeat 3] [--no-write]

A moto server runs in this process on 127.0.0.1 (nothing leaves the machine); its WSGI app
is wrapped so every request is counted server-side by its ``Action=`` (DryRun calls apart).
ess runs as the real console script in a subprocess, against an Essentia-style config
folder (instance.conf, pem_file.pem 0600, credential CSV, key pair and security group made
in moto first). The baseline is a raw boto3 script, also in subprocesses, making the
minimal calls for the same job: one RunInstances (tagged at launch with the same four
tags on instances and volumes as ess), DescribeInstances until running, one
TerminateInstances (it knows the ids and does not wait for "terminated"). Rewrites the
cloud section of docs/benchmarks.md and docs/bench_cloud_calls.png.

The fleet row (issue 15) runs the same two ess commands with three instance types over
three subnets (one per zone) and market spot-or-on-demand, against the capacity simulation
of tests/support/capacity.py in the same moto server: m5.large is out in us-east-1a, and
spot has room for only half the count (in one pool), so every create takes the longest
path: a spot CreateFleet that comes back short, then an on-demand one for the rest.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import report  # noqa: E402
from support import capacity  # noqa: E402

LINUX_AMI = "ami-760aaa0f"
SCRIPTS = Path(sysconfig.get_path("scripts"))
FLINTROCK = "flintrock 2.1.0 (peer, moto 5.2.5): launch 14 calls for any N, destroy 2N+9 for --num-slaves N"

CONF = f"""[EC2]
aws_credential: credential_file
use_private_ip: False
instance_tag: Essentia Worker Node
instance_type:  m3.medium
instance_count: 2
key_name: pem_file
security_groups: essentia-access
username: ec2-user
region: us-east-1
image_id: {LINUX_AMI}
"""

#: The fleet row: three types in order of preference, one default subnet per zone.
FLEET_TYPES = ("m5.large", "m5a.large", "m4.large")
FLEET_ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")

RAW_CREATE = """
import json, sys, time, boto3
n, group, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ec2 = boto3.client("ec2", region_name="us-east-1")
# The same four tags on instances and volumes as ess sets: moto's describe cost grows with tags.
tags = [{"Key": k, "Value": v} for k, v in (("Name", "Essentia Worker Node"), ("ess:cluster", "raw"),
                                            ("ess:launch", "raw-launch"), ("ess:created-by", "raw@host"))]
reply = ec2.run_instances(ImageId="%s", InstanceType="m3.medium", KeyName="pem_file",
                          SecurityGroupIds=[group], MinCount=n, MaxCount=n,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags},
                                             {"ResourceType": "volume", "Tags": tags}])
ids = [i["InstanceId"] for i in reply["Instances"]]
while True:
    states = [i["State"]["Name"] for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
              for r in page["Reservations"] for i in r["Instances"]]
    if len(states) == n and all(s == "running" for s in states):
        break
    time.sleep(1)
json.dump(ids, open(out, "w"))
""".replace("%s", LINUX_AMI)

RAW_TERMINATE = """
import json, sys, boto3
ids = json.load(open(sys.argv[1]))
ec2 = boto3.client("ec2", region_name="us-east-1")
for start in range(0, len(ids), 1000):
    ec2.terminate_instances(InstanceIds=ids[start:start + 1000])
"""


def action_of(environ: dict[str, Any]) -> str:
    """The request's ``Action=`` (DryRun marked), reading the body and putting it back."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    action = (form.get("Action") or query.get("Action") or [None])[0]
    if action is None:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        action = target.split(".")[-1] if target else str(environ.get("PATH_INFO", "?"))
    if (form.get("DryRun") or ["false"])[0] == "true":
        action += " (DryRun)"
    return action


def fake_aws_env(endpoint: str, work: Path) -> dict[str, str]:
    """Environment for a tool run against the moto ``endpoint``: fake keys, no real AWS
    config or credentials file, and its own HOME and ESS_HOME under ``work``."""
    return dict(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="AKIAFAKEBENCH0000000",
        AWS_SECRET_ACCESS_KEY="fake",
        AWS_DEFAULT_REGION="us-east-1",
        HOME=str(work / "home"),
        ESS_HOME=str(work / "ess_home"),
        AWS_CONFIG_FILE=str(work / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(work / "none"),
    )


class MotoServer:
    """A threaded moto server on 127.0.0.1 whose WSGI app :meth:`wrap` may instrument."""

    def __init__(self) -> None:
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def wrap(self, app: Any) -> Any:
        return app

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = self.wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()


class CountingMoto(MotoServer):
    """A moto server whose WSGI app records each request's Action and its server time."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.server_seconds: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def wrap(self, app: Any) -> Any:
        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            action = action_of(environ)
            start = time.perf_counter()
            body_out = list(app(environ, start_response))  # moto's whole work, serializer included
            with self._lock:
                self.calls.append(action)
                self.server_seconds[action] += time.perf_counter() - start
            return body_out

        return counting

    def take(self) -> collections.Counter:
        """The calls since the last take, by action (and forget them and their server time)."""
        with self._lock:
            made, self.calls = self.calls, []
            self.server_seconds = collections.Counter()
        return collections.Counter(a for a in made if not a.startswith("/moto-api"))

    def seconds(self) -> float:
        """Seconds moto spent answering since the last take (read before take)."""
        with self._lock:
            return sum(s for a, s in self.server_seconds.items() if not a.startswith("/moto-api"))

    def seconds_by_action(self) -> dict[str, float]:
        with self._lock:
            return {a: round(s, 3) for a, s in self.server_seconds.items() if not a.startswith("/moto-api")}


def make_world(endpoint: str, folder: Path) -> str:
    """Reset moto; key pair pem_file (PEM saved 0600), group essentia-access, CSV, config."""
    import boto3

    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", method="POST"), timeout=30)
    ec2 = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="AKIAFAKEBENCH0000000",
        aws_secret_access_key="fake",
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instance.conf").write_text(CONF)
    pem = folder / "pem_file.pem"
    pem.write_text(ec2.create_key_pair(KeyName="pem_file")["KeyMaterial"])
    pem.chmod(0o600)
    (folder / "credential_file.csv").write_text(
        "Access key ID,Secret access key\nAKIAFAKEBENCH0000000,fakefakefakefakefakefakefakefakefakefake\n"
    )
    return ec2.create_security_group(GroupName="essentia-access", Description="bench")["GroupId"]


def fleet_world(endpoint: str, folder: Path, n: int) -> None:
    """:func:`make_world`, then the config lists 3 types x 3 subnets, spot-or-on-demand, and
    the simulated capacity has m5.large out in us-east-1a and spot room for n // 2 nodes."""
    import boto3

    make_world(endpoint, folder)
    ec2 = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="AKIAFAKEBENCH0000000",
        aws_secret_access_key="fake",
    )
    found = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in found}
    conf = folder / "instance.conf"
    conf.write_text(
        conf.read_text().replace("instance_type:  m3.medium\n", f"instance_type: {', '.join(FLEET_TYPES)}\n")
        + f"subnet_id: {', '.join(by_zone[z] for z in FLEET_ZONES)}\nmarket: spot-or-on-demand\n"
    )
    capacity.CAPACITY.reset()
    capacity.CAPACITY.out("m5.large", "us-east-1a")
    for instance_type in FLEET_TYPES:
        for zone in FLEET_ZONES:
            capacity.CAPACITY.out(instance_type, zone, market="spot")
    capacity.CAPACITY.limit("m5.large", "us-east-1b", n // 2, market="spot")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:6]} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def one_run(moto: CountingMoto, endpoint: str, env: dict[str, str], n: int, work: Path) -> dict[str, Any]:
    """ess create + terminate, then raw boto3 create + terminate, each on a fresh moto world."""
    out: dict[str, Any] = {}
    ess = str(SCRIPTS / "ess")
    conf = str(work / "conf" / "instance.conf")
    make_world(endpoint, work / "conf")
    moto.take()
    out["ess_create_s"] = timed(
        [ess, "instance", "ec2", "create", "--number", str(n), "--no-verify", "--yes", "--config", conf], env
    )
    out["ess_create_server"] = moto.seconds()
    out["ess_create_by_action"] = moto.seconds_by_action()
    out["ess_create_calls"] = moto.take()
    out["ess_terminate_s"] = timed([ess, "instance", "ec2", "terminate", "all", "--yes", "--config", conf], env)
    out["ess_terminate_server"] = moto.seconds()
    out["ess_terminate_by_action"] = moto.seconds_by_action()
    out["ess_terminate_calls"] = moto.take()

    fleet_world(endpoint, work / "conf", n)
    moto.take()
    out["fleet_create_s"] = timed(
        [ess, "instance", "ec2", "create", "--number", str(n), "--no-verify", "--yes", "--config", conf], env
    )
    out["fleet_create_server"] = moto.seconds()
    out["fleet_create_calls"] = moto.take()
    out["fleet_terminate_s"] = timed([ess, "instance", "ec2", "terminate", "all", "--yes", "--config", conf], env)
    out["fleet_terminate_server"] = moto.seconds()
    out["fleet_terminate_calls"] = moto.take()
    capacity.CAPACITY.reset()

    group = make_world(endpoint, work / "conf")
    moto.take()
    ids_file = str(work / "ids.json")
    out["raw_create_s"] = timed([sys.executable, "-c", RAW_CREATE, str(n), group, ids_file], env)
    out["raw_create_server"] = moto.seconds()
    out["raw_create_by_action"] = moto.seconds_by_action()
    out["raw_create_calls"] = moto.take()
    out["raw_terminate_s"] = timed([sys.executable, "-c", RAW_TERMINATE, ids_file], env)
    out["raw_terminate_server"] = moto.seconds()
    out["raw_terminate_by_action"] = moto.seconds_by_action()
    out["raw_terminate_calls"] = moto.take()
    return out


def fmt_seconds(by_action: dict[str, float]) -> str:
    return ", ".join(f"{op} {s:.2f} s" for op, s in sorted(by_action.items()))


def fmt_calls(counter: collections.Counter) -> str:
    return ", ".join(f"{op} {k}" for op, k in sorted(counter.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,10,100,1000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (1000 nodes: at most 2)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = report.load_average()
    capacity.install()
    moto = CountingMoto()
    endpoint = moto.start()
    assert endpoint.startswith("http://127.0.0.1:")
    work = Path(tempfile.mkdtemp(prefix="ess-bench-cloud-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ESS_"))}
    env.update(fake_aws_env(endpoint, work))
    results: dict[int, list[dict[str, Any]]] = {}
    try:
        for n in sizes:
            runs = args.repeat if n < 1000 else min(args.repeat, 2)
            results[n] = []
            for _ in range(runs):
                results[n].append(one_run(moto, endpoint, env, n, work))
                r = results[n][-1]
                print(
                    f"N={n}: ess {r['ess_create_s']:.2f}+{r['ess_terminate_s']:.2f} s, fleet "
                    f"{r['fleet_create_s']:.2f}+{r['fleet_terminate_s']:.2f} s, raw "
                    f"{r['raw_create_s']:.2f}+{r['raw_terminate_s']:.2f} s",
                    file=sys.stderr,
                )
    finally:
        moto.stop()
    load_after = report.load_average()

    rows, detail, fleet_rows, series = [], [], [], collections.defaultdict(list)
    for n, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key.endswith(("_s", "_server"))}
        calls = {key: runs[-1][key] for key in runs[0] if key.endswith("_calls")}
        total = {key: sum(c.values()) for key, c in calls.items()}
        ess_s = med["ess_create_s"] + med["ess_terminate_s"]
        raw_s = med["raw_create_s"] + med["raw_terminate_s"]
        ess_moto = med["ess_create_server"] + med["ess_terminate_server"]
        raw_moto = med["raw_create_server"] + med["raw_terminate_server"]
        rows.append(
            [
                str(n),
                str(total["ess_create_calls"]),
                str(total["ess_terminate_calls"]),
                str(total["raw_create_calls"]),
                str(total["raw_terminate_calls"]),
                f"{med['ess_create_s']:.2f}",
                f"{med['ess_terminate_s']:.2f}",
                f"{ess_s:.2f}",
                f"{med['raw_create_s']:.2f}",
                f"{med['raw_terminate_s']:.2f}",
                f"{raw_s:.2f}",
                f"{ess_s / raw_s:.2f}x",
                f"{ess_moto:.2f} / {raw_moto:.2f}",
                f"{(ess_s - ess_moto) / (raw_s - raw_moto):.2f}x",
                str(len(runs)),
            ]
        )
        detail.append(
            [
                str(n),
                fmt_calls(calls["ess_create_calls"]),
                fmt_calls(calls["ess_terminate_calls"]),
                fmt_seconds(runs[-1]["ess_terminate_by_action"]),
            ]
        )
        fleet_rows.append(
            [
                str(n),
                str(total["ess_create_calls"]),
                str(total["fleet_create_calls"]),
                str(calls["fleet_create_calls"]["CreateFleet"]),
                str(total["fleet_terminate_calls"]),
                f"{med['ess_create_s']:.2f}",
                f"{med['fleet_create_s']:.2f}",
                f"{med['fleet_terminate_s']:.2f}",
                f"{med['fleet_create_server'] + med['fleet_terminate_server']:.2f}",
                fmt_calls(calls["fleet_create_calls"]),
            ]
        )
        for key in (
            "ess_create_calls",
            "ess_terminate_calls",
            "raw_create_calls",
            "raw_terminate_calls",
            "fleet_create_calls",
            "fleet_terminate_calls",
        ):
            series[key].append(total[key])
        series["fleet_s"].append(med["fleet_create_s"] + med["fleet_terminate_s"])
        series["ess_s"].append(ess_s)
        series["raw_s"].append(raw_s)
    header = [
        "N",
        "ess create calls",
        "ess terminate calls",
        "raw create calls",
        "raw terminate calls",
        "ess create s",
        "ess terminate s",
        "ess total s",
        "raw create s",
        "raw terminate s",
        "raw total s",
        "ess / raw",
        "of which moto s (ess / raw)",
        "ess / raw without moto",
        "runs",
    ]
    main_table = report.table(header, rows)
    detail_table = report.table(
        ["N", "ess create: calls by action", "ess terminate: calls by action", "ess terminate: moto seconds by action"],
        detail,
    )
    fleet_table = report.table(
        [
            "N",
            "RunInstances path: create calls",
            "fleet path: create calls",
            "of which CreateFleet",
            "fleet path: terminate calls",
            "RunInstances path: create s",
            "fleet path: create s",
            "fleet path: terminate s",
            "of which moto s",
            "fleet create: calls by action",
        ],
        fleet_rows,
    )
    print(main_table)
    print()
    print(detail_table)
    print()
    print(fleet_table)
    verdicts = verdict(results, series, sizes)
    print("\n".join(verdicts))
    if args.no_write:
        return
    png = report.DOCS / "bench_cloud_calls.png"
    plot(sizes, series, png)
    info = report.machine(
        ["boto3", "botocore", "moto", "werkzeug"],
        f"Load average (1, 5, 15 min) before: {load_before}; after: {load_after}.",
    )
    body = "\n".join(
        [
            "## 1. Cloud calls: `ess instance ec2 create --no-verify` + `terminate all --yes` on moto",
            "",
            info,
            "",
            "Seconds are medians of the runs; calls are counted server-side (WSGI wrapper around the moto "
            "server, by `Action=`), from the last run. Both ess commands and both raw boto3 steps run as "
            "separate processes (interpreter start and imports included). The moto server runs in the "
            "benchmark process on the same 2 cores, so at large N most of the time is moto's own work.",
            "",
            main_table,
            "",
            detail_table,
            "",
            f"Reference ({FLINTROCK}): 13 / 49 / 209 destroy calls for N = 2 / 20 / 100.",
            "",
            "### The fleet path beside it: 3 instance types x 3 subnets, `market = spot-or-on-demand`",
            "",
            "The same two commands with `instance_type = m5.large, m5a.large, m4.large`, one default "
            "subnet in each of us-east-1a/b/c and `market = spot-or-on-demand`, against the capacity "
            "simulation of tests/support/capacity.py in the same moto server: m5.large is out in "
            "us-east-1a and spot has room for N // 2 nodes, so every create takes the longest path "
            "(describe the cluster's launch template, make it or a new version, a spot CreateFleet "
            "that comes back short, an on-demand CreateFleet for the rest, whose m5.large/us-east-1a "
            "pool fails and falls to the next by priority). Preflight asks about three types and three "
            "subnets in the same calls it uses for one.",
            "",
            fleet_table,
            "",
            *verdicts,
            "",
            "![EC2 calls and seconds against N](bench_cloud_calls.png)",
        ]
    )
    report.write_section("cloud", body)
    raw = {
        str(k): [{key: (dict(v) if isinstance(v, collections.Counter) else v) for key, v in r.items()} for r in runs]
        for k, runs in results.items()
    }
    (work / "results.json").write_text(json.dumps(raw, indent=1))
    print(f"raw figures: {work / 'results.json'}", file=sys.stderr)


def verdict(results: dict[int, list[dict[str, Any]]], series: dict[str, list[float]], sizes: list[int]) -> list[str]:
    lines = []
    for path, op in (("ess", "create"), ("ess", "terminate"), ("fleet", "create"), ("fleet", "terminate")):
        counts = series[f"{path}_{op}_calls"]
        flat = len(set(counts)) == 1
        what = op if path == "ess" else f"{op} on the fleet path"
        lines.append(
            f"- Goal O(1) calls in N for {what}: {'MET' if flat else 'MISSED'} "
            f"({' / '.join(str(c) for c in counts)} calls for N = {' / '.join(map(str, sizes))})."
        )
    for n, ess_s, raw_s in zip(sizes, series["ess_s"], series["raw_s"], strict=True):
        ratio = ess_s / raw_s
        lines.append(
            f"- Goal wall time <= 1.2x raw boto3 at N={n}: {'MET' if ratio <= 1.2 else 'MISSED'} "
            f"({ess_s:.2f} s vs {raw_s:.2f} s, {ratio:.2f}x)."
        )
    return lines


def plot(sizes: list[int], series: dict[str, list[float]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(sizes, series["ess_create_calls"], "o-", label="ess create")
    left.plot(sizes, series["ess_terminate_calls"], "s-", label="ess terminate all")
    left.plot(sizes, series["fleet_create_calls"], "^-", label="ess create, fleet (3 types x 3 subnets)")
    left.plot(sizes, series["fleet_terminate_calls"], "v-", label="ess terminate all, fleet")
    left.plot(sizes, series["raw_create_calls"], "o--", label="raw boto3 create")
    left.plot(sizes, series["raw_terminate_calls"], "s--", label="raw boto3 terminate")
    left.plot(sizes, [14 for _ in sizes], ":", color="grey", label="flintrock launch (peer)")
    left.plot(sizes, [2 * n + 9 for n in sizes], "-.", color="grey", label="flintrock destroy 2N+9 (peer)")
    left.set(xscale="log", yscale="log", xlabel="nodes N", ylabel="EC2 API calls", title="API calls per operation")
    left.legend(fontsize=8)
    right.plot(sizes, series["ess_s"], "o-", label="ess create + terminate")
    right.plot(sizes, series["fleet_s"], "^-", label="ess create + terminate, fleet")
    right.plot(sizes, series["raw_s"], "o--", label="raw boto3 create + terminate")
    right.plot(sizes, [1.2 * s for s in series["raw_s"]], ":", color="grey", label="goal: 1.2x raw")
    right.set(xscale="log", yscale="log", xlabel="nodes N", ylabel="seconds (median)", title="Wall time on moto")
    right.legend(fontsize=8)
    report.save_plot(fig, png)


if __name__ == "__main__":
    main()
