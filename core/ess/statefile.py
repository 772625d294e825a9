"""A JSON file shared by concurrent ``ess`` commands: read-modify-write under a file lock.

The implementation is :func:`ess.files.locked_json`, next to the atomic write and the lock
it is made of; this module keeps the import path plugins were written against.
"""

from __future__ import annotations

from .files import LOCK_TIMEOUT, locked_json

__all__ = ["LOCK_TIMEOUT", "locked_json"]
