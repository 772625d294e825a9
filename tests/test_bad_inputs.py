"""The bad-input corpus (tests/data/bad/): every case is exit 2, one stderr line, nothing changed.

Each case folder holds ``case.toml`` (``args``, ``expect``, optional ``setup``, ``env``,
``note``, ``xfail``) and the files it needs; they are copied over a working EC2 world in
moto (key pair ``pem_file`` with its 0600 .pem, group ``essentia-access``, Essentia's
instance.conf) and the CLI runs in-process from that folder. ``{folder}`` in args, env and
expect stands for the config folder. The assertions, per case: exit code 2, exactly one
line on stderr, that line holds the expected fragment (what and where), no traceback, and
zero mutating EC2 calls (counted at the ``build_client`` seam, and checked in moto too).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from support.ec2_world import World
from support.fault_world import lean_world, record
from support.tools import require

BAD = Path(__file__).resolve().parent / "data" / "bad"
CASES = sorted(p for p in BAD.iterdir() if (p / "case.toml").is_file())


def _param(folder: Path) -> Any:
    spec = tomllib.loads((folder / "case.toml").read_text())
    marks = [pytest.mark.xfail(strict=True, reason=spec["xfail"])] if spec.get("xfail") else []
    return pytest.param(folder, id=folder.name, marks=marks)


@pytest.fixture
def world(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    # The SSH plugin is off unless a case switches it on: a case that wrongly launched
    # would otherwise try to SSH to moto's made-up addresses.
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    made = lean_world(moto_endpoint, tmp_path, monkeypatch)
    monkeypatch.chdir(made.folder)
    return made


def _fill(text: str, world: World) -> str:
    return text.replace("{folder}", str(world.folder))


def _setup(world: World, steps: list[str]) -> None:
    """The few file-system states a case cannot carry as files in git.

    ``symlink TARGET LINK`` makes LINK point at TARGET as written ({folder} filled in);
    ``grow FILE BYTES`` extends FILE to BYTES with NULs (sparse: a large file for free).
    """
    for step in steps:
        verb, *rest = _fill(step, world).split()
        target = world.folder / rest[0]
        if verb == "symlink":
            os.symlink(rest[0], world.folder / rest[1])
        elif verb == "grow":
            os.truncate(target, int(rest[1]))
        elif verb == "rm":
            target.unlink()
        elif verb == "mkdir":
            target.mkdir()
        elif verb == "mkfifo":
            os.mkfifo(target)
        elif verb == "chmod":
            target.chmod(int(rest[1], 8))
        elif verb == "copy":
            shutil.copyfile(target, world.folder / rest[1])
        else:  # pragma: no cover - a typo in a case file
            raise AssertionError(f"unknown setup step {step!r}")


@pytest.mark.parametrize("folder", [_param(folder) for folder in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    folder: Path, world: World, ess, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tomllib.loads((folder / "case.toml").read_text())
    for item in folder.iterdir():
        if item.name != "case.toml":
            shutil.copyfile(item, world.folder / item.name)
            (world.folder / item.name).chmod(0o644)
    _setup(world, spec.get("setup", []))
    for name, value in spec.get("env", {}).items():
        monkeypatch.setenv(name, _fill(value, world))
    before_groups = len(world.ec2.describe_security_groups()["SecurityGroups"])

    result = ess(*[_fill(arg, world) for arg in spec["args"]])

    lines = result.err.splitlines()
    mutating = world.calls.mutating()
    record(kind="bad-input", case=folder.name, exit_code=result.code, mutating_calls=len(mutating), lines=len(lines))
    assert result.code == 2, result
    assert len(lines) == 1, result
    assert _fill(spec["expect"], world) in lines[0], result
    assert lines[0].startswith("ess: ") and "Traceback" not in result.err, result
    assert mutating == [], f"mutating calls: {mutating}"
    assert world.ec2.describe_instances()["Reservations"] == []
    assert len(world.ec2.describe_security_groups()["SecurityGroups"]) == before_groups
    assert [k["KeyName"] for k in world.ec2.describe_key_pairs()["KeyPairs"]] == ["pem_file"]
    assert result.out == ""


def test_the_corpus_is_big_enough_and_every_case_names_its_fragment() -> None:
    assert len(CASES) >= 40
    for folder in CASES:
        spec = tomllib.loads((folder / "case.toml").read_text())
        assert spec["args"] and spec["expect"].strip(), folder.name
        assert set(spec) <= {"args", "expect", "setup", "env", "note", "xfail"}, folder.name


# -- shell metacharacters in tags: data, accepted verbatim, never executed ----------------
HOSTILE_TAG = """$(touch {folder}/pwned) `touch {folder}/pwned2`; rm -rf {folder} && echo "q" 'q' | x > y"""


def test_shell_metacharacters_in_tags_are_kept_verbatim_and_never_run(world: World, ess) -> None:
    """Tags are data (EC2 allows these characters): ess passes them through unchanged."""
    tag = _fill(HOSTILE_TAG, world)
    world.conf.write_text(world.conf.read_text().replace("Essentia Worker Node", tag))
    cluster = "weird-cluster_1.0"  # a cluster name with shell characters is refused (case 74)
    created = ess("instance", "ec2", "create", "--yes", "--no-verify", "--number", "2", "--cluster", cluster, "--json")
    assert created.code == 0, created
    nodes = json.loads(created.out)["nodes"]
    assert [n["tags"]["Name"] for n in nodes] == [tag, tag]
    assert {n["tags"]["ess:cluster"] for n in nodes} == {cluster}
    assert not (world.folder / "pwned").exists() and not (world.folder / "pwned2").exists()
    assert world.conf.exists()  # the `rm -rf` never ran either
    gone = ess("instance", "ec2", "terminate", "all", "--yes", "--cluster", cluster)
    assert gone.code == 0, gone
    assert set(world.states([n["id"] for n in nodes]).values()) == {"terminated"}


# -- EACCES for real: the one bad input root cannot produce by chmod alone ---------------
def test_permission_denied_on_the_config_file(world: World) -> None:
    """chmod 000 stops no read by root; without CAP_DAC_OVERRIDE (dropped by setpriv), it does."""
    ess_script = shutil.which("ess")
    assert ess_script, "the ess console script is installed with the package"
    prefix: list[str] = []
    if os.geteuid() == 0:
        require("setpriv")  # takes the file-permission override from root
        drop = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    world.conf.chmod(0o000)
    proc = subprocess.run(
        [
            *prefix,
            sys.executable,
            ess_script,
            "instance",
            "ec2",
            "create",
            "--yes",
            "--no-verify",
            "--config",
            str(world.conf),
        ],
        cwd=world.folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    record(
        kind="bad-input",
        case="permission-denied-config (chmod 000, no DAC override)",
        exit_code=proc.returncode,
        mutating_calls=0,
        lines=len(proc.stderr.splitlines()),
    )
    assert proc.returncode == 2, proc
    assert proc.stderr.splitlines() == [
        f"ess: {world.conf}: permission denied (make it readable: chmod u+r {world.conf})"
    ], proc
    assert world.ec2.describe_instances()["Reservations"] == []
