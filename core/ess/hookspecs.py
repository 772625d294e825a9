"""The hook contract between ess and its plugins.

This file is the public API for plugin authors. A plugin is a module (or object) with
functions decorated by ``ess.hookimpl`` whose names match the specs below, registered
through the ``ess`` entry-point group in its ``pyproject.toml``::

    [project.entry-points.ess]
    mybackend = "ess_mybackend.plugin"

Rules that hold for every hook:

* ess calls hooks with keyword arguments; an implementation may accept any subset of the
  documented arguments, by name.
* Implementations run in reverse registration order (last registered first); built-in
  plugins are registered first, then third-party ones sorted by entry-point name, so a
  third-party plugin runs before them (and of two, the later name runs first).
* Unless a hook says "first result wins", ess calls every implementation and collects all
  non-None answers into a list.
* A misspelled hook name is reported by ``ess plugins`` as a load error for that plugin.
* ess checks what an implementation answers. One that raises (anything but an
  ``ess.errors.EssError``, which passes as it is) or answers in the wrong shape costs only
  its own plugin: while ess builds its commands and settings (``ess_backends``,
  ``ess_settings``, ``ess_register_commands``, ``ess_load_config``) its answer is ignored
  and the plugin gets a load error (one warning line, a row in ``ess plugins``); at run
  time the command fails with one line naming the plugin and the hook.
* The per-node hooks (``ess_check_nodes``, ``ess_run_command``, ``ess_push_files``) answer
  for exactly the nodes they were given: a node left out fails ("no result from plugin
  ..."), and a result for an id not given is dropped with a warning.

The hook API is versioned by ``ESS_HOOK_API`` below: new hooks and new keyword arguments
may be added in a minor version (existing implementations keep working because pluggy
passes only the arguments they ask for); removing or changing one bumps the major version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - import cost matters at start-up
    import click

    from .backend import Backend
    from .models import Access, CheckResult, CommandResult, Node, Settings, SettingSpec
    from .progress import Progress

hookspec = pluggy.HookspecMarker("ess")

#: Version of this contract: MAJOR.MINOR, see the module docstring.
#: 1.1: ``ess_run_command`` gained the ``output`` argument (streamed command output).
#: 1.2: ``Backend.preflight`` may return a plan, handed to ``create`` in ``LaunchRequest.plan``.
#: 1.3: optional ``Backend.retag`` and ``Backend.clusters``, class attributes
#:      ``Backend.enforces_lifetime``/``deadline_file``; ``Node.zone``/``lifecycle``/``expires``,
#:      ``LaunchRequest.existing``, ``ClusterSummary``/``ClusterInventory`` in ess.models.
#: 1.4: optional ``Backend.nodes_to_connect``; ``Node.unprobed``, ``ess.models.UNPROBED_CONNECT_TIMEOUT``.
#: 1.5: optional ``Backend.may_change`` (asked before a terminate/stop/start/remove prompt).
ESS_HOOK_API = "1.5"


# -- configuration ---------------------------------------------------------------------
@hookspec(firstresult=True)
def ess_load_config(path: Path, text: str) -> dict[str, dict[str, Any]] | None:
    """Parse a configuration file into sections.

    Called once per command, with the config file's ``path`` and its ``text`` (decoded as
    UTF-8). Claim the file by its suffix or content and return
    ``{section: {key: value}}``; values may be strings (ess converts them to the
    declared type) or already typed (TOML). Return None to let another loader try.

    Raise :class:`ess.errors.UsageError` for a file you claim but cannot parse, naming the
    file and line. First result wins. Built-in loaders: INI (``.conf``, ``.ini``,
    Essentia's ``key: value`` format) and TOML (``.toml``).
    """


@hookspec
def ess_settings() -> list[SettingSpec] | None:
    """Declare settings that apply to every backend (not owned by one backend).

    Called when settings are resolved, for any command. Return a list of
    :class:`ess.models.SettingSpec`. The SSH plugin uses this for ``verify_command``,
    ``ssh_timeout``, ``ssh_parallel`` and its host-key options. Keys must be unique across
    all plugins; each is read from the backend's config section, the ``ESS_<KEY>``
    environment variable, and the spec's ``flag`` on the command line.
    """


# -- backends --------------------------------------------------------------------------
@hookspec
def ess_backends() -> list[Backend] | None:
    """Provide backends: instances of :class:`ess.backend.Backend` subclasses.

    Called once at start-up to build the ``ess instance <backend>`` commands, so it must be
    cheap: construct the objects, but import cloud SDKs only inside their methods.
    Each backend's ``name`` must be unique, a lowercase identifier (it names a command
    and a config section). The first plugin registered keeps a name (built-ins register
    first): a later backend of the same name is not loaded, and its plugin gets the load
    error. Return a list, never a bare backend.
    """


# -- provisioning lifecycle -------------------------------------------------------------
@hookspec
def ess_before_create(settings: Settings, count: int, access: Access | None, verify: bool) -> None:
    """Called after the backend's preflight passed and before the launch call.

    ``access`` is how the new nodes will be logged in to (None if the backend has no SSH
    access); ``verify`` is False under ``--no-verify``. Raise
    :class:`ess.errors.UsageError` to veto the launch (a budget policy, or a check plugin
    that finds the private key unusable); nothing has been launched yet, so nothing
    needs cleaning up.
    """


@hookspec
def ess_after_create(settings: Settings, nodes: list[Node]) -> None:
    """Called once the new ``nodes`` are running and (unless ``--no-verify``) verified.

    Use it to bootstrap, register or audit nodes. An exception here is a failed create:
    the core rolls back the nodes of this run unless ``--keep-on-failure`` was given.
    """


@hookspec
def ess_before_terminate(settings: Settings, nodes: list[Node]) -> None:
    """Called with the nodes about to be terminated, after the user confirmed.

    Use it to drain or deregister nodes. Raising :class:`ess.errors.EssError` aborts the
    termination before any node is touched.
    """


# -- health checks ---------------------------------------------------------------------
@hookspec
def ess_check_nodes(
    nodes: list[Node], access: Access, settings: Settings, progress: Progress
) -> list[CheckResult] | None:
    """Check that ``nodes`` are healthy; return one :class:`CheckResult` per node.

    Called by ``create`` (after the nodes are running, unless ``--no-verify``) and by
    ``verify``. Every implementation runs, each returning its own results; a node passes
    only if all its results are ok. Parallelise inside: ess calls each checker once with
    all nodes. Respect ``settings["ssh_timeout"]`` style deadlines so no node can hang the
    run, and report progress with ``progress.stage(...)`` / ``progress.update(...)``.
    ``access`` names the user and private key for the cluster. Return None to abstain.
    """


# -- remote execution -------------------------------------------------------------------
@hookspec(firstresult=True)
def ess_run_command(
    nodes: list[Node],
    command: str,
    access: Access,
    settings: Settings,
    progress: Progress,
    output: Callable[[str, str, bytes], None] | None,
) -> list[CommandResult] | None:
    """Run ``command`` (a shell command line) on every node; one :class:`CommandResult` each.

    Called by ``ess instance <backend> exec -- CMD`` with the cluster's running nodes.
    Run in parallel with bounded concurrency and a deadline, check host keys as for
    verification, and never retry the command itself (it may not be idempotent).
    First result wins: ess's SSH plugin implements it; return None to let it.

    ``output`` (since hook API 1.1) is ``output(node_id, stream, chunk)``: call it, from
    any thread, with each chunk of bytes a node prints as it arrives (``stream`` is
    ``"stdout"`` or ``"stderr"``); the core prints it live as ``<node> | line``. It is None
    when the core wants no live output (``--json``). Either way keep only a bounded tail of
    each stream in the :class:`CommandResult` (ess's SSH plugin keeps 64 KiB) and set
    ``truncated`` when more was printed: a node may print gigabytes. An implementation
    that does not take ``output`` keeps working; the core then prints its results at the end.
    """


@hookspec(firstresult=True)
def ess_push_files(
    nodes: list[Node], source: Path, destination: str, access: Access, settings: Settings, progress: Progress
) -> list[CommandResult] | None:
    """Copy the file or folder ``source`` to ``destination`` (a folder) on every node.

    Called by ``ess instance <backend> push SRC [--dest DIR]``. ``destination`` is created
    if missing; a folder is copied recursively with its name kept. Parallel, bounded, with
    deadlines, host keys checked. First result wins (ess's SSH plugin copies over SFTP).
    """


# -- command line ----------------------------------------------------------------------
@hookspec
def ess_register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the top-level ``ess`` command.

    Called once at start-up with the root group. Keep module-level imports light:
    ``ess --help`` runs this hook. Add new names only: a plugin whose commands would
    replace one already there (``instance``, another plugin's) adds none of them, and gets
    a load error.
    """
