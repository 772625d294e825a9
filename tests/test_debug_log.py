"""``--debug`` shows the work: plugin loading, hook calls, stages, SSH attempts, AWS calls.

Every command runs through the real CLI in-process (the ``ess`` fixture, which also scans
its output for the fake AWS secret and private keys). The assertions are on what the lines
say, never on how long anything took.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.ec2_world import World, aws_error, is_dry_run
from support.fault_world import lean_world
from support.local_helpers import kill_test_nodes

#: A debug line of ess or a built-in plugin, as the CLI's handler formats it.
ESS_DEBUG = re.compile(r"^DEBUG (ess|ess_ec2|ess_ssh|ess_local)[.\w]*: ", re.M)
#: One logged AWS call: "ec2 RunInstances (2 instances): HTTP 200 in 12.3 ms, attempt 1".
AWS_CALL = re.compile(
    r"^DEBUG ess_ec2\.calllog: (?:ec2|ssm) (\w+)(?: \(([^)]*)\))?: HTTP (\d+)(?: (\w+))? "
    r"in \d+\.\d ms, attempt (\d+)$",
    re.M,
)


@pytest.fixture(autouse=True)
def _debug_off_afterwards():
    """Belt and braces: a test that fails half-way must not leave the next one at DEBUG."""
    yield
    from ess.log import configure

    configure(debug=False)


def test_one_runs_debug_does_not_leak_into_the_next_in_process_run(ess) -> None:
    import logging

    assert ess("--debug", "plugins").code == 0
    assert not logging.getLogger("ess").isEnabledFor(logging.DEBUG)
    quiet = ess("plugins")
    assert quiet.code == 0 and not ESS_DEBUG.search(quiet.err)


@pytest.fixture
def local_nodes(ess_home: Path):
    yield
    kill_test_nodes(ess_home)


def test_local_create_with_debug_shows_plugins_stages_and_one_ssh_attempt_per_node(ess, local_nodes):
    created = ess("--debug", "instance", "local", "create", "--number", "2", "--json")
    assert created.code == 0, created
    err = created.err
    ids = sorted(node["id"] for node in __import__("json").loads(created.out)["nodes"])
    assert len(ids) == 2

    # Plugin loading: each built-in, from which entry point.
    for name, target in (("local", "ess_local.plugin"), ("ssh", "ess_ssh.plugin"), ("ec2", "ess_ec2.plugin")):
        assert re.search(
            rf"^DEBUG ess\.plugins: plugin {name}: loaded from entry point {name} = {target} "
            r"\(ess\) in \d+\.\d ms$",
            err,
            re.M,
        ), err
    # Hook calls, with the plugins that answered.
    assert re.search(
        r"^DEBUG ess\.plugins: hook ess_check_nodes\(nodes, access, settings, progress\) -> ssh: "
        r"done in \d+\.\d ms$",
        err,
        re.M,
    ), err
    assert "DEBUG ess.plugins: hook ess_before_create(" in err
    # Each stage of the flow, in order.
    stages = re.findall(r"^DEBUG ess\.progress: stage: (.+)$", err, re.M)
    assert stages[:4] == [
        "launching 2",
        "starting 2 local nodes (2)",
        "waiting for local nodes (2)",
        "ssh ready (2)",
    ], stages
    for step in ("create: launch ", "create: launched 2 node(s): ", "create: running 2 node(s): "):
        assert f"DEBUG ess.provision: {step}" in err, err
    # Local spawn steps and the wait polls that name what is still pending.
    for node_id in ids:
        assert re.search(rf"^DEBUG ess_local\.process: spawn {node_id}: pid \d+ in ", err, re.M), err
    assert re.search(
        r"^DEBUG ess_local\.backend: poll ready files: 0/2 ready, 0 failed; waiting for local-\w+ "
        r"starting, local-\w+ starting$",
        err,
        re.M,
    ), err
    # Exactly one SSH attempt line per node (both nodes were up), with its outcome.
    attempts = re.findall(
        r"^DEBUG ess_ssh\.connect: ssh (local-\w+) \S+@127\.0\.0\.1:\d+ attempt (\d+): "
        r"connected in \d+\.\d ms$",
        err,
        re.M,
    )
    assert sorted(attempts) == [(node_id, "1") for node_id in ids], err
    assert (
        sorted(re.findall(r"^DEBUG ess_ssh\.check: ssh (local-\w+) attempt 1: check command exited 0$", err, re.M))
        == ids
    )

    # The same command without --debug: the same result, and none of those lines.
    quiet = ess("instance", "local", "terminate", "all", "--yes")
    assert quiet.code == 0, quiet
    again = ess("instance", "local", "create", "--number", "2")
    assert again.code == 0, again
    assert not ESS_DEBUG.search(again.err) and "hook " not in again.err and "plugin local" not in again.err, again
    assert "launching 2" in again.err  # the progress lines themselves are unchanged


def test_exec_and_terminate_with_debug_log_each_node_outcome_and_each_signal_sent(ess, local_nodes):
    created = ess("instance", "local", "create", "--number", "2", "--no-verify", "--json")
    assert created.code == 0, created
    ids = sorted(node["id"] for node in __import__("json").loads(created.out)["nodes"])

    ran = ess("--debug", "instance", "local", "exec", "--", "echo token-7f3e; exit 3")
    assert ran.code == 1, ran
    assert (
        sorted(re.findall(r"^DEBUG ess_ssh\.run: exec (local-\w+): exit code 3 in \d+\.\d ms$", ran.err, re.M)) == ids
    ), ran.err
    assert len(re.findall(r"^DEBUG ess_ssh\.connect: ssh local-\w+ \S+ attempt 1: connected", ran.err, re.M)) == 2
    # The command line is not logged (it may hold a token ess does not know of).
    assert not any("token-7f3e" in line for line in ran.err.splitlines() if line.startswith("DEBUG")), ran.err

    gone = ess("--debug", "instance", "local", "terminate", "all", "--yes")
    assert gone.code == 0, gone
    signalled = re.findall(r"^DEBUG ess_local\.process: signal (local-\w+): SIGTERM sent to pid \d+$", gone.err, re.M)
    assert sorted(signalled) == ids, gone.err
    assert "DEBUG ess.progress: stage: terminating local nodes (2)" in gone.err


@pytest.fixture
def world(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    import botocore.retries.standard

    # No SSH to moto's made-up addresses; retries happen for real, without back-off pauses.
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    made = lean_world(moto_endpoint, tmp_path, monkeypatch)
    monkeypatch.chdir(made.folder)
    return made


def test_ec2_create_with_debug_logs_every_aws_call_with_size_status_and_attempt(ess, world: World):
    created = ess("--debug", "instance", "ec2", "create", "--yes", "--no-verify", "--number", "2")
    assert created.code == 0, created
    logged = AWS_CALL.findall(created.err)
    # Every call the backend made (counted at the build_client seam), and no other, has its line.
    assert sorted(op for op, *_ in logged) == sorted(op for op, _ in world.calls.made), created.err
    launches = [call for call in logged if call[0] == "RunInstances"]
    assert ("RunInstances", "2 instances, dry run", "412", "DryRunOperation", "1") in launches, launches
    assert ("RunInstances", "2 instances", "200", "", "1") in launches, launches
    described = [call for call in logged if call[0] == "DescribeInstances" and "ids" in call[1]]
    assert described and all(call[1] == "2 ids" and call[2] == "200" for call in described), logged
    # The wait poll says how many are running and what it still waits for.
    assert re.search(
        r"^DEBUG ess_ec2\.polling: poll \S.*: \d/2 running; waiting for (nothing|i-\w+ \w+)", created.err, re.M
    ), created.err
    # Plugin loading shows even though the ssh plugin is disabled.
    assert "DEBUG ess.plugins: plugin ssh: disabled by ESS_DISABLE_PLUGINS (entry point ess_ssh.plugin)" in created.err

    listed = ess("instance", "ec2", "list")
    assert listed.code == 0, listed
    assert not ESS_DEBUG.search(listed.err) and "calllog" not in listed.err, listed


def test_a_retried_aws_call_logs_each_failed_attempt_and_the_attempt_that_worked(ess, world: World):
    sends = {"real": 0}

    def throttle_first(request, **_):
        if is_dry_run(request):
            return None
        sends["real"] += 1
        return aws_error(503, "RequestLimitExceeded", "Request limit exceeded.") if sends["real"] == 1 else None

    world.calls.handlers.append(("before-send.ec2.RunInstances", throttle_first))
    created = ess("--debug", "instance", "ec2", "create", "--yes", "--no-verify", "--number", "2")
    assert created.code == 0, created
    assert (
        "DEBUG ess_ec2.calllog: ec2 RunInstances attempt 1: HTTP 503 RequestLimitExceeded (retryable)" in created.err
    ), created.err
    assert ("RunInstances", "2 instances", "200", "", "2") in AWS_CALL.findall(created.err), created.err


# -- warnings: one path (ess.log.warn -> the command's progress sink, else stderr), scrubbed --
def test_warn_without_a_sink_writes_one_scrubbed_line_to_stderr(capsys):
    from ess.log import warn
    from ess.redact import register_secret

    register_secret("warn-test-secret-4f9a2c")
    warn("ess: warning: could not use warn-test-secret-4f9a2c")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "ess: warning: could not use ****\n"


def test_warn_goes_to_the_sink_of_the_running_command_and_is_scrubbed_there(capsys):
    import io

    from ess.log import warn, warnings_to
    from ess.progress import Progress
    from ess.redact import register_secret

    register_secret("warn-test-secret-77b1e0")
    stream = io.StringIO()
    sink = Progress(stream, tty=False)
    with warnings_to(sink):
        warn("ess: warning: one warn-test-secret-77b1e0")
    warn("ess: warning: two", Progress(stream, tty=False))
    with warnings_to(Progress(quiet=True)):
        warn("ess: warning: three")  # a silent sink (the API's default) swallows it
    assert stream.getvalue() == "ess: warning: one ****\ness: warning: two\n"
    assert capsys.readouterr().err == ""


def test_the_api_sends_a_config_warning_to_its_sink_and_is_silent_without_one(tmp_path, capsys):
    import io

    import ess

    conf = tmp_path / "instance.conf"
    conf.write_text("[local]\ninstance_count: 1\n")
    conf.chmod(0o666)
    quiet = ess.Cluster("local", config=conf)
    assert quiet.name == "default"
    assert capsys.readouterr() == ("", "")  # silent by default, as docs/api.md promises
    stream = io.StringIO()
    ess.Cluster("local", config=conf, progress=stream)
    assert f"ess: warning: {conf} is writable by every user" in stream.getvalue()
    assert capsys.readouterr() == ("", "")


def test_the_cli_still_prints_the_config_warning_on_stderr(ess, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "instance.conf"
    conf.write_text("[local]\ninstance_count: 1\n")
    conf.chmod(0o666)
    listed = ess("instance", "local", "list")
    assert listed.code == 0, listed
    assert listed.err.count(f"ess: warning: {conf} is writable by every user") == 1, listed


def test_a_failed_create_with_debug_logs_the_failure_and_each_rollback_step(ess, memory, monkeypatch):
    monkeypatch.setenv("ESS_FAIL_AT", "wait")
    failed = ess("--debug", "instance", "memory", "create", "--number", "3")
    assert failed.code == 1, failed
    err = failed.err
    launch = re.search(r"^DEBUG ess\.provision: create: launch (\w+) of 3 node\(s\)", err, re.M)
    assert launch, err
    steps = re.findall(r"^DEBUG ess\.provision: (create: failed|rollback: \w+)", err, re.M)
    assert steps == ["create: failed", "rollback: listing", "rollback: 3", "rollback: terminated"], err
    assert f"rollback: listing the cluster for nodes tagged ess:launch={launch.group(1)}" in err
    assert re.search(
        r"^DEBUG ess\.provision: rollback: 3 returned by the launch, 3 found by tag; terminating "
        r"3 node\(s\): ",
        err,
        re.M,
    ), err
    assert "ess: cleaned up: terminated 3 node(s) launched by this run" in err


# Where text may reach stderr directly, and why; everything else in core and plugins warns
# through ess.log.warn (ess.cli, the presentation layer, is outside this rule).
DIRECT_OUTPUT_ALLOWED = {
    "core/ess/log.py": "the one path itself (its stderr fallback)",
    "core/ess/progress.py": "the sink warnings end in",
    "core/ess/redact.py": "the log handler's last-resort line when stderr fails",
    "core/ess/output.py": "presentation helpers of ess.cli and plugin commands",
    "core/ess/reference.py": "the usage line of `python -m ess.reference`",
    "plugins/ess_local/node.py": "a local node process writing its own log file",
    "plugins/ess_ec2/commands.py": "a plugin's own click commands, presenting through ess.output",
    "core/ess/plugins.py": "warns about a plugin's answer on the progress the hook was given (ess.log imports it)",
}


def _direct_output_calls(path: Path) -> list[str]:
    """``print(...)``, ``sys.stderr.write(...)``, ``click.echo(..., err=True)``, ``x.note(...)`` in a module."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = ast.unparse(func)
        if (
            name == "print"
            or name.endswith("stderr.write")
            or name.endswith(".note")
            or (name.endswith("echo") and any(k.arg == "err" for k in node.keywords))
        ):
            found.append(f"{path}:{node.lineno}: {name}(...)")
    return found


def test_core_and_plugins_warn_only_through_ess_log():
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("core/ess", "plugins"):
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(("core/ess/cli/", "core/ess/testing/")) or relative in DIRECT_OUTPUT_ALLOWED:
                continue
            offenders += _direct_output_calls(path)
    assert offenders == [], "use ess.log.warn(message, progress) instead:\n" + "\n".join(offenders)


CHATTY_PLUGIN = """
import logging

import ess

log = logging.getLogger(__name__)


@ess.hookimpl
def ess_settings():
    log.debug("chatty plugin was asked for its settings")
    return []
"""


def test_a_third_party_plugin_logging_under_its_own_name_shows_with_debug_only(ess, tmp_path, monkeypatch):
    (tmp_path / "ess_test_chatty.py").write_text(CHATTY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ESS_PLUGINS", "ess_test_chatty")
    loud = ess("--debug", "instance", "local", "list")
    assert loud.code == 0, loud
    assert "DEBUG ess_test_chatty: chatty plugin was asked for its settings" in loud.err, loud.err
    assert "DEBUG ess.plugins: plugin ess_test_chatty: loaded from ESS_PLUGINS module ess_test_chatty" in loud.err
    quiet = ess("instance", "local", "list")
    assert quiet.code == 0 and "chatty" not in quiet.err, quiet
