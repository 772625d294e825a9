"""Node output as it arrives: ``<node> | line``, stdout to stdout and stderr to stderr.

``exec`` on many nodes must not hold what they print: a node running ``cat /dev/zero``
prints gigabytes. :class:`PrefixedLines` is the ``output`` callback the core hands to
``ess_run_command``: it receives chunks from the runner's threads, writes each complete
line at once with its node's name in front, and holds at most one unfinished line per
node and stream. A line longer than :data:`LINE_LIMIT` bytes (``cat /dev/zero`` never
ends one) is written in pieces of that size, so memory stays bounded whatever a node prints.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import TextIO

from .redact import KeyBlocks, scrub

#: Longest piece of one line held before it is written (the rest follows as more pieces).
LINE_LIMIT = 16 * 1024

STREAMS = ("stdout", "stderr")


class PrefixedLines:
    """The ``output(node_id, stream, chunk)`` callback of ``ess_run_command``, thread-safe."""

    def __init__(self, node_ids: Iterable[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        ids = list(node_ids)
        self.width = max((len(i) for i in ids), default=0)
        self._targets = {"stdout": stdout or sys.stdout, "stderr": stderr or sys.stderr}
        self._pending: dict[tuple[str, str], bytearray] = {}
        self._lock = threading.Lock()
        # Per node and stream: a key block may span two chunks (redact.KeyBlocks).
        self._keys: dict[tuple[str, str], KeyBlocks] = {}
        #: (node, stream) pairs that received at least one chunk.
        self.streamed: set[tuple[str, str]] = set()

    def __call__(self, node_id: str, stream: str, chunk: bytes) -> None:
        if stream not in STREAMS:
            raise ValueError(f"stream is 'stdout' or 'stderr', not {stream!r}")
        with self._lock:
            self.streamed.add((node_id, stream))
            buffer = self._pending.setdefault((node_id, stream), bytearray())
            buffer += chunk
            lines = _complete_lines(buffer)
            if lines:
                self._write(node_id, stream, lines)

    def text(self, node_id: str, stream: str, text: str) -> None:
        """Write a whole text (a runner that does not stream: its output after the fact)."""
        self(node_id, stream, text.encode("utf-8", "surrogateescape"))

    def note(self, node_id: str, message: str) -> None:
        """An ess line about one node (its exit code, why it failed), on stderr."""
        with self._lock:
            self._write(node_id, "stderr", [("ess: " + message).encode()])

    def flush(self, node_id: str | None = None) -> None:
        """Write what is left of unfinished lines (of one node, or of all)."""
        with self._lock:
            for (node, stream), buffer in self._pending.items():
                if buffer and (node_id is None or node == node_id):
                    self._write(node, stream, [bytes(buffer)])
                    buffer.clear()

    def _write(self, node_id: str, stream: str, lines: list[bytes]) -> None:
        label = node_id.ljust(self.width)
        decoded = [line.decode("utf-8", "replace") for line in lines]
        keys = self._keys.setdefault((node_id, stream), KeyBlocks())
        if keys.inside or any("PRIVATE KEY-----" in line for line in decoded):
            # Line by line, before the prefix: a masked key's body lines are left out whole.
            decoded = keys.lines(decoded)
        text = "".join(f"{label} | {line}\n" for line in decoded)
        target = self._targets[stream]
        target.write(scrub(text))
        target.flush()


def _complete_lines(buffer: bytearray) -> list[bytes]:
    """Take the complete lines (and over-long pieces) out of ``buffer``; leave the rest."""
    lines: list[bytes] = []
    start = 0
    while True:
        end = buffer.find(b"\n", start, start + LINE_LIMIT + 1)
        if end != -1:
            lines.append(bytes(buffer[start:end]))
            start = end + 1
        elif len(buffer) - start >= LINE_LIMIT:
            cut = _before_partial_character(buffer, start + LINE_LIMIT)
            lines.append(bytes(buffer[start:cut]))
            start = cut
        else:
            break
    del buffer[:start]
    return lines


def _before_partial_character(buffer: bytearray, cut: int) -> int:
    """``cut``, or earlier so that no UTF-8 character is split there (a split one prints as
    two U+FFFD). Bytes that are not UTF-8 are cut anywhere."""
    for back in range(1, 4):
        byte = buffer[cut - back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for the lead
            continue
        if byte >= 0xC0:
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < length:
                return cut - back
        break
    return cut
