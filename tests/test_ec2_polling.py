"""The EC2 wait loop (ess_ec2.polling) against a scripted EC2: when it describes, and what it promises.

EC2 is a function of a fake clock here: each instance reaches the target state at its own
moment; sleeping advances the clock; each describe costs a 50 ms round trip. No real time
passes, so nothing here is timed: the figures are the fake clock's.
"""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.ec2_world import make_world

from ess.errors import EssError
from ess.models import RUNNING, TERMINATED
from ess.progress import Progress
from ess_ec2 import client as aws_client
from ess_ec2 import polling, wait_times
from ess_ec2.wait_times import WaitTimes

ROUND_TRIP = 0.05


@dataclass
class ScriptedEc2:
    """Instances that are ``before`` until their moment, then ``after`` (or gone: None)."""

    ready_at: dict[str, float]
    before: str = "pending"
    after: str | None = RUNNING
    now: float = 0.0
    #: (moment, ids asked for) of each describe.
    describes: list[tuple[float, list[str]]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    #: The ``states`` filter of each describe (empty: every state).
    asked_states: list[tuple[str, ...]] = field(default_factory=list)
    #: id -> (moment, state) overrides, e.g. a node that dies.
    turns: dict[str, tuple[float, str]] = field(default_factory=dict)

    def state(self, instance_id: str) -> str | None:
        if instance_id in self.turns and self.now >= self.turns[instance_id][0]:
            return self.turns[instance_id][1]
        return self.after if self.now >= self.ready_at[instance_id] else self.before

    def describe(self, _aws: Any, ids: list[str], states: Collection[str] = ()) -> dict[str, dict[str, Any]]:
        self.describes.append((self.now, list(ids)))
        self.asked_states.append(tuple(states))
        found = {}
        for i in ids:
            state = self.state(i)
            if state is not None and (not states or state in states):
                found[i] = {"InstanceId": i, "State": {"Name": state}, "StateReason": {"Message": f"{i} {state}"}}
        self.now += ROUND_TRIP
        return found

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    @property
    def last_ready(self) -> float:
        return max(self.ready_at.values())


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def make(ready_at: dict[str, float], **kwargs: Any) -> ScriptedEc2:
        ec2 = ScriptedEc2(ready_at, **kwargs)
        monkeypatch.setattr(aws_client, "describe", ec2.describe)
        return ec2

    yield make


def wait(ec2: ScriptedEc2, target: str = RUNNING, timeout: float = 600, **kwargs: Any) -> dict[str, Any]:
    return polling.poll(
        None,  # type: ignore[arg-type]  # the scripted describe needs no client
        sorted(ec2.ready_at),
        target,
        timeout,
        Progress(io.StringIO(), tty=False),
        "running",
        sleep=ec2.sleep,
        clock=lambda: ec2.now,
        **kwargs,
    )


def old_describes(ready: float) -> int:
    """How many describes the old loop made for a wait that ends at ``ready``: one at 0, then
    after FIRST_DELAY, growing by GROWTH up to MAX_DELAY (its jitter only shortened the pauses,
    so this is the fewest it made), the last one the first at or after ``ready``."""
    moment, delay, calls = 0.0, polling.FIRST_DELAY, 1
    while moment < ready:
        moment += delay
        delay = min(delay * polling.GROWTH, polling.MAX_DELAY)
        calls += 1
    return calls


def spread(n: int, first: float = 15.0, last: float = 45.0) -> dict[str, float]:
    """n instances ready at even steps from ``first`` to ``last``."""
    return {f"i-{k:04d}": first + (last - first) * (k + 1) / n for k in range(n)}


def test_the_old_constants_make_nine_describes_over_a_45_second_boot():
    # The budget the new loop is held to, from the old constants: 0, 1, 2.5, 4.75, 8.1,
    # 13.2, 20.8, 32.2, then 47.2 sees the boot that ended at 45 s.
    assert (polling.FIRST_DELAY, polling.GROWTH, polling.MAX_DELAY) == (1.0, 1.5, 15.0)
    assert old_describes(45.0) == 9
    assert [round(polling.budget_at(k), 2) for k in range(9)] == [0, 1, 2.5, 4.75, 8.12, 13.19, 20.78, 32.17, 47.17]


@pytest.mark.parametrize("n", [100, 1000])
def test_a_spread_out_boot_is_noticed_within_a_second_with_fewer_describes(scripted, n):
    ec2 = scripted(spread(n))
    found = wait(ec2)
    noticed = ec2.describes[-1][0]
    assert ec2.last_ready <= noticed <= ec2.last_ready + 1.0  # the old loop: at 47.2, 2.2 s late
    assert len(ec2.describes) <= old_describes(45.0)
    assert sorted(found) == sorted(ec2.ready_at) and {i["State"]["Name"] for i in found.values()} == {RUNNING}


def test_random_boots_never_cost_more_describes_than_the_old_back_off(scripted):
    """For any boot, at any moment, describe k comes no earlier than the old loop's k-th."""
    draw = random.Random(17)
    for n, (low, high) in [(1, (15, 45)), (10, (15, 45)), (100, (15, 45)), (10, (20, 24)), (50, (30, 60))]:
        for _ in range(20):
            ec2 = scripted({f"i-{k}": draw.uniform(low, high) for k in range(n)})
            wait(ec2)
            moments = [moment for moment, _ in ec2.describes]
            assert all(moment >= polling.budget_at(k) for k, moment in enumerate(moments)), moments
            assert len(moments) <= old_describes(ec2.last_ready)


def ten_node_lags(scripted, seed: int, runs: int) -> list[float]:
    """Lags of ``runs`` waits for 10 nodes pending uniform 15-45 s (the benchmark's model),
    checking that every describe kept to the budget."""
    draw = random.Random(seed)
    lags = []
    for _ in range(runs):
        ec2 = scripted({f"i-{k}": draw.uniform(15, 45) for k in range(10)})
        wait(ec2)
        moments = [moment for moment, _ in ec2.describes]
        assert all(moment >= polling.budget_at(k) for k, moment in enumerate(moments)), moments
        assert len(moments) <= old_describes(ec2.last_ready)
        lags.append(ec2.describes[-1][0] - ec2.last_ready)
    return sorted(lags)


def test_ten_nodes_are_noticed_sooner_than_the_line_alone_did(scripted):
    """The benchmark's draws at N=10: polling on the line through the counts alone noticed the
    last node 2.6 s late at the median (p90 5.9 s); a window around the line and a search
    with one call less: 1.3 s (p90 4.6 s). Issue 17 asks for 1 s: not reached yet."""
    lags = ten_node_lags(scripted, seed=17, runs=101)
    assert lags[len(lags) // 2] <= 2.0, lags
    assert lags[int(len(lags) * 0.9)] <= 6.0, lags


def test_median_lag_is_under_a_second_for_the_benchmark_model_at_1000(scripted):
    """bench/cloud_wait.py's model: each of 1000 instances pending for uniform 15-45 s."""
    draw = random.Random(5)
    lags = []
    for _ in range(9):
        ec2 = scripted({f"i-{k}": draw.uniform(15, 45) for k in range(1000)})
        wait(ec2)
        lags.append(ec2.describes[-1][0] - ec2.last_ready)
    assert sorted(lags)[len(lags) // 2] <= 1.0, lags


def test_above_full_only_the_ids_not_yet_there_are_described_again(scripted):
    n = polling.FULL + 100
    ec2 = scripted(spread(n))
    found = wait(ec2)
    asked = [len(ids) for _, ids in ec2.describes]
    assert asked[0] == n and asked[-1] < n
    assert asked == sorted(asked, reverse=True)  # never asks again about a node that got there
    assert sum(asked) < n * len(asked)
    assert len(found) == n  # each node as it was described when it got there


def test_up_to_full_every_describe_asks_for_all(scripted):
    ec2 = scripted(spread(polling.FULL))
    found = wait(ec2)
    assert [len(ids) for _, ids in ec2.describes] == [polling.FULL] * len(ec2.describes)
    assert len(found) == polling.FULL and {i["State"]["Name"] for i in found.values()} == {RUNNING}


def test_a_terminate_wait_asks_only_for_the_ids_not_yet_terminated(scripted):
    # Nothing leaves terminated, so asking again about a terminated node only makes the
    # describe that notices the end longer (EC2's answer grows with what it returns).
    ec2 = scripted(spread(polling.FULL, 30, 60), before="shutting-down", after=TERMINATED)
    wait(ec2, target=TERMINATED)
    asked = [len(ids) for _, ids in ec2.describes]
    assert asked[0] == polling.FULL and asked == sorted(asked, reverse=True)
    assert asked[-1] <= 5  # the describe that sees the end asks for the last few only
    # ... and EC2 returns only those not terminated yet (none, for the last describe).
    assert all(TERMINATED not in states and states for states in ec2.asked_states)
    terminated_before = {i for i, at in ec2.ready_at.items() if at <= ec2.describes[-2][0]}
    assert not terminated_before & set(ec2.describes[-1][1])


def test_a_node_that_got_there_and_left_fails_the_wait(scripted):
    # i-0000 runs at 18 s and shuts down at 40 s, before the last one runs (45 s): the loop
    # that described only the ids not yet running never looked at it again and returned it.
    ec2 = scripted(spread(10), turns={"i-0000": (40.0, "shutting-down")})
    with pytest.raises(EssError, match=r"1 of 10 node\(s\) went shutting-down instead of running: i-0000"):
        wait(ec2, fail_states=("shutting-down", TERMINATED))
    assert 40.0 <= ec2.now < 45.0 + 1.0
    assert all(moment >= polling.budget_at(k) for k, (moment, _) in enumerate(ec2.describes))


def test_a_node_that_got_there_and_left_is_waited_for_again(scripted):
    # Without it among fail_states it is not done: the wait runs into its deadline naming it.
    ec2 = scripted(spread(10), turns={"i-0000": (40.0, "stopping")})
    with pytest.raises(EssError, match=r"1 of 10 node\(s\) not running after 120s \(i-0000\)"):
        wait(ec2, timeout=120)


def test_a_node_already_there_costs_one_describe_and_no_sleep(scripted):
    ec2 = scripted({"i-1": 0.0, "i-2": 0.0})
    wait(ec2)
    assert len(ec2.describes) == 1 and ec2.sleeps == []


def test_the_deadline_still_fires_and_names_the_late(scripted):
    ec2 = scripted({"i-1": 10.0, "i-2": 1e9})
    with pytest.raises(EssError, match=r"1 of 2 node\(s\) not running after 120s \(i-2\)"):
        wait(ec2, timeout=120)
    assert ec2.now == pytest.approx(120, abs=1)
    assert all(moment >= min(polling.budget_at(k), 120) for k, (moment, _) in enumerate(ec2.describes))
    assert max(ec2.sleeps) <= polling.MAX_DELAY + polling.SEARCH_MAX  # a stuck node is still looked at


def test_the_deadline_names_ten_of_many_late_nodes_and_counts_the_rest(scripted):
    ec2 = scripted({f"i-{k:02d}": 1e9 for k in range(25)})
    with pytest.raises(EssError) as raised:
        wait(ec2, timeout=60)
    message = str(raised.value)
    assert "25 of 25 node(s) not running after 60s (i-00, i-01," in message
    assert "i-09, ... (15 more))" in message and "i-10" not in message


def test_a_node_that_dies_while_the_others_boot_fails_the_wait(scripted):
    ec2 = scripted(spread(10), turns={"i-0003": (20.0, TERMINATED)})
    with pytest.raises(EssError, match=r"1 of 10 node\(s\) went terminated instead of running: i-0003 terminated"):
        wait(ec2, fail_states=(TERMINATED,))
    assert ec2.now < 45  # it did not wait for the rest


def test_an_instance_ec2_forgot_counts_as_terminated(scripted):
    ec2 = scripted({"i-1": 5.0, "i-2": 30.0}, before="shutting-down", after=None)
    found = wait(ec2, target=TERMINATED)
    assert found == {}  # neither is described any more: both are gone, so both are done
    assert ec2.describes[-1][0] >= 30.0


def test_terminate_waits_for_shutting_down_with_the_same_loop(scripted):
    ec2 = scripted(spread(100, 30, 60), before="shutting-down", after=TERMINATED)
    wait(ec2, target=TERMINATED)
    assert ec2.describes[-1][0] - ec2.last_ready <= 1.0
    assert len(ec2.describes) <= old_describes(ec2.last_ready)


def test_each_describe_logs_a_line_and_updates_progress(scripted, caplog):
    ec2 = scripted(spread(4, 2, 8))
    out = io.StringIO()
    with caplog.at_level(logging.DEBUG, logger="ess_ec2.polling"):
        polling.poll(
            None,  # type: ignore[arg-type]
            sorted(ec2.ready_at),
            RUNNING,
            600,
            Progress(out, tty=False),
            "running",
            sleep=ec2.sleep,
            clock=lambda: ec2.now,
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("poll running:")]
    assert len(lines) == len(ec2.describes)
    assert lines[0].startswith("poll running: 0/4 running; waiting for i-0000 pending")
    assert lines[-1] == "poll running: 4/4 running; waiting for nothing"
    assert "running" in out.getvalue() and "4/4" in out.getvalue()


def test_forecast_of_an_even_spread_is_its_end():
    forecast = polling.Forecast(100)
    for moment, done in [(10.0, 0), (20.0, 25), (24.0, 35)]:
        forecast.add(moment, done)
    # 2.5 nodes a second from 10 s: the 100th at 50 s, the expected last of 100 at 49.6 s.
    assert forecast.last_done() == pytest.approx(10 + (100 - 100 / 101) / 2.5)
    assert polling.Forecast(10).last_done() is None


def test_on_moto_with_boot_latency_the_backend_waits_as_promised(moto_endpoint, tmp_path, monkeypatch):
    """The whole chain: moto under bench/moto_latency.py (each instance pending 15-45 s on a fake
    clock, which the backend sleeps on too), Ec2Backend.wait, the calls counted at the client."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from moto_latency import LatencyModel

    world = make_world(tmp_path, monkeypatch)
    now = [1000.0]
    world.backend.clock = lambda: now[0]
    world.backend.sleep = lambda seconds: now.__setitem__(0, now[0] + seconds)
    with LatencyModel(seed=3, clock=lambda: now[0]) as model:
        nodes = world.launch(30)
        assert {n.state for n in nodes} == {"pending"}
        started = now[0]
        settings = world.settings()
        world.calls.reset()
        ready = world.backend.wait(settings, nodes, world.progress(), timeout=600)
        last = model.last_arrival([n.id for n in nodes], RUNNING) - started
    waited = now[0] - started
    assert {n.state for n in ready} == {RUNNING} and all(n.public_ip for n in ready)
    assert last <= waited  # it returned only once every node really ran
    describes = world.calls.count("DescribeInstances")
    assert describes <= old_describes(last)
    old_seen = next(polling.budget_at(k) for k in range(100) if polling.budget_at(k) >= last)
    assert waited < old_seen  # the old back-off (without jitter) would still be asleep


# -- guided by earlier waits (wait_times.py) -------------------------------------------------


def history(draw: random.Random, low: float, high: float, count: int = 100) -> WaitTimes:
    """Earlier waits' moments as a wait of these records them: uniform ``low``-``high``."""
    return WaitTimes("r t running", [(m - 0.25, m + 0.25) for m in (draw.uniform(low, high) for _ in range(count))])


def guided_lags(scripted, seed: int, real: tuple[float, float], past: tuple[float, float] | None, n: int = 10):
    """(lags, kept histories) of 61 waits for ``n`` nodes pending uniform ``real``, each with a
    fresh history drawn from ``past`` (None: no history); every describe kept to the budget."""
    draw, past_draw = random.Random(seed), random.Random(seed + 1)
    lags, kept = [], []
    for _ in range(61):
        times = history(past_draw, *past) if past else None
        ec2 = scripted({f"i-{k}": draw.uniform(*real) for k in range(n)})
        wait(ec2, times=times)
        moments = [moment for moment, _ in ec2.describes]
        assert all(moment >= polling.budget_at(k) for k, moment in enumerate(moments)), moments
        lags.append(ec2.describes[-1][0] - ec2.last_ready)
        kept.append(times)
    return sorted(lags), kept


def test_with_a_fitting_history_ten_nodes_are_noticed_within_a_second(scripted):
    """Issue 17's goal at N=10, reached with earlier waits of the same kind: the same draws
    without them give a median over a second (the line through 10 counts is a guess)."""
    guided, kept = guided_lags(scripted, 23, (15, 45), (15, 45))
    alone, _ = guided_lags(scripted, 23, (15, 45), None)
    assert guided[30] <= 1.0 < alone[30], (guided[30], alone[30])
    assert guided[54] <= 2.5  # p90
    assert sum(not t.fits for t in kept) <= 3  # a fitting history is almost never dropped
    assert all(len(t.seen) == 10 for t in kept)


def test_each_node_is_recorded_with_the_describes_around_its_moment(scripted):
    ec2 = scripted({f"i-{k}": moment for k, moment in enumerate([0.0, 3.0, 17.5, 30.0, 33.0])})
    times = WaitTimes("r t running")
    wait(ec2, times=times)
    asked = [moment for moment, _ in ec2.describes]  # when each describe was sent
    brackets = list(zip(asked, asked[1:], strict=False))
    expected = []
    for ready in sorted(ec2.ready_at.values())[1:]:  # the one there at the first describe: not timed
        expected.append(next((low, high) for low, high in brackets if ready < high + ROUND_TRIP / 2))
    assert times.seen == [(pytest.approx(low, abs=0.01), pytest.approx(high, abs=0.01)) for low, high in expected]


def test_a_history_slower_than_the_wait_is_found_at_the_first_search(scripted):
    """Nodes up in 5-8 s against a history of 15-45 s: the 10 s describe still comes, and
    its count (all there where the history had none) drops the history, so it is replaced."""
    lags, kept = guided_lags(scripted, 29, (5, 8), (15, 45))
    assert lags[-1] <= 10.0 - 5.0 + 0.2, lags
    assert not any(t.fits for t in kept)


def test_waits_in_a_row_learn_from_their_own_brackets(scripted):
    """What a user gets: each wait keeps what it saw (as the backend does) and the next uses
    it. The brackets must be read as brackets: their middles smeared a 20-24 s boot out to
    the polls' own gaps (10-30 s), and 1 wait in 5 then noticed the end 5-6 s late."""
    for (low, high), median, p90 in [((20, 24), 0.6, 1.2), ((15, 45), 1.0, 3.0)]:
        draw, kept, lags = random.Random(37), [], []
        for _ in range(80):
            times = WaitTimes("r t running", list(kept))
            ec2 = scripted({f"i-{k}": draw.uniform(low, high) for k in range(10)})
            wait(ec2, times=times)
            moments = [moment for moment, _ in ec2.describes]
            assert all(moment >= polling.budget_at(k) for k, moment in enumerate(moments)), moments
            lags.append(ec2.describes[-1][0] - ec2.last_ready)
            kept = wait_times.merged(kept, times)
        lags = sorted(lags[5:])  # once the first waits have kept ENOUGH
        assert lags[len(lags) // 2] <= median and lags[int(len(lags) * 0.9)] <= p90, (low, high, lags)


def test_a_history_faster_than_the_wait_is_dropped_and_the_counts_take_over(scripted):
    """Nodes up in 30-60 s against a history of 15-45 s: the counts are unlikely under it,
    so it is dropped (and will be replaced); the wait then does as well as one without."""
    guided, kept = guided_lags(scripted, 31, (30, 60), (15, 45))
    alone, _ = guided_lags(scripted, 31, (30, 60), None)
    assert sum(not t.fits for t in kept) >= 55
    assert guided[30] <= alone[30] + 1.5 and guided[54] <= alone[54] + 5.0, (guided, alone)


def test_a_history_is_not_used_for_many_nodes_or_before_it_has_enough(scripted):
    """Above FEW nodes the counts measure the end better; under ENOUGH moments it is noise."""
    for n, times in [(polling.FEW + 1, history(random.Random(1), 15, 45)), (10, history(random.Random(1), 15, 45, 19))]:
        alone = scripted(spread(n))
        wait(alone)
        guided = scripted(spread(n))
        wait(guided, times=times)
        assert guided.describes == alone.describes
        assert len(times.seen) == n


def test_on_moto_each_wait_keeps_its_times_and_the_next_wait_of_the_kind_uses_them(
    moto_endpoint, tmp_path, monkeypatch
):
    """Ec2Backend.wait and terminate record under ess's state folder, per region, type and
    target; a damaged file does not fail the wait, which then starts it afresh."""
    from ess.paths import state_dir
    from ess_ec2 import wait_times

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from moto_latency import LatencyModel

    world = make_world(tmp_path, monkeypatch)
    now = [1000.0]
    world.backend.clock = lambda: now[0]
    world.backend.sleep = lambda seconds: now.__setitem__(0, now[0] + seconds)
    path = state_dir() / wait_times.FILE_NAME
    path.write_text("{damaged")
    loaded: list[wait_times.WaitTimes] = []
    real_load = wait_times.load
    monkeypatch.setattr(wait_times, "load", lambda *a: loaded.append(real_load(*a)) or loaded[-1])
    with LatencyModel(seed=5, clock=lambda: now[0]) as model:
        for _ in range(4):
            nodes = world.launch(8)
            world.backend.wait(world.settings(), nodes, world.progress(), timeout=600)
        instance_type = nodes[0].instance_type
        world.backend.terminate(world.settings(), nodes, world.progress())
        assert model.last_arrival([n.id for n in nodes], "terminated") <= now[0]
    kept = json.loads(path.read_text())
    running, terminated = f"us-east-1 {instance_type} running", f"us-east-1 {instance_type} terminating"
    assert sorted(kept) == [running, terminated]
    assert len(kept[running]) == 32 and len(kept[terminated]) == 8
    # Each node was pending 15-45 s, so each bracket overlaps that.
    assert all(0 <= after < 45 and by > 15 and after < by for after, by in kept[running])
    assert [(t.key, len(t.past)) for t in loaded] == [
        (running, 0),
        (running, 8),
        (running, 16),
        (running, 24),
        (terminated, 0),
    ]
    assert loaded[3].usable() and not loaded[2].usable()


def test_debug_says_which_wait_times_a_wait_uses(moto_endpoint, tmp_path, monkeypatch, caplog):
    world = make_world(tmp_path, monkeypatch)
    nodes = world.launch(2)
    with caplog.at_level(logging.DEBUG, logger="ess_ec2"):
        world.backend.wait(world.settings(), nodes, world.progress(), timeout=600)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("wait times ")]
    assert said == [f"wait times us-east-1 {nodes[0].instance_type} running: 0 kept (fewer than 20: not used)"]


def test_a_wait_for_thousands_of_nodes_with_wait_times_ends_normally(scripted):
    """Wait times are used only up to FEW, but every count is checked against them. A count
    of 1,000 of 2,000 (a stop or terminate where half were there already) overflowed that
    check and failed the wait."""
    ready = spread(2_000) | {f"i-{k:04d}": 0.0 for k in range(1_000)}
    ec2 = scripted(ready)
    times = history(random.Random(3), 15, 45)
    found = wait(ec2, times=times)
    assert len(found) == 2_000 and len(times.seen) == 1_000  # those there at once are not timed
    assert not times.fits  # half there at 0 s, where the history had none
