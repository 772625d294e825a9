"""ess.lifetime: durations, the deadline tags, time left, and what create says about limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ess import deadlines, lifetime
from ess.errors import UsageError
from ess.models import TAG_EXPIRES, Node
from ess.settings import load_settings
from ess_ec2.backend import Ec2Backend
from ess_local.backend import LocalBackend

NOW = datetime(2026, 11, 30, 14, 0, 0, tzinfo=timezone.utc)


def settings(backend=None, **cli: str):
    return load_settings(backend or LocalBackend(), None, cli=cli, env={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("8h", 28800), ("2d", 172800), ("90d", 90 * 86400), ("none", None)],
)
def test_durations(text: str, seconds: int | None) -> None:
    assert lifetime.seconds(settings(max_lifetime=text), "max_lifetime") == seconds


@pytest.mark.parametrize("text", ["0", "0h", "3y", "abc", "8", "-1h", "1.5h", "8 h", "8H", ""])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        settings(max_lifetime=text)
    assert str(caught.value).startswith("--ttl: ") and "is not a valid max_lifetime" in str(caught.value)


def test_too_long_is_refused_with_the_most_allowed() -> None:
    with pytest.raises(UsageError) as caught:
        lifetime.limits(settings(max_lifetime="91d"))
    assert str(caught.value) == "--ttl: 91d is too long (at most 90d)"


def test_the_environment_sets_limits_too() -> None:
    resolved = load_settings(LocalBackend(), None, cli={}, env={"ESS_MAX_LIFETIME": "2h", "ESS_IDLE_TIMEOUT": "5m"})
    assert lifetime.limits(resolved) == lifetime.Limits(ttl=7200, idle=300, idle_action="terminate")


def test_launch_tags() -> None:
    assert lifetime.launch_tags(settings(), NOW) == {}
    tags = lifetime.launch_tags(settings(max_lifetime="8h", idle_timeout="30m", idle_action="stop"), NOW)
    assert tags == {
        TAG_EXPIRES: "2026-11-30T22:00:00Z",
        lifetime.TAG_IDLE_TIMEOUT: "1800",
        lifetime.TAG_IDLE_ACTION: "stop",
    }
    assert lifetime.parse_stamp(tags[TAG_EXPIRES]) == NOW + timedelta(hours=8)
    assert lifetime.parse_stamp("yesterday") is None and lifetime.parse_stamp(None) is None


def test_every_launch_request_carries_them() -> None:
    from ess import provision

    request = provision.launch_request(settings(max_lifetime="1h"), 2)
    expires = lifetime.parse_stamp(request.tags[TAG_EXPIRES])
    assert expires is not None
    assert timedelta(minutes=59) < expires - datetime.now(timezone.utc) <= timedelta(hours=1)


@pytest.mark.parametrize(
    ("left", "shown"),
    [
        (timedelta(days=2, hours=4, minutes=5), "2d 4h"),
        (timedelta(hours=3, minutes=5), "3h05m"),
        (timedelta(minutes=7, seconds=3), "7m03s"),
        (timedelta(seconds=9), "9s"),
        (timedelta(0), "expired"),
        (timedelta(hours=-1), "expired"),
    ],
)
def test_time_left(left: timedelta, shown: str) -> None:
    node = Node("n", "running", tags={TAG_EXPIRES: lifetime.stamp(NOW + left)})
    assert lifetime.time_left(node, NOW) == shown


def test_time_left_without_a_deadline() -> None:
    assert lifetime.time_left(Node("n", "running"), NOW) is None
    assert lifetime.time_left(Node("n", "running", tags={TAG_EXPIRES: "garbage"}), NOW) is None


def test_the_deadline_command_writes_the_file_whole() -> None:
    command = deadlines.deadline_command("/etc/ess/expires", NOW)
    epoch = int(NOW.timestamp())
    assert command == (
        f'sudo -n sh -c \'printf "%s\\n" "{epoch} 2026-11-30T14:00:00Z" > /etc/ess/expires.new '
        "&& mv -f /etc/ess/expires.new /etc/ess/expires'"
    )


def test_backends_declare_whether_they_enforce() -> None:
    from ess_hosts.backend import HostsBackend

    assert LocalBackend.enforces_lifetime and Ec2Backend.enforces_lifetime
    assert not HostsBackend.enforces_lifetime
    assert Ec2Backend.deadline_file == "/etc/ess/expires" and LocalBackend.deadline_file is None


def test_a_backend_that_cannot_enforce_says_so_in_one_line_at_create(memory, ess) -> None:
    created = ess("instance", "memory", "create", "--number", "1", "--ttl", "1h", "--idle", "10m")
    assert created.code == 0, created
    lines = [line for line in created.err.splitlines() if "cannot enforce" in line]
    assert lines == [
        "ess: warning: backend memory cannot enforce --ttl and --idle (its nodes do not end themselves); "
        "end them with: ess instance memory terminate all"
    ]


def test_extend_on_a_backend_without_limits_is_refused(memory, ess) -> None:
    ess("instance", "memory", "create", "--number", "1")
    result = ess("instance", "memory", "extend", "--ttl", "1h")
    assert result.code == 2
    assert result.err.splitlines() == [
        "ess: extend: backend memory has no time limits to extend (its nodes do not end themselves)"
    ]


def test_what_extend_writes_on_a_node_is_what_the_agent_reads(tmp_path) -> None:
    """The command run over SSH (without sudo here), then the agent on that file."""
    import os
    import subprocess

    path = tmp_path / "expires"
    path.write_text("1 old\n")
    command = deadlines.deadline_command(str(path), NOW).replace("sudo -n ", "", 1)
    subprocess.run(["sh", "-c", command], check=True, timeout=30)
    epoch = int(NOW.timestamp())
    assert path.read_text() == f"{epoch} 2026-11-30T14:00:00Z\n"
    calls = tmp_path / "calls"
    for now in (epoch - 1, epoch):
        env = {
            "PATH": os.environ["PATH"],
            "ESS_AGENT_CONF": "/dev/null",
            "ESS_EXPIRES_FILE": str(path),
            "ESS_AGENT_LOG": str(tmp_path / "log"),
            "ESS_AGENT_SYSLOG": "0",
            "ESS_NOW_CMD": f"echo {now}",
            "ESS_SHUTDOWN_CMD": f"echo down >> {calls}",
        }
        subprocess.run(["sh", str(lifetime.agent_script()), "deadline"], env=env, check=True, timeout=30)
    assert calls.read_text() == "down\n"


def test_the_ec2_part_writes_the_deadline_of_the_commands_launch_tag() -> None:
    """Whenever preflight runs after the launch request, the node's deadline is the tag's."""
    from ess_ec2 import lifetime as ec2_lifetime

    resolved = settings(Ec2Backend(), max_lifetime="8h")
    tags = lifetime.launch_tags(resolved, NOW)  # a request made "earlier" than the part below
    [part] = ec2_lifetime.parts(resolved)
    epoch = int((NOW + timedelta(hours=8)).timestamp())
    assert f"'{epoch} {tags[TAG_EXPIRES]}'" in part.content
    # Another command's settings are not that command's launch: counted from now.
    [other] = ec2_lifetime.parts(settings(Ec2Backend(), max_lifetime="8h"))
    assert str(epoch) not in other.content


def test_hosts_says_it_cannot_and_that_it_never_shuts_machines_down(capsys) -> None:
    from ess_hosts.backend import HostsBackend

    lifetime.check(HostsBackend(), settings(HostsBackend(), max_lifetime="1h"))  # no sink: stderr
    assert capsys.readouterr().err.splitlines() == [
        "ess: warning: backend hosts cannot enforce --ttl (its nodes do not end themselves); "
        "they are your machines: ess never shuts them down"
    ]
