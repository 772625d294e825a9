"""A latency model for the moto server the benchmarks run: boots and shutdowns take time, calls cost a round trip.

moto answers every call at once and makes an instance ``running`` (or ``terminated``) on the
next describe, so a wait loop looks perfect against it. This module makes moto slower in the
ways EC2 is:

* each instance stays ``pending`` for a time drawn per instance (uniform 15-45 s by
  default) after RunInstances or StartInstances, and ``shutting-down`` / ``stopping`` for a
  time drawn likewise after TerminateInstances / StopInstances;
* every HTTP request costs a fixed round trip (50 ms by default), half before moto handles
  it and half after (a WSGI middleware);
* every duration is multiplied by ``scale`` (1.0 = real time).

The states are in moto's own objects, so describe, filters and every other call see them:
``Instance._state`` becomes a :class:`TimedState` whose ``name``/``code`` follow a schedule
by the wall clock (``time.time``, so a benchmark compares it with what a subprocess saw).
The true moment each instance reached its final state is kept in :attr:`LatencyModel.arrivals`.

Works with any moto server that runs in this process (the benchmarks' werkzeug server,
``ThreadedMotoServer``) and with ``mock_aws``. Use as a context manager::

    with LatencyModel(scale=1.0, seed=1) as model:
        app = model.middleware(app)  # the round trip (optional)
        ...
        model.last_arrival(ids, "running")
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

#: EC2's state codes.
CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}


class TimedState:
    """An instance state that changes by the clock: a list of (from when, name) steps.

    moto's own code sets ``name`` and ``code`` (an immediate change); the model then
    replaces the steps with an interim state and a later final one.
    """

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.steps: list[tuple[float, str]] = [(float("-inf"), name)]

    def _current(self) -> str:
        now = self._clock()
        return [name for at, name in self.steps if at <= now][-1]

    @property
    def name(self) -> str:
        return self._current()

    @name.setter
    def name(self, value: str) -> None:
        self.steps = [(float("-inf"), value)]

    @property
    def code(self) -> int:
        return CODES.get(self._current(), 0)

    @code.setter
    def code(self, value: int) -> None:
        """The code always follows the name."""

    def schedule(self, interim: str, final: str, at: float) -> None:
        self.steps = [(float("-inf"), interim), (at, final)]


@dataclass
class LatencyModel:
    """Slow moto down like EC2 (see the module's docstring); a context manager that patches moto."""

    pending: tuple[float, float] = (15.0, 45.0)
    shutting_down: tuple[float, float] = (15.0, 45.0)
    stopping: tuple[float, float] = (15.0, 45.0)
    round_trip: float = 0.05
    scale: float = 1.0
    seed: int | None = None
    #: The clock the states follow (a test passes its fake clock).
    clock: Callable[[], float] = time.time
    #: (instance id, final state) -> the wall-clock moment it got there.
    arrivals: dict[tuple[str, str], float] = field(default_factory=dict)
    #: (wall-clock start, end, action) of every request through :meth:`middleware`.
    requests: list[tuple[float, float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._undo: list[tuple[type, str, Any]] = []

    # -- the states ---------------------------------------------------------------------
    def _delay(self, span: tuple[float, float]) -> float:
        with self._lock:
            return self._random.uniform(*span) * self.scale

    def _transition(self, instance: Any, interim: str, final: str, span: tuple[float, float], before: str = "") -> None:
        at = self.clock() + (0.0 if before == final else self._delay(span))  # already there: no change
        if not isinstance(instance._state, TimedState):
            instance._state = TimedState(instance._state.name, self.clock)
        instance._state.schedule(interim, final, at)
        with self._lock:
            self.arrivals[(instance.id, final)] = at

    def __enter__(self) -> LatencyModel:
        from moto.ec2.models.instances import Instance

        model = self
        created, started, stopped, terminated = Instance.__init__, Instance.start, Instance.stop, Instance.terminate

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            created(self, *args, **kwargs)
            model._transition(self, "pending", "running", model.pending)

        def start(self: Any) -> Any:
            before = copy.copy(self._state)
            started(self)
            model._transition(self, "pending", "running", model.pending, before.name)
            return before

        def stop(self: Any) -> Any:
            before = copy.copy(self._state)
            stopped(self)
            model._transition(self, "stopping", "stopped", model.stopping, before.name)
            return before

        def terminate(self: Any) -> Any:
            before = copy.copy(self._state)
            terminated(self)
            model._transition(self, "shutting-down", "terminated", model.shutting_down, before.name)
            return before

        for name, replacement in (("__init__", init), ("start", start), ("stop", stop), ("terminate", terminate)):
            self._undo.append((Instance, name, getattr(Instance, name)))
            setattr(Instance, name, replacement)
        return self

    def __exit__(self, *_exc: object) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()

    def last_arrival(self, ids: Iterable[str], final: str) -> float:
        """The wall-clock moment the last of ``ids`` really reached ``final``."""
        with self._lock:
            return max(self.arrivals[(i, final)] for i in ids)

    # -- the round trip -----------------------------------------------------------------
    def middleware(self, app: Any, action_of: Callable[[dict[str, Any]], str] | None = None) -> Any:
        """``app`` behind a network: every request waits half a round trip each way.

        ``action_of(environ)`` names the request for :attr:`requests` (it may read and
        replace ``wsgi.input``); without it requests are recorded by path.
        """
        half = self.round_trip * self.scale / 2

        def delayed(environ: dict[str, Any], start_response: Any) -> Any:
            began = time.time()
            action = action_of(environ) if action_of else str(environ.get("PATH_INFO", "?"))
            time.sleep(half)
            body = list(app(environ, start_response))
            time.sleep(half)
            with self._lock:
                self.requests.append((began, time.time(), action))
            return body

        return delayed

    def take_requests(self) -> list[tuple[float, float, str]]:
        with self._lock:
            made, self.requests = self.requests, []
        return made
