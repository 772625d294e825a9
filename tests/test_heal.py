"""`heal` and the intended size (issue 15, "Keeping the cluster whole").

The size a cluster is meant to have is the ess:size tag of its newest node: `create` sets it,
`create` on a cluster with nodes grows it (and retags the older nodes), `terminate ID` shrinks
it. `heal` launches the missing count through the create flow, verifies, rolls back only the
new nodes on failure, and terminates the lost nodes it replaced. `status` counts against it.
Offline on the local backend (real node processes, killed with SIGKILL), through the core on
the memory backend, and on EC2 in moto (instances terminated behind ess's back with boto3).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ec2_world import make_world
from support.local_helpers import kill_test_nodes, node_pids, pid_alive

from ess.census import Census, intended_size
from ess.errors import Interrupted
from ess.models import (
    RUNNING,
    STOPPED,
    TAG_ADOPTED,
    TAG_CLUSTER,
    TAG_CREATED_AT,
    TAG_EXPIRES,
    TAG_SIZE,
    TERMINATED,
    Node,
)
from ess_local.state import ClusterStore


# -- the rule, on plain nodes -------------------------------------------------------------
def node(node_id: str, size: str | None, at: str, state: str = RUNNING, **tags: str) -> Node:
    all_tags = {TAG_CLUSTER: "c", TAG_CREATED_AT: at, **tags}
    if size is not None:
        all_tags[TAG_SIZE] = size
    return Node(id=node_id, state=state, tags=all_tags, desired=RUNNING)


def test_intended_size_is_the_newest_launched_nodes_and_ignores_adopted_and_the_long_gone() -> None:
    older = [node(f"a{i}", "3", "2026-11-30T10:00:00Z") for i in range(3)]
    newer = [node(f"b{i}", "5", "2026-11-30T11:00:00Z") for i in range(2)]
    assert intended_size(older) == 3
    assert intended_size(older + newer) == 5  # a later create wins
    adopted = node("x", "9", "2026-11-30T12:00:00Z", **{TAG_ADOPTED: "true"})
    assert intended_size(older + newer + [adopted]) == 5  # adopted nodes carry no size
    # Survivors retagged after `terminate ID` outvote a newer node the cloud still lists as gone.
    gone = node("g", "6", "2026-11-30T13:00:00Z", state=TERMINATED)
    assert intended_size([*older[:2], gone]) == 3
    assert intended_size([gone]) == 6  # nothing else left: the gone node still tells
    same_second = [node("s1", "3", "2026-11-30T10:00:00Z"), node("s2", "5", "2026-11-30T10:00:00Z")]
    assert intended_size(same_second) == 5  # two creates in one second: the grown size
    assert intended_size([node("n", None, "2026-11-30T10:00:00Z"), node("m", "bad", "x")]) is None


def test_census_counts_lost_stopped_and_missing() -> None:
    nodes = [node(f"r{i}", "5", "t") for i in range(3)]
    lost = node("l", "5", "t", state=STOPPED)
    gone = node("g", "5", "t", state=TERMINATED)
    paused = Node(id="p", state=STOPPED, tags=dict(nodes[0].tags), desired=STOPPED)
    census = Census.of([*nodes, lost, gone])
    assert census.summary() == "3/5 running (2 lost)"
    assert census.to_dict() == {
        "intended": 5,
        "running": 3,
        "pending": 0,
        "stopped": 0,
        "lost": 2,
        "expired": 0,
        "missing": 2,
    }
    assert [n.id for n in census.replaceable] == ["l"]  # the gone one needs nothing
    with_paused = Census.of([*nodes, paused, lost])
    assert with_paused.missing == 1 and with_paused.summary() == "3/5 running (1 stopped, 1 lost)"


def test_nodes_that_ended_at_their_deadline_are_not_missing() -> None:
    """--ttl ended them on purpose: heal must not bring a cluster back past its deadline."""
    alive = [node(f"r{i}", "3", "t", **{TAG_EXPIRES: "2999-01-01T00:00:00Z"}) for i in range(2)]
    ended = node("e", "3", "t", state=TERMINATED, **{TAG_EXPIRES: "2026-01-01T00:00:00Z"})
    crashed = node("c", "3", "t", state=TERMINATED, **{TAG_EXPIRES: "2999-01-01T00:00:00Z"})
    census = Census.of([*alive, ended])
    assert census.missing == 0 and census.lost == [] and census.summary() == "2/3 running (1 expired)"
    assert Census.of([*alive[:1], ended, crashed]).missing == 1  # the crashed one, not the expired one


# -- memory backend: the core flow --------------------------------------------------------
def ids_of(ess, backend: str = "memory", *extra: str) -> list[str]:
    r = ess("instance", backend, "list", "--json", *extra)
    assert r.code == 0, r
    return [n["id"] for n in json.loads(r.out)["nodes"]]


def test_heal_on_a_whole_cluster_launches_nothing(ess, memory) -> None:
    assert ess("instance", "memory", "create", "--number", "3", "--no-verify").code == 0
    memory.CALLS.clear()
    r = ess("instance", "memory", "heal")
    assert r.code == 0, r
    assert r.out.strip() == "cluster 'default' is whole: 3/3 running"
    assert memory.CALLS == ["list"]  # one list; no preflight, no launch
    shaped = json.loads(ess("instance", "memory", "heal", "--json").out)
    assert shaped["launched"] == [] and shaped["replaced"] == [] and shaped["nodes"] == []
    assert shaped["before"] == {
        "intended": 3,
        "running": 3,
        "pending": 0,
        "stopped": 0,
        "lost": 0,
        "expired": 0,
        "missing": 0,
    }


def test_heal_without_nodes_says_create(ess, memory) -> None:
    r = ess("instance", "memory", "heal")
    assert r.code == 1, r
    assert r.err.strip().splitlines() == [
        "ess: heal: cluster 'default' has no nodes on memory (create some with: ess instance memory create --number 2)"
    ]
    assert "create" not in memory.CALLS


def test_heal_replaces_lost_nodes_and_status_counts_them(ess, memory) -> None:
    assert ess("instance", "memory", "create", "--number", "4", "--no-verify").code == 0
    first = ids_of(ess)
    memory.lose(first[0])  # crashed: still there, stopped
    memory.lose(first[1], state=TERMINATED)  # gone behind ess's back
    status = ess("instance", "memory", "status")
    assert status.code == 3 and status.out.splitlines()[-1] == "2/4 running (2 lost)", status
    counts = json.loads(ess("instance", "memory", "status", "--json").out)
    assert (counts["intended"], counts["running"], counts["lost"], counts["missing"]) == (4, 2, 2, 2)
    memory.CALLS.clear()
    r = ess("instance", "memory", "heal", "--json")
    assert r.code == 0, r
    assert memory.CALLS.count("create") == 1 and memory.CALLS.count("terminate") == 1
    shaped = json.loads(r.out)
    assert len(shaped["launched"]) == 2 and sorted(shaped["replaced"]) == sorted(first[:2])
    assert shaped["intended"] == 4 and shaped["before"]["lost"] == 2
    assert all(n["tags"][TAG_SIZE] == "4" and n["checks"] for n in shaped["nodes"])
    assert "launching 2 to make it whole, then terminating the 1 lost node(s) they replace" in r.err
    after = ess("instance", "memory", "status")
    assert after.code == 0 and after.out.splitlines()[-1] == "4/4 running", after


def test_a_failed_heal_rolls_back_only_the_new_nodes(ess, memory, monkeypatch) -> None:
    assert ess("instance", "memory", "create", "--number", "3", "--no-verify").code == 0
    before = ids_of(ess)
    memory.lose(before[0])
    monkeypatch.setenv("ESS_FAIL_AT", "verify")  # the memory check plugin fails the first new node
    r = ess("instance", "memory", "heal")
    assert r.code == 1, r
    assert "verification failed on 1 of 1 node(s)" in r.err and "cleaned up: terminated 1 node(s)" in r.err
    assert ids_of(ess) == before  # the lost node kept, the two others untouched, the new one gone
    monkeypatch.delenv("ESS_FAIL_AT")
    assert ess("instance", "memory", "heal").code == 0
    assert len(ids_of(ess)) == 3 and before[0] not in ids_of(ess)


def test_heal_is_refused_where_nodes_cannot_be_launched(ess) -> None:
    r = ess("instance", "hosts", "heal")
    assert r.code == 2, r
    assert "heal: backend hosts does not support `heal`" in r.err


# -- local backend: real node processes, offline -------------------------------------------
@pytest.fixture
def home(ess_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield ess_home
    kill_test_nodes(ess_home)


def kill_node(node_id: str) -> None:
    """SIGKILL the node's process, as a crash or the OOM killer would, and reap it."""
    pid = ClusterStore("default").read().nodes[node_id].pid
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    assert not pid_alive(pid)


def sizes(ess) -> dict[str, str | None]:
    r = ess("instance", "local", "list", "--json")
    assert r.code == 0, r
    return {n["id"]: n["tags"].get(TAG_SIZE) for n in json.loads(r.out)["nodes"]}


def test_local_heal_after_two_nodes_died_brings_five_of_five(ess, home: Path) -> None:
    created = ess("instance", "local", "create", "--number", "5", "--no-verify", "--json")
    assert created.code == 0, created
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    assert set(sizes(ess).values()) == {"5"}
    for victim in ids[:2]:
        kill_node(victim)
    status = ess("instance", "local", "status")
    assert status.code == 3, status
    assert status.out.splitlines()[-1] == "3/5 running (2 lost)"
    assert "ZONE" not in status.out.splitlines()[0]  # local has no zones: no column of dashes
    healed = ess("instance", "local", "heal", "--json")
    assert healed.code == 0, healed
    shaped = json.loads(healed.out)
    assert len(shaped["launched"]) == 2 and sorted(shaped["replaced"]) == sorted(ids[:2])
    assert all(c["ok"] for n in shaped["nodes"] for c in n["checks"])  # verified over SSH
    after = ess("instance", "local", "status")
    assert after.code == 0 and after.out.splitlines()[-1] == "5/5 running", after
    assert ess("instance", "local", "verify").code == 0
    assert set(sizes(ess)) == set(ids[2:]) | set(shaped["launched"])  # the dead records are gone
    assert len(node_pids(home)) == 5


def test_local_create_twice_then_heal_uses_the_latest_size(ess, home: Path) -> None:
    assert ess("instance", "local", "create", "--number", "2", "--no-verify").code == 0
    assert ess("instance", "local", "create", "--number", "1", "--no-verify").code == 0
    assert set(sizes(ess).values()) == {"3"}  # the grown size, on the older nodes too
    oldest = next(iter(sizes(ess)))
    kill_node(oldest)
    r = ess("instance", "local", "heal", "--no-verify")
    assert r.code == 0, r
    assert "healed cluster 'default': launched 1 node(s) in place of 1 lost node(s); intended size 3" in r.out
    assert len(sizes(ess)) == 3 and oldest not in sizes(ess)


def test_local_terminate_on_purpose_then_heal_launches_nothing(ess, home: Path) -> None:
    assert ess("instance", "local", "create", "--number", "3", "--no-verify").code == 0
    victim = next(iter(sizes(ess)))
    assert ess("instance", "local", "terminate", victim, "--yes").code == 0
    assert set(sizes(ess).values()) == {"2"}  # the survivors record the smaller size
    r = ess("instance", "local", "heal")
    assert r.code == 0, r
    assert r.out.strip() == "cluster 'default' is whole: 2/2 running"
    assert len(node_pids(home)) == 2


def test_ctrl_c_during_heal_leaks_nothing(ess, home: Path) -> None:
    """SIGTERM (a Ctrl-C) lands once the first new node process exists: heal exits 130, the
    new nodes are terminated, the survivors and the lost record stay as they were."""
    created = ess("instance", "local", "create", "--number", "3", "--no-verify", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    kill_node(ids[0])
    survivors = node_pids(home)
    assert len(survivors) == 2
    proc = subprocess.Popen(
        ["ess", "instance", "local", "heal"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if set(node_pids(home)) - set(survivors):
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.001)
        else:
            pytest.fail("heal ended (or hung) before any new node process appeared")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == Interrupted.exit_code == 130, err
    assert "Traceback" not in err, err
    assert node_pids(home) == survivors  # the new node process is gone
    assert sorted(sizes(ess)) == sorted(ids)  # the lost record kept: nothing was healed
    assert ess("instance", "local", "heal", "--no-verify").code == 0  # and heal still works after


# -- EC2 in moto ---------------------------------------------------------------------------
@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    world = make_world(tmp_path, monkeypatch)
    monkeypatch.setenv("ESS_CONFIG", str(world.conf))
    return world


def test_ec2_heal_launches_the_missing_two_in_one_run_instances(ess, world) -> None:
    created = ess("instance", "ec2", "create", "--number", "5", "--no-verify", "--yes", "--json")
    assert created.code == 0, created
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    world.ec2.terminate_instances(InstanceIds=ids[:2])  # behind ess's back
    status = ess("instance", "ec2", "status")
    assert status.code == 3 and status.out.splitlines()[-1] == "3/5 running (2 lost)", status
    header = status.out.splitlines()[0].split()
    assert header[5:7] == ["ZONE", "LIFECYCLE"] and " us-east-1" in status.out and " on-demand " in status.out
    world.calls.reset()
    healed = ess("instance", "ec2", "heal", "--no-verify", "--yes", "--json")
    assert healed.code == 0, healed
    launches = [p for op, p in world.calls.made if op == "RunInstances" and not p.get("DryRun")]
    assert len(launches) == 1 and (launches[0]["MinCount"], launches[0]["MaxCount"]) == (2, 2)
    shaped = json.loads(healed.out)
    assert len(shaped["launched"]) == 2 and shaped["before"]["missing"] == 2
    for instance_id in shaped["launched"]:
        reply = world.ec2.describe_instances(InstanceIds=[instance_id])
        tags = {t["Key"]: t["Value"] for t in reply["Reservations"][0]["Instances"][0]["Tags"]}
        assert tags[TAG_SIZE] == "5" and tags[TAG_CLUSTER] == "default"
    running = world.ec2.describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_CLUSTER}", "Values": ["default"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    assert sum(len(r["Instances"]) for r in running["Reservations"]) == 5
    # The replaced nodes were marked as ended by ess (EC2 still shows them for an hour).
    after = ess("instance", "ec2", "status")
    assert after.code == 0 and after.out.splitlines()[-1] == "5/5 running", after


def test_ec2_add_and_remove_tag_and_untag_the_instances_volumes_in_the_same_call(ess, world) -> None:
    foreign = world.foreign(2)
    world.calls.reset()
    r = ess("instance", "ec2", "add", *foreign, "--yes")
    assert r.code == 0, r
    assert world.calls.count("CreateTags") == 1
    volumes = world.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": foreign}])["Volumes"]
    assert len(volumes) == 2
    for volume in volumes:
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        assert tags[TAG_CLUSTER] == "default" and tags[TAG_ADOPTED] == "true" and tags[TAG_CREATED_AT]
    # Adopted machines count as running but never change the intended size.
    status = json.loads(ess("instance", "ec2", "status", "--json").out)
    assert status["intended"] is None and status["running"] == 2
    # remove lets one go: its volume loses ess's tags in the same DeleteTags, the other's keeps them.
    world.calls.reset()
    assert ess("instance", "ec2", "remove", foreign[0], "--yes").code == 0
    assert world.calls.count("DeleteTags") == 1
    # Exactly the released instance and its own volume: nothing else is untagged.
    [untagged] = [p["Resources"] for op, p in world.calls.made if op == "DeleteTags"]
    own = [v["VolumeId"] for v in volumes if v["Attachments"][0]["InstanceId"] == foreign[0]]
    assert sorted(untagged) == sorted([foreign[0], *own])
    for volume in world.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": foreign}])[
        "Volumes"
    ]:
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        owner = volume["Attachments"][0]["InstanceId"]
        assert (TAG_CLUSTER in tags) == (owner == foreign[1]), (owner, tags)
        assert not any(k.startswith("ess:") for k in tags) or owner == foreign[1]


def test_ec2_heal_replaces_a_node_stopped_behind_ess_back_only_with_yes_off_a_terminal(ess, world) -> None:
    created = ess("instance", "ec2", "create", "--number", "3", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    world.ec2.stop_instances(InstanceIds=ids[:1])  # its disk still costs: heal asks before ending it
    world.calls.reset()
    refused = ess("instance", "ec2", "heal", "--no-verify")
    assert refused.code == 2, refused
    assert refused.err.strip().splitlines()[-1].startswith("ess: --yes: required off a terminal")
    assert world.calls.mutating() == []
    healed = ess("instance", "ec2", "heal", "--no-verify", "--yes", "--json")
    assert healed.code == 0, healed
    assert json.loads(healed.out)["replaced"] == ids[:1]
    assert world.states(ids) == {ids[0]: "terminated", ids[1]: "running", ids[2]: "running"}
    after = ess("instance", "ec2", "status")
    assert after.code == 0 and after.out.splitlines()[-1] == "3/3 running", after


def test_ec2_remove_on_purpose_shrinks_the_size_so_heal_launches_nothing(ess, world) -> None:
    created = ess("instance", "ec2", "create", "--number", "3", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    world.calls.reset()
    assert ess("instance", "ec2", "remove", ids[0], "--yes").code == 0
    assert world.calls.count("CreateTags") == 1  # the survivors' new ess:size, one call
    world.calls.reset()
    r = ess("instance", "ec2", "heal")
    assert r.code == 0 and r.out.strip() == "cluster 'default' is whole: 2/2 running", r
    assert world.calls.count("RunInstances") == 0


def test_heal_leaves_nodes_stopped_on_purpose_and_says_start(ess, memory) -> None:
    assert ess("instance", "memory", "create", "--number", "2", "--no-verify").code == 0
    assert ess("instance", "memory", "stop", "--yes").code == 0
    memory.CALLS.clear()
    r = ess("instance", "memory", "heal")
    assert r.code == 0, r
    assert r.out.strip() == "cluster 'default' is whole: 0/2 running (2 stopped)"
    assert "resume them with: ess instance memory start" in r.err
    assert "create" not in memory.CALLS


def test_heal_on_a_third_party_backend_the_example_pool(ess, tmp_path, monkeypatch) -> None:
    """Nothing backend-specific: the example plugin's pool heals through the same flow."""
    from ess_example_pool.backend import PoolBackend

    key = tmp_path / "id_pool"
    key.write_text("not read with --no-verify\n")
    monkeypatch.setenv("ESS_HOSTS", "192.0.2.1:22,192.0.2.2:22,192.0.2.3:22")
    monkeypatch.setenv("ESS_KEY_FILE", str(key))
    assert ess("instance", "pool", "create", "--number", "2", "--no-verify").code == 0
    table = json.loads(PoolBackend.state_file().read_text())
    table.pop(sorted(table)[0])  # the machine was taken back behind ess's back
    PoolBackend.state_file().write_text(json.dumps(table))
    r = ess("instance", "pool", "heal", "--no-verify", "--json")
    assert r.code == 0, r
    assert len(json.loads(r.out)["launched"]) == 1  # the pool hands out its first free machine
    assert len(ids_of(ess, "pool")) == 2


# -- the replacements end with the cluster ------------------------------------------------
def deadlines(ess) -> dict[str, str | None]:
    r = ess("instance", "memory", "list", "--json")
    assert r.code == 0, r
    return {n["id"]: n["expires"] for n in json.loads(r.out)["nodes"]}


def set_deadline(memory, stamp: str) -> None:
    """What `extend --ttl` leaves on every node: a new ess:expires."""
    memory.save([{**r, "tags": {**r["tags"], TAG_EXPIRES: stamp}} for r in memory.load()])


def seconds_apart(a: str, b: str) -> float:
    from ess.lifetime import parse_stamp

    first, second = parse_stamp(a), parse_stamp(b)
    assert first is not None and second is not None
    return abs((first - second).total_seconds())


@pytest.mark.parametrize("config_ttl", [None, "1h"])
def test_replacements_take_the_clusters_deadline_not_a_fresh_one(ess, memory, monkeypatch, config_ttl) -> None:
    """The survivors were extended to ~5 h: a replacement gets that deadline, whether the
    config now says 1 h (a fresh now + 1 h would end it before the cluster) or nothing (it
    would run with no limit at all after the cluster ended)."""
    from datetime import timedelta

    from ess.lifetime import now_utc, stamp

    assert ess("instance", "memory", "create", "--number", "3", "--no-verify", "--ttl", "2h").code == 0
    target = stamp(now_utc() + timedelta(hours=5))
    set_deadline(memory, target)
    before = ids_of(ess)
    memory.lose(before[0], state=TERMINATED)
    if config_ttl:
        monkeypatch.setenv("ESS_MAX_LIFETIME", config_ttl)
    r = ess("instance", "memory", "heal", "--yes")
    assert r.code == 0, r
    after = deadlines(ess)
    [new] = [i for i in after if i not in before]
    assert seconds_apart(after[new], target) <= 2, (after, target)


def test_heal_of_a_cluster_about_to_end_is_refused_and_launches_nothing(ess, memory) -> None:
    from datetime import timedelta

    from ess.lifetime import now_utc, stamp

    assert ess("instance", "memory", "create", "--number", "2", "--no-verify", "--ttl", "2h").code == 0
    set_deadline(memory, stamp(now_utc() + timedelta(seconds=40)))
    memory.lose(ids_of(ess)[0], state=TERMINATED)
    memory.CALLS.clear()
    r = ess("instance", "memory", "heal", "--yes")
    assert r.code == 2, r
    [line] = r.err.strip().splitlines()
    assert "heal: the cluster's nodes end at" in line and "extend --ttl" in line
    assert "create" not in memory.CALLS
