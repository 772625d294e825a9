"""Settings: Essentia's INI read as documented, the TOML twin, precedence and sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from ess.errors import UsageError
from ess.loaders import ini, toml
from ess.models import SettingSpec
from ess.settings import CORE_SETTINGS, coerce, find_config, how_to_set, resolve

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SPECS = {
    s.key: s
    for s in (
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
    )
}
SEED = {
    "aws_credential": "credential_file",
    "use_private_ip": False,
    "instance_tag": "Essentia Worker Node",
    "instance_type": "m3.medium",
    "instance_count": 2,
    "key_name": "pem_file",
    "security_groups": ["essentia-access"],
    "username": "ec2-user",
}


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
    s = resolve("ec2", SPECS, sections=sections, config_path=Path("f.conf"), env=env, cli={"instance_type": "t3.large"})
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


@pytest.mark.parametrize(
    ("spec_key", "raw", "fragment"),
    [
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
    ],
)
def test_wrong_types_name_the_place_and_the_problem(spec_key, raw, fragment):
    with pytest.raises(UsageError) as info:
        coerce(SPECS[spec_key], raw, f"f.conf [EC2] {spec_key}")
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"f.conf [EC2] {spec_key}: ")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("web, " + "x" * 1100, "item 2 is 1100 characters long (at most 1024)"),
        ("sg-1," * 60_000, "300000 characters long (at most 262144)"),
    ],
    ids=["one item too long", "the whole list too long"],
)
def test_a_list_is_bounded_per_item_and_as_a_whole(raw, fragment):
    with pytest.raises(UsageError, match=r"^f.conf \[EC2\] security_groups: ") as info:
        coerce(SPECS["security_groups"], raw, "f.conf [EC2] security_groups")
    assert fragment in str(info.value)


def test_a_list_of_a_thousand_hosts_is_one_value():
    # `ess instance hosts create a:p b:p ...` joins its arguments into the hosts setting; the
    # 1,024-character limit of one value stopped it at about 50 machines.
    from ess_hosts.backend import HostsBackend

    spec = next(spec for spec in HostsBackend.settings if spec.key == "hosts")
    raw = ",".join(f"127.77.{k // 250}.{k % 250 + 1}:{2200 + k}" for k in range(1000))
    assert len(raw) > 17 * 1024
    hosts = coerce(spec, raw, "ESS_HOSTS")
    assert len(hosts) == 1000 and hosts[-1] == "127.77.3.250:3199"


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


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("instance_type: x\n", "line 1: a setting before any [section]"),
        ("[EC2]\n[EC2]\n", "line 2: section [EC2] appears twice"),
        ("[EC2]\nkey_name: a\nkey_name: b\n", "line 3: [EC2] key_name is set twice"),
        ("[EC2]\njust words\n", "line 2: cannot parse this line, it is not `key: value`"),
    ],
)
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


# -- one cluster-name rule, in the core, for every backend ------------------------------
CORE = {spec.key: spec for spec in CORE_SETTINGS}
BAD_CLUSTERS = [
    "",
    "../../../x",
    "/tmp/elsewhere",
    "a/b",
    "..",
    ".hidden",
    "-dash",
    "c" * 65,
    "c" * 300,
    "weird-$(id)",
    "sp ace",
    "tab\tname",
    "naïve",
]


@pytest.mark.parametrize(
    ("source", "name"),
    [
        (source, name)
        for source in ("cli", "env", "file")
        for name in BAD_CLUSTERS
        if (source, name) != ("env", "")  # an empty variable means unset, as for every setting
    ],
    ids=lambda value: repr(value[:20]),
)
def test_a_cluster_name_outside_the_rule_is_refused_wherever_it_comes_from(name, source):
    cli = {"cluster": name} if source == "cli" else {}
    env = {"ESS_CLUSTER": name} if source == "env" else {}
    sections = {"ec2": {"cluster": name}} if source == "file" else {}
    with pytest.raises(UsageError) as info:
        resolve("ec2", CORE, sections=sections, cli=cli, env=env)
    message = str(info.value)
    assert "is not a valid cluster (use 1 to 64 letters, digits, '.', '_' or '-'" in message
    assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize("name", ["default", "a", "team-a.b_c", "C" * 64, "0day"])
def test_cluster_names_inside_the_rule_are_kept(name):
    assert resolve("ec2", CORE, cli={"cluster": name}, env={}).cluster == name


@pytest.mark.parametrize("backend", ["hosts", "local"])
@pytest.mark.parametrize("name", ["../../../x", "ABSOLUTE", "", "c" * 300])
def test_hosts_and_local_refuse_a_cluster_that_would_be_a_path_and_write_nothing(
    ess, ess_home, tmp_path, monkeypatch, backend, name
):
    monkeypatch.chdir(tmp_path)
    if name == "ABSOLUTE":
        name = str(tmp_path / "outside")
    (ess_home / "state").mkdir(parents=True)
    cache = ess_home / "cache"  # the plugin cache is written at start-up, whatever the command

    def files() -> list[Path]:
        return sorted(path for path in tmp_path.rglob("*") if cache not in path.parents and path != cache)

    before = files()
    result = ess("instance", backend, "list", "--cluster", name)
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and "is not a valid cluster" in result.err, result
    assert files() == before  # no registry or state written anywhere


def test_the_local_backend_uses_the_cores_cluster_rule():
    from ess import names
    from ess_local import state

    assert state.CLUSTER_NAME is names.CLUSTER_NAME


# -- declarative patterns: username ----------------------------------------------------
@pytest.mark.parametrize("backend", ["ec2", "local", "hosts"])
@pytest.mark.parametrize("username", ["-oProxyCommand=x", "-l", "a b", "x" * 33, ".hidden", "root;id"])
def test_a_username_ssh_would_misread_is_refused_before_anything_starts(ess, tmp_path, monkeypatch, backend, username):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "instance.conf").write_text(f"[{backend}]\nusername: {username}\n")
    result = ess("config", "show", "--backend", backend)
    assert result.code == 2, result
    assert f"[{backend}] username: " in result.err and "is not a valid username (use a login name" in result.err
    assert result.err.count("\n") == 1


@pytest.mark.parametrize("username", ["ec2-user", "ubuntu", "root", "svc_ess.2", "_build"])
def test_ordinary_usernames_pass_the_pattern(username):
    spec = SettingSpec("username", pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")
    assert coerce(spec, username, "x") == username


def test_a_secret_setting_that_fails_its_pattern_is_not_quoted():
    spec = SettingSpec("token", secret=True, pattern=r"^[a-z]+$", pattern_help="lower case only")
    with pytest.raises(UsageError) as info:
        coerce(spec, "Hunter2-SECRET", "ESS_TOKEN")
    assert "Hunter2" not in str(info.value) and "the value is not a valid token" in str(info.value)


# -- unknown sections get a did-you-mean, like unknown keys ---------------------------
def test_a_misspelled_section_is_refused_with_a_suggestion():
    with pytest.raises(UsageError, match=r"^x.conf \[lcoal\]: unknown section \(did you mean \[local\]\?\)$"):
        resolve("ec2", SPECS, config_path=Path("x.conf"), sections={"EC2": {}, "lcoal": {}}, env={})


def test_a_section_no_backend_claims_is_refused_with_what_to_do():
    with pytest.raises(UsageError, match=r"\[gce\]: unknown section \(no installed backend is named 'gce'"):
        resolve("ec2", SPECS, sections={"EC2": {}, "gce": {}}, env={})


def test_sections_of_other_installed_backends_are_fine():
    assert (
        resolve("ec2", SPECS, sections={"EC2": {"key_name": "k"}, "Local": {}, "hosts": {}}, env={})["key_name"] == "k"
    )


def test_an_unknown_section_fails_every_command_not_only_its_backend(ess, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "instance.conf").write_text("[lcoal]\nusername: me\n")
    result = ess("instance", "local", "list")
    assert result.code == 2, result
    assert result.err == f"ess: {tmp_path / 'instance.conf'} [lcoal]: unknown section (did you mean [local]?)\n"


# -- a missing required setting names only the ways that exist ------------------------
def test_how_to_set_names_the_flag_only_when_there_is_one():
    assert how_to_set(SettingSpec("key_file")) == "the config file or ESS_KEY_FILE"
    assert how_to_set(SettingSpec("instance_type", flag="--type")) == "the config file, ESS_INSTANCE_TYPE or --type"


def test_missing_hosts_key_file_does_not_promise_a_flag(ess, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ess("instance", "hosts", "create", "127.0.0.1", "--no-verify")
    assert result.code == 2, result
    assert result.err == "ess: setting key_file: required for create (set it in the config file or ESS_KEY_FILE)\n"


def test_a_section_of_a_disabled_plugin_is_not_a_typo(ess, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ec2")
    (tmp_path / "instance.conf").write_text("[EC2]\nkey_name: pem_file\n[local]\n")
    assert ess("instance", "local", "list").code == 0


def test_a_section_named_after_a_plugin_that_is_no_backend_is_still_unknown():
    with pytest.raises(UsageError, match=r"\[ssh\]: unknown section"):
        resolve("ec2", SPECS, sections={"EC2": {}, "ssh": {"ssh_timeout": "5"}}, env={})
