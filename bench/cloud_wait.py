"""Benchmark 6: how soon ess notices that EC2 instances became running / terminated, on a slow moto.

    python bench/cloud_wait.py [--sizes 10,100,1000] [--repeat 3] [--old REV] [--scale 1.0]
                               [--round-trip 0.05] [--no-write]

moto makes an instance ``running`` at once; here it runs under bench/moto_latency.py's model:
each instance stays ``pending`` for a time drawn per instance (uniform 15-45 s), and
``shutting-down`` likewise after TerminateInstances, and every request costs a 50 ms round
trip (all times multiplied by ``--scale``). The model records when each instance really got
there. ess runs as the real console script in a subprocess: ``create --number N --no-verify``
then ``terminate all``, for two versions of ess, interleaved run by run:

* ``old``: commit ``--old`` (default: the commit this work started from, with the old
  back-off), exported with ``git archive`` and run through PYTHONPATH;
* ``new``: this working tree.

For each command: the lag from the moment the last instance was really running (terminated)
to the end of the describe that saw it and to the exit of ess, the DescribeInstances calls
made while waiting, and for create the time from ess's first API call to its RunInstances
(the preflight), in round trips. Rewrites the cloud-wait section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from cloud_calls import SCRIPTS, MotoServer, action_of, fake_aws_env, make_world  # noqa: E402
from moto_latency import LatencyModel  # noqa: E402

#: The commit before the EC2 wait changed (its polling.py is the 1 s x 1.5 up to 15 s back-off).
OLD_DEFAULT = "50815a2"


class SlowMoto(MotoServer):
    """A moto server on 127.0.0.1 behind the latency model."""

    def __init__(self, model: LatencyModel) -> None:
        super().__init__()
        self.model = model

    def wrap(self, app: Any) -> Any:
        return self.model.middleware(app, action_of)


def export(rev: str, into: Path) -> Path:
    """``core`` and ``plugins`` of commit ``rev`` under ``into`` (git archive: the tree is untouched)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(report.ROOT), "archive", rev, "core", "plugins"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


#: Shapes for the simulation: name, first and last moment instances get there (uniform), sizes.
SHAPES = [
    ("the model: pending 15-45 s", 15.0, 45.0, (10, 100, 1000)),
    ("one batch booting together, 20-24 s (EC2's usual)", 20.0, 24.0, (1, 10, 100)),
    ("terminating, 30-60 s", 30.0, 60.0, (10, 100)),
    ("stopping, 60-180 s", 60.0, 180.0, (10, 100)),
]


def load_poll_module(path: Path) -> Any:
    """A polling.py (old or new) as a module of the installed ess_ec2 package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"ess_ec2._bench_{path.parent.parent.parent.name}_polling", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def simulated_wait(module: Any, ready: dict[str, float], round_trip: float, times: Any = None) -> tuple[float, int]:
    """``module.poll`` on a fake clock against instances that get there at ``ready``; (lag, describes).

    ``times``: earlier waits' moments (a ``WaitTimes``) for a polling.py that takes them.
    """
    from unittest import mock

    from ess.progress import Progress
    from ess_ec2 import client as aws_client

    now, asked = [0.0], [0.0]
    calls = 0

    def describe(_aws: Any, ids: list[str], _states: Any = ()) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        asked[0] = now[0] + round_trip / 2  # EC2 reads the state half a round trip in
        now[0] += round_trip
        return {i: {"InstanceId": i, "State": {"Name": "running" if ready[i] <= asked[0] else "pending"}} for i in ids}

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with mock.patch.object(aws_client, "describe", describe):
        module.poll(
            None,
            sorted(ready),
            "running",
            3600,
            Progress(io.StringIO(), tty=False, quiet=True),
            "sim",
            sleep=sleep,
            clock=lambda: now[0],
            **({"times": times} if times is not None else {}),
        )
    return now[0] - max(ready.values()), calls


#: A history of one shape against waits of another: (history range, the waits' range), N=10.
MISFITS = [
    ((15.0, 45.0), (5.0, 8.0)),
    ((15.0, 45.0), (20.0, 24.0)),
    ((15.0, 45.0), (18.0, 50.0)),
    ((15.0, 45.0), (30.0, 60.0)),
    ((60.0, 180.0), (15.0, 45.0)),
    ((20.0, 24.0), (15.0, 45.0)),
]


def lag_cell(runs: list[tuple[float, int]]) -> str:
    lags = sorted(lag for lag, _ in runs)
    calls = sorted(c for _, c in runs)
    median, p90 = statistics.median(lags), lags[int(len(lags) * 0.9)]
    return f"{median:.2f} / {p90:.2f} s, {statistics.median(calls):.0f} ({calls[-1]}) describes"


def in_a_row(
    module: Any, boots: Any, round_trip: float, past: Any = None, keep: bool = False
) -> tuple[list[tuple[float, int]], Any]:
    """Waits one after another on ``boots`` (each a dict id -> moment); (lag, describes) of
    each, and the wait times kept at the end.

    Each wait gets the wait times kept so far (``past`` to start with), if any are given or
    ``keep``; with ``keep`` each adds what it saw (``wait_times.merged``), as ess does.
    """
    from ess_ec2 import wait_times

    kept = list(past) if past is not None else []
    done = []
    for ready in boots:
        times = wait_times.WaitTimes("sim", list(kept)) if keep or past is not None else None
        done.append(simulated_wait(module, ready, round_trip, times))
        if keep and times is not None:
            kept = wait_times.merged(kept, times)
    return done, kept


def simulate(old_tree: Path, round_trip: float, seed: int) -> str:
    """Old and new polling.py against the SHAPES on a fake clock, the new one also keeping wait
    times as ess does (each wait guided by the ones before it), and with wait times learned on
    one shape against waits of another (MISFITS): two Markdown tables."""
    import random

    modules = {
        "old": load_poll_module(old_tree / "plugins" / "ess_ec2" / "polling.py"),
        "new": load_poll_module(report.ROOT / "plugins" / "ess_ec2" / "polling.py"),
    }
    few = modules["new"].FEW

    def boots(draw: Any, first: float, last: float, n: int, waits: int) -> Any:
        return ({f"i-{k}": draw.uniform(first, last) for k in range(n)} for _ in range(waits))

    def runs(version: str, first: float, last: float, n: int, keep: bool, past: Any = None) -> str:
        random.seed(seed)  # the old loop's jitter; the same boots for every column
        waits = boots(random.Random(seed), first, last, n, 200 if n < 1000 else 40)
        # With ``past``, every wait starts from it: nothing kept carries over.
        return lag_cell(in_a_row(modules[version], waits, round_trip, past, keep)[0])

    rows = []
    for name, first, last, sizes in SHAPES:
        for n in sizes:
            keeping = runs("new", first, last, n, True) if n <= few else "(not used above FEW)"
            rows.append([name, str(n), runs("old", first, last, n, False), runs("new", first, last, n, False), keeping])
    shapes = report.table(
        [
            "shape",
            "N",
            "old: lag median / p90, describes median (max)",
            "new, every wait the first of its kind: the same",
            "new, 200 waits in a row keeping wait times",
        ],
        rows,
    )
    rows = []
    for (low, high), (first, last) in MISFITS:
        _, past = in_a_row(modules["new"], boots(random.Random(seed + 1), low, high, 10, 30), round_trip, keep=True)
        rows.append(
            [
                f"{low:g}-{high:g} s",
                f"{first:g}-{last:g} s",
                runs("new", first, last, 10, False),
                runs("new", first, last, 10, False, past),
            ]
        )
    misfits = report.table(["wait times learned on", "this wait (N=10)", "new, without them", "new, with them"], rows)
    intro = (
        "**Wait times that no longer fit** (N=10; what 30 waits in a row kept on one range, then "
        "200 waits on another, each starting from that history):"
    )
    return shapes + "\n\n" + intro + "\n\n" + misfits


def run_ess(argv: list[str], env: dict[str, str]) -> float:
    """Run ess; the wall-clock moment it exited."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    ended = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"{argv[1:4]} exited {done.returncode}: {done.stderr[-2000:]}")
    return ended


def waited(requests: list[tuple[float, float, str]], action: str, last: float, ended: float) -> dict[str, float]:
    """What the wait after ``action`` cost and how late it noticed ``last``."""
    acted = max(end for _, end, name in requests if name == action)
    polls = [(start, end) for start, end, name in requests if name == "DescribeInstances" and start >= acted]
    return {
        "describes": float(len(polls)),
        "notice_lag": max(end for _, end in polls) - last if polls else float("nan"),
        "return_lag": ended - last,
        "wait": ended - acted,
    }


def preflight_rounds(requests: list[tuple[float, float, str]]) -> list[list[tuple[float, float, str]]]:
    """The calls before RunInstances, in rounds (a round starts with a call that begins after every
    call of the round before it has ended)."""
    launch = min(start for start, _, name in requests if name == "RunInstances")
    rounds: list[list[tuple[float, float, str]]] = []
    round_end = float("-inf")
    for call in sorted(r for r in requests if r[0] < launch):
        if call[0] >= round_end:
            rounds.append([])
        rounds[-1].append(call)
        round_end = max(round_end if len(rounds[-1]) > 1 else float("-inf"), call[1])
    return rounds


def timeline(requests: list[tuple[float, float, str]]) -> str:
    """``round 1 (0.21 s): DescribeKeyPairs 0.12, ...`` for the calls before RunInstances."""
    rounds = preflight_rounds(requests)
    return "; ".join(
        f"round {k} ({max(e for _, e, _ in calls) - min(s for s, _, _ in calls):.2f} s): "
        + ", ".join(f"{name} {end - start:.2f}" for start, end, name in calls)
        for k, calls in enumerate(rounds, 1)
    )


def preflight_of(requests: list[tuple[float, float, str]]) -> dict[str, float]:
    """From ess's first API call to its RunInstances: seconds, calls, rounds, server-side seconds."""
    launch = min(start for start, _, name in requests if name == "RunInstances")
    before = [call for call in requests if call[0] < launch]
    rounds = len(preflight_rounds(requests))
    return {
        "preflight_s": launch - min(start for start, _, _ in before),
        "preflight_calls": float(len(before)),
        "preflight_rounds": float(rounds),
        "preflight_server_s": sum(end - start for start, end, _ in before),
    }


def preflight_runs(model: LatencyModel, endpoint: str, envs: dict[str, dict[str, str]], work: Path) -> str:
    """Only the launch of 1 node (boots of 0.5-1 s), 5 interleaved runs per version: a table."""
    ess = str(SCRIPTS / "ess")
    conf = str(work / "conf" / "instance.conf")
    found: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    lines: dict[str, str] = {}
    boots = model.pending, model.shutting_down
    model.pending = model.shutting_down = (0.5 / model.scale, 1.0 / model.scale)  # only the launch matters here
    for repeat in range(5):
        for version in ("old", "new") if repeat % 2 == 0 else ("new", "old"):
            env = envs[version]
            make_world(endpoint, work / "conf")
            model.take_requests()
            run_ess([ess, "instance", "ec2", "create", "--number", "1", "--no-verify", "--yes", "--config", conf], env)
            requests = model.take_requests()
            found[version].append(preflight_of(requests))
            lines[version] = timeline(requests)
            run_ess([ess, "instance", "ec2", "terminate", "all", "--yes", "--config", conf], env)
    model.pending, model.shutting_down = boots
    rt = model.round_trip * model.scale
    rows = [
        [
            version,
            f"{med(runs, 'preflight_calls'):.0f}",
            f"{med(runs, 'preflight_rounds'):.0f}",
            f"{med(runs, 'preflight_s'):.3f} s = {med(runs, 'preflight_s') / rt:.1f} RT",
            f"{min(r['preflight_s'] for r in runs):.3f} s = {min(r['preflight_s'] for r in runs) / rt:.1f} RT",
            f"{med(runs, 'preflight_server_s'):.3f} s",
            str(len(runs)),
        ]
        for version, runs in found.items()
    ]
    header = [
        "ess",
        "calls before RunInstances",
        "rounds",
        "first call to RunInstances (median)",
        "(best)",
        "sum of the calls' server-side times",
        "runs",
    ]
    last = "\n".join(f"- {version}, its last run: {line}" for version, line in lines.items())
    return report.table(header, rows) + "\n\n" + last


def one_run(model: LatencyModel, endpoint: str, env: dict[str, str], n: int, work: Path) -> dict[str, float]:
    ess = str(SCRIPTS / "ess")
    conf = str(work / "conf" / "instance.conf")
    make_world(endpoint, work / "conf")
    model.take_requests()
    model.arrivals.clear()
    ended = run_ess(
        [ess, "instance", "ec2", "create", "--number", str(n), "--no-verify", "--yes", "--config", conf], env
    )
    requests = model.take_requests()
    ids = [i for i, state in model.arrivals if state == "running"]
    assert len(ids) == n, f"{len(ids)} instances launched, not {n}"
    out = {
        f"create_{k}": v for k, v in waited(requests, "RunInstances", model.last_arrival(ids, "running"), ended).items()
    }
    out |= preflight_of(requests)
    model.arrivals.clear()
    ended = run_ess([ess, "instance", "ec2", "terminate", "all", "--yes", "--config", conf], env)
    requests = model.take_requests()
    last = model.last_arrival(ids, "terminated")
    out |= {f"terminate_{k}": v for k, v in waited(requests, "TerminateInstances", last, ended).items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size and version (1000 nodes: at most 2)")
    parser.add_argument("--old", default=OLD_DEFAULT, help="the commit to compare with (default %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every model time (ess's own is not)")
    parser.add_argument("--round-trip", type=float, default=0.05, help="seconds per request (default 0.05)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--warm", type=int, default=2, help="unmeasured runs that give `learned` its first wait times (default 2)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--from-json", type=Path, help="write the section from a run's results.json; run nothing")
    parser.add_argument("--simulate", action="store_true", help="only the fake-clock simulation (seconds, no moto)")
    parser.add_argument("--preflight", action="store_true", help="only the time to RunInstances (1 node, 5 runs)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.simulate:
        old_tree = export(args.old, Path(tempfile.mkdtemp(prefix="ess-bench-wait-")) / "old")
        print(simulate(old_tree, args.round_trip, args.seed))
        return
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        meta = saved["meta"]
        results = {(int(k.split()[0]), k.split()[1]): runs for k, runs in saved["runs"].items()}
        old_tree = export(args.old, Path(tempfile.mkdtemp(prefix="ess-bench-wait-")) / "old")
        write(args, sizes, results, meta, simulate(old_tree, args.round_trip, args.seed))
        return
    work = Path(tempfile.mkdtemp(prefix="ess-bench-wait-"))
    old_tree = export(args.old, work / "old")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ESS_")) and k != "PYTHONPATH"}
    meta = {"load_before": report.load_average(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    model = LatencyModel(round_trip=args.round_trip, scale=args.scale, seed=args.seed)

    moto = SlowMoto(model)
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    saved = work / "results.json"
    print(f"raw figures go to {saved}", file=sys.stderr)
    with model:
        endpoint = moto.start()
        assert endpoint.startswith("http://127.0.0.1:")
        base.update(fake_aws_env(endpoint, work))
        envs = {
            "old": base | {"PYTHONPATH": f"{old_tree / 'core'}{os.pathsep}{old_tree / 'plugins'}"},
            "new": dict(base),
            # The same tree with one ESS_HOME for all its runs: it keeps wait times across them.
            "learned": base | {"ESS_HOME": str(work / "learned_home")},
        }
        few = load_poll_module(report.ROOT / "plugins" / "ess_ec2" / "polling.py").FEW
        learning = [n for n in sizes if n <= few]
        if args.preflight:
            try:
                print(preflight_runs(model, endpoint, envs, work))
            finally:
                moto.stop()
            return
        try:
            for warm in range(args.warm if learning else 0):
                one_run(model, endpoint, envs["learned"], learning[0], work)
                print(f"warm-up {warm + 1}/{args.warm} for `learned` (N={learning[0]})", file=sys.stderr)
            for repeat in range(args.repeat):
                for n in sizes:
                    if n >= 1000 and repeat >= 2:
                        continue
                    # Interleave, and alternate which version goes first.
                    versions = ["old", "new", "learned"] if n in learning else ["old", "new"]
                    for version in versions if repeat % 2 == 0 else versions[::-1]:
                        env = envs[version]
                        if version == "new":  # a first wait of its kind every time: no wait times
                            env = env | {"ESS_HOME": str(work / f"home-{n}-{repeat}")}
                        try:
                            r = one_run(model, endpoint, env, n, work)
                        except RuntimeError as exc:  # one failed run is reported, not fatal
                            print(f"N={n} {version}: run failed: {exc}", file=sys.stderr)
                            continue
                        results.setdefault((n, version), []).append(r)
                        runs = {f"{k} {v}": done for (k, v), done in results.items()}
                        saved.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
                        print(
                            f"N={n} {version}: create lag {r['create_return_lag']:.2f} s "
                            f"({r['create_describes']:.0f} describes), terminate lag "
                            f"{r['terminate_return_lag']:.2f} s ({r['terminate_describes']:.0f}), "
                            f"preflight {r['preflight_s']:.3f} s ({r['preflight_calls']:.0f} calls)",
                            file=sys.stderr,
                        )
            meta["preflight"] = preflight_runs(model, endpoint, envs, work)
        finally:
            moto.stop()
    meta |= {"load_after": report.load_average(), "ended": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    saved.write_text(json.dumps({"meta": meta, "runs": {f"{k} {v}": r for (k, v), r in results.items()}}, indent=1))
    print(f"raw figures: {saved}", file=sys.stderr)
    write(args, sizes, results, meta, simulate(old_tree, args.round_trip, args.seed))


def med(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def write(
    args: argparse.Namespace,
    sizes: list[int],
    results: dict[tuple[int, str], list[dict[str, float]]],
    meta: dict[str, str],
    simulated: str,
) -> None:
    round_trip = args.round_trip * args.scale
    sizes = [n for n in sizes if (n, "old") in results and (n, "new") in results]  # a size whose runs all failed
    rows = []
    for n in sizes:
        for version in [v for v in ("old", "new", "learned") if (n, v) in results]:
            runs = results[(n, version)]
            rows.append(
                [
                    str(n),
                    version,
                    f"{med(runs, 'create_notice_lag'):.2f}",
                    f"{med(runs, 'create_return_lag'):.2f}",
                    f"{max(r['create_return_lag'] for r in runs):.2f}",
                    f"{med(runs, 'create_describes'):.0f}",
                    f"{med(runs, 'terminate_notice_lag'):.2f}",
                    f"{med(runs, 'terminate_return_lag'):.2f}",
                    f"{max(r['terminate_return_lag'] for r in runs):.2f}",
                    f"{med(runs, 'terminate_describes'):.0f}",
                    f"{med(runs, 'preflight_s'):.3f} ({med(runs, 'preflight_s') / round_trip:.1f} RT, "
                    f"{med(runs, 'preflight_calls'):.0f} calls)",
                    str(len(runs)),
                ]
            )
    header = [
        "N",
        "ess",
        "create: seen lag s",
        "create: return lag s",
        "(max)",
        "describes",
        "terminate: seen lag s",
        "terminate: return lag s",
        "(max)",
        "describes",
        "first API call to RunInstances",
        "runs",
    ]
    table = report.table(header, rows)
    print(table)
    if args.no_write:
        return
    png = report.DOCS / "bench_cloud_wait.png"
    plot(sizes, results, png)
    info = report.machine(
        ["boto3", "botocore", "moto", "werkzeug"],
        f"Runs {meta['started']} to {meta.get('ended', '?')}; load average (1, 5, 15 min) before: "
        f"{meta['load_before']}; after: {meta.get('load_after', '?')}.",
    )
    body = "\n".join(
        [
            "## 6. Cloud waits: how soon ess notices `running` / `terminated` (moto with boot latency)",
            "",
            info,
            "",
            f"Model (bench/moto_latency.py, scale {args.scale:g}): every instance `pending` for a time drawn "
            "uniformly from 15-45 s after RunInstances, `shutting-down` 15-45 s after TerminateInstances, "
            f"{args.round_trip * 1000:.0f} ms per request (half each way). `old` is commit {args.old} (the "
            "1 s x 1.5 up to 15 s back-off with jitter, the preflight calls one after another) run through "
            "PYTHONPATH; `new` is the working tree, each run with a fresh ESS_HOME (every wait the first of "
            "its kind, without earlier wait times); `learned` is the working tree with one ESS_HOME for all "
            f"its runs (up to N = FEW = 30), after {args.warm} unmeasured warm-up runs, so it has the wait "
            "times of its earlier runs, as a user who makes clusters of one instance type in one region "
            "would (plugins/ess_ec2/wait_times.py). Runs interleaved, alternating which goes first.",
            "",
            "*Seen lag*: from the moment the last instance really got there (the model's clock) to the end "
            "of the DescribeInstances that saw it. *Return lag*: to the exit of the ess process (what a user "
            "waits; adds the reply, progress output and interpreter exit). Medians of the runs, the worst "
            "run in brackets. *Describes*: DescribeInstances calls after RunInstances / TerminateInstances. "
            "The last column: from ess's first API call to its RunInstances, in round trips (RT) and the "
            "number of calls before it.",
            "",
            table,
            "",
            "![seen lag and describes against N](bench_cloud_wait.png)",
            "",
            "**Other shapes, simulated.** The same two polling.py files, run on a fake clock against "
            "instances that get there at moments drawn uniformly from a range, 50 ms per describe "
            "(`python bench/cloud_wait.py --simulate`, half a minute; 200 draws, 40 at N=1000, the "
            "same draws for every column). Lag from the last one getting there to the end of the describe "
            "that saw it; p90 is the 90th percentile. The last column is 200 waits in a row, each keeping "
            "what it saw and guided by the ones before, as ess does (without one until 20 nodes are kept), so "
            "it includes how the kept brackets are skewed by where the polls went.",
            "",
            simulated,
            "",
            "**Time to the first RunInstances** (`python bench/cloud_wait.py --preflight`; also the end of "
            "a full run): `create --number 1` on the same slow moto with short boots, 5 interleaved runs "
            "per version. Calls are counted server-side; a *round* is a group of calls in flight "
            "together (a round starts with a call that begins after all of the round before it ended).",
            "",
            meta.get("preflight", "(not measured in this run)"),
        ]
    )
    report.write_section("cloud-wait", body)


def plot(sizes: list[int], results: dict[tuple[int, str], list[dict[str, float]]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for version, style in (("old", "o--"), ("new", "o-"), ("learned", "o:")):
        shown = [n for n in sizes if (n, version) in results]
        for op, marker in (("create", ""), ("terminate", "s")):
            seen = [med(results[(n, version)], f"{op}_notice_lag") for n in shown]
            calls = [med(results[(n, version)], f"{op}_describes") for n in shown]
            fmt = style.replace("o", marker or "o")
            left.plot(shown, seen, fmt, label=f"{version} {op}")
            right.plot(shown, calls, fmt, label=f"{version} {op}")
    left.axhline(1.0, color="grey", lw=0.8, ls=":")
    left.set(xscale="log", xlabel="instances", ylabel="seconds after the last one got there", title="seen lag (median)")
    right.set(xscale="log", xlabel="instances", ylabel="DescribeInstances calls", title="describes while waiting")
    left.legend()
    right.legend()
    report.save_plot(fig, png)


if __name__ == "__main__":
    main()
