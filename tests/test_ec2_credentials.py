"""The AWS console access key CSV: both layouts, BOM, CRLF, and every way it can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from ess.errors import UsageError
from ess.settings import load_settings
from ess_ec2.backend import Ec2Backend
from ess_ec2.client import build_session, connect
from ess_ec2.credentials import load_credentials
from ess_ec2.testing import FAKE_SECRET_KEY

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def settings_with(tmp_path: Path, csv_name: str | None, text: str | bytes | None, setting: str | None = None):
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    if csv_name is not None and text is not None:
        target = folder / csv_name
        target.write_bytes(text if isinstance(text, bytes) else text.encode())
    conf = folder / "instance.conf"
    line = f"aws_credential: {setting}\n" if setting else ""
    conf.write_text(f"[EC2]\n{line}key_name: pem_file\n")
    return load_settings(Ec2Backend(), conf)


@pytest.mark.parametrize(
    "text",
    [
        f"User Name,Access Key Id,Secret Access Key\nessentia,{ACCESS},{SECRET}\n",
        f"Access key ID,Secret access key\n{ACCESS},{SECRET}\n",
        f"User name,Password,Access key ID,Secret access key,Console login link\n"
        f"essentia,,{ACCESS},{SECRET},https://example.signin.aws.amazon.com/console\n",
        f"\ufeffAccess key ID,Secret access key\r\n{ACCESS},{SECRET}\r\n",
        f'\ufeffUser Name,Access Key Id,Secret Access Key\r\n"essentia",{ACCESS},{SECRET}\r\n\r\n',
    ],
    ids=["old-layout", "new-layout", "with-password-columns", "bom-crlf-new", "bom-crlf-old-quoted"],
)
def test_both_console_layouts_parse(tmp_path, text):
    settings = settings_with(tmp_path, "credential_file.csv", text, "credential_file")
    credentials = load_credentials(settings)
    assert credentials is not None
    assert (credentials.access_key, credentials.secret_key) == (ACCESS, SECRET)
    assert SECRET not in repr(credentials) and SECRET not in str(credentials)


def test_name_without_csv_suffix_and_exact_name_both_resolve(tmp_path):
    settings = settings_with(tmp_path, "keys", f"Access key ID,Secret access key\n{ACCESS},{SECRET}\n", "keys")
    assert load_credentials(settings).source == tmp_path / "cfg" / "keys"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"Access key ID,Secret access key\n{ACCESS},{SECRET}\nAKIAIOSFODNN7EXAMPLF,{SECRET}x\n",
            "holds 2 access keys",
        ),
        ("Access key ID,Secret access key\n", "header but no access key row"),
        ("Access key ID,Secret access key\r\n\r\n", "header but no access key row"),
        ("", "is not an AWS access key CSV"),
        ("hello world\nthis is not csv\n", "is not an AWS access key CSV"),
        (b"\xff\xfe\x00garbage", "is not a text CSV file"),
        (f"Access key ID,Secret access key\nnot-a-key,{SECRET}\n", "malformed access key row"),
        (f"Access key ID,Secret access key\n{ACCESS}\n", "malformed access key row"),
    ],
    ids=["multi-row", "header-only", "header-blank-line", "empty", "garbled", "binary", "bad-id", "missing-secret"],
)
def test_bad_files_are_one_line_usage_errors_naming_the_file(tmp_path, text, expected):
    settings = settings_with(tmp_path, "credential_file.csv", text, "credential_file")
    with pytest.raises(UsageError) as info:
        load_credentials(settings)
    message = str(info.value)
    assert expected in message
    assert "credential_file.csv" in message
    assert "instance.conf aws_credential" in message or "instance.conf [EC2] aws_credential" in message
    assert "\n" not in message
    assert SECRET not in message


def test_missing_file_names_both_candidates(tmp_path):
    settings = settings_with(tmp_path, None, None, "credential_file")
    with pytest.raises(UsageError, match=r"credential_file not found, nor credential_file\.csv"):
        load_credentials(settings)


def test_without_aws_credential_boto3_chain_applies(tmp_path):
    settings = settings_with(tmp_path, None, None)
    assert load_credentials(settings) is None
    aws = connect(settings)
    frozen = aws.session.get_credentials().get_frozen_credentials()
    assert frozen.secret_key == FAKE_SECRET_KEY  # from the environment, via boto3's chain
    assert aws.region == "us-east-1"


def test_csv_credentials_win_over_environment(tmp_path):
    settings = settings_with(
        tmp_path, "credential_file.csv", f"Access key ID,Secret access key\n{ACCESS},{SECRET}\n", "credential_file"
    )
    frozen = connect(settings).session.get_credentials().get_frozen_credentials()
    assert frozen.access_key == ACCESS


def test_region_setting_then_environment_then_clear_error(tmp_path, monkeypatch):
    settings = settings_with(tmp_path, None, None)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert connect(settings).region == "eu-west-1"
    assert (
        connect(load_settings(Ec2Backend(), settings.config_path, cli={"region": "ap-south-1"})).region == "ap-south-1"
    )
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    assert connect(settings).region == "eu-north-1"
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(UsageError) as info:
        connect(settings)
    assert str(info.value).startswith(f"{settings.config_path} [EC2] region: no AWS region is set")
    assert "--region" in str(info.value)


def test_profile_from_aws_config(tmp_path, monkeypatch):
    config = tmp_path / "aws-config"
    config.write_text(
        f"[profile work]\nregion = eu-central-1\naws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    settings = load_settings(Ec2Backend(), settings_with(tmp_path, None, None).config_path, cli={"profile": "work"})
    aws = connect(settings)
    assert aws.region == "eu-central-1"
    assert aws.session.get_credentials().get_frozen_credentials().access_key == ACCESS
    with pytest.raises(UsageError, match="profile 'nope' is not in your AWS config"):
        build_session(None, "nope")
