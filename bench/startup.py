"""Benchmark 3: start-up time and peak memory of `ess --help`, `ess plugins`, `ess config show`
against `aws --version` (awscli v1).

    python bench/startup.py [--runs 15] [--no-write]

Calls the real entry-point scripts in Python's scripts folder (sysconfig "scripts"), not
`which ess`: under pyenv that is a bash shim that adds a hop of its own. If awscli is not
importable here, it is looked for in /tmp/awscli-venv (``python -m venv /tmp/awscli-venv &&
/tmp/awscli-venv/bin/pip install awscli``, kept apart so it cannot downgrade botocore).
Each command runs ``--runs`` times (after one warm-up run, so the page cache is warm for
all); wall time from fork to exit, peak RSS from ``os.wait4``'s rusage (ru_maxrss, KiB).
Rewrites the startup section of docs/benchmarks.md and docs/bench_startup.png.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

SCRIPTS = Path(sysconfig.get_path("scripts"))


def aws_binary() -> tuple[Path, str]:
    local = SCRIPTS / "aws"
    if local.exists():
        return local, "awscli " + report.version("awscli") + " (same environment as ess)"
    venv = Path("/tmp/awscli-venv/bin/aws")
    if venv.exists():
        return venv, "awscli from /tmp/awscli-venv"
    sys.exit("no aws: pip install awscli (or into /tmp/awscli-venv, see the docstring)")


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of ``argv``; fails loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err[-500:]}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    ess = SCRIPTS / "ess"
    aws, aws_label = aws_binary()
    home = Path(tempfile.mkdtemp(prefix="ess-bench-startup-"))
    # PYTHONPATH is kept: it is how a run measures an exported commit instead of the working tree.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ESS_", "AWS_")) and k not in ("PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME")
    }
    env.update(ESS_HOME=str(home), HOME=str(home))
    commands = {
        "ess --help": [str(ess), "--help"],
        "ess plugins": [str(ess), "plugins"],
        "ess config show": [str(ess), "config", "show"],
        "aws --version": [str(aws), "--version"],
    }
    load_before = report.load_average()
    figures: dict[str, dict[str, float]] = {}
    for argv in commands.values():
        measure(argv, env)
    # Interleaved rounds, so a burst of load from others hits every command alike.
    samples: dict[str, list[tuple[float, int]]] = {label: [] for label in commands}
    for _ in range(args.runs):
        for label, argv in commands.items():
            samples[label].append(measure(argv, env))
    for label, values in samples.items():
        seconds = [v[0] for v in values]
        figures[label] = {
            "min": min(seconds),
            "median": statistics.median(seconds),
            "max": max(seconds),
            "rss": max(v[1] for v in values) / 1024,
        }
    load_after = report.load_average()
    aws_median = figures["aws --version"]["median"]
    rows = [
        [
            f"`{label}`",
            f"{f['min'] * 1000:.0f}",
            f"{f['median'] * 1000:.0f}",
            f"{f['max'] * 1000:.0f}",
            f"{f['rss']:.1f}",
            f"{f['median'] / aws_median:.2f}x",
        ]
        for label, f in figures.items()
    ]
    text_table = report.table(["command", "min ms", "median ms", "max ms", "peak RSS MiB", "vs aws --version"], rows)
    ratio = figures["ess --help"]["median"] / aws_median
    python_floor = min(measure([sys.executable, "-c", "pass"], env)[0] for _ in range(5))
    verdicts = [
        f"- Goal `ess --help` <= 0.3x `aws --version`: {'MET' if ratio <= 0.3 else 'MISSED'} "
        f"({figures['ess --help']['median'] * 1000:.0f} ms vs {aws_median * 1000:.0f} ms, {ratio:.2f}x). "
        f"A bare `python -c pass` takes {python_floor * 1000:.0f} ms here, so 0.3x of aws "
        f"({0.3 * aws_median * 1000:.0f} ms) leaves {max(0.3 * aws_median - python_floor, 0) * 1000:.0f} ms for "
        "ess's own imports and work."
    ]
    print(text_table)
    print("\n".join(verdicts))
    if args.no_write:
        return
    png = report.DOCS / "bench_startup.png"
    plot(figures, png)
    info = report.machine(
        ["click", "pluggy", "platformdirs", "awscli", "botocore"],
        f"aws: {aws_label}. Load average (1, 5, 15 min) before: {load_before}; after: {load_after}.",
    )
    body = "\n".join(
        [
            "## 3. Start-up: `ess --help`, `ess plugins`, `ess config show` against `aws --version`",
            "",
            info,
            "",
            f"{args.runs} interleaved runs each after one warm-up; the real entry-point scripts `{ess}` and "
            f"`{aws}` (not the pyenv shims that `which` finds, which add a bash hop). Peak RSS is the largest "
            "`ru_maxrss` of the runs.",
            "",
            text_table,
            "",
            *verdicts,
            "",
            "![start-up times](bench_startup.png)",
        ]
    )
    report.write_section("startup", body)


def plot(figures: dict[str, dict[str, float]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(figures)
    medians = [figures[k]["median"] * 1000 for k in labels]
    low = [m - figures[k]["min"] * 1000 for k, m in zip(labels, medians, strict=True)]
    high = [figures[k]["max"] * 1000 - m for k, m in zip(labels, medians, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.barh(labels, medians, xerr=[low, high], capsize=4, color=["C0", "C0", "C0", "C1"])
    ax.axvline(
        0.3 * figures["aws --version"]["median"] * 1000,
        color="grey",
        linestyle=":",
        label="goal for ess --help: 0.3x aws --version",
    )
    ax.set(xlabel="milliseconds (median, min-max bars)", title="Start-up time")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    report.save_plot(fig, png)


if __name__ == "__main__":
    main()
