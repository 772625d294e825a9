"""Independent read-only calls made at once: one round trip for the lot, not one each.

Preflight asks AWS six or seven questions that do not depend on each other; with a 50 ms
round trip, asking them one after another costs a third of a second before the launch.
:func:`at_once` runs them in threads and hands back every outcome, errors included, so
the caller raises the error of the earliest check in its own fixed order: the message a
user sees does not depend on which thread lost the race.

boto3 clients are thread-safe once made; making one is not: the caller makes the clients
it needs before the round starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Value = TypeVar("Value")


@dataclass(frozen=True)
class Outcome(Generic[Value]):
    """What one call returned, or what it raised."""

    value: Value | None = None
    error: BaseException | None = None

    def get(self) -> Value:
        """The value; the call's own exception when it raised."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # None only when the call returned None


def at_once(calls: Mapping[str, Callable[[], Any]]) -> dict[str, Outcome[Any]]:
    """Run ``calls`` concurrently, wait for all of them, and return each one's outcome by name."""
    if len(calls) <= 1:
        return {name: _outcome(call) for name, call in calls.items()}
    pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="ess-preflight")
    try:
        futures = {name: pool.submit(_outcome, call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}
    finally:
        # On Ctrl-C, do not wait for the calls still in flight: they only read.
        pool.shutdown(wait=False, cancel_futures=True)


def _outcome(call: Callable[[], Any]) -> Outcome[Any]:
    try:
        return Outcome(value=call())
    except Exception as exc:  # handed to the caller, which raises it in its turn
        return Outcome(error=exc)
