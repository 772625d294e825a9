"""Print the markdown tables of docs/reliability.md from the fault-matrix and bad-input log.

    ESS_RELIABILITY_LOG=/tmp/r.jsonl pytest tests/test_fault_matrix.py tests/test_bad_inputs.py
    python tests/support/reliability_summary.py /tmp/r.jsonl

Each log line is one case (see tests/support/fault_world.py ``record``). The last line per case
wins, so a log appended to by several runs still gives one row per case.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def load(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(fault rows, bad-input rows), one per case, in first-seen order."""
    faults: dict[tuple[str, str, str], dict[str, Any]] = {}
    bad: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("kind") == "fault":
            faults[(row["backend"], row["phase"], row["fault"])] = row
        elif row.get("kind") == "bad-input":
            bad[row["case"]] = row
    return list(faults.values()), list(bad.values())


def fault_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| backend | phase | fault | exit | left running | kept on purpose | leak | foreign touched |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        left = str(r["left_running"])
        if "left_before_terminate_all" in r:
            left = f"{r['left_before_terminate_all']} → {left} after `terminate all`"
        fault = f"{r['fault']} (known bug: {r['known_bug']})" if r.get("known_bug") else r["fault"]
        out.append(
            f"| {r['backend']} | {r['phase']} | {fault} | {r['exit_code']} | {left} | "
            f"{r.get('kept', 0)} | {r['leak']} | {r['foreign_touched']} |"
        )
    return out


def bad_table(rows: list[dict[str, Any]]) -> list[str]:
    exit2 = sum(1 for r in rows if r["exit_code"] == 2)
    one_line = sum(1 for r in rows if r.get("lines") == 1)
    mutating = sum(r.get("mutating_calls", 0) for r in rows)
    out = [
        "| bad inputs | exit 2 | one stderr line | mutating API calls |",
        "|---|---|---|---|",
        f"| {len(rows)} | {exit2} | {one_line} | {mutating} |",
    ]
    odd = [r for r in rows if r["exit_code"] != 2 or r.get("lines") != 1 or r.get("mutating_calls")]
    if odd:
        out += ["", "Cases that did not hold (known bugs are xfail in tests/test_bad_inputs.py):", ""]
        out += [
            f"- `{r['case']}`: exit {r['exit_code']}, {r.get('lines')} stderr line(s), "
            f"{r.get('mutating_calls', 0)} mutating call(s)"
            for r in odd
        ]
    return out


def summary(faults: list[dict[str, Any]], bad: list[dict[str, Any]]) -> str:
    leaks = sum(r["leak"] for r in faults)
    touched = sum(r["foreign_touched"] for r in faults)
    known = sum(r["leak"] for r in faults if r.get("known_bug"))
    lines = [
        f"Faults tried: {len(faults)}; leaked nodes: {leaks} ({known} in known-bug cases); "
        f"foreign nodes touched: {touched}.",
        "",
    ]
    lines += fault_table(faults) + [""] + bad_table(bad)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/support/reliability_summary.py LOG.jsonl", file=sys.stderr)
        return 2
    faults, bad = load(Path(argv[0]))
    sys.stdout.write(summary(faults, bad))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
