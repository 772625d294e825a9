"""create / wait / list / terminate / stop / start against moto, counting every API call."""

from __future__ import annotations

from collections import Counter

import pytest
from support.ec2_world import make_world

from ess import provision
from ess.errors import EssError
from ess.models import RUNNING, STOPPED, TAG_CLUSTER, TAG_LAUNCH, TERMINATED, Node
from ess_ec2.backend import Ec2Backend

#: What preflight costs, whatever the count: one read per concept and one DryRun.
PREFLIGHT = Counter(
    {
        "DescribeKeyPairs": 1,
        "DescribeVpcs": 1,
        "DescribeSecurityGroups": 1,
        "DescribeInstanceTypes": 1,
        "DescribeInstanceTypeOfferings": 1,
        "GetParameter": 1,
        "RunInstances": 1,
    }
)


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    return make_world(tmp_path, monkeypatch)


def full_cycle(world, count: int) -> tuple[Counter, Counter, list[Node]]:
    """preflight+create+wait, then list+terminate; the API calls of each half."""
    settings = world.settings()
    request = world.request(count, launch_id=f"launch-{count}")
    world.calls.reset()
    request = world.preflight(settings, request)
    launched = world.backend.create(settings, request, world.progress())
    nodes = world.backend.wait(settings, launched, world.progress(), timeout=60)
    create_calls = world.calls.by_operation()
    assert len(nodes) == count and all(n.state == RUNNING for n in nodes)
    # The core would pass list()'s answer; the nodes from wait are the same ids, and skipping
    # list keeps the 1000-node case to the describes that are being counted.
    world.calls.reset()
    world.backend.terminate(settings, nodes, world.progress())
    terminate_calls = world.calls.by_operation()
    alive = world.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    )
    assert alive["Reservations"] == []
    return create_calls, terminate_calls, nodes


EXPECTED_CREATE = PREFLIGHT + Counter({"RunInstances": 1, "DescribeInstances": 1})
#: One describe to check our tag, one call, one poll (moto: terminated on the next describe).
# TerminateInstances and one poll: the tag re-check reuses what EC2 told this backend when it
# launched (or listed) the instances, so it costs no describe of its own. One CreateTags marks
# them ess:desired=terminated first, so `list` can tell them from nodes terminated behind
# ess's back (issue 13): one batched call, whatever the count.
EXPECTED_TERMINATE = Counter({"DescribeInstances": 1, "CreateTags": 1, "TerminateInstances": 1})


def test_create_and_terminate_cost_the_same_calls_for_1_and_2_nodes(world):
    for count in (1, 2):
        create_calls, terminate_calls, _ = full_cycle(world, count)
        assert create_calls == EXPECTED_CREATE, count
        assert terminate_calls == EXPECTED_TERMINATE, count


@pytest.fixture
def lean_world(world):
    """The world with image_id set to its registered image (DescribeImages, not SSM)."""
    world.conf.write_text(world.conf.read_text() + f"image_id: {world.image}\n")
    return world


def test_1000_nodes_cost_the_same_calls_as_one(lean_world):
    one_create, one_terminate, _ = full_cycle(lean_world, 1)
    create_calls, terminate_calls, nodes = full_cycle(lean_world, 1000)
    assert create_calls == one_create
    assert terminate_calls == one_terminate == EXPECTED_TERMINATE
    assert create_calls == EXPECTED_CREATE - Counter({"GetParameter": 1}) + Counter({"DescribeImages": 1})
    assert len({n.id for n in nodes}) == 1000
    terminated = next(p for op, p in reversed(lean_world.calls.made) if op == "TerminateInstances")
    assert len(terminated["InstanceIds"]) == 1000  # one call: EC2's per-call limit


def test_one_run_instances_with_tags_token_and_ids(world):
    settings = world.settings()
    request = world.preflight(settings, world.request(2))
    nodes = world.backend.create(settings, request, world.progress())
    real = [p for op, p in world.calls.made if op == "RunInstances" and not p.get("DryRun")]
    assert len(real) == 1
    sent = real[0]
    assert (sent["MinCount"], sent["MaxCount"]) == (2, 2)
    assert sent["KeyName"] == "pem_file" and sent["SecurityGroupIds"] == [world.group_id]
    assert sent["ClientToken"].startswith("ess-") and len(sent["ClientToken"]) <= 64
    kinds = {spec["ResourceType"] for spec in sent["TagSpecifications"]}
    assert kinds == {"instance", "volume"}
    assert {n.state for n in nodes} <= {"pending", RUNNING}
    assert all(n.tags[TAG_CLUSTER] == "default" and n.tags["Name"] == "Essentia Worker Node" for n in nodes)


def test_tags_are_on_instances_and_volumes_from_launch(world):
    nodes = world.launch(2, launch_id="tagged")
    # No CreateTags call: the tags came with RunInstances itself.
    assert world.calls.count("CreateTags") == 0
    reply = world.ec2.describe_instances(InstanceIds=[n.id for n in nodes])
    for reservation in reply["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            assert tags[TAG_CLUSTER] == "default" and tags[TAG_LAUNCH] == "tagged"
            assert tags["Name"] == "Essentia Worker Node"
    volumes = world.ec2.describe_volumes(Filters=[{"Name": f"tag:{TAG_LAUNCH}", "Values": ["tagged"]}])
    assert len(volumes["Volumes"]) == 2


def test_instance_tag_and_cluster_settings_are_used(world):
    nodes = world.launch(1, instance_tag="Render Node", cluster="blue")
    assert nodes[0].tags["Name"] == "Render Node" and nodes[0].tags[TAG_CLUSTER] == "blue"
    assert [n.id for n in world.backend.nodes(world.settings(cluster="blue"))] == [nodes[0].id]
    assert world.backend.nodes(world.settings()) == []


def test_list_fields_and_address_follow_use_private_ip(world):
    nodes = world.launch(2)
    public = world.backend.nodes(world.settings())
    private = world.backend.nodes(world.settings(use_private_ip="true"))
    assert {n.id for n in public} == {n.id for n in nodes}
    for node in public:
        assert node.address == node.public_ip and node.public_ip
        assert node.private_ip and node.instance_type == "m3.medium" and node.launched_at
        assert node.tags[TAG_LAUNCH] == "launch-1"
    assert all(n.address == n.private_ip for n in private)


def test_list_never_returns_a_foreign_instance_with_the_same_name(world):
    mine = world.launch(2)
    world.foreign(2)
    world.foreign(1, tags={TAG_CLUSTER: "someone-else"})
    assert sorted(n.id for n in world.backend.nodes(world.settings())) == sorted(n.id for n in mine)


def test_terminate_all_leaves_foreign_same_name_instances_running(world):
    world.launch(2)
    foreign = world.foreign(2) + world.foreign(1, tags={TAG_CLUSTER: "other"})
    settings = world.settings()
    world.backend.terminate(settings, world.backend.nodes(settings), world.progress())
    assert world.backend.nodes(settings) == []
    assert set(world.states(foreign).values()) == {RUNNING}


def test_terminate_refuses_ids_without_our_cluster_tag(world):
    mine = world.launch(1)
    foreign = world.foreign(1)
    sneaky = Node(id=foreign[0], state=RUNNING, tags={TAG_CLUSTER: "default"})
    world.backend.terminate(world.settings(), [*mine, sneaky], world.progress())
    assert world.states(foreign) == {foreign[0]: RUNNING}
    assert world.states([mine[0].id]) == {mine[0].id: TERMINATED}
    terminated = next(p for op, p in world.calls.made if op == "TerminateInstances")
    assert terminated["InstanceIds"] == [mine[0].id]
    assert (
        f"skipped 1 instance(s) that are not cluster 'default''s: {foreign[0]} (not tagged "
        "ess:cluster=default)" in world.progress_stream.getvalue()
    )


def test_terminate_is_idempotent(world):
    nodes = world.launch(2)
    settings = world.settings()
    world.backend.terminate(settings, nodes, world.progress())
    world.calls.reset()
    gone = Node(id="i-0123456789abcdef0", state=RUNNING)
    world.backend.terminate(settings, [*nodes, gone], world.progress())
    assert world.calls.count("TerminateInstances") == 0  # nothing left to do
    assert set(world.states([n.id for n in nodes]).values()) == {TERMINATED}


def test_stop_and_start_wait_for_the_state(world):
    nodes = world.launch(2)
    settings = world.settings()
    world.backend.stop(settings, nodes, world.progress())
    assert set(world.states([n.id for n in nodes]).values()) == {STOPPED}
    assert {n.state for n in world.backend.nodes(settings)} == {STOPPED}
    world.backend.start(settings, nodes, world.progress())
    assert set(world.states([n.id for n in nodes]).values()) == {RUNNING}
    assert world.calls.count("StopInstances") == 1 and world.calls.count("StartInstances") == 1


def test_pagination_beyond_100_reservations(world):
    tags = [{"Key": TAG_CLUSTER, "Value": "default"}, {"Key": TAG_LAUNCH, "Value": "many"}]
    for _ in range(101):  # 101 reservations: moto pages at 100 even when ids are given
        world.ec2.run_instances(
            ImageId=world.image,
            MinCount=1,
            MaxCount=1,
            InstanceType="m3.medium",
            KeyName="pem_file",
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
    settings = world.settings()
    listed = world.backend.nodes(settings)
    assert len(listed) == 101
    world.calls.reset()
    refreshed = world.backend.wait(settings, listed, world.progress(), timeout=10)
    assert len({n.id for n in refreshed if n.state == RUNNING}) == 101
    assert world.calls.count("DescribeInstances") == 2  # two pages of one describe
    world.backend.terminate(settings, listed, world.progress())
    assert world.backend.nodes(settings) == []


def test_wait_deadline_names_how_many_are_late(world):
    nodes = world.launch(2)
    clock = [0.0]
    world.backend.clock = lambda: clock[0]

    def sleep(seconds: float) -> None:
        world.sleeps.append(seconds)
        clock[0] += seconds

    def still_pending(parsed, **_):
        # EC2 as seen through the client seam: the instances never leave pending.
        for reservation in parsed.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                instance["State"] = {"Name": "pending", "Code": 0}

    world.backend.sleep = sleep
    world.calls.handlers.append(("after-call.ec2.DescribeInstances", still_pending))
    settings = world.settings()  # a new command, whose clients carry the handler
    world.calls.reset()
    with pytest.raises(EssError, match=r"2 of 2 node\(s\) not running after 30s"):
        world.backend.wait(settings, nodes, world.progress(), timeout=30)
    polls = world.calls.count("DescribeInstances")
    assert polls == len(world.sleeps) + 1  # one batched describe per poll, nothing else
    assert len(world.sleeps) >= 3 and sum(world.sleeps) == pytest.approx(30)
    assert all(0 < pause <= 15 for pause in world.sleeps)
    # The k-th describe never comes before the old back-off's k-th (ess_ec2.polling's budget);
    # only the last, at the deadline, may.
    from ess_ec2.polling import budget_at

    moments = [sum(world.sleeps[:k]) for k in range(1, len(world.sleeps))]
    assert all(m >= budget_at(k) - 1e-9 for k, m in enumerate(moments, 1)), moments


def test_wait_fails_fast_when_a_node_dies(world):
    nodes = world.launch(2)
    world.ec2.terminate_instances(InstanceIds=[nodes[0].id])
    with pytest.raises(EssError, match=r"1 of 2 node\(s\) went terminated instead of running"):
        world.backend.wait(world.settings(), nodes, world.progress(), timeout=60)


def test_access_names_user_and_resolved_key(world):
    access = world.backend.access(world.settings(username="ubuntu", cluster="c1"))
    assert (access.backend, access.cluster, access.username, access.key_file) == ("ec2", "c1", "ubuntu", world.pem)


def test_failure_after_launch_is_rolled_back_by_the_core(world, monkeypatch):
    settings = world.settings()
    request = world.request(2, launch_id="doomed")
    request = provision.preflight(world.backend, settings, request)

    def broken_wait(*_args, **_kwargs):
        raise EssError("simulated failure while waiting")

    monkeypatch.setattr(world.backend, "wait", broken_wait)
    with pytest.raises(EssError, match="simulated failure"):
        provision.create(world.backend, settings, request, world.progress(), verify=False)
    assert world.backend.nodes(settings) == []
    launched = world.ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_LAUNCH}", "Values": ["doomed"]}])
    states = {i["State"]["Name"] for r in launched["Reservations"] for i in r["Instances"]}
    assert states == {TERMINATED}


def test_terminate_re_describes_what_this_command_did_not_see(world):
    nodes = world.launch(2)
    settings = world.settings()  # another command: it has seen nothing, so it must ask EC2
    fresh = Ec2Backend()  # and another backend object, as in a new process
    fresh.sleep = world.backend.sleep
    world.calls.reset()
    fresh.terminate(settings, nodes, world.progress())
    assert world.calls.count("DescribeInstances") == 2  # the tag re-check, then the poll


def test_what_a_command_listed_goes_stale_but_what_it_launched_does_not(world):
    """Terminate trusts EC2's own recent answer about the tags (one describe fewer), counted
    at the client seam: a describe of its own is the tag re-check, the last one the poll."""
    now = [1000.0]
    world.backend.clock = lambda: now[0]
    launching = world.settings()  # one command: launch, then (an hour later) roll back
    launched = world.backend.create(launching, world.preflight(launching, world.request(1)), world.progress())
    world.launch(2, launch_id="launch-2")
    listing = world.settings()  # another command: knows the nodes only from its own list
    listed = [n for n in world.backend.nodes(listing) if n.id != launched[0].id]
    now[0] += 3600
    world.calls.reset()
    world.backend.terminate(launching, launched, world.progress())
    assert world.calls.count("DescribeInstances") == 1  # the poll: the launch is never stale
    world.calls.reset()
    world.backend.terminate(listing, listed[:1], world.progress())
    assert world.calls.count("DescribeInstances") == 2  # listed an hour ago: re-checked
    fresh = world.settings()
    listed = world.backend.nodes(fresh)
    world.calls.reset()
    world.backend.terminate(fresh, listed, world.progress())
    assert world.calls.count("DescribeInstances") == 1  # listed just now: trusted
    assert world.backend.nodes(world.settings()) == []
