"""Waiting for instances to reach a state: describe when readiness is likely, not on a fixed back-off.

The old loop slept 1 s, 1.5 s, 2.25 s ... up to 15 s between describes, so a node ready just
after a poll was noticed up to 15 s late. Now that back-off is only the *budget*: the k-th
describe of a wait never comes before the old loop's k-th would have (without its jitter),
so by any moment this loop has made no more DescribeInstances calls than the old one.
Within that budget the calls go where they tell most:

* until the first node is in the target state, a sparse search: at 0, 10 and 22.5 s, then
  every 10 s (EC2 needs 10-40 s to boot, 30-60 s to terminate, minutes to stop: the old
  first polls at 1, 2.5, 4.75 s were mostly wasted, and every call saved here is one more
  near the end, where the budget is tight: it allows 8 calls before 47 s, then one per 15 s);
* once some are, each describe gives one more point of the curve "how many are done by
  when"; a straight line through those points says when the last one will be;
* with many nodes (over FEW = 30) that line is a measurement: the loop comes back a
  margin before its forecast (shrinking with the square root of how many the line rose
  by) to correct it, then polls densely around the forecast;
* with few nodes it is a guess (3 of 10 done is one or two off either way; the last of
  10 comes 0-9 s after where the line says at 15-45 s boots), so the end is a window
  around the forecast (a fifth of the time from the first done to it, 3-8 s either side):
  the loop comes straight to the window's start (a correction on the way would cost a
  call the end needs) and spreads the calls the budget allows until the window's end
  evenly over the rest of it, 1-3 s apart. Over the benchmark's draws at N=10 this
  halves the median lag (2.7 to 1.4 s), short of the 1 s issue 17 asks for;
* with few nodes and earlier waits of the same kind (wait_times.py: region, instance type,
  target), the window comes from those instead: from when the last of the nodes still out
  is there with chance EARLY to when with chance LATE, given how long the wait has run.
  That holds while the counts fit them; the first search moment (10 s) still comes, so a
  wait much faster than the history is seen there. At N=10 on the benchmark's model, waits
  in a row each keeping what it saw: 0.7 s at the median, p90 2.3 s;
* up to 100 nodes (FULL) every describe asks for all of them: that is one call either way,
  and a node that got there and left again (running, then shutting-down) is noticed: it
  fails the wait if its new state is one of ``fail_states``, else it is waited for again.
  Above 100 only the ids not yet in the target state are described again (smaller calls
  at 1,000 nodes; such a node is not noticed there). A wait for ``terminated`` asks only
  for those at any size, and EC2 returns only the ones not terminated yet (a state
  filter): nothing leaves that state, and the last describe, which decides how soon the
  end is noticed, then returns next to nothing (EC2 answers in time that grows with what
  it returns: 6 ms an instance on moto). What a node looked like when it reached the
  target is what is returned (nothing for a terminate wait).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ess import log as ess_log
from ess.errors import EssError
from ess.models import PENDING, RUNNING, SHUTTING_DOWN, STOPPED, STOPPING, TERMINATED
from ess.progress import Progress

from . import client as aws_client
from .wait_times import WaitTimes

log = logging.getLogger(__name__)

#: The old back-off (first delay, growth factor, ceiling, seconds): now the call budget.
FIRST_DELAY, GROWTH, MAX_DELAY = 1.0, 1.5, 15.0
#: Until the first node is done: describe at these moments, then every SEARCH_MAX.
SEARCH, SEARCH_MAX = (10.0, 22.5), 10.0
#: After the first node is done: probe this soon to see how fast the rest follow.
PROBE = 3.0
#: Around the forecast end: how far apart the dense polls are, and the shortest pause.
DENSE, SHORTEST = 1.0, 0.25
FAR = 0.7
FAR_MAX = 20.0
#: Up to FEW nodes the last one is looked for in a window either side of the line's forecast:
#: WIN of the time from the first node done to the forecast, WIN_MIN to WIN_MAX seconds;
#: GAP_MAX is the widest pause between the polls in it.
FEW, WIN, WIN_MIN, WIN_MAX, GAP_MAX = 30, 0.2, 3.0, 8.0, 3.0
#: With earlier waits' times (up to FEW nodes): the window is from the moment the last node
#: is there with chance EARLY to the one with chance LATE.
EARLY, LATE = 0.1, 0.99
#: Up to this many ids every describe asks for all of them (one call either way).
FULL = 100
#: What a terminate wait asks EC2 to return (an id it leaves out is terminated).
NOT_TERMINATED = (PENDING, RUNNING, SHUTTING_DOWN, STOPPING, STOPPED)
#: The state of an id EC2 does not know yet (InvalidInstanceID.NotFound right after launch).
NOT_VISIBLE = "not visible yet"


def budget_at(call: int) -> float:
    """Seconds into the wait before which describe number ``call`` (0 = the first) is not made.

    That is when the old back-off made it (without jitter, which only made it earlier).
    """
    moment, delay = 0.0, FIRST_DELAY
    for _ in range(call):
        moment += delay
        delay = min(delay * GROWTH, MAX_DELAY)
    return moment


@dataclass
class Forecast:
    """How many of ``total`` nodes were done at each describe, and when the last will be."""

    total: int
    #: (seconds into the wait, nodes done) at each describe.
    seen: list[tuple[float, int]] = field(default_factory=list)

    def add(self, elapsed: float, done: int) -> None:
        self.seen.append((elapsed, done))

    @staticmethod
    def _rate(points: list[tuple[float, int]]) -> float | None:
        """Nodes per second of the least-squares line through ``points``; None if it does not rise."""
        if len(points) < 2:
            return None
        mean_t = sum(t for t, _ in points) / len(points)
        mean_d = sum(d for _, d in points) / len(points)
        spread = sum((t - mean_t) ** 2 for t, _ in points)
        if spread <= 0:
            return None
        rate = sum((t - mean_t) * (d - mean_d) for t, d in points) / spread
        return rate if rate > 0 else None

    def first_done(self) -> int:
        """How many were done at the first describe that found any done."""
        return next((done for _, done in self.seen if done > 0), 0)

    def last_done(self) -> float | None:
        """Seconds into the wait when the last node will be done, or None without two points.

        A least-squares line through the describes that found some (but not all) done, and
        through the last one that found none, as nodes finish at a roughly steady rate;
        a line that does not rise (nothing new) gives no forecast.
        """
        points = [(t, done) for t, done in self.seen if done > 0]
        rate = self._rate(points)
        zeros = [t for t, done in self.seen if done == 0]
        if rate is None and points and zeros:
            # Not enough rise yet: the first were done some time after the last describe
            # that found none; half way is the best guess.
            points.insert(0, ((zeros[-1] + points[0][0]) / 2, 0))
            rate = self._rate(points)
        if rate is None:
            return None
        mean_t = sum(t for t, _ in points) / len(points)
        mean_d = sum(d for _, d in points) / len(points)
        # The line reaches ``total`` where the spread of finish times ends; the last of n
        # nodes spread evenly over it is expected n/(n+1) of the way, at count n - n/(n+1).
        last = self.total - self.total / (self.total + 1)
        return mean_t + (last - mean_d) / rate


def next_describe(forecast: Forecast, made: int, elapsed: float, times: WaitTimes | None = None) -> float:
    """Seconds into the wait for the next describe, given ``made`` describes so far."""
    done = forecast.seen[-1][1] if forecast.seen else 0
    if times is not None and forecast.total <= FEW and times.usable():
        # Earlier waits say where the last node will be, better than this wait's few counts:
        # look in the window they give for the nodes still out, as it stands now.
        waiting = forecast.total - done
        early, late = times.last_by(elapsed, waiting, EARLY), times.last_by(elapsed, waiting, LATE)
        if early is not None and late is not None:
            wanted = _in_window(early, late, made, elapsed)
            if done == 0 and made == 1:
                # The first search moment still comes (early, it costs the budget little):
                # a wait much faster than the history is found there, not at its window.
                wanted = min(wanted, SEARCH[0])
            return max(wanted, budget_at(made), elapsed + SHORTEST)
    if done == 0:
        # Nothing done yet: at the SEARCH moments, then every SEARCH_MAX.
        wanted = SEARCH[made - 1] if made <= len(SEARCH) else elapsed + SEARCH_MAX
    else:
        last = forecast.last_done()
        if last is None:
            wanted = elapsed + PROBE
        elif forecast.total <= FEW:
            # Few nodes: the line is a rough guess (a count of 3 of 10 is off by one or two
            # either way), so the end is a window around it rather than a moment: come
            # straight to the window's start (a correction there costs a call the end needs),
            # then spread the calls the budget allows before the window's end evenly over
            # what is left of it, DENSE to GAP_MAX apart.
            start = next(t for t, d in forecast.seen if d > 0)
            width = min(max(WIN_MIN, WIN * (last - start)), WIN_MAX)
            wanted = _in_window(last - width, last + width, made, elapsed)
        else:
            # Counts are noisy (a line through 3 nodes is a guess, through 300 a
            # measurement): stay a margin before the forecast that shrinks with the square
            # root of how many the line rose by.
            lead = last - elapsed
            rose = max(done - forecast.first_done(), 1)
            margin = max(DENSE / 2, lead * FAR / rose**0.5)
            # ... but no wider than the describes the budget still allows before it can cover.
            left = sum(1 for k in range(made, made + 20) if budget_at(k) <= last + DENSE)
            margin = min(margin, max(left - 2, 1) * DENSE)
            # Far from the end: come back a margin before it and correct the line then;
            # near or past it: stragglers come soon.
            wanted = elapsed + (min(lead - margin, FAR_MAX) if lead > margin + DENSE else DENSE)
    return max(wanted, budget_at(made), elapsed + SHORTEST)


def _in_window(start: float, end: float, made: int, elapsed: float) -> float:
    """The next describe for an end expected between ``start`` and ``end``.

    Far from the window: come straight to its start (a correction on the way costs a call
    the end needs), at most FAR_MAX ahead. In it: spread the calls the budget allows before
    its end evenly over what is left of it, DENSE to GAP_MAX apart.
    """
    lead = start - elapsed
    if lead > DENSE:
        return elapsed + min(lead, FAR_MAX)
    calls = sum(1 for k in range(made, made + 60) if budget_at(k) <= end)
    return elapsed + min(max((end - elapsed) / max(calls, 1), DENSE), GAP_MAX)


def poll(
    aws: aws_client.Aws,
    ids: list[str],
    target: str,
    timeout: float,
    progress: Progress,
    label: str,
    fail_states: tuple[str, ...] = (),
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    times: WaitTimes | None = None,
) -> dict[str, Any]:
    """Describe ``ids`` (batched) until all are in ``target``; EssError at the deadline.

    An id EC2 does not know counts as terminated in a wait for ``terminated`` (it was, long
    enough ago to vanish); in any other wait it is :data:`NOT_VISIBLE` and waited for: EC2 is
    eventually consistent, so a describe moments after RunInstances may not know the new ids
    yet. Counting those as terminated failed a healthy launch and rolled it back.
    Up to FULL ids each describe asks for all, so a node that reached ``target`` and left it
    again is waited for again (or fails the wait, if it went to one of ``fail_states``);
    above FULL, and for ``terminated`` at any size, each describe asks only for the ids not
    yet in ``target``.
    With ``times`` (earlier waits of the same kind), describes go where those say the last
    node will be while this wait's counts fit them, and the moment each node got there is
    added to ``times.seen`` for the caller to keep.
    """
    started = clock()
    deadline = started + timeout
    forecast = Forecast(len(ids))
    arrived: dict[str, Any] = {}  # what each node looked like when it reached the target (or None)
    made = 0
    # Up to FULL ids, one describe asks for all of them at no extra call, and a node that got
    # there and left again (running, then shutting-down) is seen; above, only the rest.
    # Nothing leaves ``terminated``, so a terminate wait asks only for the rest at any size,
    # and EC2 returns only those not terminated yet: it answers in time that grows with the
    # instances it returns (moto: 6 ms each, 0.6 s for 100; at 1,000 nodes the describe that
    # saw the end returned hundreds, 2.5 s), and that describe is part of the lag. An id EC2
    # leaves out is then terminated; in any other wait it is one EC2 does not know yet.
    terminating = target == TERMINATED
    everyone_again = len(ids) <= FULL and not terminating
    returned = NOT_TERMINATED if terminating else ()
    unknown = TERMINATED if terminating else NOT_VISIBLE
    progress.stage(label, len(ids))
    before = 0.0  # when the previous describe read the states
    timed: set[str] = set()  # the nodes whose moment is in ``times.seen``
    while True:
        waiting = ids if everyone_again else [i for i in ids if i not in arrived]
        asked = clock() - started  # what this describe says was true about then
        with aws_client.translated(aws, "describe instances"):
            found = aws_client.describe(aws, waiting, returned)
        made += 1
        states = {i: (found[i]["State"]["Name"] if i in found else unknown) for i in waiting}
        for i, state in states.items():
            if state != target:
                arrived.pop(i, None)  # it left the target: waited for again
            elif i not in arrived:
                arrived[i] = found.get(i)  # None: EC2 left it out (a terminate wait's terminated)
                if times is not None and i not in timed:
                    timed.add(i)
                    if made > 1:  # there at the first describe: it says nothing of how long it takes
                        times.record(before, asked)
        before = asked
        everyone = {i: target for i in ids} | states
        done = sum(1 for s in everyone.values() if s == target)
        log.debug("poll %s: %d/%d %s; waiting for %s", label, done, len(ids), target, ess_log.pending(everyone, target))
        progress.update(done)
        if times is not None:  # the last count too: a wait far faster than its history replaces it
            times.check(asked, done, len(ids))
        if done == len(ids):
            progress.finish()
            return {i: record for i, record in arrived.items() if record is not None}
        failed = {i: s for i, s in states.items() if s in fail_states}
        if failed:
            progress.finish()
            reasons = sorted(
                {found[i].get("StateReason", {}).get("Message", s) for i, s in failed.items() if i in found}
                or set(failed.values())
            )
            went = "/".join(sorted(set(failed.values())))
            raise EssError(
                f"EC2: {len(failed)} of {len(ids)} node(s) went {went} "
                f"instead of {target}: {'; '.join(reasons)[:300]} "
                f"({ess_log.some(sorted(failed))})"
            )
        now = clock()
        remaining = deadline - now
        if remaining <= 0:
            progress.finish()
            late = sorted(i for i, s in states.items() if s != target)
            unknown_ids = sum(1 for i in late if states[i] == NOT_VISIBLE)
            raise EssError(
                f"EC2: {len(late)} of {len(ids)} node(s) not {target} after "
                f"{timeout:.0f}s ({ess_log.some(late)})"
                + (f"; EC2 never knew {unknown_ids} of them" if unknown_ids else "")
                + " (check them in the EC2 console; `ess instance ec2 list` shows them)"
            )
        forecast.add(asked, done)
        pause = next_describe(forecast, made, asked, times) - (now - started)
        sleep(min(remaining, max(pause, SHORTEST)))
