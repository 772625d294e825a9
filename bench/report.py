"""What every benchmark records next to its figures: the machine, the load, the date, and
its own section of docs/benchmarks.md (between ``<!-- bench:NAME -->`` markers, so each
script can run alone without touching the others' sections).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BENCHMARKS_MD = DOCS / "benchmarks.md"


def version(package: str) -> str:
    """The installed version of ``package``, or 'not installed'."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    """The 1/5/15-minute load average, as `uptime` shows it (others share this machine)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(packages: list[str], extra: str = "") -> str:
    """A Markdown paragraph: date, cores, CPU, OS, Python, library versions."""
    libs = ", ".join(f"{p} {version(p)}" for p in packages)
    kernel = platform.release()
    try:
        distro = subprocess.run(
            ["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        distro = platform.system()
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    libs += f"; ess {source()}"
    text = (
        f"Measured {when} on {os.cpu_count()} cores ({cpu_model()}), {distro}, Linux {kernel}, "
        f"Python {platform.python_version()}; {libs}."
    )
    return text + (f" {extra}" if extra else "")


def source() -> str:
    """Which ess code ran: the repo's commit, with a note if core/plugins had local changes."""
    import ess

    where = Path(ess.__file__).resolve().parents[2]
    commit = (
        subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "?"
    )
    if where != ROOT:
        return f"from {where} (an export of commit {commit} via PYTHONPATH)"
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "core", "plugins"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"at commit {commit}" + (" with uncommitted changes in core/ or plugins/" if dirty else "")


def write_section(name: str, body: str) -> None:
    """Replace the ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->`` block of docs/benchmarks.md."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    found = pattern.search(text)
    text = pattern.sub(lambda _: block, text) if found else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)
    print(f"wrote the {name} section of {BENCHMARKS_MD.relative_to(ROOT)}", file=sys.stderr)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (also what the scripts print)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save_plot(fig: Any, png: Path) -> None:
    """Write a benchmark's figure as the PNG docs/benchmarks.md shows."""
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}", file=sys.stderr)
