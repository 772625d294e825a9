"""How long instances took to get somewhere in earlier waits: where the next wait looks first.

A wait for a few nodes cannot tell from its own counts when the last one will be: 3 of 10
done is one or two off either way, and the last of 10 nodes booting in 15-45 s comes 0-9 s
after the line through the counts says. Earlier waits can: the same instance type in the
same region boots in much the same spread of times. So ess keeps, per region, instance
type(s) and kind of wait (launch, start, stop, terminate), when each of the last KEEP nodes
got there, and the next such wait spends its describes where those say the last node will
be (:func:`ess_ec2.polling.next_describe`).

The file is advice, never a reason to fail: missing, damaged, locked or unwritable, the
wait runs as it would without it (one debug line). A history that no longer fits (AWS got
slower, another instance type behind the same name) is found by the wait's own counts: the
moment they are unlikely under it (a binomial tail under ALPHA either way), the wait drops
it, and what this wait saw replaces it.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ess.errors import EssError
from ess.files import atomic_write, file_lock

log = logging.getLogger(__name__)

#: The file under ess's state folder.
FILE_NAME = "ec2-wait-times.json"
#: Brackets kept per key (the most recent), and how many a history needs before it is used.
KEEP, ENOUGH = 100, 20
#: Keys kept in the file (each a region, instance types and kind of wait): the most recently saved.
KEYS = 64
#: How unlikely the wait's count may be under the history before the history is dropped.
ALPHA = 1e-3
#: Seconds to wait for another ess command saving the file before giving up on saving.
LOCK_WAIT = 2.0


def key_of(region: str, instance_types: Iterable[str | None], wait: str) -> str:
    """The history a wait belongs to: region, the instance type(s) it waits for, and which
    wait it is (``running`` after a launch, ``starting``, ``stopping``, ``terminating``: a
    start boots from a stopped disk, not like a launch)."""
    types = ",".join(sorted({t or "?" for t in instance_types})) or "?"
    return f"{region} {types} {wait}"


@dataclass
class WaitTimes:
    """Earlier waits' moments for one key, and what this wait sees.

    A wait does not see the moment a node got there, only the describes around it: the
    node was not there at one and was at the next. So each moment is kept as that bracket
    (seconds into the wait), and the share of nodes there by a moment is estimated from all
    the brackets at once (:func:`estimate`): a wide bracket (10 s to 26 s, a jump over a
    window) then counts where the narrow ones say nodes get there, not in its middle. Midpoints
    fed the polls' own gaps back into the history: it smeared a 20-24 s boot out to 30 s, and
    the next window came late.
    """

    key: str
    #: Brackets (after, by) of earlier waits: each node got there after ``after``, by ``by``.
    past: list[tuple[float, float]] = field(default_factory=list)
    #: Brackets of this wait, in the order they were seen.
    seen: list[tuple[float, float]] = field(default_factory=list)
    #: False once this wait's counts were unlikely under ``past``.
    fits: bool = True
    #: The estimate: moments and the share of nodes there by each, both rising.
    _curve: tuple[list[float], list[float]] | None = field(default=None, repr=False)

    def usable(self) -> bool:
        return self.fits and len(self.past) >= ENOUGH

    def curve(self) -> tuple[list[float], list[float]]:
        if self._curve is None:
            self._curve = estimate(self.past)
        return self._curve

    def share(self, moment: float) -> float:
        """The share of earlier nodes there by ``moment`` (linear between the curve's points)."""
        moments, shares = self.curve()
        if moment <= moments[0]:
            return 0.0
        if moment >= moments[-1]:
            return 1.0
        k = bisect.bisect_right(moments, moment)  # moments[k-1] <= moment < moments[k]
        low, high = moments[k - 1], moments[k]
        return shares[k - 1] + (shares[k] - shares[k - 1]) * (moment - low) / (high - low)

    def moment(self, share: float) -> float:
        """The moment by which ``share`` of earlier nodes were there (inverse of :meth:`share`)."""
        moments, shares = self.curve()
        share = min(max(share, 0.0), 1.0)
        k = min(max(bisect.bisect_left(shares, share), 1), len(shares) - 1)  # shares[k-1] < share <= shares[k]
        rise = shares[k] - shares[k - 1]
        return moments[k - 1] + (moments[k] - moments[k - 1]) * ((share - shares[k - 1]) / rise if rise > 0 else 1.0)

    def last_by(self, elapsed: float, waiting: int, chance: float) -> float | None:
        """The moment by which the ``waiting`` nodes not there at ``elapsed`` all are, with
        ``chance``; None if earlier waits had every node there by ``elapsed`` (no fit).

        Each is there by ``u`` with chance (F(u) - F(t)) / (1 - F(t)) given it was not at t,
        so all of them with that to the power ``waiting``.
        """
        before = self.share(elapsed)
        if before >= 1.0:
            return None
        return self.moment(before + (1.0 - before) * chance ** (1.0 / max(waiting, 1)))

    def check(self, elapsed: float, done: int, total: int) -> bool:
        """Whether ``done`` of ``total`` there at ``elapsed`` is likely under the history.

        Each node is there with chance F(elapsed), kept 1/(n+1) away from 0 and 1 (n earlier
        moments cannot show a chance finer than that); once a count is unlikely either way
        the history stays dropped for the wait.
        """
        if self.fits and len(self.past) >= ENOUGH:
            edge = 1.0 / (len(self.past) + 1)
            chance = min(max(self.share(elapsed), edge), 1.0 - edge)
            if _at_most(done, total, chance) < ALPHA or _at_most(total - done, total, 1.0 - chance) < ALPHA:
                log.debug("wait times %s: %d/%d there at %.1fs is unlikely under them", self.key, done, total, elapsed)
                self.fits = False
        return self.fits

    def record(self, after: float, by: float) -> None:
        """A node of this wait got there after ``after`` and by ``by`` seconds into it."""
        self.seen.append((round(after, 2), round(max(by, after + 0.01), 2)))


#: Rounds of the self-consistency estimate (each is linear in the brackets; 200 take ~10 ms).
ROUNDS = 200


def estimate(brackets: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The share of nodes there by each bracket end: a curve through (moment, share) points.

    Each node got there somewhere in its bracket; which share of nodes got there in each
    piece between bracket ends is the self-consistent (Turnbull) estimate: start even, then
    repeatedly share each node among the pieces of its bracket in proportion to the current
    estimate, until nothing moves. Within a piece the curve is a straight line.
    """
    ends = sorted({t for bracket in brackets for t in bracket})
    if len(ends) < 2:
        return [0.0, 1.0], [0.0, 1.0]
    pieces = len(ends) - 1
    # Each bracket covers the pieces first .. last - 1 (its ends are among ``ends``).
    spans = [(bisect.bisect_left(ends, after), bisect.bisect_left(ends, by)) for after, by in brackets]
    mass = [0.0] * pieces
    for first, last in spans:
        for k in range(first, last):
            mass[k] += 1.0 / (last - first)
    total = float(len(spans))
    mass = [m / total for m in mass]
    for _ in range(ROUNDS):
        below = [0.0]
        for m in mass:
            below.append(below[-1] + m)
        weight = [0.0] * (pieces + 1)  # a running sum: each bracket adds 1/its mass over its pieces
        for first, last in spans:
            inside = below[last] - below[first]
            if inside > 0:
                weight[first] += 1.0 / inside
                weight[last] -= 1.0 / inside
        running, moved = 0.0, 0.0
        for k in range(pieces):
            running += weight[k]
            new = mass[k] * running / total
            moved = max(moved, abs(new - mass[k]))
            mass[k] = new
        if moved < 1e-6:
            break
    shares = [0.0]
    for m in mass:
        shares.append(min(shares[-1] + m, 1.0))
    shares[-1] = 1.0
    return ends, shares


def merged(earlier: list[tuple[float, float]], times: WaitTimes) -> list[tuple[float, float]]:
    """What is kept after ``times``' wait: the earlier brackets (none if they no longer fit),
    then a sample of this wait's, the last KEEP of all."""
    return ((earlier if times.fits else []) + _sample(times.seen))[-KEEP:]


def _sample(seen: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most KEEP of a wait's brackets, spread over the order they were seen, in an order
    that does not follow it.

    ``seen`` runs from the first node there to the last: its last KEEP (what trimming the
    file from the front keeps) would be a 1,000-node wait's 100 latest nodes, and a history
    that says every node takes as long as the slowest. Shuffled (the same way every time),
    the few of an old wait that the next save trims are any of its nodes, not its earliest.
    """
    import random

    step = max(len(seen) / KEEP, 1.0)
    sample = [seen[int(k * step)] for k in range(min(len(seen), KEEP))]
    random.Random(len(sample)).shuffle(sample)
    return sample


def _sane(bracket: object) -> bool:
    """A bracket a wait could have recorded (the file may have been edited or damaged)."""
    if not isinstance(bracket, list) or len(bracket) != 2:
        return False
    after, by = bracket
    numbers = all(isinstance(t, int | float) and not isinstance(t, bool) for t in bracket)
    return numbers and 0 <= after < by < 86400


def _at_most(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), 0 < p < 1.

    Each term is summed from its logarithm: ``math.comb(n, j)`` is past a float's range from
    n = 1,030 on, and converting it raised OverflowError in a wait for 2,000 nodes.
    """
    if k >= n:
        return 1.0
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    terms = (log_n - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q for j in range(k + 1))
    return min(sum(math.exp(t) for t in terms), 1.0)


def load(folder: Path, key: str) -> WaitTimes:
    """The history for ``key`` under ``folder`` (empty if the file is missing or damaged)."""
    path = folder / FILE_NAME
    try:
        moments = json.loads(path.read_text()).get(key, []) if path.exists() else []
        past = [(float(m[0]), float(m[1])) for m in moments if _sane(m)]
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        log.debug("wait times: %s not used (%s)", path, exc)
        past = []
    return WaitTimes(key, past)


def save(folder: Path, times: WaitTimes) -> None:
    """Add what this wait saw to the history (replacing it if it no longer fit); never raises."""
    if not times.seen:
        return
    path = folder / FILE_NAME
    try:
        with file_lock(Path(f"{path}.lock"), timeout=LOCK_WAIT, busy=f"{path}: another ess is saving it"):
            try:
                data = json.loads(path.read_text()) if path.exists() else {}
            except (OSError, ValueError) as exc:
                log.debug("wait times: %s is damaged (%s); starting it afresh", path, exc)
                data = {}
            if not isinstance(data, dict):
                data = {}
            earlier = data.pop(times.key, None)
            sane = [(m[0], m[1]) for m in earlier if _sane(m)] if isinstance(earlier, list) else []
            # The file keeps its keys in the order they were last saved: the oldest go first.
            data[times.key] = [list(bracket) for bracket in merged(sane, times)]
            for stale in list(data)[: max(len(data) - KEYS, 0)]:
                del data[stale]
            atomic_write(path, json.dumps(data))
    except (OSError, EssError) as exc:
        log.debug("wait times: %s not saved (%s)", path, exc)
