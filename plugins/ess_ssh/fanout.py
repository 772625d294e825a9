"""Every node at once: the pool, deadline and progress line that verify, exec and push share.

A :class:`Fleet` loads the key and host-key policy once (a bad key is a UsageError before
any connection), sizes a thread pool by ``ssh_parallel``, and runs one function per node
until the deadline. Nodes still working then have their sockets cut, so the run ends on
time whatever the network does; their absence from the results tells the caller.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import TypeVar

from ess.log import warn
from ess.models import Access, Node, Settings
from ess.progress import Progress

from .connect import Connector
from .limits import connections_that_fit

#: Extra time past the deadline for threads to notice their sockets were closed.
GRACE = 2.0

Result = TypeVar("Result")


class Fleet:
    """One connector, one thread pool and one deadline for an operation over many nodes."""

    def __init__(
        self, nodes: list[Node], access: Access, settings: Settings, progress: Progress, *, limit: float
    ) -> None:
        self.nodes = nodes
        self.progress = progress
        self.limit = limit
        wanted = max(1, min(int(settings.get("ssh_parallel", 32)), len(nodes)))
        self.connector = Connector.from_settings(access, settings, progress)
        # Under a low `ulimit -n`, fewer connections at once: each extra one would fail
        # with EMFILE and be retried with backoff (seen as nodes taking many attempts).
        self.parallel = connections_that_fit(wanted)
        if self.parallel < wanted:
            warn(
                f"ssh_parallel {wanted} lowered to {self.parallel}: the open-files limit "
                f"(ulimit -n) leaves room for {self.parallel} connections at once; raise it to go faster",
                progress,
            )
        self.start = time.monotonic()
        self.deadline = self.start + limit

    def run(
        self, label: str, work: Callable[[Node], Result], counts: Callable[[Result], bool] = lambda result: True
    ) -> dict[str, Result]:
        """``work(node)`` for every node, ``ssh_parallel`` at a time; results by node id.

        The progress line counts results for which ``counts`` is true (``ssh ready 37/40``).
        A node missing from the result did not finish before the deadline.
        """
        self.progress.stage(label, len(self.nodes))
        results: dict[str, Result] = {}
        done = 0
        interrupted = False
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.parallel, thread_name_prefix=f"ess-{label.split()[0]}"
        )
        try:
            futures = {pool.submit(work, node): node for node in self.nodes}
            try:
                for future in concurrent.futures.as_completed(futures, timeout=self.limit + GRACE):
                    result = future.result()
                    results[futures[future].id] = result
                    if counts(result):
                        done += 1
                        self.progress.update(done)
            except concurrent.futures.TimeoutError:
                pass
        except BaseException:
            interrupted = True
            raise
        finally:
            if len(results) < len(self.nodes):
                self.connector.abort()
            # On Ctrl-C, not waited for: a worker can be blocked writing to a stdout nobody
            # reads (a stalled pipe, a terminal paused with Ctrl-S), and the interrupt must
            # still end ess. Their connections were just aborted; exit does not join them.
            pool.shutdown(wait=not interrupted, cancel_futures=True)
            self.connector.close()
            self.progress.finish()
        return results
