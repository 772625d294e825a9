"""The ec2-money red team's findings, each pinned at the exact moment it happened.

Every case runs ess's real code against moto; the interrupt lands at the exact window
deterministically: a ``before-send`` hook (a botocore event) or the backend's own pause
raises it, or sends the real signal to this process while the flow is at that call. EC2's
listing lag is moto's listing answered with an empty page (``empty_listing``), as a
filtered DescribeInstances says for a few seconds after a launch.

F1  a Ctrl-C during the duplicate check of a retried RunInstances leaked the launch;
F2  a second Ctrl-C or a SIGTERM during the unanswered-launch search leaked it too;
F3  a signal after the new nodes ran but before ``create``/``heal`` returned lost the result;
F4  a node lost before ``terminate all`` stayed a member: status failed, create grew from it;
F5  ``ess clusters``' command for a forged row terminated another team's instance;
F6  a refused TerminateInstances hid a running cluster from ``ess clusters``;
F7  a stop interrupted between its mark and StopInstances left a mark that hid later losses
    (and its mirror: a start cut off after clearing the mark made stopped nodes look lost).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support.ec2_world import aws_error, empty_listing, is_dry_run, is_listing, make_world

from ess import provision
from ess.errors import Interrupted
from ess.models import RUNNING, TAG_CLUSTER, TAG_LAUNCH, TAG_SIZE, TERMINATED
from ess_ec2 import unanswered

LIVE = ("pending", "running")


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    import botocore.retries.standard

    # Retries happen for real, without their back-off pauses.
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    made = make_world(tmp_path, monkeypatch)
    monkeypatch.setenv("ESS_CONFIG", str(made.conf))
    return made


def of_launch(world, launch_id: str) -> dict[str, str]:
    """Instance id -> state of every instance of ``launch_id``, asked of moto directly."""
    reply = world.ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_LAUNCH}", "Values": [launch_id]}])
    return {i["InstanceId"]: i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]}


def live_of_cluster(world, cluster: str = "default") -> list[str]:
    reply = world.ec2.describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]},
            {"Name": "instance-state-name", "Values": list(LIVE)},
        ]
    )
    return sorted(i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"])


def tags_of(world, instance_id: str) -> dict[str, str]:
    reply = world.ec2.describe_instances(InstanceIds=[instance_id])
    return {t["Key"]: t["Value"] for t in reply["Reservations"][0]["Instances"][0].get("Tags", [])}


def hide_listings(world, hidden: set[int] | None = None) -> dict[str, int]:
    """EC2's listing lag: filtered DescribeInstances answer "nothing" (all of them, or the
    ``hidden`` ones by number once a RunInstances went out); describes by id still answer."""
    seen = {"n": 0, "launched": 0}

    def launched(request: Any, **_: Any) -> None:
        if not is_dry_run(request):
            seen["launched"] = 1

    def late(request: Any, **_: Any) -> Any:
        if not seen["launched"] or not is_listing(request):
            return None
        seen["n"] += 1
        return empty_listing() if hidden is None or seen["n"] in hidden else None

    world.calls.handlers.append(("before-send.ec2.RunInstances", launched))
    world.calls.handlers.append(("before-send.ec2.DescribeInstances", late))
    return seen


def deliver(request: Any) -> None:
    """Send ``request`` to moto for real (so EC2 acts on it), reading and dropping the reply."""
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    sent = urllib.request.Request(request.url, data=body, headers=headers, method=request.method)
    with urllib.request.urlopen(sent, timeout=60) as answer:
        answer.read()


def signal_on_first(world, operation: str, signum: int) -> dict[str, int]:
    """Send ``signum`` to this process as the first (real) ``operation`` request goes out."""
    fired = {"n": 0}

    def handler(request: Any, **_: Any) -> None:
        if is_dry_run(request) or fired["n"]:
            return
        fired["n"] += 1
        os.kill(os.getpid(), signum)  # handled in this (the main) thread before the call returns

    world.calls.handlers.append((f"before-send.ec2.{operation}", handler))
    return fired


class SilentDeath(AssertionError):
    """What the default SIGTERM disposition would do to an ``ess`` process: die unheard."""


@contextmanager
def sigterm_would_kill() -> Iterator[None]:
    """Stand in for SIGTERM's default action (death, nothing said) while the flow runs: a
    SIGTERM that reaches the process's own handler fails the test instead of ending pytest."""

    def die(signum: int, frame: object) -> None:
        raise SilentDeath("SIGTERM reached the default handler: an ess process dies here, silently")

    previous = signal.signal(signal.SIGTERM, die)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def no_bare_interrupt() -> Iterator[None]:
    """A KeyboardInterrupt escaping the flow is a finding, not the end of the test session."""
    try:
        yield
    except KeyboardInterrupt:
        pytest.fail("a bare KeyboardInterrupt escaped the flow: the caller never got its nodes")


def prepared(world, count: int, launch_id: str):
    settings = world.settings()
    return settings, world.preflight(settings, world.request(count, launch_id=launch_id))


# -- F1 ------------------------------------------------------------------------------------
def test_f1_ctrl_c_during_the_duplicate_check_of_a_retried_launch_terminates_it(world) -> None:
    """RunInstances is throttled once and retried; it launched; EC2 lists the launch late; a
    Ctrl-C lands in the duplicate check's first pause. The rollback must terminate what the
    reply named, without a listing that shows it (before: nothing, and "were terminated")."""
    throttled = {"n": 0}

    def throttle_once(request: Any, **_: Any) -> Any:
        if is_dry_run(request) or throttled["n"]:
            return None
        throttled["n"] += 1
        return aws_error(503, "RequestLimitExceeded", "Request limit exceeded.")

    pauses: list[float] = []

    def ctrl_c_in_the_pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            raise KeyboardInterrupt  # what Ctrl-C raises in the duplicate check's time.sleep

    world.calls.handlers.append(("before-send.ec2.RunInstances", throttle_once))
    hide_listings(world)
    world.backend.sleep = ctrl_c_in_the_pause
    settings, request = prepared(world, 2, "f1-retried")
    with pytest.raises(Interrupted, match="the nodes of this run were terminated"):
        provision.create(world.backend, settings, request, world.progress(), verify=False)
    assert throttled["n"] == 1 and pauses[0] == unanswered.PAUSES[0]  # the window: the first pause
    states = of_launch(world, "f1-retried")
    assert len(states) == 2 and set(states.values()) == {TERMINATED}, states
    assert "cleaned up: terminated 2 node(s)" in world.progress_stream.getvalue()


# -- F2 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_f2_a_second_signal_during_the_unanswered_launch_search_is_held(world, second: int) -> None:
    """Ctrl-C while RunInstances is in flight (EC2 launched, the reply is never read); the
    search for what it made pauses while EC2's listing lags, and a second signal comes in the
    first pause. It must wait for the search, whose finds the rollback then terminates even
    though the rollback's own listing still shows nothing (before: both nodes leaked)."""

    def launched_then_ctrl_c(request: Any, **_: Any) -> None:
        if is_dry_run(request):
            return
        deliver(request)
        raise KeyboardInterrupt  # the first Ctrl-C, before the reply is read

    pauses: list[float] = []

    def second_signal_in_the_pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            os.kill(os.getpid(), second)  # a real signal, in the search's first pause

    # The search's listings 1 and 2 and the rollback's own (4th) see nothing: only the 3rd shows it.
    listings = hide_listings(world, hidden={1, 2, 4, 5, 6})
    world.calls.handlers.append(("before-send.ec2.RunInstances", launched_then_ctrl_c))
    world.backend.sleep = second_signal_in_the_pause
    settings, request = prepared(world, 2, "f2-unanswered")
    with pytest.raises(Interrupted, match="the nodes of this run were terminated"):
        provision.create(world.backend, settings, request, world.progress(), verify=False)
    said = world.progress_stream.getvalue()
    assert pauses[:2] == list(unanswered.PAUSES[:2]) and listings["n"] >= 4, (pauses, listings)
    assert "cleaning up the nodes of this run; please wait" in said
    states = of_launch(world, "f2-unanswered")
    assert len(states) == 2 and set(states.values()) == {TERMINATED}, states
    assert "cleaned up: terminated 2 node(s)" in said


def test_f2_each_listing_of_the_search_is_remembered_as_it_comes(world, monkeypatch) -> None:
    """Partial results: what one listing found is the caller's before the next pause, so a
    search cut short (off the main thread no signal can be held) still hands it over."""
    listed = [{"InstanceId": "i-0aaa000000000000a", "State": {"Name": RUNNING}}]
    answers = iter([listed, []])
    monkeypatch.setattr(unanswered.aws_client, "describe_filtered", lambda aws, filters: next(answers))
    kept: list[list[dict]] = []

    def cut(seconds: float) -> None:
        raise KeyboardInterrupt  # the search is cut in its first pause

    with pytest.raises(KeyboardInterrupt):
        unanswered.find(None, world.request(2), cut, kept.append)  # type: ignore[arg-type]
    assert kept == [listed]


# -- F3 ------------------------------------------------------------------------------------
def grown_cluster(world, progress: Any):
    from ess.api import Cluster

    cluster = Cluster("ec2", config=world.conf, progress=progress)
    first = cluster.create(2, verify=False)
    return cluster, [n.id for n in first.nodes]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_f3_a_signal_while_create_records_the_grown_size_keeps_and_returns_the_nodes(world, signum: int) -> None:
    """`create` on a cluster with 2 nodes: the third runs; the signal lands during the one
    CreateTags that gives the older nodes the grown size. The create has succeeded: it must
    finish and return the node (the CLI then shows it), not end as "interrupted" with a node
    nobody was told about, nor (SIGTERM) kill the process with nothing said."""
    import io

    said = io.StringIO()
    cluster, older = grown_cluster(world, said)
    fired = signal_on_first(world, "CreateTags", signum)
    with sigterm_would_kill(), no_bare_interrupt():
        result = cluster.create(1, verify=False)
    assert fired["n"] == 1
    assert len(result.nodes) == 1
    new = result.nodes[0].id
    assert live_of_cluster(world) == sorted([*older, new])
    # The held signal did not cut the retag short: every node records the grown size.
    assert {tags_of(world, i)[TAG_SIZE] for i in [*older, new]} == {"3"}
    assert "the new nodes are ready and kept" in said.getvalue()


def test_f3_ctrl_c_after_the_nodes_ran_shows_them_through_the_cli(world, ess) -> None:
    assert ess("instance", "ec2", "create", "--number", "2", "--no-verify", "--yes").code == 0
    signal_on_first(world, "CreateTags", signal.SIGINT)
    result = ess("instance", "ec2", "create", "--number", "1", "--no-verify", "--yes", "--json")
    assert result.code == 0, result
    shown = [n["id"] for n in json.loads(result.out)["nodes"]]
    assert len(shown) == 1 and shown[0] in live_of_cluster(world)
    assert len(live_of_cluster(world)) == 3
    assert "the new nodes are ready and kept" in result.err and "interrupted" not in result.err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_f3_a_signal_while_heal_replaces_the_lost_node_keeps_and_returns_the_new_one(world, signum: int) -> None:
    """`heal` launched and verified the replacement; the signal lands as it marks the lost
    node it replaced. The new node is kept and returned; the lost one is still replaced."""
    import io

    from ess.api import Cluster

    said = io.StringIO()
    cluster = Cluster("ec2", config=world.conf, progress=said)
    ids = [n.id for n in cluster.create(3, verify=False).nodes]
    world.ec2.terminate_instances(InstanceIds=[ids[0]])  # lost behind ess's back
    fired = signal_on_first(world, "CreateTags", signum)
    with sigterm_would_kill(), no_bare_interrupt():
        healed = cluster.heal(verify=False)
    assert fired["n"] == 1
    assert healed.created is not None and len(healed.nodes) == 1
    assert [n.id for n in healed.replaced] == [ids[0]]
    assert live_of_cluster(world) == sorted([*ids[1:], healed.nodes[0].id])
    assert tags_of(world, ids[0]).get("ess:desired") == TERMINATED  # the mark was not cut short
    assert "the new nodes are ready and kept" in said.getvalue()


# -- F4 ------------------------------------------------------------------------------------
def test_f4_terminate_all_retires_a_lost_node_so_the_next_create_starts_afresh(world, ess) -> None:
    created = ess("instance", "ec2", "create", "--number", "3", "--no-verify", "--yes", "--json")
    assert created.code == 0, created
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    world.ec2.terminate_instances(InstanceIds=ids[:1])  # a spot interruption, the console
    world.calls.reset()
    gone = ess("instance", "ec2", "terminate", "all", "--yes", "--json")
    assert gone.code == 0, gone
    assert sorted(json.loads(gone.out)["terminated"]) == sorted(ids[1:])  # the lost one is not reported again
    assert [sorted(p["InstanceIds"]) for op, p in world.calls.made if op == "TerminateInstances"] == [sorted(ids[1:])]
    marks = [sorted(p["Resources"]) for op, p in world.calls.made if op == "CreateTags"]
    assert marks == [sorted(ids)]  # the lost one marked in the same call, no call of its own
    assert live_of_cluster(world) == []
    status = ess("instance", "ec2", "status")
    assert status.code == 0 and "lost" not in status.out + status.err, status
    again = ess("instance", "ec2", "create", "--number", "2", "--no-verify", "--yes", "--json")
    assert again.code == 0, again
    assert "already has" not in again.err, again.err
    new = [n["id"] for n in json.loads(again.out)["nodes"]]
    assert {tags_of(world, i)[TAG_SIZE] for i in new} == {"2"}
    world.calls.reset()
    healed = ess("instance", "ec2", "heal", "--no-verify", "--yes")
    assert healed.code == 0 and "is whole: 2/2 running" in healed.out, healed
    assert world.calls.count("RunInstances", dry_run=False) == 0
    assert live_of_cluster(world) == sorted(new)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        # EC2 lists a terminated instance for about an hour, then no longer knows it.
        ("InvalidInstanceID.NotFound", "The instance ID '{}' does not exist"),
        # Should EC2 refuse tags on a terminated instance (not checkable on moto).
        ("IncorrectInstanceState", "The instance '{}' is not in a valid state for this operation"),
    ],
)
def test_f4_ec2_refusing_the_gone_nodes_mark_does_not_cost_the_others_theirs(world, ess, code, message) -> None:
    """The CreateTags that marks the cluster's nodes also marks the gone member; if EC2 will
    not take it, the rest are marked without it (one more call) rather than not at all."""
    created = ess("instance", "ec2", "create", "--number", "3", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    world.ec2.terminate_instances(InstanceIds=ids[:1])
    sends = {"n": 0}

    def refuse_the_gone(request: Any, **_: Any) -> Any:
        sends["n"] += 1
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        return aws_error(400, code, message.format(ids[0])) if ids[0] in body else None

    world.calls.handlers.append(("before-send.ec2.CreateTags", refuse_the_gone))
    gone = ess("instance", "ec2", "terminate", "all", "--yes")
    assert gone.code == 0 and "could not mark" not in gone.err, gone
    assert sends["n"] == 2
    assert {tags_of(world, i).get("ess:desired") for i in ids[1:]} == {TERMINATED}


def test_f4_create_on_a_cluster_whose_nodes_are_all_gone_starts_afresh(world, ess) -> None:
    """Every node lost (nothing left for `terminate all` to act on): create does not add to
    the size the gone nodes recorded."""
    created = ess("instance", "ec2", "create", "--number", "3", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    world.ec2.terminate_instances(InstanceIds=ids)
    again = ess("instance", "ec2", "create", "--number", "2", "--no-verify", "--yes", "--json")
    assert again.code == 0 and "already has" not in again.err, again
    new = [n["id"] for n in json.loads(again.out)["nodes"]]
    assert {tags_of(world, i)[TAG_SIZE] for i in new} == {"2"}
    healed = ess("instance", "ec2", "heal", "--no-verify", "--yes")
    assert healed.code == 0 and "is whole: 2/2 running" in healed.out, healed
    assert live_of_cluster(world) == sorted(new)


def test_f4_a_named_terminate_retires_nothing_else(world, ess) -> None:
    """Terminating some nodes by id is not the end of the cluster: a lost node stays lost."""
    created = ess("instance", "ec2", "create", "--number", "3", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    world.ec2.terminate_instances(InstanceIds=ids[:1])
    assert ess("instance", "ec2", "terminate", ids[1], "--yes").code == 0
    status = ess("instance", "ec2", "status")
    assert status.code == 3 and "(1 lost)" in status.out, status


def test_f4_create_grows_from_the_nodes_that_exist(world, ess) -> None:
    """The lost node of a live cluster is still missing: create adds to the intended size."""
    created = ess("instance", "ec2", "create", "--number", "3", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    world.ec2.terminate_instances(InstanceIds=ids[:1])
    again = ess("instance", "ec2", "create", "--number", "2", "--no-verify", "--yes", "--json")
    assert again.code == 0 and "already has 2 node(s); adding 2 more" in again.err, again
    new = [n["id"] for n in json.loads(again.out)["nodes"]]
    assert {tags_of(world, i)[TAG_SIZE] for i in [*ids[1:], *new]} == {"5"}


# -- F5 ------------------------------------------------------------------------------------
def team_b_instance(world) -> str:
    """Team B's machine, launched without ess with key pair team_b; then someone with only
    ec2:CreateTags writes ess's tags on it."""
    world.ec2.create_key_pair(KeyName="team_b")
    reply = world.ec2.run_instances(
        ImageId=world.image, MinCount=1, MaxCount=1, InstanceType="t3.large", KeyName="team_b"
    )
    instance = reply["Instances"][0]["InstanceId"]
    world.ec2.create_tags(
        Resources=[instance], Tags=[{"Key": TAG_CLUSTER, "Value": "default"}, {"Key": TAG_LAUNCH, "Value": "x"}]
    )
    return instance


def run_printed(ess, monkeypatch, command: str, *extra: str):
    """Run the shell command `ess clusters` printed: its VAR=value words, then ess's argv."""
    words = shlex.split(command)
    while "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        monkeypatch.setenv(name, value)
    assert words[0] == "ess"
    return ess(*words[1:], *extra)


def test_f5_the_printed_command_for_a_forged_row_does_not_terminate_the_other_teams_instance(
    world, ess, monkeypatch
) -> None:
    victim = team_b_instance(world)
    listed = ess("clusters", "--json")
    rows = [c for c in json.loads(listed.out)["clusters"] if c["backend"] == "ec2"]
    row = next(c for c in rows if c["key_pair"] == "team_b")
    assert row["node_ids"] == [victim]
    assert "ESS_KEY_NAME=team_b" in row["terminate"]
    world.calls.reset()
    result = run_printed(ess, monkeypatch, row["terminate"], "--yes")
    assert result.code == 2, result
    assert "ESS_KEY_NAME: will not terminate instances of key pair 'team_b'" in result.err
    assert "nothing was changed" in result.err
    assert world.calls.mutating() == []
    assert world.states([victim]) == {victim: RUNNING}
    stopped = ess("instance", "ec2", "stop", "--yes")  # ESS_KEY_NAME is still set
    assert stopped.code == 2 and "will not stop" in stopped.err, stopped
    assert world.states([victim]) == {victim: RUNNING}
    # `ess clusters` says so next to the row's command.
    assert "holds no private key for key pair(s) 'team_b'" in listed.err


def test_f5_a_key_file_in_the_config_proves_only_the_configs_own_key_pair(world, ess, monkeypatch) -> None:
    """The config's key_file is its own key pair's key: it is no proof for a name typed over it."""
    world.conf.write_text(world.conf.read_text() + "key_file: pem_file.pem\n")
    victim = team_b_instance(world)
    monkeypatch.setenv("ESS_KEY_NAME", "team_b")
    result = ess("instance", "ec2", "terminate", "all", "--yes")
    assert result.code == 2 and "will not terminate" in result.err, result
    assert world.states([victim]) == {victim: RUNNING}


def test_f5_a_key_pair_named_by_the_environment_with_its_pem_here_works(world, ess, monkeypatch) -> None:
    created = ess("instance", "ec2", "create", "--number", "2", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    monkeypatch.setenv("ESS_KEY_NAME", "pem_file")  # pem_file.pem is next to the config
    result = ess("instance", "ec2", "terminate", "all", "--yes")
    assert result.code == 0, result
    assert set(world.states(ids).values()) == {TERMINATED}


# -- F6 ------------------------------------------------------------------------------------
def test_f6_a_refused_terminate_leaves_the_running_cluster_in_ess_clusters(world, ess) -> None:
    created = ess("instance", "ec2", "create", "--number", "2", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    protected = ids[0]
    world.ec2.modify_instance_attribute(InstanceId=protected, DisableApiTermination={"Value": True})
    refused = ess("instance", "ec2", "terminate", "all", "--yes")
    assert refused.code == 1 and "OperationNotPermitted" in refused.err, refused
    # ess marked both before the call (ess:desired=terminated); the protected one still runs
    # (moto ends the other one; EC2 refuses the whole call: either way one runs, marked).
    assert protected in live_of_cluster(world)
    assert tags_of(world, protected).get("ess:desired") == TERMINATED
    listed = ess("clusters", "--json")
    rows = [c for c in json.loads(listed.out)["clusters"] if c["backend"] == "ec2"]
    assert len(rows) == 1 and protected in rows[0]["node_ids"], listed
    assert rows[0]["nodes"].get("running", 0) >= 1
    assert set(rows[0]["node_ids"]) <= set(ids)


# -- F7 ------------------------------------------------------------------------------------
def test_f7_a_stop_interrupted_after_its_mark_does_not_hide_a_later_loss(world, ess) -> None:
    """SIGTERM between `stop`'s ess:desired=stopped CreateTags and StopInstances: before, the
    nodes kept running marked stopped; they read as running, but when one was later stopped
    behind ess's back, status and heal took it for stopped with `stop` (not lost). The mark
    of a change EC2 was never asked for is now put back."""
    created = ess("instance", "ec2", "create", "--number", "2", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    fired = {"n": 0}

    def sigterm_after_the_mark(**_: Any) -> None:
        if not fired["n"]:
            fired["n"] += 1
            os.kill(os.getpid(), signal.SIGTERM)  # the CreateTags is done; StopInstances is next

    world.calls.handlers.append(("after-call.ec2.CreateTags", sigterm_after_the_mark))
    world.calls.reset()
    with sigterm_would_kill():
        stopped = ess("instance", "ec2", "stop", "--yes")
    assert fired["n"] == 1 and stopped.code == 130 and "interrupted during stop" in stopped.err, stopped
    assert world.calls.count("StopInstances") == 0 and world.states(ids) == dict.fromkeys(ids, RUNNING)
    assert {tags_of(world, i).get("ess:desired") for i in ids} == {None}  # the mark was put back
    status = ess("instance", "ec2", "status")
    assert status.code == 0 and status.out.splitlines()[-1] == "2/2 running", status
    world.ec2.stop_instances(InstanceIds=[ids[0]])  # behind ess's back
    later = ess("instance", "ec2", "status")
    assert later.code == 3 and later.out.splitlines()[-1] == "1/2 running (1 lost)", later


def test_f7_a_start_cut_off_before_start_instances_keeps_the_nodes_stopped_on_purpose(world, ess) -> None:
    """The mirror: `start` clears the mark first; cut off before StartInstances, the nodes
    stayed stopped and unmarked, so status called them lost and heal would replace them."""
    created = ess("instance", "ec2", "create", "--number", "2", "--no-verify", "--yes", "--json")
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    assert ess("instance", "ec2", "stop", "--yes").code == 0
    fired = {"n": 0}

    def ctrl_c_after_the_unmark(**_: Any) -> None:
        if not fired["n"]:
            fired["n"] += 1
            os.kill(os.getpid(), signal.SIGINT)

    world.calls.handlers.append(("after-call.ec2.DeleteTags", ctrl_c_after_the_unmark))
    started = ess("instance", "ec2", "start")
    assert fired["n"] == 1 and started.code == 130, started
    assert set(world.states(ids).values()) == {"stopped"}
    status = ess("instance", "ec2", "status")
    assert status.code == 0 and "lost" not in status.out, status
