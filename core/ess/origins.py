"""Where clusters were created from: a small user-level registry, launch id -> config file.

``ess clusters`` shows, for each cluster, the config file that made it, so its terminate
command can name it. The cloud does not know the file (and should not: a path on a laptop
is no business of the account), so ``create`` records it here, keyed by the launch id that
every node of the launch carries in its ``ess:launch`` tag. It is a convenience, never a
source of truth: a missing, damaged or unwritable registry only means the config column
says "-", and a failure to record never stops a launch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from .errors import EssError
from .files import locked_json
from .paths import state_dir

log = logging.getLogger(__name__)

REGISTRY_NAME = "origins.json"
#: Launches remembered; the oldest are forgotten first (a cluster older than the last
#: 5,000 launches on this machine just loses its config column).
MAX_LAUNCHES = 5000


def registry_path() -> Path:
    return state_dir() / REGISTRY_NAME


def remember(launch_id: str, backend: str, cluster: str, config_path: Path | None) -> None:
    """Record that ``launch_id`` was made from ``config_path`` (nothing without a config file)."""
    if config_path is None:
        return
    try:
        with locked_json(registry_path(), write=True) as launches:
            launches[launch_id] = {
                "config": str(Path(config_path).expanduser().resolve()),
                "backend": backend,
                "cluster": cluster,
                "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            if len(launches) > MAX_LAUNCHES:
                oldest = sorted(launches, key=lambda key: str(launches[key].get("at", "")))
                for key in oldest[: len(launches) - MAX_LAUNCHES]:
                    del launches[key]
    except (EssError, OSError, AttributeError) as exc:  # AttributeError: an entry that is not a table
        log.debug("origins: could not record launch %s: %s", launch_id, exc)


def configs_of(launch_ids: Iterable[str]) -> dict[str, Path]:
    """The config file each of ``launch_ids`` was made from, for those recorded whose file still exists."""
    wanted = set(launch_ids)
    if not wanted:
        return {}
    try:
        # Written atomically: a plain read sees the old registry or the new one, never half.
        launches = json.loads(registry_path().read_text())
    except (EssError, OSError, ValueError) as exc:
        log.debug("origins: registry not read: %s", exc)
        return {}
    found: dict[str, Path] = {}
    for launch_id in wanted:
        entry = launches.get(launch_id) if isinstance(launches, dict) else None
        config = entry.get("config") if isinstance(entry, dict) else None
        if isinstance(config, str) and Path(config).is_file():
            found[launch_id] = Path(config)
    return found
