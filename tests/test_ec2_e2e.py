"""The real `ess` console script against a moto server, from Essentia's own config folder.

The folder holds configs/instance.conf verbatim, the credential CSV as the IAM console
saves it (UTF-8 BOM, CRLF) and pem_file.pem (0600). The subprocesses get no AWS key in
their environment, so the CSV is what they use; its secret must never be printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from support.ec2_world import lean_moto, quiet_moto

from ess.models import TAG_CLUSTER
from ess_ec2.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
LIVE = ["pending", "running", "stopping", "stopped"]


def ess_script() -> str:
    found = shutil.which("ess") or str(Path(sys.executable).parent / "ess")
    assert Path(found).exists(), "the ess console script is not installed (pip install -e .)"
    return found


@pytest.fixture
def folder(moto_endpoint, tmp_path, monkeypatch) -> Path:
    quiet_moto()
    lean_moto(monkeypatch)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    conf = tmp_path / "essentia"
    conf.mkdir()
    shutil.copyfile(ROOT / "configs" / "instance.conf", conf / "instance.conf")
    csv = f"\ufeffUser Name,Access Key Id,Secret Access Key\r\nessentia,{FAKE_ACCESS_KEY},{FAKE_SECRET_KEY}\r\n"
    (conf / "credential_file.csv").write_bytes(csv.encode("utf-8"))
    pem = conf / "pem_file.pem"
    pem.write_text(ec2.create_key_pair(KeyName="pem_file")["KeyMaterial"])
    pem.chmod(0o600)
    ec2.create_security_group(GroupName="essentia-access", Description="Essentia workers")
    return conf


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    proc = subprocess.run(
        [ess_script(), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    for stream in (proc.stdout, proc.stderr):
        assert FAKE_SECRET_KEY not in stream, f"secret leaked by `ess {' '.join(args)}`"
    return proc


def live_instances(ec2) -> list[dict]:
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[{"Name": "instance-state-name", "Values": LIVE}])
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def test_console_script_create_list_terminate_with_essentia_folder(folder):
    ec2 = boto3.client("ec2", region_name="us-east-1")

    first = run(folder, "instance", "ec2", "create", "--no-verify", "--debug")
    assert first.returncode == 0, first.stderr
    assert "DEBUG" in first.stderr or "INFO" in first.stderr  # --debug really logged
    instances = live_instances(ec2)
    assert len(instances) == 2
    for instance in instances:
        assert instance["InstanceType"] == "m3.medium" and instance["KeyName"] == "pem_file"
        assert [g["GroupName"] for g in instance["SecurityGroups"]] == ["essentia-access"]

    more = run(folder, "instance", "ec2", "create", "--no-verify", "--number=3", "--type=t3.large")
    assert more.returncode == 0, more.stderr
    assert sorted(i["InstanceType"] for i in live_instances(ec2)) == ["m3.medium"] * 2 + ["t3.large"] * 3

    listed = run(folder, "instance", "ec2", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    nodes = json.loads(listed.stdout)["nodes"]
    assert {n["id"] for n in nodes} == {i["InstanceId"] for i in live_instances(ec2)}
    assert len(nodes) == 5 and {n["tags"][TAG_CLUSTER] for n in nodes} == {"default"}

    foreign = ec2.run_instances(
        ImageId=instances[0]["ImageId"],
        MinCount=1,
        MaxCount=1,
        InstanceType="m3.medium",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "Essentia Worker Node"}]}],
    )
    foreign_id = foreign["Instances"][0]["InstanceId"]
    gone = run(folder, "instance", "ec2", "terminate", "all", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert "terminated 5 node(s)" in gone.stdout
    assert [i["InstanceId"] for i in live_instances(ec2)] == [foreign_id]


def test_console_script_errors_are_one_line_without_the_secret(folder):
    (folder / "pem_file.pem").chmod(0o644)
    proc = run(folder, "instance", "ec2", "create", "--no-verify", "--debug")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("ess: ")
    assert "chmod 600" in proc.stderr
