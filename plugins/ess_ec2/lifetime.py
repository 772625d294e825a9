"""What a cluster's time limits (``max_lifetime``, ``idle_timeout``) add to an EC2 launch.

The nodes enforce the limits themselves (issue 16), so they hold when the master is gone:
a user-data part (a shell script cloud-init runs once, as root, at first boot) installs
ess's node agent (:func:`ess.lifetime.agent_script`), writes the deadline to
:data:`DEADLINE_FILE` and the idle settings to :data:`CONF_FILE`, and has the agent run
every minute (a systemd timer; cron where there is no systemd; a background loop where
there is neither). The agent's action is ``shutdown -h now``; the instance's
``InstanceInitiatedShutdownBehavior`` decides whether that terminates or stops it, one
behaviour per instance, hence the one combination refused: ``--ttl`` with
``--idle-action stop``. docs/lifetime.md is the user's guide.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from ess import lifetime
from ess.errors import UsageError
from ess.models import SHUTTING_DOWN, STOPPED, STOPPING, TAG_EXPIRES, TERMINATED, Node, Settings

from .userdata import Part

#: Where the node keeps its deadline (``EPOCH STAMP``); ``extend`` rewrites it over SSH.
DEADLINE_FILE = "/etc/ess/expires"
CONF_FILE = "/etc/ess/agent.conf"
AGENT_PATH = "/usr/local/lib/ess/ess-agent.sh"
#: EC2's StateReason code for a shutdown started inside the instance (the agent's is one).
SELF_SHUTDOWN = "Client.InstanceInitiatedShutdown"
#: The agent looks once a minute: a shorter idle window could not be honoured.
SHORTEST_IDLE = 60
#: After a boot the agent first looks this late, so a node started after its deadline (or
#: its idle window) gives ``extend`` time to move it before it shuts down again.
BOOT_GRACE = "3min"


def check(settings: Settings) -> lifetime.Limits:
    """The limits, valid for EC2 (UsageError naming the option): no call is made before."""
    chosen = lifetime.limits(settings)
    if chosen.idle is not None and chosen.idle < SHORTEST_IDLE:
        raise UsageError(
            f"{settings.where('idle_timeout')}: {settings.get('idle_timeout')} is too short on ec2 "
            "(the node agent looks once a minute: give at least 1m)"
        )
    if chosen.ttl is not None and chosen.idle is not None and chosen.idle_action == lifetime.STOP:
        raise UsageError(
            f"{settings.where('idle_action')}: stop cannot go with a time limit ({settings.where('max_lifetime')} "
            f"{settings.get('max_lifetime')}) on ec2: an instance either stops or terminates when it shuts "
            "itself down (use --idle-action terminate, or --ttl none)"
        )
    market = str(settings.get("market") or "on-demand")
    if chosen.idle is not None and chosen.idle_action == lifetime.STOP and market != "on-demand":
        raise UsageError(
            f"{settings.where('idle_action')}: stop is not possible with market {market} (a one-time spot "
            "instance cannot stop on shutdown; use --idle-action terminate, or market on-demand)"
        )
    return chosen


def shutdown_behavior(chosen: lifetime.Limits) -> str:
    """Terminate, unless the only limit is an idle window whose action is stop."""
    return "stop" if chosen.ttl is None and chosen.idle_action == lifetime.STOP else "terminate"


def run_arguments(settings: Settings) -> dict[str, Any]:
    """RunInstances / launch template arguments the limits need (none when no limit is set)."""
    chosen = check(settings)
    if not chosen.any:
        return {}
    return {"InstanceInitiatedShutdownBehavior": shutdown_behavior(chosen)}


def parts(settings: Settings, expires: str | None = None) -> list[Part]:
    """User-data parts ess adds to the user's own (none when no limit is set).

    The node's deadline is the launch's ``ess:expires`` tag to the second: ``expires`` when
    given, else the one :func:`ess.lifetime.launch_tags` set for this command's launch, else
    (a caller that made no launch request) now + ttl.
    """
    chosen = check(settings)
    if not chosen.any:
        return []
    deadline = None
    if chosen.ttl is not None:
        deadline = (
            lifetime.parse_stamp(expires)
            or lifetime.launch_deadline(settings)
            or lifetime.now_utc() + timedelta(seconds=chosen.ttl)
        )
    return [Part(install_script(chosen, deadline), "text/x-shellscript", "ess-lifetime.sh")]


def agent_text() -> str:
    """The agent as the node gets it: comment lines dropped (user data is limited to 16 KB)."""
    lines = lifetime.agent_script().read_text().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if not line.lstrip().startswith("#")]
    return "\n".join(kept) + "\n"


def install_script(chosen: lifetime.Limits, deadline: Any = None) -> str:
    """The user-data part: install the agent, its settings and the deadline, and schedule it.

    Paths start with ``$ESS_ROOT`` (empty on a node) so a test can run this very script in
    a scratch folder with a fake ``systemctl``.
    """
    conf = [f': "${{ESS_IDLE_TIMEOUT:={chosen.idle}}}"'] if chosen.idle is not None else []
    deadline_line = ""
    if deadline is not None:
        line = f"{int(deadline.timestamp())} {lifetime.stamp(deadline)}"
        deadline_line = f"printf '%s\\n' {shlex.quote(line)} >\"$R{DEADLINE_FILE}\"\n"
    tick = f"/bin/sh {AGENT_PATH} tick"
    return f"""#!/bin/sh
# ess: this node ends itself at its deadline or after its idle window (docs/lifetime.md).
R=${{ESS_ROOT:-}}
mkdir -p "$R/etc/ess" "$R/usr/local/lib/ess"
cat >"$R{AGENT_PATH}" <<'ESS_AGENT_END'
{agent_text()}ESS_AGENT_END
chmod 755 "$R{AGENT_PATH}"
cat >"$R{CONF_FILE}" <<'ESS_CONF_END'
{"".join(line + chr(10) for line in conf)}ESS_CONF_END
{deadline_line}if [ -d "$R/run/systemd/system" ] && command -v systemctl >/dev/null 2>&1; then
    mkdir -p "$R/etc/systemd/system"
    cat >"$R/etc/systemd/system/ess-agent.service" <<'ESS_UNIT_END'
[Unit]
Description=ess node agent: deadline and idle check (docs/lifetime.md)
[Service]
Type=oneshot
ExecStart={tick}
ESS_UNIT_END
    cat >"$R/etc/systemd/system/ess-agent.timer" <<'ESS_UNIT_END'
[Unit]
Description=ess node agent, every minute
[Timer]
OnBootSec={BOOT_GRACE}
OnUnitActiveSec=1min
AccuracySec=5s
[Install]
WantedBy=timers.target
ESS_UNIT_END
    systemctl daemon-reload
    systemctl enable --now ess-agent.timer
elif [ -d "$R/etc/cron.d" ]; then
    printf '%s\\n' '* * * * * root sleep 5; {tick}' >"$R/etc/cron.d/ess-agent"
else
    nohup /bin/sh "$R{AGENT_PATH}" loop >/dev/null 2>&1 &
fi
"""


def ended_itself(instance: Mapping[str, Any], node: Node) -> Node | None:
    """``node`` as ended on purpose, if it shut itself down under its time limits; else None.

    A node launched with a limit that EC2 says shut down from inside is not lost: what it
    became (stopped, or terminated: then ``list`` leaves it out, as after ``terminate``) is
    what was asked of it. Any shutdown from inside counts, the agent's or a user's own.
    """
    limited = TAG_EXPIRES in node.tags or lifetime.TAG_IDLE_TIMEOUT in node.tags
    reason = instance.get("StateReason") or {}
    if not limited or reason.get("Code") != SELF_SHUTDOWN:
        return None
    if node.state in (STOPPING, STOPPED):
        return replace(node, desired=STOPPED, reason="stopped itself (time limit)")
    if node.state in (SHUTTING_DOWN, TERMINATED):
        return replace(node, desired=TERMINATED, reason="terminated itself (time limit)")
    return None
