"""Progress on stderr: one updating line per stage, never a line per node.

On a TTY the line is redrawn in place (``running 87/100``); elsewhere (CI, pipes, log
files) a stage prints one line when it starts and one when it ends, plus at most one
line every ``interval`` seconds while it runs, so logs stay short but never silent.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from .redact import scrub

# Stages are logged too: a quiet Progress (the Python API's default) still leaves a
# trace under --debug, and a debug transcript shows each stage next to the calls it made.
log = logging.getLogger(__name__)


class Progress:
    def __init__(
        self, stream: TextIO | None = None, *, tty: bool | None = None, interval: float = 10.0, quiet: bool = False
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.quiet = quiet
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._last_plain = 0.0
        self._drawn = False
        self._lock = threading.Lock()

    def stage(self, label: str, total: int | None = None) -> None:
        """Start a stage; ends the previous one if it is still open."""
        with self._lock:
            self._end_locked()
            log.debug("stage: %s%s", label, f" ({total})" if total is not None else "")
            self._label, self._total, self._done = label, total, 0
            self._started = self._last_plain = time.monotonic()
            self._emit(final=False, force=True)

    def relabel(self, label: str, total: int | None = None) -> None:
        """Rename the open stage (a backend refining the core's "launching N"), keeping its clock."""
        with self._lock:
            if not self._label:
                self._started = self._last_plain = time.monotonic()
            log.debug("stage: %s%s", label, f" ({total})" if total is not None else "")
            self._label, self._total = label, total
            self._emit(final=False, force=True)

    def update(self, done: int, total: int | None = None) -> None:
        """Report how many of the stage's items are done (thread-safe)."""
        with self._lock:
            self._done = done
            if total is not None:
                self._total = total
            self._emit(final=False, force=False)

    def advance(self, step: int = 1) -> None:
        with self._lock:
            self._done += step
            self._emit(final=False, force=False)

    def finish(self) -> None:
        """End the current stage with its final count and elapsed time."""
        with self._lock:
            self._end_locked()

    def note(self, message: str) -> None:
        """A line that stays (warnings, what was cleaned up), printed above the progress line.

        Scrubbed like every log line: a note often quotes an error, which can quote a secret.
        Core and plugins call :func:`ess.log.warn`, which ends here when there is a sink.
        """
        with self._lock:
            if self.quiet:
                return
            self._clear()
            self.stream.write(scrub(message) + "\n")
            self.stream.flush()
            if self._label and self.tty:
                self._emit(final=False, force=True)

    # -- internals -------------------------------------------------------------------
    def _text(self) -> str:
        count = f" {self._done}/{self._total}" if self._total is not None else ""
        return f"{self._label}{count}"

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False

    def _emit(self, *, final: bool, force: bool) -> None:
        if self.quiet or not self._label:
            return
        if self.tty:
            suffix = f" ({time.monotonic() - self._started:.1f}s)" if final else ""
            self.stream.write("\r\033[K" + self._text() + suffix + ("\n" if final else ""))
            self._drawn = not final
            self.stream.flush()
            return
        now = time.monotonic()
        if final:
            self.stream.write(f"{self._text()} done ({now - self._started:.1f}s)\n")
        elif force or now - self._last_plain >= self.interval:
            self._last_plain = now
            self.stream.write(self._text() + " ...\n")
        else:
            return
        self.stream.flush()

    def _end_locked(self) -> None:
        if self._label:
            log.debug(
                "stage done: %s%s in %.3f s",
                self._label,
                f" {self._done}/{self._total}" if self._total is not None else "",
                time.monotonic() - self._started,
            )
            self._emit(final=True, force=True)
        self._label = ""
