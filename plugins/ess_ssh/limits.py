"""Room for many sockets at once: one SSH connection needs a socket and a pipe or two."""

from __future__ import annotations

import contextlib
import os

#: Descriptors one connection holds at once: its socket and the pipe of its channel's fileno().
FDS_PER_CONNECTION = 3
#: Descriptors left for everything else while connections are open (known_hosts, logs, imports).
SPARE_FDS = 16


def raise_open_files_limit(wanted: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards ``wanted`` (never above the hard limit); best effort."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def connections_that_fit(wanted: int) -> int:
    """How many of ``wanted`` connections can be open at once under the open-files limit (>= 1).

    Raises the soft limit first. More connections than fit would fail with EMFILE ("Too many
    open files") and be retried with backoff: slower than running fewer at a time.
    """
    raise_open_files_limit(wanted * FDS_PER_CONNECTION + 64)
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        open_now = len(os.listdir("/proc/self/fd"))
    except (ImportError, OSError):  # not Linux: no cheap count of open descriptors
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = (soft - open_now - SPARE_FDS) // FDS_PER_CONNECTION
    return max(1, min(wanted, room))
