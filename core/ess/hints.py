"""Runnable command lines ess suggests in its messages, built from what a backend declares.

The flows (:mod:`ess.provision`) and the command line both name the next command to run
("create some with: ess instance local create --number 2"); both take it from here, so a
hint, ``list`` and ``--help`` always show the same line, and the flow never imports the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import Backend


def has_flag(backend: Backend, flag: str, command: str = "create") -> bool:
    """Whether ``command`` of this backend takes the setting option ``flag`` (``--number``)."""
    from .settings import specs_for

    return any(
        s.flag == flag and (command in s.commands or "*" in s.commands) for s in specs_for(backend.settings).values()
    )


def create_example(backend: Backend) -> str:
    """A ``create`` line that runs on this backend (hosts takes machines, not --number)."""
    if backend.create_arguments:
        return f"ess instance {backend.name} create 10.0.0.5 10.0.0.6"
    if has_flag(backend, "--number"):
        return f"ess instance {backend.name} create --number 2"
    return f"ess instance {backend.name} create"


def empty_cluster(backend: Backend, cluster: str) -> str:
    """What ``list``, ``status``, ``ssh-config`` and the flows say of a cluster with no nodes."""
    return f"cluster {cluster!r} has no nodes on {backend.name} (create some with: {create_example(backend)})"


def terminate_verb(backend: Backend) -> str:
    """ "terminate", or "release" for a backend whose terminate only forgets machines."""
    return "terminate" if backend.ends_nodes else "release"
