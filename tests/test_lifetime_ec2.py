"""Time limits on EC2 (moto): what the launch carries, what `extend` moves, and the user-data
part itself run under a real shell in a scratch root with a fake systemctl."""

from __future__ import annotations

import base64
import email
import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support import fake_runner
from support.fault_world import lean_world

from ess import lifetime
from ess.errors import UsageError
from ess.models import TAG_EXPIRES
from ess.settings import load_settings
from ess_ec2 import lifetime as ec2_lifetime
from ess_ec2.backend import Ec2Backend

BOOT = "#!/bin/sh\necho 'the user s own boot script' > /tmp/booted\n"


@pytest.fixture
def world(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")  # moto's addresses answer no SSH
    monkeypatch.setenv("ESS_PLUGINS", "support.fake_runner")
    fake_runner.CALLS.clear()
    fake_runner.FAIL_ON.clear()
    made = lean_world(moto_endpoint, tmp_path, monkeypatch)
    monkeypatch.chdir(made.folder)
    return made


def instances(world) -> list[dict]:
    pages = world.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}]
    )["Reservations"]
    return [i for r in pages for i in r["Instances"]]


def tags_of(instance: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def user_data_parts(world, instance_id: str) -> list[tuple[str, str, bytes]]:
    raw = world.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    message = email.message_from_bytes(base64.b64decode(raw["UserData"]["Value"]))
    return [
        (p.get_content_type(), p.get_filename() or "", p.get_payload(decode=True))
        for p in message.walk()
        if not p.is_multipart()
    ]


def shutdown_behavior(world, instance_id: str) -> str:
    answer = world.ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    return answer["InstanceInitiatedShutdownBehavior"]["Value"]


def test_the_launch_carries_the_part_the_user_data_and_the_tag(world, ess) -> None:
    (world.folder / "boot.sh").write_text(BOOT)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    created = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "2", "--ttl", "8h", "--idle", "30m",
        "--config", str(world.conf), "--json",
    )  # fmt: skip
    assert created.code == 0, created
    assert "no time limit" not in created.err
    launched = instances(world)
    assert len(launched) == 2
    assert world.calls.count("RunInstances", dry_run=False) == 1
    for instance in launched:
        tags = tags_of(instance)
        expires = lifetime.parse_stamp(tags[TAG_EXPIRES])
        assert expires is not None and before + timedelta(hours=8) <= expires <= before + timedelta(hours=8, minutes=1)
        assert tags[lifetime.TAG_IDLE_TIMEOUT] == "1800" and tags[lifetime.TAG_IDLE_ACTION] == "terminate"
        assert shutdown_behavior(world, instance["InstanceId"]) == "terminate"
        parts = user_data_parts(world, instance["InstanceId"])
        assert [p[0] for p in parts] == ["text/x-shellscript"]  # no user data of the user's: ess's part alone
        script = parts[0][2].decode()
        epoch = int(expires.timestamp())
        assert f"'{epoch} {tags[TAG_EXPIRES]}'" in script  # the node's deadline is the tag's, to the second
        assert ': "${ESS_IDLE_TIMEOUT:=1800}"' in script and "systemctl enable --now ess-agent.timer" in script
    assert {n["expires"] for n in json.loads(created.out)["nodes"]} == {tags_of(launched[0])[TAG_EXPIRES]}


def test_the_users_user_data_goes_unchanged_beside_the_part(world, ess) -> None:
    (world.folder / "boot.sh").write_text(BOOT)
    created = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "1", "--ttl", "2h",
        "--config", str(world.conf),
    )  # fmt: skip
    assert created.code == 0, created
    world.conf.write_text(world.conf.read_text() + "user_data: boot.sh\n")
    again = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "1", "--ttl", "2h", "--cluster", "two",
        "--config", str(world.conf),
    )  # fmt: skip
    assert again.code == 0, again
    [second] = [i for i in instances(world) if tags_of(i)["ess:cluster"] == "two"]
    parts = user_data_parts(world, second["InstanceId"])
    assert parts[0] == ("text/x-shellscript", parts[0][1], BOOT.encode())  # the user's, first, byte for byte
    assert parts[1][1] == "ess-lifetime.sh" and b"ess-agent.sh tick" in parts[1][2]


def test_idle_stop_alone_makes_the_instances_stop_on_shutdown(world, ess) -> None:
    created = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "1", "--idle", "45m",
        "--idle-action", "stop", "--config", str(world.conf),
    )  # fmt: skip
    assert created.code == 0, created
    [instance] = instances(world)
    assert shutdown_behavior(world, instance["InstanceId"]) == "stop"
    assert TAG_EXPIRES not in tags_of(instance)
    assert tags_of(instance)[lifetime.TAG_IDLE_ACTION] == "stop"


def test_no_limit_on_a_billable_cluster_is_said_once(world, ess) -> None:
    created = ess("instance", "ec2", "create", "--yes", "--no-verify", "--number", "1", "--config", str(world.conf))
    assert created.code == 0, created
    notes = [line for line in created.err.splitlines() if "no time limit" in line]
    assert notes == [
        "ess: note: cluster 'default' has no time limit and bills until it is terminated "
        "(set one with --ttl 8h or --idle 30m, or max_lifetime in the config; see docs/lifetime.md)"
    ]
    [instance] = instances(world)
    assert TAG_EXPIRES not in tags_of(instance)
    answer = world.ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    assert "Value" not in answer.get("UserData", {})  # nothing added without a limit


def test_max_lifetime_from_the_config_file_is_a_limit_too(world, ess) -> None:
    """A default from anywhere (here the project config; H5's user-level file the same way)."""
    world.conf.write_text(world.conf.read_text() + "max_lifetime: 1d\n")
    created = ess("instance", "ec2", "create", "--yes", "--no-verify", "--number", "1", "--config", str(world.conf))
    assert created.code == 0, created
    assert "no time limit" not in created.err
    [instance] = instances(world)
    assert TAG_EXPIRES in tags_of(instance)
    # --ttl none drops it for one cluster.
    dropped = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "1", "--ttl", "none", "--cluster", "open",
        "--config", str(world.conf),
    )  # fmt: skip
    assert dropped.code == 0, dropped
    assert "no time limit" in dropped.err


def test_extend_moves_the_tag_in_one_call_and_the_on_node_deadline_over_ssh(world, ess) -> None:
    created = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "3", "--ttl", "1h",
        "--config", str(world.conf), "--json",
    )  # fmt: skip
    assert created.code == 0, created
    ids = sorted(n["id"] for n in json.loads(created.out)["nodes"])
    world.calls.reset()
    before = datetime.now(timezone.utc).replace(microsecond=0)
    extended = ess("instance", "ec2", "extend", "--ttl", "4h", "--config", str(world.conf), "--json")
    assert extended.code == 0, extended
    answer = json.loads(extended.out)
    expires = lifetime.parse_stamp(answer["expires"])
    assert expires is not None and before + timedelta(hours=4) <= expires <= before + timedelta(hours=4, minutes=1)
    assert {tags_of(i)[TAG_EXPIRES] for i in instances(world)} == {answer["expires"]}
    assert world.calls.count("CreateTags") == 1
    assert world.calls.mutating() == ["CreateTags"]
    [(command, on)] = fake_runner.CALLS
    assert sorted(on) == ids
    assert f"{int(expires.timestamp())} {answer['expires']}" in command and "/etc/ess/expires" in command
    assert {n["on_node"]["ok"] for n in answer["nodes"]} == {True}


def test_extend_fails_loudly_where_the_node_kept_its_old_deadline(world, ess) -> None:
    created = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "2", "--ttl", "1h",
        "--config", str(world.conf), "--json",
    )  # fmt: skip
    first, second = sorted(n["id"] for n in json.loads(created.out)["nodes"])
    fake_runner.FAIL_ON.add(first)
    extended = ess("instance", "ec2", "extend", "--ttl", "3h", "--config", str(world.conf))
    assert extended.code == 3, extended  # partial: one node moved, one did not
    assert f"{first} (connection refused)" in extended.err and "still end at their old deadline" in extended.err
    assert "FAILED: connection refused" in extended.out


def test_extend_only_the_named_node_and_stopped_ones_get_the_tag_only(world, ess) -> None:
    created = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "2", "--ttl", "1h",
        "--config", str(world.conf), "--json",
    )  # fmt: skip
    first, second = sorted(n["id"] for n in json.loads(created.out)["nodes"])
    world.ec2.stop_instances(InstanceIds=[second])
    extended = ess("instance", "ec2", "extend", "--ttl", "2h", second, "--config", str(world.conf))
    assert extended.code == 0, extended
    assert fake_runner.CALLS == []  # the one named node is stopped: nothing to reach
    assert "not running: tag only" in extended.out and "keep their old on-node deadline" in extended.err
    by_id = {i["InstanceId"]: tags_of(i)[TAG_EXPIRES] for i in instances(world)}
    assert by_id[first] != by_id[second]


def test_extend_needs_a_ttl(world, ess) -> None:
    result = ess("instance", "ec2", "extend", "--config", str(world.conf))
    assert result.code == 2 and result.err.splitlines() == [
        "ess: extend: give the new time limit with --ttl (e.g. ess instance ec2 extend --ttl 4h)"
    ]


# -- the user-data part, run -------------------------------------------------------------------
def settings(**cli: str):
    return load_settings(Ec2Backend(), None, cli=cli, env={})


def test_the_part_installs_the_agent_and_a_timer_and_the_installed_agent_ends_the_node(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "run" / "systemd" / "system").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl.calls"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "systemctl").chmod(0o755)
    expires = "2026-11-30T20:00:00Z"
    [part] = ec2_lifetime.parts(settings(max_lifetime="8h", idle_timeout="30m"), expires)
    assert part.content_type == "text/x-shellscript"
    script = tmp_path / "part.sh"
    script.write_text(part.content)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ESS_ROOT": str(root)}
    ran = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert ran.returncode == 0, ran.stderr
    assert calls.read_text().splitlines() == ["daemon-reload", "enable --now ess-agent.timer"]
    timer = (root / "etc/systemd/system/ess-agent.timer").read_text()
    assert "OnUnitActiveSec=1min" in timer and "OnBootSec=3min" in timer
    assert (
        "ExecStart=/bin/sh /usr/local/lib/ess/ess-agent.sh tick"
        in (root / "etc/systemd/system/ess-agent.service").read_text()
    )
    epoch = int(datetime(2026, 11, 30, 20, tzinfo=timezone.utc).timestamp())
    assert (root / "etc/ess/expires").read_text() == f"{epoch} {expires}\n"

    # The installed agent, with the installed settings, on a fake clock past the deadline.
    agent = root / "usr/local/lib/ess/ess-agent.sh"
    assert os.access(agent, os.X_OK)
    shutdowns = tmp_path / "shutdowns"
    run_env = {
        "PATH": os.environ["PATH"],
        "ESS_AGENT_CONF": str(root / "etc/ess/agent.conf"),
        "ESS_EXPIRES_FILE": str(root / "etc/ess/expires"),
        "ESS_AGENT_LOG": str(tmp_path / "agent.log"),
        "ESS_AGENT_SYSLOG": "0",
        "ESS_SHUTDOWN_CMD": f"echo now >> {shutdowns}",
        "ESS_IDLE_STATE": str(tmp_path / "last-busy"),
        "ESS_LOAD_CMD": "echo 0.00",
        "ESS_SESSIONS_CMD": "echo 0",
    }
    for now in (epoch - 1, epoch):
        subprocess.run(["sh", str(agent), "tick"], env={**run_env, "ESS_NOW_CMD": f"echo {now}"}, check=True)
    assert shutdowns.read_text() == "now\n"
    # The idle window of 30 m came from the installed agent.conf.
    shutdowns.unlink()
    far = epoch + 10 * 86400  # a deadline far ahead: only idle can act
    (root / "etc/ess/expires").write_text(f"{far} later\n")
    for now in (1_000, 1_000 + 1799, 1_000 + 1800):
        subprocess.run(["sh", str(agent), "tick"], env={**run_env, "ESS_NOW_CMD": f"echo {now}"}, check=True)
    assert shutdowns.read_text() == "now\n"
    assert "idle for 1800s (idle_timeout 1800s)" in (tmp_path / "agent.log").read_text()


def test_without_systemd_the_part_falls_back_to_cron(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc" / "cron.d").mkdir(parents=True)
    [part] = ec2_lifetime.parts(settings(max_lifetime="1h"))
    env = {"PATH": os.environ["PATH"], "ESS_ROOT": str(root)}
    subprocess.run(["sh", "-c", part.content], env=env, check=True, timeout=30)
    assert "root sleep 5; /bin/sh /usr/local/lib/ess/ess-agent.sh tick" in (root / "etc/cron.d/ess-agent").read_text()
    assert (root / "etc/ess/agent.conf").read_text() == ""  # no idle limit: nothing set


def test_no_limit_adds_nothing_to_the_launch() -> None:
    assert ec2_lifetime.parts(settings()) == []
    assert ec2_lifetime.run_arguments(settings()) == {}
    assert ec2_lifetime.run_arguments(settings(max_lifetime="none")) == {}


def test_the_part_fits_in_user_data_with_room_for_the_users() -> None:
    [part] = ec2_lifetime.parts(settings(max_lifetime="8h", idle_timeout="30m"))
    assert len(base64.b64encode(part.content.encode())) < 8192  # half of EC2's 16 KB: the rest is the user's


def test_idle_stop_is_refused_for_spot() -> None:
    with pytest.raises(UsageError) as caught:
        ec2_lifetime.run_arguments(settings(idle_timeout="30m", idle_action="stop", market="spot"))
    assert str(caught.value).startswith("--idle-action: stop is not possible with market spot")
    assert ec2_lifetime.run_arguments(settings(idle_timeout="30m", market="spot")) == {
        "InstanceInitiatedShutdownBehavior": "terminate"
    }


def self_shutdown(parsed: dict, **_: object) -> None:
    """What EC2 says of an instance that shut itself down (moto says "user initiated")."""
    for reservation in parsed.get("Reservations", []):
        for instance in reservation["Instances"]:
            if instance["State"]["Name"] in ("shutting-down", "terminated", "stopping", "stopped"):
                instance["StateReason"] = {
                    "Code": ec2_lifetime.SELF_SHUTDOWN,
                    "Message": "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                }


def test_nodes_that_ended_themselves_are_not_lost(world, ess) -> None:
    created = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "3", "--ttl", "1h", "--idle", "30m",
        "--config", str(world.conf), "--json",
    )  # fmt: skip
    first, second, third = sorted(n["id"] for n in json.loads(created.out)["nodes"])
    world.ec2.terminate_instances(InstanceIds=[first])  # as `shutdown -h now` with behaviour terminate
    world.ec2.stop_instances(InstanceIds=[second])
    world.calls.handlers.append(("after-call.ec2.DescribeInstances", self_shutdown))
    status = ess("instance", "ec2", "status", "--config", str(world.conf), "--json")
    assert status.code == 0, status  # nothing lost: exit 0
    nodes = {n["id"]: n for n in json.loads(status.out)["nodes"]}
    assert first not in nodes  # terminated itself: gone from the list, as after terminate
    assert (nodes[second]["state"], nodes[second]["lost"]) == ("stopped", False)
    assert nodes[second]["reason"] == "stopped itself (time limit)"
    assert nodes[third]["state"] == "running"


def test_shut_down_from_outside_or_without_a_limit_is_still_lost(world, ess) -> None:
    created = ess(
        "instance", "ec2", "create", "--yes", "--no-verify", "--number", "1", "--config", str(world.conf), "--json"
    )
    [node] = json.loads(created.out)["nodes"]
    world.ec2.terminate_instances(InstanceIds=[node["id"]])
    world.calls.handlers.append(("after-call.ec2.DescribeInstances", self_shutdown))
    status = ess("instance", "ec2", "status", "--config", str(world.conf), "--json")
    assert status.code != 0, status  # no limit: a shutdown from inside is not ess's doing
    assert json.loads(status.out)["nodes"][0]["lost"] is True
