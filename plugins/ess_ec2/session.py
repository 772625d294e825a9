"""One command's EC2 session: its settings, its AWS clients, and what EC2 told it.

The backend object is long-lived (one per process, or per :class:`ess.Cluster`) and
receives the command's :class:`~ess.models.Settings` on every call. Everything a command
learns on the way (the boto3 session and clients, the instance records EC2 returned, the
strangers already named on stderr) belongs to that command, not to the backend: it lives
in one :class:`Ec2Session` per Settings object, made on first use and dropped with the
Settings object. Like Ray's per-cluster ``NodeProvider(provider_config, cluster_name)``,
but found from the ``settings`` argument the Backend contract already passes, so the
contract did not change for anyone.

Why per Settings object: the core loads settings once per command (the CLI) or once per
``ess.Cluster``, and passes that same object to preflight, create, wait, nodes and
terminate. A new Settings object is a new command, which must not trust what an earlier
one saw.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ess.models import Settings

from . import client as aws_client

#: Seconds for which EC2's own answer about an instance's tags is trusted by terminate.
SEEN_FRESH = 60.0
#: What ess launched itself does not go stale: its tags were set in the launch call.
LAUNCHED = float("inf")


@dataclass(eq=False)
class Ec2Session:
    """What one command knows: built lazily, so a command that needs no AWS call makes none."""

    #: The command's settings, weakly: the session lives exactly as long as they do.
    settings_ref: weakref.ref[Settings]
    #: Instance id -> (when EC2 reported it, its instance record), from this command's
    #: list, launch or adoption. Terminate trusts these, never tags on Node objects a caller
    #: hands in, and only while fresh (:data:`SEEN_FRESH`), or forever for what it launched.
    seen: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    #: Instances already named on stderr as "not this cluster's", so a command that lists
    #: twice says it once.
    told: set[str] = field(default_factory=set)
    _aws: aws_client.Aws | None = None

    @property
    def aws(self) -> aws_client.Aws:
        """The command's clients: one boto3 session (~0.1 s of CPU and one TLS pool) per command."""
        if self._aws is None:
            settings = self.settings_ref()
            if settings is None:  # pragma: no cover - the backend holds the settings while calling
                raise RuntimeError("the command's settings are gone")
            self._aws = aws_client.connect(settings)
        return self._aws

    def remember(self, instances: Iterable[dict[str, Any]], now: float, *, launched: bool = False) -> None:
        """Keep EC2's records of ``instances``; what this command launched never goes stale,
        so a rollback after a long wait needs no describe (which may be what is failing)."""
        for instance in instances:
            # A later listing updates the record but never makes a launch of this command stale.
            earlier = self.seen.get(instance["InstanceId"], (None,))[0]
            self.seen[instance["InstanceId"]] = (LAUNCHED if launched or earlier == LAUNCHED else now, instance)

    def seen_recently(self, ids: Iterable[str], now: float) -> dict[str, dict[str, Any]] | None:
        """EC2's own recent records of all ``ids``, or None if any is missing or stale."""
        found: dict[str, dict[str, Any]] = {}
        for instance_id in ids:
            entry = self.seen.get(instance_id)
            if entry is None or (entry[0] != LAUNCHED and now - entry[0] > SEEN_FRESH):
                return None
            found[instance_id] = entry[1]
        return found

    def launched_here(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` this command launched (EC2 may not know them everywhere yet)."""
        return {i for i in ids if self.seen.get(i, (None,))[0] == LAUNCHED}

    def launches(self) -> list[dict[str, Any]]:
        """The records of every instance this command launched."""
        return [record for when, record in self.seen.values() if when == LAUNCHED]

    def record(self, instance_id: str) -> dict[str, Any] | None:
        """The last record EC2 gave this command of ``instance_id``, however old."""
        entry = self.seen.get(instance_id)
        return entry[1] if entry else None

    def not_told(self, ids: Iterable[str]) -> list[str]:
        """The ids not named yet in this command; they count as named from now on."""
        new = [i for i in ids if i not in self.told]
        self.told.update(new)
        return new


# Sessions by the identity of their Settings object. A weak reference, not the object: the
# entry goes when the command's settings do, so nothing outlives the command.
_sessions: dict[int, tuple[weakref.ref[Settings], Ec2Session]] = {}
_lock = threading.RLock()  # re-entrant: a collected Settings' callback may run under it


def session_for(settings: Settings) -> Ec2Session:
    """The session of the command that ``settings`` belongs to (made on first use)."""
    key = id(settings)
    with _lock:
        entry = _sessions.get(key)
        if entry is not None and entry[0]() is settings:
            return entry[1]

        def forget(ref: weakref.ref[Settings], key: int = key) -> None:
            with _lock:
                if _sessions.get(key, (None,))[0] is ref:
                    del _sessions[key]

        ref = weakref.ref(settings, forget)
        session = Ec2Session(ref)
        _sessions[key] = (ref, session)
        return session
