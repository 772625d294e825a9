"""The end of a stream, in bounded memory: what ``exec`` keeps of each node's output.

The whole output goes to the core as it arrives (the ``output`` callback of
``ess_run_command``); what is kept for the summary and ``--json`` is only its last
:data:`TAIL_BYTES`, so a node printing gigabytes costs the same memory as one printing a line.
"""

from __future__ import annotations

#: Bytes kept of each stream (stdout, stderr) of each node.
TAIL_BYTES = 64 * 1024


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
