"""The CLI surface: help, start-up imports, config show, errors, global options anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "configs" / "instance.conf"
HEAVY = ("boto3", "botocore", "paramiko", "asyncssh", "moto")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, **env}, cwd=ROOT
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["plugins"],
        ["config", "show"],
        ["instance", "--help"],
        ["instance", "ec2", "--help"],
        ["instance", "ec2", "create", "--help"],
    ],
)
def test_startup_commands_import_no_cloud_or_ssh_library(argv):
    code = (
        f"import sys\nfrom ess.cli import run\ncode = run({argv!r})\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\nsys.exit(code)"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_console_script_help_and_version():
    proc = subprocess.run(["ess", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "ess instance local create --number 3" in proc.stdout
    version = subprocess.run(["ess", "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("ess, version ")


def test_config_show_names_the_source_of_each_value(ess):
    r = ess("config", "show", "--config", str(SEED), "--backend", "ec2")
    assert r.code == 0, r.err
    row = next(line for line in r.out.splitlines() if " instance_type " in line)
    assert "m3.medium" in row and str(SEED) in row
    r = ess("config", "show", "--config", str(SEED), "--backend", "ec2", "--type", "t3.large")
    row = next(line for line in r.out.splitlines() if " instance_type " in line)
    assert "t3.large" in row and row.rstrip().endswith("--type")


def test_config_show_json_relative_path(ess, monkeypatch):
    monkeypatch.chdir(ROOT)
    r = ess("--json", "config", "show", "--config", "configs/instance.conf")
    data = json.loads(r.out)
    assert list(data["backends"]) == ["ec2"]
    assert data["backends"]["ec2"]["instance_type"] == {"value": "m3.medium", "source": "configs/instance.conf"}
    assert data["backends"]["ec2"]["instance_count"]["value"] == 2


def test_global_options_work_before_and_after_the_subcommand(ess, memory):
    before = ess("--json", "--config", str(SEED), "instance", "memory", "list")
    after = ess("instance", "memory", "list", "--config", str(SEED), "--json")
    assert before.code == after.code == 0
    assert json.loads(before.out) == json.loads(after.out) == {"backend": "memory", "cluster": "default", "nodes": []}


def test_missing_config_is_one_line_exit_2(ess):
    r = ess("instance", "ec2", "create", "--config", "/nonexistent.conf")
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "ess: --config /nonexistent.conf: no such file (check the path, or omit --config to use ./instance.conf)"
    ]
    assert "Traceback" not in r.err


def test_debug_adds_the_traceback(ess):
    r = ess("--debug", "instance", "ec2", "list", "--config", "/nonexistent.conf")
    assert r.code == 2 and "Traceback" in r.err
    assert r.err.strip().splitlines()[-1].startswith("ess: --config /nonexistent.conf: no such file")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["instance", "memory", "create", "--number=abc"],
            "ess: --number: 'abc' is not a whole number (try --number 3)",
        ),
        (["instance", "memory", "create", "--min", "x"], "ess: --min: 'x' is not a whole number (try --min 3)"),
        (
            ["instance", "memory", "create", "--nmber", "3"],
            "ess: --nmber: no such option for `ess instance memory create` (did you mean --number?)",
        ),
        (["instance", "memory", "create", "--number", "0"], "ess: --number: 0 is too small (the least is 1)"),
        (
            ["instance", "memroy", "list"],
            "ess: instance memroy: no such backend (did you mean memory?) (installed: ec2, hosts, local, memory",
        ),
        (
            ["instance", "memory", "terminate"],
            "ess: terminate: name what to terminate (ess instance memory terminate all, or node ids)",
        ),
    ],
)
def test_usage_errors_are_one_line(ess, memory, argv, line):
    r = ess(*argv)
    assert r.code == 2, r
    last = r.err.strip().splitlines()[-1]
    assert last == line or (line.endswith("memory") and last.startswith(line)), last
    assert "Traceback" not in r.err
    assert memory.CALLS == [] or "create" not in memory.CALLS


def test_unknown_key_in_config_is_exit_2(ess, memory, tmp_path):
    conf = tmp_path / "instance.conf"
    conf.write_text("[memory]\ninstance_cont: 3\n")
    r = ess("instance", "memory", "create", "--config", str(conf))
    assert r.code == 2
    assert f"{conf} [memory] instance_cont: unknown key (did you mean instance_count?)" in r.err
    assert memory.CALLS == []


def test_world_writable_config_warns(ess, memory, tmp_path):
    conf = tmp_path / "instance.conf"
    conf.write_text("[memory]\ninstance_count: 1\n")
    conf.chmod(0o666)
    r = ess("instance", "memory", "list", "--config", str(conf))
    assert r.code == 0
    assert f"{conf} is writable by every user" in r.err and f"chmod o-w {conf}" in r.err


def test_non_utf8_config_is_exit_2(ess, memory, tmp_path):
    conf = tmp_path / "instance.conf"
    conf.write_bytes(b"[memory]\ninstance_count: \xff\xfe\n")
    r = ess("instance", "memory", "list", "--config", str(conf))
    assert r.code == 2 and "line 2: not valid UTF-8" in r.err


def test_plugins_json_lists_builtin_plugins_with_hooks(ess):
    r = ess("plugins", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert {"ec2", "ssh", "local", "ini", "toml"} <= set(by_name)
    assert by_name["ec2"]["backends"] == ["ec2"] and "ess_backends" in by_name["ec2"]["hooks"]
    assert by_name["local"]["backends"] == ["local"]
    assert "ess_check_nodes" in by_name["ssh"]["hooks"]
    assert by_name["ini"]["hooks"] == ["ess_load_config"]
    assert data["errors"] == []


@pytest.mark.parametrize(
    ("module", "fragment"),
    [
        ("misspelled_hook", "unknown hook 'ess_backend'"),
        ("raises_on_import", "failed to import: RuntimeError: this plugin is broken on purpose"),
    ],
)
def test_broken_plugin_is_one_warning_and_help_still_works(module, fragment):
    env = {"ESS_PLUGINS": module, "PYTHONPATH": str(ROOT / "tests" / "plugins_bad")}
    proc = subprocess.run(["ess", "--help"], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert proc.returncode == 0
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("ess: warning")]
    assert len(warnings) == 1 and module in warnings[0] and fragment in warnings[0], proc.stderr
    listed = subprocess.run(
        ["ess", "plugins", "--json"], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    assert any(e["name"] == module for e in json.loads(listed.stdout)["errors"])
    assert "ec2" in {p["name"] for p in json.loads(listed.stdout)["plugins"]}


def test_a_plugin_command_built_with_backend_command_gets_settings_options_and_json(ess, memory, monkeypatch):
    """ess.cli.backend_command, the public helper docs/plugins.md documents: common options at
    every level, the backend's "*" setting flags, resolved settings and --json in BackendCall."""
    import click

    from ess.cli import BackendCall, backend_command
    from ess.errors import UsageError

    def commands(self):
        @backend_command(self, "hello")
        @click.argument("who")
        @click.option("--shout", is_flag=True)
        def hello(call: BackendCall, who: str, shout: bool) -> None:
            """Greet WHO from the cluster."""
            if who == "nobody":
                raise UsageError("WHO: nobody is there (name someone)")
            text = f"hello {who} from {call.settings.cluster} on {call.backend.name}"
            if call.out.json:
                call.out.emit_json({"text": text, "source": call.settings.source("cluster")})
            else:
                call.out.emit(text.upper() if shout else text)
                call.out.note("said hello")

        return [hello]

    monkeypatch.setattr(memory.MemoryBackend, "commands", commands)
    r = ess("instance", "memory", "hello", "you", "--shout", "--cluster", "blue")
    assert (r.code, r.out, r.err) == (0, "HELLO YOU FROM BLUE ON MEMORY\n", "said hello\n")
    before = ess("--json", "instance", "memory", "hello", "you", "--cluster", "blue")
    after = ess("instance", "memory", "hello", "you", "--cluster", "blue", "--json")
    assert (
        json.loads(before.out)
        == json.loads(after.out)
        == {"text": "hello you from blue on memory", "source": "--cluster"}
    )
    r = ess("instance", "memory", "hello", "nobody")
    assert (r.code, r.err) == (2, "ess: WHO: nobody is there (name someone)\n")
    r = ess("instance", "memory", "hello", "--help")
    assert r.code == 0 and "Greet WHO from the cluster." in r.out and "--config" in r.out and "Exit codes" in r.out


def test_options_of_one_run_do_not_leak_into_the_next(ess, memory):
    """--json lives in the run's click context, not in a module global."""
    assert json.loads(ess("--json", "instance", "memory", "list").out)["nodes"] == []
    r = ess("instance", "memory", "list")
    assert r.code == 0 and r.out == "" and "has no nodes" in r.err


def test_a_plugin_group_built_with_backend_group_takes_the_common_options_at_its_level(ess, memory, monkeypatch):
    from ess.cli import BackendCall, backend_command, backend_group

    def commands(self):
        @backend_command(self, "show")
        def show(call: BackendCall) -> None:
            """Show the quota."""
            if call.out.json:
                call.out.emit_json({"cluster": call.settings.cluster})
            else:
                call.out.emit("quota")

        return [backend_group("quota", show, help="The account's quota.")]

    monkeypatch.setattr(memory.MemoryBackend, "commands", commands)
    assert ess("instance", "memory", "quota", "show").out == "quota\n"
    r = ess("instance", "memory", "quota", "--json", "show")
    assert r.code == 0 and json.loads(r.out) == {"cluster": "default"}
    r = ess("instance", "memory", "quota", "shwo")
    assert (r.code, r.err) == (2, "ess: shwo: no such command for `ess instance memory quota` (did you mean show?)\n")
