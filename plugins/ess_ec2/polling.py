"""Waiting for instances to reach a state: one batched describe per round, with back-off."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from ess import log as ess_log
from ess.errors import EssError
from ess.models import TERMINATED
from ess.progress import Progress

from . import client as aws_client

log = logging.getLogger(__name__)

#: Polling: first delay, growth factor and ceiling (seconds); each delay gets jitter.
FIRST_DELAY, GROWTH, MAX_DELAY = 1.0, 1.5, 15.0


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
) -> dict[str, Any]:
    """Describe ``ids`` (batched) until all are in ``target``; EssError at the deadline.

    An id EC2 no longer knows counts as terminated (it was, long enough ago to vanish).
    """
    deadline = clock() + timeout
    delay = FIRST_DELAY
    progress.stage(label, len(ids))
    while True:
        with aws_client.translated(aws, "describe instances"):
            found = aws_client.describe(aws, ids)
        states = {i: (found[i]["State"]["Name"] if i in found else TERMINATED) for i in ids}
        done = sum(1 for s in states.values() if s == target)
        log.debug("poll %s: %d/%d %s; waiting for %s", label, done, len(ids), target, ess_log.pending(states, target))
        progress.update(done)
        if done == len(ids):
            progress.finish()
            return found
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
                f"({', '.join(sorted(failed)[:10])})"
            )
        remaining = deadline - clock()
        if remaining <= 0:
            progress.finish()
            late = sorted(i for i, s in states.items() if s != target)
            raise EssError(
                f"EC2: {len(late)} of {len(ids)} node(s) not {target} after "
                f"{timeout:.0f}s ({', '.join(late[:10])}{' ...' if len(late) > 10 else ''}) "
                "(check them in the EC2 console; `ess instance ec2 list` shows them)"
            )
        sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
        delay = min(delay * GROWTH, MAX_DELAY)
