"""The Python API (``ess.Cluster``) on the local backend and on EC2 in moto.

What it promises: typed results, typed errors (a bad input raises before anything is
launched), and silence: nothing on stdout or stderr unless a progress sink is given.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest
from support.ec2_world import make_world
from support.local_helpers import kill_test_nodes

import ess
from ess import plugins
from ess.api import Cluster, VerifyResult
from ess.errors import EssError, NotSupported, PartialFailure, UsageError
from ess.models import RUNNING, STOPPED, TAG_ADOPTED, TAG_CLUSTER, CheckResult, CommandResult, Node
from ess.provision import CreateResult
from ess_ec2.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY
from ess_local.state import ClusterStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_leftover_nodes(ess_home: Path):
    yield
    kill_test_nodes(ess_home)


def silent(capfd: pytest.CaptureFixture[str]) -> None:
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), "the API printed something"


# -- local backend ---------------------------------------------------------------------------
def test_local_lifecycle_returns_typed_models_and_prints_nothing(capfd, tmp_path: Path) -> None:
    cluster = ess.Cluster("local", cluster="api")

    created = cluster.create(2)
    assert isinstance(created, CreateResult)
    assert len(created.nodes) == 2 and all(isinstance(n, Node) for n in created.nodes)
    assert {c.node_id for c in created.checks} == {n.id for n in created.nodes}
    assert all(isinstance(c, CheckResult) and c.ok for c in created.checks)
    assert {n.tags[TAG_CLUSTER] for n in created.nodes} == {"api"}

    listed = cluster.nodes()
    assert sorted(n.id for n in listed) == sorted(n.id for n in created.nodes)
    verified = cluster.verify(check=True)
    assert isinstance(verified, VerifyResult) and verified.ok and verified.failed == []
    assert str(verified) == "2 of 2 node(s) passed"

    stopped = cluster.stop()
    assert {n.state for n in stopped} == {STOPPED}
    started = cluster.start()
    assert {n.state for n in started} == {RUNNING}

    gone = cluster.terminate()
    assert sorted(n.id for n in gone) == sorted(n.id for n in created.nodes)
    assert cluster.nodes() == []
    silent(capfd)


def test_exec_and_push_return_one_result_per_node(capfd, tmp_path: Path) -> None:
    cluster = Cluster("local", cluster="remote")
    ids = sorted(n.id for n in cluster.create(2, verify=False).nodes)

    results = cluster.exec(["echo", "hello world"])
    assert all(isinstance(r, CommandResult) for r in results)
    assert sorted(r.node_id for r in results) == ids
    assert {(r.exit_code, r.stdout) for r in results} == {(0, "hello world\n")}

    source = tmp_path / "job.txt"
    source.write_text("payload\n")
    pushed = cluster.push(source, "inbox")
    assert sorted(r.node_id for r in pushed) == ids and all(r.ok for r in pushed)
    copies = cluster.exec("cat inbox/job.txt", check=True)
    assert sorted((r.node_id, r.stdout) for r in copies) == [(i, "payload\n") for i in ids]

    # Failure on a node is a result, not an exception, unless check=True.
    failing = cluster.exec("exit 3")
    assert {(r.exit_code, r.ok) for r in failing} == {(3, False)}
    with pytest.raises(EssError, match="command failed on 2 of 2 node"):
        cluster.exec("exit 3", check=True)
    # mkdir is atomic: exactly one node creates the folder, the other fails -> partial.
    with pytest.raises(PartialFailure, match="command failed on 1 of 2 node"):
        cluster.exec(f"mkdir {tmp_path / 'once'}", check=True)
    cluster.terminate()
    silent(capfd)


def test_a_lost_node_is_a_failed_result_of_verify_and_exec(capfd) -> None:
    cluster = Cluster("local", cluster="crash")
    victim, survivor = (n.id for n in cluster.create(2, verify=False).nodes)
    pid = ClusterStore("crash").read().nodes[victim].pid
    os.kill(pid, signal.SIGKILL)  # a crash: ess was not asked to stop it
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)

    verified = cluster.verify()
    assert not verified.ok and [c.node_id for c in verified.failed] == [victim]
    assert str(verified).startswith(f"1 of 2 node(s) passed; {victim}: stopped, expected running")
    with pytest.raises(PartialFailure):
        cluster.verify(check=True)
    results = {r.node_id: r for r in cluster.exec("true")}
    assert results[survivor].ok and results[victim].exit_code is None
    assert "expected running" in results[victim].error

    # Stopping the dead node is how a caller says "leave it down": it no longer fails verify.
    assert [(n.id, n.state) for n in cluster.stop([victim])] == [(victim, STOPPED)]
    assert cluster.verify(check=True).ok
    cluster.terminate()
    silent(capfd)


def test_exec_streams_output_to_the_callback_as_it_arrives(capfd) -> None:
    cluster = Cluster("local", cluster="stream")
    ids = sorted(n.id for n in cluster.create(2, verify=False).nodes)
    chunks: list[tuple[str, str, bytes]] = []
    lock = threading.Lock()

    def output(node_id: str, stream: str, chunk: bytes) -> None:
        with lock:  # called from the runner's worker threads
            chunks.append((node_id, stream, chunk))

    results = cluster.exec("echo out; echo err >&2", output=output)
    assert all(r.ok for r in results)
    for node_id in ids:
        for stream, text in (("stdout", b"out\n"), ("stderr", b"err\n")):
            assert b"".join(c for n, s, c in chunks if (n, s) == (node_id, stream)) == text
    cluster.terminate()
    silent(capfd)


def test_works_from_a_worker_thread_as_in_a_scheduler_task(capfd) -> None:
    outcome: dict[str, object] = {}

    def task() -> None:
        try:
            cluster = Cluster("local", cluster="worker")
            outcome["created"] = len(cluster.create(1).nodes)
            outcome["terminated"] = len(cluster.terminate())
        except BaseException as exc:  # reported to the test thread below
            outcome["error"] = exc

    worker = threading.Thread(target=task)
    worker.start()
    worker.join()
    assert outcome == {"created": 1, "terminated": 1}
    silent(capfd)


def test_what_a_backend_cannot_do_is_not_supported_before_anything_happens(capfd) -> None:
    hosts = Cluster("hosts")
    for call, message in (
        (hosts.stop, "stop: backend hosts cannot stop nodes"),
        (hosts.start, "start: backend hosts cannot start nodes"),
        (hosts.purge, "purge: backend hosts has nothing to purge"),
    ):
        with pytest.raises(NotSupported) as raised:
            call()
        assert str(raised.value) == message
    with pytest.raises(UsageError, match="^count: backend hosts takes no count"):
        hosts.create(2)
    silent(capfd)


def test_from_settings_keeps_the_callers_sources(tmp_path: Path) -> None:
    from ess.plugins import backends
    from ess.settings import load_settings

    settings = load_settings(backends()["local"], None, cli={"instance_type": "lab"}, env={})
    cluster = Cluster.from_settings(settings)
    assert (cluster.backend.name, cluster.name) == ("local", "default")
    assert cluster.settings.where("instance_type") == "--type"
    with pytest.raises(UsageError, match="^count: 0 is out of range"):
        cluster.create(0)


@pytest.mark.parametrize(
    ("count", "min_count", "message"),
    [
        (0, None, "count: 0 is out of range (it must be between 1 and 200); nothing was launched"),
        (201, None, "count: 201 is out of range (it must be between 1 and 200); nothing was launched"),
        ("3", None, "count: '3' is not a whole number (pass an int such as 3)"),
        (True, None, "count: True is not a whole number (pass an int such as 3)"),
        (2, 3, "min_count: 3 is out of range (it must be between 1 and 2); nothing was launched"),
        (2, 0, "min_count: 0 is out of range (it must be between 1 and 2); nothing was launched"),
    ],
)
def test_bad_count_raises_usage_error_before_anything_launched(
    capfd, ess_home: Path, count, min_count, message
) -> None:
    cluster = Cluster("local", cluster="bad")
    with pytest.raises(UsageError) as raised:
        cluster.create(count, min_count=min_count)
    assert str(raised.value) == message
    assert cluster.nodes() == []
    assert not (ess_home / "state" / "local" / "bad").exists()
    silent(capfd)


def test_confirm_sees_what_will_change_and_declining_changes_nothing(capfd) -> None:
    class Declined(Exception):
        pass

    def decline(what: object) -> None:
        seen.append(what)
        raise Declined

    seen: list[object] = []
    cluster = Cluster("local", cluster="asked")
    with pytest.raises(Declined):
        cluster.create(2, verify=False, confirm=decline)
    assert [(r.count, r.tags[TAG_CLUSTER]) for r in seen] == [(2, "asked")]  # type: ignore[attr-defined]
    assert cluster.nodes() == []

    ids = sorted(n.id for n in cluster.create(2, verify=False, confirm=lambda request: None).nodes)
    seen.clear()
    with pytest.raises(Declined):
        cluster.terminate(confirm=decline)
    with pytest.raises(Declined):
        cluster.stop(confirm=decline)
    assert [sorted(n.id for n in nodes) for nodes in seen] == [ids, ids]  # type: ignore[attr-defined]
    assert {n.state for n in cluster.nodes()} == {RUNNING}
    cluster.terminate()
    silent(capfd)


def test_bad_construction_is_a_usage_error_naming_the_argument(capfd, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^backend 'nosuch': not installed \(installed: .*local"):
        Cluster("nosuch")
    with pytest.raises(
        UsageError,
        match=r"^Cluster\(instance_cuont=\.\.\.\): not a setting of backend local "
        r"\(did you mean instance_count\?\)$",
    ):
        Cluster("local", instance_cuont=2)
    with pytest.raises(UsageError, match=r"^Cluster\(start_timeout=\.\.\.\): 'soon' is not a number"):
        Cluster("local", start_timeout="soon")
    with pytest.raises(UsageError, match=r"^Cluster\(cluster=\.\.\.\): '\.\./x' is not a valid cluster"):
        Cluster("local", cluster="../x")
    with pytest.raises(UsageError, match=r"^--config .*missing.conf: no such file"):
        Cluster("local", config=tmp_path / "missing.conf")
    with pytest.raises(UsageError, match=r"^ids: give either 'all' or node ids, not both$"):
        Cluster("local").terminate(["all", "local-1"])
    with pytest.raises(UsageError, match=r"^local-nosuch: not a node of cluster 'default'"):
        Cluster("local").terminate(["local-nosuch"])
    with pytest.raises(UsageError, match=r"^push .*nothing.txt: no such file or folder"):
        Cluster("local").push(tmp_path / "nothing.txt")
    silent(capfd)


def test_config_file_and_overrides_resolve_like_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "instance.conf"
    config.write_text("[local]\ninstance_count: 3\ninstance_type: from-file\n")
    cluster = Cluster("local", config=config, cluster="conf", instance_type="from-python")
    assert cluster.name == "conf"
    assert cluster.settings["instance_count"] == 3
    assert cluster.settings["instance_type"] == "from-python"
    assert cluster.settings.where("instance_type") == "Cluster(instance_type=...) [local] instance_type"


def test_verify_with_no_running_node_raises_and_exec_without_runner_is_usage(monkeypatch) -> None:
    with pytest.raises(EssError, match="^cluster 'empty' has no nodes on local"):
        Cluster("local", cluster="empty").verify()
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    plugins.reset()
    cluster = Cluster("local", cluster="norunner")
    cluster.create(1, verify=False)
    with pytest.raises(UsageError, match="^exec: no installed plugin runs commands"):
        cluster.exec("true")
    cluster.terminate()


def test_progress_goes_only_to_the_sink_given(capfd) -> None:
    sink = io.StringIO()
    cluster = Cluster("local", cluster="loud", progress=sink)
    cluster.create(1, verify=False)
    cluster.terminate()
    assert "launching 1" in sink.getvalue()
    silent(capfd)


def test_one_liner_without_a_terminal_prints_only_the_result(ess_home: Path) -> None:
    code = "import ess; c = ess.Cluster('local'); c.create(2); print(c.verify()); c.terminate()"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "ESS_HOME": str(ess_home)},
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "2 of 2 node(s) passed\n", "")


def test_import_ess_stays_light_until_cluster_is_used() -> None:
    code = (
        "import sys, ess\n"
        "assert 'ess.api' not in sys.modules and 'ess.provision' not in sys.modules\n"
        "assert ess.Cluster.__module__ == 'ess.api'\n"
        "heavy = {'boto3', 'botocore', 'paramiko', 'asyncssh', 'click'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "try:\n    ess.Nope\nexcept AttributeError:\n    print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_the_example_in_docs_api_md_runs(ess_home: Path, tmp_path: Path) -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    example = re.search(r"<!-- example: tested -->\n```python\n(.*?)```", text, re.S)
    assert example, "docs/api.md lost its tested example"
    script = tmp_path / "example.py"
    script.write_text(example.group(1))
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env={**os.environ, "ESS_HOME": str(ess_home)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "passed" in proc.stdout and "hello from" in proc.stdout


# -- EC2 in moto ---------------------------------------------------------------------------
# moto's addresses are fake, so nothing is verified over SSH: verify=False.
def test_ec2_lifecycle_on_moto(moto_endpoint, tmp_path: Path, monkeypatch, capfd) -> None:
    world = make_world(tmp_path, monkeypatch)
    cluster = Cluster("ec2", config=world.conf, cluster="pipeline")

    created = cluster.create(3, verify=False)
    ids = sorted(n.id for n in created.nodes)
    assert len(ids) == 3 and created.checks == [] and created.dropped == []
    assert world.calls.count("RunInstances", dry_run=False) == 1
    assert {n.tags[TAG_CLUSTER] for n in cluster.nodes()} == {"pipeline"}

    assert {n.state for n in cluster.stop(ids[:1])} == {STOPPED}
    assert {n.state for n in cluster.start(ids[:1])} == {RUNNING}

    gone = cluster.terminate()
    assert sorted(n.id for n in gone) == ids
    assert set(world.states(ids).values()) == {"terminated"}
    assert cluster.nodes() == []
    silent(capfd)


def test_ec2_add_terminate_keeps_adopted_remove_releases_on_moto(
    moto_endpoint, tmp_path: Path, monkeypatch, capfd
) -> None:
    world = make_world(tmp_path, monkeypatch)
    [outsider] = world.foreign(1)
    cluster = Cluster("ec2", config=world.conf, cluster="adopting")
    with pytest.raises(UsageError, match="^add: name node ids"):
        cluster.add("all")

    assert [n.id for n in cluster.add([outsider])] == [outsider]
    assert [(n.id, n.tags.get(TAG_ADOPTED)) for n in cluster.nodes()] == [(outsider, "true")]
    notes = io.StringIO()
    kept = Cluster("ec2", config=world.conf, cluster="adopting", progress=notes).terminate()
    assert kept == [] and f"keeping 1 adopted node(s) ess did not launch: {outsider}" in notes.getvalue()

    assert [n.id for n in cluster.remove([outsider])] == [outsider]
    assert cluster.nodes() == []
    assert world.states([outsider]) == {outsider: "running"}  # released, never stopped
    silent(capfd)


def test_ec2_bad_input_raises_typed_errors_and_launches_nothing(
    moto_endpoint, tmp_path: Path, monkeypatch, capfd
) -> None:
    world = make_world(tmp_path, monkeypatch)
    with pytest.raises(UsageError, match=r"^count: 1001 is out of range \(it must be between 1 and 1000\)"):
        Cluster("ec2", config=world.conf).create(1001)
    with pytest.raises(UsageError, match="nosuch-key"):
        Cluster("ec2", config=world.conf, key_name="nosuch-key").create(2, verify=False)
    with pytest.raises(UsageError, match=r"^Cluster\(instance_count=\.\.\.\): 'many' is not a whole number"):
        Cluster("ec2", config=world.conf, instance_count="many")
    assert world.calls.mutating() == []
    silent(capfd)


def test_errors_raised_to_the_caller_carry_no_secret(moto_endpoint, tmp_path: Path, monkeypatch) -> None:
    """A pipeline logs what ess raises, with its traceback and chained exceptions: the secret
    must not be there (a credential row pasted into instance.conf; a credential CSV in use)."""
    world = make_world(tmp_path, monkeypatch)
    text = world.conf.read_text()
    world.conf.write_text(text + f"{FAKE_ACCESS_KEY},{FAKE_SECRET_KEY}\n")  # a credential row pasted by mistake
    with pytest.raises(UsageError) as pasted:
        Cluster("ec2", config=world.conf)
    (world.folder / "credential_file.csv").write_text(
        f"User Name,Access Key Id,Secret Access Key\nessentia,{FAKE_ACCESS_KEY},{FAKE_SECRET_KEY}\n"
    )
    world.conf.write_text(text + "aws_credential: credential_file\n")
    with pytest.raises(UsageError) as refused:
        Cluster("ec2", config=world.conf, key_name="nosuch-key").create(2, verify=False)
    for raised in (pasted.value, refused.value):
        logged = "".join(traceback.format_exception(raised))  # what logging.exception() prints
        assert FAKE_SECRET_KEY not in logged and FAKE_SECRET_KEY not in repr(raised)
    assert world.calls.mutating() == []
