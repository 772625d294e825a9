"""``ess clusters``: the core's rows and marks, the origins registry, local clusters."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes

from ess import origins
from ess.clusters import MARK_EXPIRED, MARK_OLD, Report, row_of, survey, terminate_command
from ess.models import (
    RUNNING,
    STOPPED,
    TAG_CREATED_BY,
    TAG_EXPIRES,
    TAG_LAUNCH,
    ClusterInventory,
    ClusterSummary,
    Node,
)
from ess.progress import Progress
from ess.settings import load_settings
from ess_ec2.backend import Ec2Backend
from ess_local.backend import LocalBackend

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_leftover_nodes(ess_home: Path):
    yield
    kill_test_nodes(ess_home)


def node(node_id: str, *, age: timedelta, state: str = RUNNING, **tags: str) -> Node:
    return Node(id=node_id, state=state, instance_type="t3.large", launched_at=NOW - age, tags=tags)


def summary(*nodes: Node, cluster: str = "c1") -> ClusterSummary:
    return ClusterSummary(
        backend="ec2",
        cluster=cluster,
        nodes=nodes,
        region="eu-west-1",
        key_pair="team",
        selectors={"region": "eu-west-1", "key_name": "team"},
    )


def test_a_cluster_past_its_expiry_is_marked_expired() -> None:
    deadline = "2026-11-30T11:00:00Z"
    row = row_of(Ec2Backend(), summary(node("i-1", age=timedelta(hours=3), **{TAG_EXPIRES: deadline})), {}, None, NOW)
    assert row.marks == (MARK_EXPIRED,)
    assert row.expires == datetime(2026, 11, 30, 11, 0, tzinfo=timezone.utc)


def test_a_cluster_older_than_a_day_without_a_limit_is_marked() -> None:
    old = row_of(Ec2Backend(), summary(node("i-1", age=timedelta(days=1, minutes=1))), {}, None, NOW)
    young = row_of(Ec2Backend(), summary(node("i-1", age=timedelta(hours=23))), {}, None, NOW)
    limited = row_of(
        Ec2Backend(),
        summary(node("i-1", age=timedelta(days=3), **{TAG_EXPIRES: "2026-12-01T00:00:00Z"})),
        {},
        None,
        NOW,
    )
    assert (old.marks, young.marks, limited.marks) == ((MARK_OLD,), (), ())


def test_the_earliest_deadline_and_launch_make_the_cluster_s() -> None:
    row = row_of(
        Ec2Backend(),
        summary(
            node("i-1", age=timedelta(hours=5), **{TAG_EXPIRES: "2026-12-02T00:00:00Z", TAG_CREATED_BY: "ann@a"}),
            node("i-2", age=timedelta(hours=1), state=STOPPED, **{TAG_EXPIRES: "2026-12-01T00:00:00Z"}),
            node("i-3", age=timedelta(hours=2), **{TAG_CREATED_BY: "bob@b", TAG_EXPIRES: "not a time"}),
        ),
        {},
        None,
        NOW,
    )
    assert row.expires == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert row.created_at == NOW - timedelta(hours=5)
    assert dict(row.states) == {RUNNING: 2, STOPPED: 1}
    assert row.created_by == ("ann@a", "bob@b")
    assert row.to_dict(NOW)["age_seconds"] == 5 * 3600


def test_a_creator_tag_cannot_reach_the_terminal_as_control_characters() -> None:
    tags = {TAG_CREATED_BY: "eve\x1b]0;pwned\x07@host\n" + "x" * 100}
    row = row_of(Ec2Backend(), summary(node("i-1", age=timedelta(hours=1), **tags)), {}, None, NOW)
    (shown,) = row.created_by
    assert shown.startswith("eve?]0;pwned?@host?") and len(shown) == 64 and shown.isprintable()


def test_the_terminate_command_names_the_config_or_else_the_key_pair(tmp_path: Path) -> None:
    conf = tmp_path / "my conf" / "instance.conf"
    s = summary(node("i-1", age=timedelta(hours=1)))
    known = terminate_command(Ec2Backend(), s, conf, None)
    assert shlex.split(known) == [
        "ess", "instance", "ec2", "terminate", "all", "--cluster", "c1", "--region", "eu-west-1", "--config", str(conf),
    ]  # fmt: skip
    unknown = terminate_command(Ec2Backend(), s, None, None)
    assert unknown == "ESS_KEY_NAME=team ess instance ec2 terminate all --cluster c1 --region eu-west-1"
    # Unknown origin, but `ess clusters` itself ran with a config: its credentials saw the cluster.
    fallback = terminate_command(Ec2Backend(), s, None, conf)
    assert fallback.startswith("ESS_KEY_NAME=team ") and fallback.endswith(shlex.quote(str(conf)))
    # `ess clusters --profile work --region us-east-1`: the profile follows, the cluster's region wins.
    carried = terminate_command(Ec2Backend(), s, None, None, {"profile": "work", "region": "us-east-1"})
    assert carried == (
        "ESS_KEY_NAME=team ess instance ec2 terminate all --cluster c1 --profile work --region eu-west-1"
    )


def test_the_config_of_the_newest_launch_on_record_is_shown(tmp_path: Path) -> None:
    first, second = tmp_path / "a.conf", tmp_path / "b.conf"
    first.write_text("")
    second.write_text("")
    origins.remember("launch-a", "ec2", "c1", first)
    origins.remember("launch-b", "ec2", "c1", second)
    nodes = (
        node("i-1", age=timedelta(hours=5), **{TAG_LAUNCH: "launch-a"}),
        node("i-2", age=timedelta(hours=1), **{TAG_LAUNCH: "launch-b"}),
        node("i-3", age=timedelta(minutes=1), **{TAG_LAUNCH: "launch-elsewhere"}),
    )
    known = origins.configs_of(n.launch_id for n in nodes if n.launch_id)
    assert known == {"launch-a": first.resolve(), "launch-b": second.resolve()}
    assert row_of(Ec2Backend(), summary(*nodes), known, None, NOW).config == second.resolve()
    second.unlink()  # a config that is gone is not offered to a terminate command
    assert origins.configs_of(["launch-b"]) == {}


def test_a_damaged_registry_only_loses_the_config_column(tmp_path: Path) -> None:
    origins.registry_path().write_text("{not json")
    assert origins.configs_of(["launch-a"]) == {}
    conf = tmp_path / "x.conf"
    conf.write_text("")
    origins.remember("launch-a", "ec2", "c1", conf)  # damaged: not recorded, and no error
    origins.registry_path().write_text("[]")
    assert origins.configs_of(["launch-a"]) == {}


def test_the_registry_keeps_the_newest_launches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(origins, "MAX_LAUNCHES", 3)
    conf = tmp_path / "x.conf"
    conf.write_text("")
    for number in range(5):
        origins.remember(f"launch-{number}", "local", "c", conf)
    kept = json.loads(origins.registry_path().read_text())
    assert len(kept) == 3 and "launch-4" in kept


class Broken(LocalBackend):
    name = "broken"

    def clusters(self, settings, all_regions, progress):
        from ess.errors import EssError

        raise EssError("no credentials")


class Partial(LocalBackend):
    name = "partial"

    def clusters(self, settings, all_regions, progress):
        found = summary(node("i-9", age=timedelta(hours=1)), cluster="kept")
        return ClusterInventory(clusters=(found,), failures=("ap-south-1: AuthFailure",), notes=("a note",))


def test_a_backend_that_fails_costs_only_its_own_rows() -> None:
    settings = load_settings(LocalBackend(), None, env={})
    report = survey([(Broken(), settings), (Partial(), settings)], False, Progress(quiet=True), now=NOW)
    assert [r.summary.cluster for r in report.rows] == ["kept"]
    assert report.failures == ["broken: no credentials", "partial: ap-south-1: AuthFailure"]
    assert report.notes == ["partial: a note"]
    assert report.to_dict()["partial"] is True
    assert report.unreachable == ["broken"]  # partial, not nothing: exit 3, not 1
    assert Report().to_dict()["partial"] is False


def test_exit_1_only_when_no_backend_could_be_asked(ess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "local")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    result = ess("clusters", "--json")
    assert result.code == 1, result
    assert json.loads(result.out)["failures"][0].startswith("ec2: ")
    assert result.err.splitlines()[-1] == "ess: no backend could be asked for its clusters (see the warnings above)"


def test_local_clusters_are_listed_and_the_printed_command_ends_one(
    ess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ec2")  # this machine's clusters only (ec2: test_clusters_ec2.py)
    conf = tmp_path / "instance.toml"
    conf.write_text("[local]\ninstance_count = 1\n")
    for name, ttl in (("lab", "2h"), ("scratch", "none")):
        made = ess(
            "instance", "local", "create", "--cluster", name, "--config", str(conf), "--ttl", ttl, "--no-verify", "--yes"
        )  # fmt: skip
        assert made.code == 0, made
    listed = ess("clusters", "--json")
    assert listed.code == 0, listed
    assert json.loads(listed.out)["backends"] == ["local"]
    rows = {c["cluster"]: c for c in json.loads(listed.out)["clusters"] if c["backend"] == "local"}
    assert set(rows) == {"lab", "scratch"}
    lab = rows["lab"]
    assert (lab["nodes"], lab["region"], lab["config"]) == ({"running": 1}, None, str(conf.resolve()))
    # The deadline the node keeps (ess:expires) is the cluster's; a young cluster is not marked.
    expires = datetime.fromisoformat(lab["expires"].replace("Z", "+00:00"))
    assert timedelta(hours=1, minutes=50) < expires - datetime.now(timezone.utc) <= timedelta(hours=2)
    assert (lab["marks"], rows["scratch"]["expires"], rows["scratch"]["marks"]) == ([], None, [])
    assert set(lab) == {
        "backend", "region", "cluster", "key_pair", "nodes", "node_count", "node_ids", "instance_types",
        "created_at", "age_seconds", "created_by", "expires", "marks", "config", "terminate",
    }  # fmt: skip
    assert lab["terminate"] == f"ess instance local terminate all --cluster lab --config {conf.resolve()}"

    table = ess("clusters").out
    assert any(
        line.startswith("local") and " lab " in line and line.endswith(lab["terminate"]) for line in table.splitlines()
    )
    done = ess(*shlex.split(lab["terminate"])[1:], "--yes")
    assert done.code == 0, done
    after = json.loads(ess("clusters", "--json").out)
    assert [c["cluster"] for c in after["clusters"] if c["backend"] == "local"] == ["scratch"]
