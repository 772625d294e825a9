"""EC2 is eventually consistent: moments after RunInstances it may not know the new ids yet.

AWS documents that a call naming a just-created instance can fail with
InvalidInstanceID.NotFound for a few seconds, and asks clients to retry. moto never does
this, so the tests make EC2 say it: the scripted describe of the wait loop leaves the ids
out, and a botocore ``before-send`` handler answers TerminateInstances with the real error
for the first sends. The code under test is the real backend on moto.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from support.ec2_world import aws_error, make_world

from ess.errors import EssError
from ess.models import RUNNING, SHUTTING_DOWN, STOPPED, STOPPING, TERMINATED
from ess.progress import Progress
from ess_ec2 import client as aws_client
from ess_ec2 import polling


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    return make_world(tmp_path, monkeypatch)


class LateEc2:
    """Describe of instances EC2 does not know until ``known_at``, pending until ``ready_at``."""

    def __init__(self, known_at: float, ready_at: float, ids: list[str]) -> None:
        self.known_at, self.ready_at, self.ids = known_at, ready_at, ids
        self.now = 0.0
        self.describes = 0

    def describe(self, _aws: Any, ids: list[str], _states: Any = ()) -> dict[str, dict[str, Any]]:
        self.describes += 1
        moment, self.now = self.now, self.now + 0.05
        if moment < self.known_at:
            return {}  # what client.describe returns once it dropped the ids EC2 called unknown
        state = RUNNING if moment >= self.ready_at else "pending"
        return {i: {"InstanceId": i, "State": {"Name": state}} for i in ids}

    def sleep(self, seconds: float) -> None:
        self.now += seconds


#: What the create wait fails on (backend.wait passes these).
CREATE_FAILS = (SHUTTING_DOWN, TERMINATED, STOPPING, STOPPED)


def wait(monkeypatch, ec2: LateEc2, target: str, timeout: float, fail_states: tuple[str, ...] = ()) -> dict:
    monkeypatch.setattr(aws_client, "describe", ec2.describe)
    return polling.poll(
        None,  # type: ignore[arg-type]  # the scripted describe needs no client
        ec2.ids,
        target,
        timeout,
        Progress(io.StringIO(), tty=False),
        target,
        fail_states=fail_states,
        sleep=ec2.sleep,
        clock=lambda: ec2.now,
    )


def test_ids_ec2_does_not_know_yet_are_waited_for_not_taken_for_terminated(monkeypatch):
    # New ids unknown to the first describes used to count as terminated, which the create
    # wait fails on: a healthy launch failed and was rolled back.
    ec2 = LateEc2(known_at=5.0, ready_at=20.0, ids=["i-0aaa0000", "i-0bbb0000"])
    found = wait(monkeypatch, ec2, RUNNING, 600, CREATE_FAILS)
    assert sorted(found) == ec2.ids
    assert ec2.now >= 20.0 and ec2.describes >= 2


def test_ids_ec2_never_knows_run_into_the_deadline_and_say_so(monkeypatch):
    ec2 = LateEc2(known_at=1e9, ready_at=1e9, ids=["i-0aaa0000"])
    with pytest.raises(EssError, match=r"1 of 1 node\(s\) not running after 60s \(i-0aaa0000\); EC2 never knew 1"):
        wait(monkeypatch, ec2, RUNNING, 60, CREATE_FAILS)


def test_in_a_terminate_wait_an_unknown_id_is_still_terminated(monkeypatch):
    ec2 = LateEc2(known_at=1e9, ready_at=1e9, ids=["i-0aaa0000"])
    assert wait(monkeypatch, ec2, TERMINATED, 60) == {}
    assert ec2.describes == 1


def not_found_first(sends: int, ids: list[str]):
    """A before-send handler: TerminateInstances answers NotFound for ``ids`` on its first sends."""
    seen = {"sends": 0}

    def handler(request: Any, **_: Any) -> Any:
        seen["sends"] += 1
        if seen["sends"] <= sends:
            listed = ", ".join(ids)
            return aws_error(400, "InvalidInstanceID.NotFound", f"The instance IDs '{listed}' do not exist")
        return None

    return handler, seen


def launch(world, count: int = 2):
    settings = world.settings()
    request = world.preflight(settings, world.request(count))
    return settings, world.backend.create(settings, request, world.progress())


class Answering:
    """The TerminateInstances handler of a client made before the ids it must name exist."""

    def __init__(self, world) -> None:
        self.handler: Any = lambda **_: None
        world.calls.handlers.append(("before-send.ec2.TerminateInstances", lambda **kw: self.handler(**kw)))


def test_terminating_what_this_command_launched_retries_until_ec2_knows_it(world):
    # Before: the id EC2 did not know yet was dropped as "already gone", and the rollback
    # of a launch left that instance running, billed, while saying it cleaned up.
    answering = Answering(world)
    settings, nodes = launch(world)
    answering.handler, seen = not_found_first(2, [nodes[0].id])
    world.backend.terminate(settings, nodes, world.progress())
    assert seen["sends"] == 3  # twice unknown, then accepted
    assert world.sleeps[-2:] == [0.5, 1.0]
    assert set(world.states([n.id for n in nodes]).values()) == {TERMINATED}


def test_an_instance_ec2_never_comes_to_know_is_one_clear_error_not_a_silent_drop(world):
    answering = Answering(world)
    settings, nodes = launch(world, 1)
    answering.handler, seen = not_found_first(100, [nodes[0].id])
    with pytest.raises(
        EssError, match=rf"EC2 still does not know 1 instance\(s\) this command launched, 15s .*{nodes[0].id}"
    ):
        world.backend.terminate(settings, nodes, world.progress())
    assert seen["sends"] == 1 + len(aws_client.NOT_KNOWN_YET_PAUSES)
    assert world.sleeps[-len(aws_client.NOT_KNOWN_YET_PAUSES) :] == list(aws_client.NOT_KNOWN_YET_PAUSES)
