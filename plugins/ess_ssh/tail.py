"""The end of a stream, in bounded memory: what ``exec`` keeps of each node's output.

The whole output goes to the core as it arrives (the ``output`` callback of
``ess_run_command``); what is kept for the summary and ``--json`` is only its last
:data:`TAIL_BYTES` (less per node on clusters over 256 nodes: :func:`tail_bytes`), so a
node printing gigabytes costs the same memory as one printing a line.
"""

from __future__ import annotations

#: Bytes kept of each stream (stdout, stderr) of each node, at most.
TAIL_BYTES = 64 * 1024
#: Bytes kept of one stream over all nodes of a run: above 256 nodes each keeps less, so
#: 1,000 nodes printing megabytes keep 16 KiB each, not 64 (64 MB held twice over, as
#: bytes and as the decoded text of the results, was most of a 250 MB peak; issue 17).
TAIL_BUDGET = 16 * 1024 * 1024
#: ... but never less than this per node and stream.
TAIL_MIN = 4 * 1024


def tail_bytes(nodes: int) -> int:
    """The tail kept of each stream of each node when ``nodes`` nodes run at once."""
    return max(TAIL_MIN, min(TAIL_BYTES, TAIL_BUDGET // max(nodes, 1)))


class Tail:
    """Keeps the last ``limit`` bytes added; ``truncated`` once anything was dropped."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.truncated = False
        self._buffer = bytearray()

    def add(self, data: bytes) -> None:
        self._buffer += data
        # Trim only when twice the limit is held: amortised cost stays linear.
        if len(self._buffer) > 2 * self.limit:
            del self._buffer[: -self.limit]
            self.truncated = True

    def value(self) -> bytes:
        if len(self._buffer) > self.limit:
            self.truncated = True
            return bytes(self._buffer[-self.limit :])
        return bytes(self._buffer)
