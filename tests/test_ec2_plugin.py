"""The EC2 plugin as ess sees it: registration, declared settings, the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.ec2_world import make_world

from ess import plugins
from ess.models import TAG_CLUSTER

ESSENTIA_KEYS = (
    "aws_credential",
    "use_private_ip",
    "instance_tag",
    "instance_type",
    "instance_count",
    "key_name",
    "security_groups",
    "username",
)


def test_plugin_module_is_import_light():
    code = (
        "import sys, ess_ec2.plugin as p\nassert p.ess_backends()[0].name == 'ec2'\n"
        "print([m for m in ('boto3', 'botocore', 'paramiko', 'moto') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_backend_is_registered_with_essentia_keys_and_help():
    backend = plugins.backends()["ec2"]
    specs = {spec.key: spec for spec in backend.settings}
    assert all(key in specs for key in ESSENTIA_KEYS)
    assert all(spec.help for spec in backend.settings)
    assert (specs["instance_type"].default, specs["instance_type"].flag) == ("m3.medium", "--type")
    count = specs["instance_count"]
    assert (count.type, count.default, count.minimum, count.maximum, count.flag) == ("int", 2, 1, 1000, "--number")
    assert specs["instance_tag"].default == "Essentia Worker Node"
    assert specs["use_private_ip"].default is False and specs["username"].default == "ec2-user"
    assert specs["key_name"].required and specs["security_groups"].type == "list"
    assert specs["region"].flag == "--region" and specs["region"].commands == ("*",)
    assert specs["profile"].flag == "--profile" and specs["profile"].commands == ("*",)
    assert "cluster" not in specs  # a core setting


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    return make_world(tmp_path, monkeypatch)


def test_cli_create_list_terminate_with_the_essentia_config(world, ess):
    conf = str(world.conf)
    created = ess(
        "--json",
        "instance",
        "ec2",
        "create",
        "--number",
        "3",
        "--type",
        "t3.large",
        "--no-verify",
        "--yes",
        "--config",
        conf,
    )
    assert created.code == 0, created.err
    listed = ess("instance", "ec2", "list", "--json", "--config", conf)
    assert listed.code == 0, listed.err
    nodes = json.loads(listed.out)["nodes"]
    assert len(nodes) == 3 and {n["instance_type"] for n in nodes} == {"t3.large"}
    assert {n["tags"][TAG_CLUSTER] for n in nodes} == {"default"}
    foreign = world.foreign(1)
    gone = ess("instance", "ec2", "terminate", "all", "--yes", "--config", conf)
    assert gone.code == 0, gone.err
    assert json.loads(ess("instance", "ec2", "list", "--json", "--config", conf).out)["nodes"] == []
    assert world.states(foreign) == {foreign[0]: "running"}


def test_cli_preflight_error_is_one_line_exit_2(world, ess):
    world.pem.chmod(0o644)
    result = ess("instance", "ec2", "create", "--yes", "--config", str(world.conf))
    assert result.code == 2
    assert result.err.strip().count("\n") == 0
    assert f"chmod 600 {world.pem}" in result.err and "Traceback" not in result.err
    assert world.ec2.describe_instances()["Reservations"] == []
