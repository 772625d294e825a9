"""Where ess's diagnostics go: debug logs and user-facing warnings, each one way.

Two kinds of text reach stderr besides progress lines, and each has exactly one path:

- **Debug logs.** Every module logs through ``logging.getLogger(__name__)`` (loggers
  ``ess.*``, ``ess_ec2.*``, ``ess_ssh.*``, ...). Nothing is shown until :func:`configure`
  installs one :class:`~ess.redact.RedactingStderrHandler` on the root logger; with
  ``debug=True`` it opens ess's loggers at DEBUG and turns on pluggy's hook-call
  monitoring (off otherwise, so tracing costs nothing in a normal run).
- **Warnings** to the user ("a config file is writable by everyone", "skipped instances
  that are not this cluster's"). Core and plugins call :func:`warn`; it goes to the
  command's progress sink (so a warning never tears a redrawn progress line, and the
  Python API stays silent unless it was given a sink), else to stderr, scrubbed either way.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .redact import RedactingStderrHandler, scrub

if TYPE_CHECKING:
    from .progress import Progress

#: Loggers of ess and its built-in plugins, opened at DEBUG by ``--debug``.
ESS_LOGGERS = ("ess", "ess_ec2", "ess_ssh", "ess_local", "ess_hosts")
#: Libraries whose INFO lines help a bug report (botocore's credential source, paramiko's
#: negotiation); their DEBUG lines are wire dumps, too long to paste.
LIBRARY_LOGGERS = ("botocore", "boto3", "paramiko", "asyncssh", "urllib3")
FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure(debug: bool = False) -> None:
    """One redacting stderr handler on the root logger; ``debug`` opens ess's loggers.

    Safe to call again (the CLI calls it with ``debug=False`` at start, then with ``True``
    when it meets ``--debug``): the handler is installed once and the levels are reset.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_ess", False)), None)
    if handler is None:
        handler = RedactingStderrHandler()
        handler._ess = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ESS_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if debug else logging.WARNING)
    # Imported here: ess.plugins imports this module's users, and `ess --help` without
    # --debug must not pay for anything it does not use.
    from . import plugins

    plugins.trace_hook_calls(debug)


def debugging() -> bool:
    """True when ess's debug logs are shown (``--debug``, or a library user's own config)."""
    return logging.getLogger("ess").isEnabledFor(logging.DEBUG)


# -- warnings ------------------------------------------------------------------------------
#: The progress sink of the command running in this context (set by the CLI and the API
#: around a command), where warnings go when the caller has no progress object at hand.
_sink: ContextVar[Progress | None] = ContextVar("ess_warning_sink", default=None)


def warn(message: str, progress: Progress | None = None) -> None:
    """Tell the user something they should know, on one line that stays.

    ``message`` is the whole line, prefix included (``"ess: warning: ..."``). It goes to
    ``progress`` if given, else to the sink of the running command (see
    :func:`warnings_to`), else straight to stderr; secrets are masked on every path.
    """
    target = progress if progress is not None else _sink.get()
    if target is not None:
        target.note(message)
        return
    with contextlib.suppress(Exception):  # stderr is gone: nowhere safe to say it
        sys.stderr.write(scrub(message) + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def warnings_to(progress: Progress) -> Iterator[None]:
    """Inside, :func:`warn` without a progress argument writes to ``progress``."""
    token = _sink.set(progress)
    try:
        yield
    finally:
        _sink.reset(token)


# -- helpers for the debug lines of several modules ----------------------------------------
def some(ids: Iterable[str], limit: int = 10) -> str:
    """``i-1, i-2, ... (990 more)``: ids for a stderr line, which stays short at 1,000 nodes."""
    shown = list(ids)
    return ", ".join(shown[:limit]) + (f", ... ({len(shown) - limit} more)" if len(shown) > limit else "")


def pending(states: Mapping[str, str], target: str, limit: int = 10) -> str:
    """What a wait poll still waits for: ``i-1 pending, i-2 stopping`` (or ``nothing``).

    Wait loops in every backend log one line per poll with this, so a hung ``create`` shows
    in a ``--debug`` transcript which nodes held it up and in what state.
    """
    late = [f"{node_id} {state}" for node_id, state in sorted(states.items()) if state != target]
    return some(late, limit) if late else "nothing"
