"""Is sshd there? One quick TCP connect to each machine's SSH port, all machines at once.

The hosts backend cannot ask a cloud what state a machine is in; what it can learn cheaply
is whether something accepts connections on the SSH port. ``list`` and ``status`` probe
every machine in parallel (at most :data:`PARALLEL` at a time, :data:`TIMEOUT` seconds each), so a cluster
of 200 machines with half of them down answers in about one timeout, not 100 of them.

``verify``, ``exec`` and ``push`` do not probe (``HostsBackend.nodes_to_connect``): they
connect over SSH right after, and that first connect answers the same question, with the
same limit. A probe is cheap for ess but not for the machine: every accepted connection
makes sshd fork and re-exec itself (about 14 ms of its CPU), so probing before an SSH step
doubled sshd's connection work.
"""

from __future__ import annotations

import concurrent.futures
import errno
import socket

from ess.models import UNPROBED_CONNECT_TIMEOUT

#: Seconds one TCP connect may take: an SSH port on a live machine answers in milliseconds.
#: The same limit as the SSH step's first connect to a node it was handed unprobed.
TIMEOUT = UNPROBED_CONNECT_TIMEOUT
#: Probes in flight at once (threads; each mostly waits on the network).
PARALLEL = 64


def probe(host: str, port: int, timeout: float = TIMEOUT) -> str:
    """ "" if something accepts TCP on ``host:port``; otherwise why not, in a few words."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except ConnectionRefusedError:
        return f"port {port} refused"
    except TimeoutError:
        return f"port {port} timed out"
    except socket.gaierror:
        return f"cannot resolve {host}"
    except OSError as exc:
        if exc.errno == errno.EHOSTUNREACH:
            return "no route to host"
        if exc.errno == errno.ENETUNREACH:
            return "network unreachable"
        return f"port {port}: {exc.strerror or exc}"


def probe_all(
    machines: list[tuple[str, int]], timeout: float = TIMEOUT, parallel: int = PARALLEL
) -> dict[tuple[str, int], str]:
    """:func:`probe` every machine concurrently; the reason (or "") per (host, port)."""
    unique = list(dict.fromkeys(machines))
    if not unique:
        return {}
    workers = max(1, min(parallel, len(unique)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ess-probe") as pool:
        answers = pool.map(lambda machine: probe(machine[0], machine[1], timeout), unique)
        return dict(zip(unique, answers, strict=True))
