"""Input hardening (red team report input-secrets, F1-F4, F6, F7), beyond the bad-input corpus.

The corpus (tests/data/bad/, cases 101-129) holds the one-line, exit-2 cases. Here: what a
corpus case cannot say. A secret in the config is masked in ``config show``, under
``--debug`` and in every piece a message may quote. A user config that is there but
unreadable stops every command. Files that would hang ess or fill its memory are refused
in a child process with a time limit and a memory limit, so code that regresses fails the
test instead of taking the machine down. A stale AWS_PROFILE is ignored with
``aws_credential``. And the checks refuse no good input: lists on several lines, plain
paths, valid key pair names.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.ec2_world import ESSENTIA_CONF, World
from support.fault_world import lean_world

from ess.errors import UsageError
from ess.files import MAX_INPUT_BYTES, InputFileError, read_input_file
from ess.settings import coerce, load_settings, resolve
from ess_ec2 import client as ec2_client
from ess_ec2 import keys
from ess_ec2.backend import Ec2Backend
from ess_ec2.credentials import parse_credential_file
from ess_ec2.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

#: Every piece of the fake secret a message could show: the whole, and each side of its "/".
SECRET_PIECES = (FAKE_SECRET_KEY, *FAKE_SECRET_KEY.split("/"))
CSV = f"Access key ID,Secret access key\n{FAKE_ACCESS_KEY},{FAKE_SECRET_KEY}\n"


@pytest.fixture
def world(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")  # no SSH to moto's made-up addresses
    made = lean_world(moto_endpoint, tmp_path, monkeypatch)
    monkeypatch.chdir(made.folder)
    return made


def no_piece_of_the_secret(*texts: str) -> None:
    for text in texts:
        for piece in SECRET_PIECES:
            assert piece not in text, f"{piece!r} shown in {text!r}"


def one_line(result, fragment: str) -> None:
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and result.err.startswith("ess: "), result
    assert fragment in result.err, result
    assert "Traceback" not in result.err and "internal error" not in result.err, result


# -- F1: credential-shaped config values never show ----------------------------------------
def test_config_show_masks_a_secret_pasted_into_aws_credential(world: World, ess) -> None:
    world.conf.write_text(ESSENTIA_CONF + f"aws_credential: {FAKE_SECRET_KEY}\n")
    shown = ess("config", "show", "--backend", "ec2")
    assert shown.code == 0, shown
    row = next(line for line in shown.out.splitlines() if "aws_credential" in line)
    assert "****" in row, row
    as_json = ess("config", "show", "--backend", "ec2", "--json")
    assert json.loads(as_json.out)["backends"]["ec2"]["aws_credential"]["value"] == "****"
    no_piece_of_the_secret(shown.out, shown.err, as_json.out, as_json.err)


def test_a_secret_in_aws_credential_is_masked_in_every_piece_under_debug(world: World, ess) -> None:
    """The not-found error quotes the path made of the value *and* its last piece + .csv;
    --debug adds a traceback. No piece of the secret may show in any of them."""
    world.conf.write_text(ESSENTIA_CONF + f"aws_credential: {FAKE_SECRET_KEY}\n")
    result = ess("--debug", "instance", "ec2", "create", "--yes", "--no-verify")
    assert result.code == 2 and "aws_credential: the value looks like an AWS access key" in result.err, result
    assert "Traceback" in result.err  # --debug did show one, and it is masked too
    no_piece_of_the_secret(result.out, result.err)
    assert world.calls.made == []


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (f"aws_credential: {FAKE_SECRET_KEY}", "aws_credential: the value looks like an AWS access key"),
        (f"security_groups: essentia-access\n  {FAKE_ACCESS_KEY},{FAKE_SECRET_KEY}", "security_groups: item 1 spans"),
        (f"tags: team=data\n    {FAKE_ACCESS_KEY},{FAKE_SECRET_KEY}", "tags: item 1 spans"),
        (f"[{FAKE_SECRET_KEY}]\nkey_name: pem_file", "unknown section"),
        (f"region: {FAKE_SECRET_KEY}", "region: '****"),
        (f"image_id: {FAKE_SECRET_KEY}", "image_id: image '****"),
        (f"subnet_id: {FAKE_SECRET_KEY}", "subnet_id: subnet '****"),
        (f"iam_instance_profile: {FAKE_SECRET_KEY}", "iam_instance_profile:"),
        (f"user_data: {FAKE_SECRET_KEY}", "user_data:"),
        (f"instance_type: {FAKE_SECRET_KEY}", "instance_type:"),
    ],
    ids=[
        "aws_credential",
        "security_groups",
        "tags",
        "section",
        "region",
        "image",
        "subnet",
        "profile",
        "user_data",
        "type",
    ],
)
def test_every_error_quoting_a_secret_shaped_value_masks_it(world: World, ess, line: str, fragment: str) -> None:
    """The red team's list: each key whose error quoted the value as written (F1)."""
    key = line.split(":")[0]
    kept = [kept for kept in ESSENTIA_CONF.splitlines() if not kept.startswith(key + ":")]
    world.conf.write_text("\n".join(kept) + "\n" + line + "\n")
    result = ess("instance", "ec2", "create", "--yes", "--no-verify")
    one_line(result, fragment)
    no_piece_of_the_secret(result.err)
    assert world.calls.mutating() == []


def test_a_secret_given_by_environment_variable_is_masked_too(world: World, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_AWS_CREDENTIAL", FAKE_SECRET_KEY)
    result = ess("instance", "ec2", "list")
    one_line(result, "ESS_AWS_CREDENTIAL: the value looks like an AWS access key")
    no_piece_of_the_secret(result.err)


def test_masked_settings_mask_text_and_list_items_by_shape() -> None:
    from ess.models import SettingSpec

    specs = {
        "aws_credential": SettingSpec("aws_credential", type="path"),
        "tags": SettingSpec("tags", type="list"),
        "instance_tag": SettingSpec("instance_tag"),
        "count": SettingSpec("count", type="int"),
    }
    settings = resolve(
        "ec2",
        specs,
        sections={"ec2": {"aws_credential": FAKE_SECRET_KEY, "tags": f"a=b, k={FAKE_ACCESS_KEY}", "count": "3"}},
        env={},
    )
    shown = settings.masked()
    assert shown["aws_credential"] == "****"
    assert shown["tags"] == ["a=b", "k=****"]
    assert shown["count"] == 3 and shown["instance_tag"] is None
    assert settings["aws_credential"] == FAKE_SECRET_KEY  # the value itself is untouched


def test_registering_credential_shaped_values_spares_plain_values(monkeypatch) -> None:
    """Only runs mask_credentials calls credential-shaped are registered, whole: a plain
    value, or a word inside a registered run, stays readable in ess's messages."""
    from ess import redact
    from ess.redact import register_credential_shaped

    monkeypatch.setattr(redact, "_secrets", set(redact._secrets))  # this test's registrations end with it
    a_path = "/home/bob2/projects/credentials/AccessKeys"  # one run: mixed case and a digit
    register_credential_shaped([a_path, "essentia-access", "team=data", "m3.medium", "/home/me/creds.csv"])
    for text in ("projects", "credentials", "AccessKeys", "essentia-access", "team=data", "m3.medium", "creds.csv"):
        assert redact.scrub(f"the {text} here") == f"the {text} here"
    assert redact.scrub(f"file {a_path}.csv") == "file ****.csv"


# -- F7: a list item never spans lines -----------------------------------------------------
def test_a_tag_on_an_indented_line_is_refused_and_launches_nothing(world: World, ess) -> None:
    world.conf.write_text(ESSENTIA_CONF + "tags: team=a\n  b=c\n")
    result = ess("instance", "ec2", "create", "--yes", "--no-verify", "--number", "1")
    one_line(result, "[EC2] tags: item 1 spans more than one line")
    assert world.calls.mutating() == [] and world.ec2.describe_instances()["Reservations"] == []


def test_lists_still_continue_on_indented_lines_after_a_comma() -> None:
    from ess.models import SettingSpec

    spec = SettingSpec("hosts", type="list")
    assert coerce(spec, "10.0.0.5,\n10.0.0.6, \n 10.0.0.7", "x") == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    with pytest.raises(UsageError, match=r"^x: item 2 spans more than one line"):
        coerce(spec, ["a", "b\nc"], "x")  # a TOML array holds the same mistake


# -- F2: a user or project config that is there is read, or stops the command -------------
def test_a_dangling_user_config_stops_every_command_instead_of_dropping_max_lifetime(
    ess, ess_home: Path, tmp_path: Path, monkeypatch
) -> None:
    """The red team's repro: a team's config.toml on a shared mount that went away."""
    monkeypatch.chdir(tmp_path)
    team = tmp_path / "team.toml"
    team.write_text('[defaults]\nmax_lifetime = "8h"\n')
    user = ess_home / "config" / "config.toml"
    user.parent.mkdir(parents=True)
    user.symlink_to(team)
    shown = ess("config", "show", "--backend", "local")
    assert shown.code == 0 and "8h" in shown.out, shown
    team.rename(tmp_path / "team.toml.gone")
    for argv in (("config", "show", "--backend", "local"), ("instance", "local", "list")):
        result = ess(*argv)
        one_line(result, f"{user}: is a symbolic link to {team}, which does not exist")
        assert "max_lifetime" in result.err


@pytest.mark.parametrize("kind", ["loop", "folder", "fifo"])
def test_a_user_config_that_is_no_file_stops_the_command(
    ess, ess_home: Path, tmp_path: Path, monkeypatch, kind
) -> None:
    monkeypatch.chdir(tmp_path)
    user = ess_home / "config" / "config.toml"
    user.parent.mkdir(parents=True)
    if kind == "loop":
        user.symlink_to(user)
    elif kind == "folder":
        user.mkdir()
    else:
        os.mkfifo(user)
    fragment = {"loop": "is a symbolic link loop", "folder": "is a folder", "fifo": "is a named pipe (FIFO)"}[kind]
    one_line(ess("instance", "local", "list"), f"{user}: {fragment}")


def test_no_user_config_at_all_is_still_fine(ess, ess_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = ess("config", "show", "--backend", "local")
    assert result.code == 0 and "user defaults:" not in result.out, result


def test_a_dangling_project_config_is_not_skipped_for_the_user_folder_one(
    ess, ess_home: Path, tmp_path: Path, monkeypatch
) -> None:
    """./instance.conf dangling used to be skipped: ess read $ESS_HOME/config/instance.conf."""
    (ess_home / "config").mkdir(parents=True)
    (ess_home / "config" / "instance.conf").write_text("[local]\ninstance_count: 5\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "instance.conf").symlink_to(tmp_path / "gone.conf")
    result = ess("config", "show", "--backend", "local")
    one_line(result, f"{tmp_path / 'instance.conf'}: is a symbolic link to {tmp_path / 'gone.conf'}")


# -- F6: regular files only, 1 MiB at most, checked before reading -------------------------
def run_ess_limited(
    args: list[str], cwd: Path, env: dict[str, str], memory: int = 1 << 30
) -> subprocess.CompletedProcess:
    """``ess ARGS`` in a child with at most ``memory`` bytes of address space and 60 s: code
    that reads a FIFO or /dev/zero fails the test instead of hanging it or eating the machine."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    ess_script = shutil.which("ess")
    assert ess_script
    return subprocess.run(
        [sys.executable, ess_script, *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
def test_a_config_that_would_hang_or_fill_memory_is_one_line(tmp_path: Path, ess_home: Path, kind: str) -> None:
    if kind == "fifo":
        config = tmp_path / "fifo.conf"
        os.mkfifo(config)
        fragment = "is a named pipe (FIFO), not a regular file"
    elif kind == "dev-zero":
        config = tmp_path / "zero.conf"
        config.symlink_to("/dev/zero")
        fragment = "is a device, not a regular file"
    else:
        config = tmp_path / "huge.conf"
        config.write_text("[local]\ninstance_tag: x\n")
        os.truncate(config, 4 << 30)  # sparse: 4 GiB that cost no disk, more than the memory limit
        fragment = "is 4096 MiB, more than the 1 MiB ess reads of such a file"
    proc = run_ess_limited(
        ["--config", str(config), "instance", "local", "list"], tmp_path, {"ESS_HOME": str(ess_home)}
    )
    assert proc.returncode == 2, proc
    assert proc.stderr == f"ess: --config {config}: {fragment} (point --config at the config file itself)\n" or (
        kind == "huge" and proc.stderr.startswith(f"ess: --config {config}: {fragment} (a config file is a few KB")
    ), proc


def test_config_dev_null_is_still_the_empty_config(ess, tmp_path: Path, monkeypatch) -> None:
    """The one device allowed: it reads nothing and never blocks (and writing it changes nothing,
    so it draws no world-writable warning)."""
    monkeypatch.chdir(tmp_path)
    result = ess("--config", "/dev/null", "instance", "local", "list")
    assert result.code == 0 and "warning" not in result.err, result


def test_read_input_file_reads_at_most_one_byte_past_the_limit() -> None:
    """A file whose size stat cannot tell (/proc) or that grows after the check is cut at
    limit + 1 bytes and refused: never read whole."""
    proc_file = Path("/proc/self/maps")  # size 0 by stat, a few KB when read
    with pytest.raises(InputFileError) as info:
        read_input_file(proc_file, limit=16)
    assert info.value.kind == "too-big" and "larger than 16 bytes" in str(info.value)
    assert MAX_INPUT_BYTES == 1024 * 1024


def test_a_huge_credential_csv_is_refused_before_it_is_read(tmp_path: Path) -> None:
    csv = tmp_path / "credential_file.csv"
    csv.write_text(CSV)
    os.truncate(csv, 64 << 20)  # sparse
    with pytest.raises(UsageError, match=r"^x: cannot read .*credential_file\.csv: it is 64 MiB, more than the 1 MiB"):
        parse_credential_file(csv, "x")


def test_a_private_key_that_is_a_device_is_named_not_looked_for_elsewhere(world: World, ess) -> None:
    world.pem.unlink()
    world.pem.symlink_to("/dev/zero")
    ssh = Path(os.environ["HOME"]) / ".ssh"
    ssh.mkdir(parents=True)
    shutil.copyfile(world.folder / "instance.conf", ssh / "pem_file.pem")  # must not be used instead
    result = ess("instance", "ec2", "create", "--yes", "--no-verify")
    one_line(result, f"[EC2] key_name: private key {world.pem} is a device, not a regular file")
    assert world.calls.mutating() == []


# -- F4: key-pair create NAME ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../outside-kp", "contains '/' or '\\'"),
        ("/dev/null/abs-kp", "contains '/' or '\\'"),
        ("back\\slash", "contains '/' or '\\'"),
        ("a\nb", "contains a control character"),
        ("tab\there", "contains a control character"),
        (".", "is not a name ess can save as NAME.pem"),
        ("..", "is not a name ess can save as NAME.pem"),
        ("k" * 252, "is 252 characters long (at most 251"),
        ("clé", "EC2 key pair names are ASCII"),
        (" padded", "starts or ends with a space"),
        ("key.PEM", "would read as a file name in key_name"),
        ("~home", "would read as a file name in key_name"),
        ("   ", "is empty"),
    ],
)
def test_key_pair_create_refuses_a_name_before_any_aws_call(world: World, ess, name: str, fragment: str) -> None:
    result = ess("instance", "ec2", "key-pair", "create", name)
    one_line(result, f"key-pair create NAME: key pair name {name[:40]!r}")
    assert fragment in result.err, result
    assert world.calls.made == [], world.calls.made  # not even a describe
    assert [k["KeyName"] for k in world.ec2.describe_key_pairs()["KeyPairs"]] == ["pem_file"]
    assert sorted(p.name for p in world.folder.iterdir()) == ["instance.conf", "pem_file.pem"]


def test_key_pair_create_checks_the_name_from_key_name_too(world: World, ess) -> None:
    """Without NAME, key_name is the name: 300 characters used to be an internal OSError."""
    world.conf.write_text(ESSENTIA_CONF.replace("key_name: pem_file", "key_name: " + "k" * 300))
    result = ess("instance", "ec2", "key-pair", "create")
    one_line(result, f"{world.conf} [EC2] key_name: key pair name 'kkkk")
    assert "is 300 characters long" in result.err and world.calls.made == []


def test_key_pair_create_still_creates_a_good_name(world: World, ess) -> None:
    name = "team-key_2.0 (" + "x" * 200 + ")"  # spaces, dots and brackets are fine; 215 characters
    result = ess("instance", "ec2", "key-pair", "create", name, "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["key_file"] == str(world.folder / f"{name}.pem")
    assert (world.folder / f"{name}.pem").stat().st_mode & 0o777 == 0o600
    assert name in [k["KeyName"] for k in world.ec2.describe_key_pairs()["KeyPairs"]]


def test_create_key_pair_checks_the_name_itself(world: World) -> None:
    """The API path (a plugin or script calling keys.create_key_pair) is held to the same rule."""
    settings = world.settings()
    with pytest.raises(UsageError, match=r"^key-pair create: key pair name '\.\./x' contains '/'"):
        keys.create_key_pair(ec2_client.connect(settings), settings, "../x", {})
    assert world.calls.made == []


# -- F3: the AWS side's setup mistakes are bad input -------------------------------------------
def test_a_stale_aws_profile_is_ignored_with_aws_credential(world: World, ess, monkeypatch) -> None:
    """docs/config.md: profile is ignored when aws_credential is set; AWS_PROFILE too."""
    (world.folder / "credential_file.csv").write_text(CSV)
    world.conf.write_text(ESSENTIA_CONF + "aws_credential: credential_file\n")
    monkeypatch.setenv("AWS_PROFILE", "nope")
    monkeypatch.setenv("AWS_DEFAULT_PROFILE", "nope-either")
    listed = ess("instance", "ec2", "list")
    assert listed.code == 0, listed
    created = ess("instance", "ec2", "create", "--yes", "--no-verify", "--number", "1")
    assert created.code == 0, created
    aws = ec2_client.connect(world.settings())
    assert aws.session.get_credentials().get_frozen_credentials().access_key == FAKE_ACCESS_KEY


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("AWS_PROFILE", "nope", "AWS_PROFILE: AWS profile 'nope' is not in your AWS config"),
        ("AWS_DEFAULT_PROFILE", "nope", "AWS_DEFAULT_PROFILE: AWS profile 'nope' is not in your AWS config"),
        ("AWS_DEFAULT_REGION", "us east 1", "AWS_DEFAULT_REGION: 'us east 1' is not an AWS region"),
        ("AWS_ENDPOINT_URL_EC2", "localhost:1", "AWS_ENDPOINT_URL_EC2: 'localhost:1' is not an endpoint URL"),
    ],
)
def test_an_aws_variable_that_is_wrong_is_named(world: World, ess, monkeypatch, variable, value, fragment) -> None:
    monkeypatch.setenv(variable, value)
    result = ess("instance", "ec2", "list")
    one_line(result, fragment)
    assert "None" not in result.err
    assert world.calls.made == []


def test_a_broken_shared_credentials_file_is_named_at_the_first_call(world: World, ess, monkeypatch) -> None:
    """The credentials file is read by boto3's chain only when the first call signs: the
    error still says which file to fix, exit 2, and nothing was sent."""
    broken = world.folder / "aws-credentials"
    broken.write_text("[default]\naws_access_key_id = x\n[broken\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(broken))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = ess("instance", "ec2", "list")
    one_line(result, f"{broken}: cannot parse this AWS config file")
    assert world.calls.sends == {}


def test_a_well_formed_region_still_passes(world: World) -> None:
    settings = load_settings(Ec2Backend(), world.conf, cli={"region": "ap-southeast-5"})
    assert ec2_client.connect(settings).region == "ap-southeast-5"
    for zone, region in (("eu-west-1a", "eu-west-1"), ("us-gov-west-1b", "us-gov-west-1")):
        with pytest.raises(
            UsageError, match=rf"^--region: '{zone}' is an availability zone, not a region \(use {region};"
        ):
            ec2_client.connect(load_settings(Ec2Backend(), world.conf, cli={"region": zone}))
