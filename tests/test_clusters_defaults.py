"""The user-level defaults (issue 16): ``[defaults]`` in ``ess.paths.config_dir()/config.toml``
sits under every project config, above the built-in defaults."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ess.errors import UsageError
from ess.models import TAG_EXPIRES
from ess.paths import config_dir
from ess.settings import load_settings, user_config_path
from ess_local.backend import LocalBackend


def write_user_config(text: str) -> Path:
    path = user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_user_config_lives_in_the_user_config_folder() -> None:
    assert user_config_path() == config_dir() / "config.toml"


def test_a_user_default_applies_when_nothing_else_sets_the_key() -> None:
    path = write_user_config("[defaults]\ninstance_count = 5\nwait_timeout = 42\n")
    settings = load_settings(LocalBackend(), None, env={})
    assert settings["instance_count"] == 5
    assert settings.source("instance_count") == f"{path} [defaults]"
    assert settings["wait_timeout"] == 42.0


def test_the_project_config_the_environment_and_the_command_line_win(tmp_path: Path) -> None:
    write_user_config('[defaults]\ninstance_count = 5\ncluster = "team"\nstart_timeout = 9\n')
    conf = tmp_path / "instance.toml"
    conf.write_text("[local]\ninstance_count = 3\n")
    settings = load_settings(LocalBackend(), conf, cli={"cluster": "mine"}, env={"ESS_START_TIMEOUT": "7"})
    assert (settings["instance_count"], settings.source("instance_count")) == (3, str(conf))
    assert (settings["cluster"], settings.source("cluster")) == ("mine", "--cluster")
    assert (settings["start_timeout"], settings.source("start_timeout")) == (7.0, "ESS_START_TIMEOUT")


def test_a_key_of_another_backend_is_ignored_here() -> None:
    # region is an ec2 setting: a team sets it once for ec2; local has no such key.
    write_user_config('[defaults]\nregion = "eu-west-1"\ninstance_count = 4\n')
    settings = load_settings(LocalBackend(), None, env={})
    assert "region" not in settings.values
    assert settings["instance_count"] == 4


def test_max_lifetime_default_applies() -> None:
    path = write_user_config('[defaults]\nmax_lifetime = "8h"\n')
    settings = load_settings(LocalBackend(), None, env={})
    assert (settings["max_lifetime"], settings.source("max_lifetime")) == ("8h", f"{path} [defaults]")


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    from support.ec2_world import make_world

    return make_world(tmp_path, monkeypatch)


def launched_expiry(world) -> list[str | None]:
    reply = world.ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": ["ess:cluster"]}])
    tags = [{t["Key"]: t["Value"] for t in i.get("Tags", [])} for r in reply["Reservations"] for i in r["Instances"]]
    return [t.get(TAG_EXPIRES) for t in tags]


def test_a_team_default_max_lifetime_makes_every_billable_cluster_expire(ess, world) -> None:
    """The user file's max_lifetime reaches the launch: every node carries ess:expires, and
    create does not say the cluster has no limit."""
    write_user_config('[defaults]\nmax_lifetime = "8h"\n')
    before = datetime.now(timezone.utc)
    made = ess("instance", "ec2", "create", "--config", str(world.conf), "--number", "2", "--no-verify", "--yes")
    assert made.code == 0, made
    assert "no time limit" not in made.err
    expiries = launched_expiry(world)
    assert len(expiries) == 2 and None not in expiries
    deadline = datetime.fromisoformat(str(expiries[0]).replace("Z", "+00:00"))
    assert timedelta(hours=8) - timedelta(minutes=1) <= deadline - before <= timedelta(hours=8, minutes=5)


def test_a_project_config_can_lift_the_team_default(ess, world) -> None:
    write_user_config('[defaults]\nmax_lifetime = "8h"\n')
    world.conf.write_text(world.conf.read_text() + "max_lifetime: none\n")
    made = ess("instance", "ec2", "create", "--config", str(world.conf), "--number", "1", "--no-verify", "--yes")
    assert made.code == 0, made
    assert "no time limit" in made.err  # the billable-without-limit note, once
    assert launched_expiry(world) == [None]


def test_config_show_names_the_user_config_as_the_source(ess) -> None:
    path = write_user_config("[defaults]\ninstance_count = 6\n")
    result = ess("config", "show", "--backend", "local", "--json")
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert shown["backends"]["local"]["instance_count"] == {"value": 6, "source": f"{path} [defaults]"}
    assert shown["user_defaults"] == str(path)
    table = ess("config", "show", "--backend", "local").out
    assert f"user defaults: {path} [defaults]" in table.splitlines()[:2]
    assert any("instance_count" in line and f"{path} [defaults]" in line for line in table.splitlines())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[defaults]\ninstance_count = ", "fix the TOML syntax"),
        ("[defaults]\ninstance_cuont = 3\n", "[defaults] instance_cuont: unknown key (did you mean instance_count?)"),
        ('[defaults]\ninstance_count = "many"\n', "[defaults] instance_count: 'many' is not a whole number"),
        ("[default]\ninstance_count = 3\n", "[default]: unknown table"),
        ("instance_count = 3\n", "a setting outside any [section]"),
    ],
)
def test_a_bad_user_config_is_one_line_and_exit_2(ess, text: str, expected: str) -> None:
    path = write_user_config(text)
    result = ess("instance", "local", "list")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert str(path) in lines[0] and expected in lines[0]


def test_a_bad_value_names_the_user_config_in_the_error() -> None:
    path = write_user_config("[defaults]\ninstance_count = 0\n")
    with pytest.raises(UsageError, match=rf"^{path} \[defaults\] instance_count: 0 is too small"):
        load_settings(LocalBackend(), None, env={})
