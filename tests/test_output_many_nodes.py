"""Tables of 1,000 nodes with their checks: the checks are grouped once, not scanned per row.

Scanning every check for every row was O(N^2): a million comparisons after a 1,000-node
verify (issue 17). Counted, not timed: how many times the list of checks is walked.
"""

from __future__ import annotations

from ess.models import CheckResult, Node
from ess.output import nodes_json, nodes_table, status_table


class CountedChecks(list):
    walks = 0

    def __iter__(self):
        CountedChecks.walks += 1
        return super().__iter__()


def test_each_table_walks_the_checks_once():
    nodes = [Node(f"n{i}", "running", address="127.0.0.1", port=2200 + i) for i in range(200)]
    checks = CountedChecks(CheckResult(n.id, "ssh", n.id != "n7", "" if n.id != "n7" else "refused") for n in nodes)
    for render in (nodes_table, status_table, lambda n, c: nodes_json("b", "c", n, c)):
        CountedChecks.walks = 0
        render(nodes, checks)
        assert CountedChecks.walks == 1
    assert "FAILED: refused" in nodes_table(nodes, checks)
    assert [c["ok"] for c in nodes_json("b", "c", nodes, checks)["nodes"][7]["checks"]] == [False]
