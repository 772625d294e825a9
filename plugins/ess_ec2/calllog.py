"""A debug line for every AWS API call: operation, size, HTTP status, attempts, duration.

Registered on each client by :func:`ess_ec2.client.build_client` through botocore's event
system, so every call is seen, whichever module makes it, retries and pagination included:

    DEBUG ess_ec2.calllog: ec2 DescribeInstances (2 ids): HTTP 200 in 12.3 ms, attempt 1
    DEBUG ess_ec2.calllog: ec2 RunInstances attempt 1: HTTP 503 RequestLimitExceeded (retryable)
    DEBUG ess_ec2.calllog: ec2 RunInstances (2 instances): HTTP 200 in 80.1 ms, attempt 2

Only sizes are logged, never parameter values or replies: those hold user data, tags and
addresses a user would not paste into a bug report, and nothing here can leak a secret.
The handlers return at once when debug logging is off.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

#: Error codes botocore's standard retry mode retries (besides HTTP 5xx and connection errors).
_THROTTLING = (
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "EC2ThrottledException",
)


def install(client: Any) -> None:
    """Log ``client``'s calls at DEBUG (hierarchical event names: every service and operation)."""
    events = client.meta.events
    events.register("before-parameter-build", _started)
    events.register("response-received", _attempted)
    events.register("after-call", _finished)
    events.register("after-call-error", _failed)


def describe_size(params: dict[str, Any]) -> str:
    """How big a call is, from its parameters: ids, instances, filters, resources; '' if none."""
    parts: list[str] = []
    if params.get("InstanceIds"):
        parts.append(_count(len(params["InstanceIds"]), "id"))
    if "MaxCount" in params:
        low, high = params.get("MinCount", params["MaxCount"]), params["MaxCount"]
        parts.append(_count(high, "instance") if low == high else f"{low}-{high} instances")
    target = params.get("TargetCapacitySpecification") or {}
    if "TotalTargetCapacity" in target:
        parts.append(_count(int(target["TotalTargetCapacity"]), "instance"))
    if params.get("Resources"):
        parts.append(_count(len(params["Resources"]), "resource"))
    if params.get("GroupIds") or params.get("GroupNames"):
        parts.append(_count(len(params.get("GroupIds") or params.get("GroupNames") or []), "group"))
    if params.get("Filters"):
        parts.append(_count(len(params["Filters"]), "filter"))
    if params.get("DryRun"):
        parts.append("dry run")
    return ", ".join(parts)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _started(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    context["ess_call"] = {"started": time.monotonic(), "size": describe_size(params), "attempts": 0}


def _attempted(
    context: dict[str, Any],
    response_dict: dict[str, Any] | None = None,
    parsed_response: dict[str, Any] | None = None,
    exception: BaseException | None = None,
    **kwargs: Any,
) -> None:
    """One send: log it only when it failed in a way botocore may retry (5xx, throttling, network)."""
    call = context.get("ess_call")
    if call is None:
        return
    call["attempts"] += 1
    status = int((response_dict or {}).get("status_code") or 0)
    code = str((parsed_response or {}).get("Error", {}).get("Code", ""))
    if exception is None and status < 500 and code not in _THROTTLING:
        return
    what = f"{type(exception).__name__}" if exception is not None else f"HTTP {status} {code}".rstrip()
    log.debug("%s attempt %d: %s (retryable)", _operation(kwargs), call["attempts"], what)


def _finished(http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    call = context.get("ess_call")
    if call is None:
        return
    status = getattr(http_response, "status_code", 0)
    code = str((parsed or {}).get("Error", {}).get("Code", ""))
    retries = int((parsed or {}).get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
    size = f" ({call['size']})" if call["size"] else ""
    outcome = f"HTTP {status}" + (f" {code}" if code else "")
    log.debug(
        "%s %s%s: %s in %.1f ms, attempt %d",
        _service(model),
        model.name,
        size,
        outcome,
        (time.monotonic() - call["started"]) * 1000,
        retries + 1,
    )


def _failed(exception: BaseException, context: dict[str, Any], **kwargs: Any) -> None:
    call = context.get("ess_call")
    if call is None:
        return
    log.debug(
        "%s failed: %s in %.1f ms after %d attempt(s)",
        _operation(kwargs),
        type(exception).__name__,
        (time.monotonic() - call["started"]) * 1000,
        max(call["attempts"], 1),
    )


def _service(model: Any) -> str:
    try:
        return str(model.service_model.endpoint_prefix)
    except AttributeError:
        return "aws"


def _operation(kwargs: dict[str, Any]) -> str:
    """``ec2 RunInstances`` from the event name (``response-received.ec2.RunInstances``)."""
    parts = str(kwargs.get("event_name", "")).split(".")
    return " ".join(parts[1:3]) if len(parts) >= 3 else "aws call"
