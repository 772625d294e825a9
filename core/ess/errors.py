"""The errors the core knows how to report, and the exit code of each.

Plugins raise these; the CLI turns them into one line on stderr and an exit code.
Documented exit codes: 0 success, 1 runtime failure, 2 bad input (nothing was done),
3 partial success (some nodes failed a check or were dropped), 130 interrupted.
"""

from __future__ import annotations


class EssError(Exception):
    """A failure that is not the user's typing mistake (cloud error, timeout...)."""

    exit_code = 1


class UsageError(EssError):
    """Bad input: one line naming where (file/section/key or option), what, and what to do.

    Raised before anything costly happened, so the promise "no side effect" holds.
    """

    exit_code = 2


class NotSupported(UsageError):
    """The backend cannot do what was asked (e.g. `stop` on a backend without it)."""


class Declined(EssError):
    """The user answered no at a confirmation prompt: nothing was done (exit 1, not 130,
    which is kept for Ctrl-C)."""


class PartialFailure(EssError):
    """Some nodes succeeded and some failed; the message names the failed ones."""

    exit_code = 3


class Interrupted(EssError):
    """Ctrl-C (SIGINT) or SIGTERM; cleanup has run by the time this is reported."""

    exit_code = 130
