"""ess's own folders and state files when the file system says no: one line, never a traceback.

ESS_HOME naming a file, a folder ess may not write, a full disk: the user's setup, found
before any work, is exit 2; a save that fails mid-command is exit 1 and leaves the old
file as it was. Disk-full cases mount a tiny tmpfs in a private mount namespace
(``unshare --mount``), so nothing outside the test sees it; CI runs as root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from support.tools import require

from ess.errors import EssError, UsageError
from ess.paths import state_dir
from ess.statefile import locked_json

ESS = shutil.which("ess")
NO_DAC = "-dac_override,-dac_read_search"


def run_ess(
    *args: str, env: dict[str, str], prefix: list[str] | None = None, script: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed ``ess`` in a child process; ``script`` runs first in a private mount namespace."""
    assert ESS, "the ess console script is installed with the package"
    command = [sys.executable, ESS, *args]
    if script is not None:
        assert os.geteuid() == 0, "needs root (as in CI)"
        require("unshare")
        command = ["unshare", "--mount", "--", "sh", "-ec", f'{script}\nexec "$@"', "sh", *command]
    return subprocess.run(
        [*(prefix or []), *command], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ess: ") and "Traceback" not in proc.stderr, proc
    return lines[0]


@pytest.mark.parametrize("backend", ["local", "hosts"])
@pytest.mark.parametrize("below", ["", "sub/folder"])
def test_ess_home_naming_a_file_is_one_line_exit_2(tmp_path, monkeypatch, ess, backend, below):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    monkeypatch.setenv("ESS_HOME", str(afile / below) if below else str(afile))
    monkeypatch.chdir(tmp_path)
    result = ess("instance", backend, "list")
    assert result.code == 2, result
    assert result.err == (
        f"ess: {afile}: is a file, not a folder; ess keeps its files under it "
        "(point ESS_HOME at a folder you can write, or unset it)\n"
    )
    assert afile.read_text() == "not a folder"
    assert ess("--help").code == 0  # the plugin cache there is advisory: help still works


def test_a_state_file_where_the_state_folder_should_be(tmp_path, monkeypatch):
    monkeypatch.setenv("ESS_HOME", str(tmp_path))
    (tmp_path / "state").write_text("")
    with pytest.raises(UsageError, match=r"state: is a file, not a folder; ess keeps its files there"):
        state_dir()


def test_a_state_folder_ess_may_not_write_is_exit_2(tmp_path):
    """Root writes anywhere; without CAP_DAC_OVERRIDE (dropped by setpriv) it cannot."""
    (tmp_path / "home" / "state").mkdir(parents=True)
    (tmp_path / "home" / "state").chmod(0o500)
    prefix = []
    if os.geteuid() == 0:
        require("setpriv")  # takes the file-permission override from root
        prefix = ["setpriv", f"--bounding-set={NO_DAC}", f"--inh-caps={NO_DAC}"]
    proc = run_ess("instance", "hosts", "list", env={"ESS_HOME": str(tmp_path / "home")}, prefix=prefix)
    assert proc.returncode == 2, proc
    assert one_line(proc) == (
        f"ess: {tmp_path / 'home' / 'state'}: ess's folder is not writable "
        "(point ESS_HOME at a folder you can write, or unset it)"
    )


def test_a_full_disk_before_anything_is_exit_2(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    fill = (
        f"mount -t tmpfs -o size=8k,nr_inodes=2 tmpfs {home}\nhead -c 65536 /dev/zero > {home}/fill 2>/dev/null || true"
    )
    proc = run_ess("instance", "local", "list", env={"ESS_HOME": str(home)}, script=fill)
    assert proc.returncode == 2, proc
    assert one_line(proc) == (
        f"ess: {home / 'state'}: cannot create ess's folder (No space left on device) "
        "(point ESS_HOME at a folder you can write, or unset it)"
    )


SAVE_ON_FULL_DISK = """
import json, sys
from pathlib import Path
from ess.errors import EssError
from ess.statefile import locked_json
path = Path(sys.argv[1])
try:
    with locked_json(path, write=True) as data:
        data["big"] = "x" * 200_000
except EssError as exc:
    print(type(exc).__name__, exc.exit_code, exc)
"""


def test_a_save_on_a_full_disk_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    registry = folder / "c.json"
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {folder}\n"
        f"echo '{{\"old\": 1}}' > {registry}\n"
        f"head -c 40960 /dev/zero > {folder}/ballast\n"
        f"trap 'cat {registry}; ls -a {folder}' EXIT\n\"$@\"\ntrap - EXIT\ncat {registry}\nls -a {folder}\nexit"
    )
    assert os.geteuid() == 0, "needs root (as in CI)"
    require("unshare")
    proc = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-ec", script, "sh", sys.executable, "-c", SAVE_ON_FULL_DISK, str(registry)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        f"EssError 1 {registry}: could not save the state file (No space left on device); "
        "it is unchanged and this command's change to it was not recorded"
    ), proc
    assert json.loads(lines[1]) == {"old": 1}, proc
    assert not [name for name in lines[2:] if name.endswith(".tmp")], proc


@pytest.mark.parametrize("content", ["[]", "null", "42", '"text"'])
def test_a_registry_of_the_wrong_shape_is_one_clear_line(tmp_path, content):
    path = tmp_path / "hosts" / "c.json"
    path.parent.mkdir()
    path.write_text(content)
    with (
        pytest.raises(EssError, match=r"c.json: damaged state file \(it holds \w+, not dict\); move it away"),
        locked_json(path),
    ):
        pass


def test_hosts_list_on_a_registry_of_the_wrong_shape_says_so(ess, ess_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = ess_home / "state" / "hosts" / "default.json"
    registry.parent.mkdir(parents=True)
    registry.write_text("[]")
    result = ess("instance", "hosts", "list")
    assert result.code == 1, result
    assert result.err == (
        f"ess: {registry}: damaged state file (it holds list, not dict); move it away to start afresh\n"
    )
