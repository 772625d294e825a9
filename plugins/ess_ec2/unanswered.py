"""A launch call that got no answer: find what it launched before the rollback looks.

RunInstances (or CreateFleet) may reach EC2 and launch while ess never reads the reply: a
Ctrl-C while the call is in flight, replies lost to every attempt, a 5xx that EC2 gave after
acting. The core's rollback then finds the launch's instances by their ``ess:launch`` tag,
but EC2 is eventually consistent: its filtered listing shows a new instance a few seconds
after the launch. Looked for at once, they were not found, and they were left running.

So the backend lists by the launch tag again with pauses until the listing settles, and
remembers what it found as launched by this command: ``nodes()`` lists those even if a
later listing misses them, and terminate asks EC2 again if it says it does not know them.
Only EC2's refusal (a 4xx answer, a capacity error, throttling) proves that nothing was launched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ess.models import TAG_LAUNCH, LaunchRequest

from . import client as aws_client

#: Pauses between the listings (15 s in all; EC2 usually lists a launch within a few).
PAUSES = (1.0, 2.0, 4.0, 8.0)


#: Server-side (5xx) error codes that still mean "not launched": EC2 refused for capacity, or
#: throttled the call before acting on it. InternalError and Unavailable do not say.
REFUSALS_5XX = ("RequestLimitExceeded",)


def nothing_launched(exc: BaseException) -> bool:
    """True when ``exc`` is EC2's answer that the launch did not happen: a 4xx error, or a
    capacity refusal or throttling (which EC2 sends as 5xx)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = aws_client.error_code(exc)
    if code.startswith("Insufficient") or code in REFUSALS_5XX:
        return True
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 400 <= status < 500


def settled_listing(
    aws: aws_client.Aws,
    filters: list[dict[str, Any]],
    sleep: Callable[[float], None],
    enough: Callable[[int, int], bool],
    seen: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every instance ``filters`` lists, listing again after each of :data:`PAUSES` until
    ``enough(found, found_before)`` holds (the counts now and at the listing before; -1 at
    first). A failing first listing raises; a later one ends the search with what was found.

    ``seen(instances)`` gets each listing's instances as soon as it is read, so the caller
    keeps what was found even if the search is cut short (an interrupt during a pause).
    """
    found: dict[str, dict[str, Any]] = {}
    before = -1
    for pause in (0.0, *PAUSES):
        if pause:
            sleep(pause)
        try:
            listed = aws_client.describe_filtered(aws, filters)
        except Exception:
            if before < 0:
                raise
            break
        found.update({i["InstanceId"]: i for i in listed})
        if seen is not None and listed:
            seen(listed)
        if enough(len(found), before):
            break
        before = len(found)
    return list(found.values())


def find(
    aws: aws_client.Aws,
    request: LaunchRequest,
    sleep: Callable[[float], None],
    seen: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """The instances of ``request``'s launch, once EC2's listing of them settles (see above).

    Stops when the request's full count shows, or at least its minimum and two listings
    agree, or after :data:`PAUSES`. A listing that fails ends the search with what was
    found: the rollback will list (and report) again. ``seen`` is as for :func:`settled_listing`.
    """
    filters = [{"Name": f"tag:{TAG_LAUNCH}", "Values": [request.launch_id]}]
    try:
        return settled_listing(
            aws,
            filters,
            sleep,
            lambda found, before: found >= request.count or (found >= request.min_count and found == before),
            seen,
        )
    except Exception:
        return []
