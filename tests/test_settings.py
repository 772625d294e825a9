"""Settings: Essentia's INI read as documented, the TOML twin, precedence and sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from ess.errors import UsageError
from ess.loaders import ini, toml
from ess.models import SettingSpec
from ess.settings import coerce, find_config, resolve

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SPECS = {s.key: s for s in (
    SettingSpec("cluster", default="default"),
    SettingSpec("aws_credential", type="path"),
    SettingSpec("use_private_ip", type="bool", default=False),
    SettingSpec("instance_tag", default="Essentia Worker Node"),
    SettingSpec("instance_type", default="m3.medium", flag="--type"),
    SettingSpec("instance_count", type="int", default=1, minimum=1, maximum=1000, flag="--number"),
    SettingSpec("key_name"),
    SettingSpec("security_groups", type="list", default=[]),
    SettingSpec("username", default="ec2-user"),
    SettingSpec("api_secret", secret=True),
)}
SEED = {"aws_credential": "credential_file", "use_private_ip": False,
        "instance_tag": "Essentia Worker Node", "instance_type": "m3.medium", "instance_count": 2,
        "key_name": "pem_file", "security_groups": ["essentia-access"], "username": "ec2-user"}


@pytest.mark.parametrize("name", ["instance.conf", "instance.toml"])
def test_seed_file_and_its_twin_give_the_same_settings(name):
    settings = resolve("ec2", SPECS, config_path=CONFIGS / name, env={})
    assert {k: settings[k] for k in SEED} == SEED
    assert settings.source("instance_type") == str(CONFIGS / name)
    assert settings.section == "EC2"
    assert settings.path("aws_credential") == CONFIGS / "credential_file"


def test_ini_reads_odd_spacing_and_both_delimiters():
    sections = ini.parse("[EC2]\ninstance_type:  m3.medium\nkey_name = k\n# comment\n; other\n", "x.conf")
    assert sections == {"EC2": {"instance_type": "m3.medium", "key_name": "k"}}


def test_precedence_cli_over_env_over_file_over_default():
    sections = {"ec2": {"instance_type": "m3.medium", "instance_count": "2"}}
    env = {"ESS_INSTANCE_TYPE": "c5.large", "ESS_USERNAME": "admin"}
    s = resolve("ec2", SPECS, sections=sections, config_path=Path("f.conf"), env=env,
                cli={"instance_type": "t3.large"})
    assert (s["instance_type"], s.source("instance_type")) == ("t3.large", "--type")
    assert (s["username"], s.source("username")) == ("admin", "ESS_USERNAME")
    assert (s["instance_count"], s.source("instance_count")) == (2, "f.conf")
    assert (s["instance_tag"], s.source("instance_tag")) == ("Essentia Worker Node", "default")


def test_section_name_is_case_insensitive():
    s = resolve("EC2".lower(), SPECS, sections={"Ec2": {"key_name": "k"}}, env={})
    assert s["key_name"] == "k"


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(UsageError, match=r"f.conf \[EC2\] instance_typ: unknown key \(did you mean instance_type\?\)"):
        resolve("ec2", SPECS, sections={"EC2": {"instance_typ": "x"}}, config_path=Path("f.conf"), env={})


@pytest.mark.parametrize(("spec_key", "raw", "fragment"), [
    ("instance_count", "two", "'two' is not a whole number"),
    ("instance_count", "0", "0 is too small (the least is 1)"),
    ("instance_count", "-3", "-3 is too small"),
    ("instance_count", "100000", "100000 is too large (the most is 1000)"),
    ("instance_count", 2.5, "2.5 is not a whole number"),
    ("instance_count", True, "True is not a whole number"),
    ("use_private_ip", "maybe", "'maybe' is not true or false"),
    ("security_groups", 5, "expected a list of names"),
    ("instance_type", 3, "expected text"),
    ("instance_tag", "x" * 2000, "2000 characters long"),
])
def test_wrong_types_name_the_place_and_the_problem(spec_key, raw, fragment):
    with pytest.raises(UsageError) as info:
        coerce(SPECS[spec_key], raw, f"f.conf [EC2] {spec_key}")
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"f.conf [EC2] {spec_key}: ")


def test_cli_number_error_says_what_to_type():
    with pytest.raises(UsageError, match=r"^--number: 'abc' is not a whole number \(try --number 3\)$"):
        coerce(SPECS["instance_count"], "abc", "--number")


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("false", False), ("YES", True), ("0", False)])
def test_bool_spellings(raw, expected):
    assert coerce(SPECS["use_private_ip"], raw, "x") is expected


def test_secrets_are_masked():
    s = resolve("ec2", SPECS, sections={"ec2": {"api_secret": "hunter2-very-secret"}}, env={})
    assert s.masked()["api_secret"] == "****"
    assert s["api_secret"] == "hunter2-very-secret"


@pytest.mark.parametrize(("text", "fragment"), [
    ("instance_type: x\n", "line 1: a setting before any [section]"),
    ("[EC2]\n[EC2]\n", "line 2: section [EC2] appears twice"),
    ("[EC2]\nkey_name: a\nkey_name: b\n", "line 3: [EC2] key_name is set twice"),
    ("[EC2]\njust words\n", "line 2: cannot parse 'just words'"),
])
def test_broken_ini_is_one_line_with_the_line_number(text, fragment):
    with pytest.raises(UsageError) as info:
        ini.parse(text, "bad.conf")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_broken_toml_names_the_file():
    with pytest.raises(UsageError, match="bad.toml: .*fix the TOML syntax"):
        toml.parse("[EC2\nkey = 1", "bad.toml")
    with pytest.raises(UsageError, match="outside any"):
        toml.parse("key_name = 'x'\n", "bad.toml")


def test_discovery_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config(None, {}) == (None, "none")
    (tmp_path / "instance.toml").write_text("[EC2]\n")
    assert find_config(None, {})[0] == tmp_path / "instance.toml"
    (tmp_path / "instance.conf").write_text("[EC2]\n")
    assert find_config(None, {})[0] == tmp_path / "instance.conf"
    other = tmp_path / "other.conf"
    other.write_text("[EC2]\n")
    assert find_config(None, {"ESS_CONFIG": str(other)}) == (other, "ESS_CONFIG")
    assert find_config(str(other), {"ESS_CONFIG": "/nope"}) == (other, "--config")
    with pytest.raises(UsageError, match="no such file"):
        find_config("/nonexistent.conf", {})
    with pytest.raises(UsageError, match="is a folder"):
        find_config(str(tmp_path), {})


def test_user_config_dir_is_searched_last(tmp_path, monkeypatch, ess_home):
    monkeypatch.chdir(tmp_path)
    user = ess_home / "config"
    user.mkdir(parents=True)
    (user / "instance.conf").write_text("[EC2]\n")
    assert find_config(None, {})[0] == user / "instance.conf"
