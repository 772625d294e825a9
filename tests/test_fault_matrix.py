"""Issue 7's fault matrix: a failure at every phase of ``create``, and what is left running.

Phases: preflight, launch call, wait, verify, after-create hooks; faults: persistent API
errors, throttling, capacity, a raising hook, failed checks, SIGINT and SIGKILL. Backends:
EC2 (moto) and local (real node processes). After every case:

- ``left_running``: nodes with the cluster tag still pending/running;
- ``leak``: those that ess neither meant to keep nor would clean (must be 0 after a rollback;
  after SIGKILL, ``terminate all`` must bring the cluster to 0);
- ``foreign_touched``: a foreign instance (same Name, no ess tags) and a node of another
  ess cluster, both started before the case, that are no longer running (must be 0).

With ``ESS_RELIABILITY_LOG=<file>`` every case appends one JSON line; see
tests/support/reliability_summary.py for the table in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import capacity
from support.ec2_world import World, aws_error, empty_listing, is_dry_run, is_listing, proxy_page, reply_lost
from support.fault_world import WORKER_NAME, lean_world, record
from support.local_helpers import kill_test_nodes, pid_alive, processes

from ess.models import TAG_CLUSTER, TAG_LAUNCH

TESTS = Path(__file__).resolve().parent
FAULTS = "support.fault_plugins.faults"
LIVE = ("pending", "running")
CREATE = ("instance", "ec2", "create", "--yes")


# -- the EC2 world with its bystanders ----------------------------------------------------
@dataclass
class Ec2Case:
    world: World
    bystanders: list[str]

    def cluster_states(self, cluster: str = "default") -> dict[str, str]:
        pages = self.world.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]}]
        )
        return {
            i["InstanceId"]: i["State"]["Name"] for page in pages for r in page["Reservations"] for i in r["Instances"]
        }

    def running(self) -> list[str]:
        """The cluster's live nodes; a bystander wearing a forged cluster tag is not one of them."""
        return sorted(i for i, state in self.cluster_states().items() if state in LIVE and i not in self.bystanders)

    def foreign_touched(self) -> int:
        return sum(1 for state in self.world.states(self.bystanders).values() if state != "running")

    def launches(self) -> set[str]:
        pages = self.world.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{TAG_CLUSTER}", "Values": ["default"]}]
        )
        return {
            t["Value"]
            for page in pages
            for r in page["Reservations"]
            for i in r["Instances"]
            for t in i.get("Tags", [])
            if t["Key"] == TAG_LAUNCH
        }

    def conclude(self, phase: str, fault: str, exit_code: int, *, kept: int = 0, **extra: Any) -> int:
        """Record the case and return the leak: running nodes beyond the ones meant to be kept."""
        left = len(self.running())
        touched = self.foreign_touched()
        leak = max(0, left - kept)
        record(
            kind="fault",
            backend="ec2",
            phase=phase,
            fault=fault,
            exit_code=exit_code,
            left_running=left,
            kept=kept,
            leak=leak,
            foreign_touched=touched,
            **extra,
        )
        assert touched == 0, self.world.states(self.bystanders)
        return leak


@pytest.fixture
def case(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ec2Case:
    import botocore.retries.standard

    # Retries happen for real, without their back-off pauses.
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    monkeypatch.setenv("ESS_PLUGINS", FAULTS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    world = lean_world(moto_endpoint, tmp_path, monkeypatch)
    monkeypatch.chdir(world.folder)
    foreign = world.foreign(1, name=WORKER_NAME)
    other = world.foreign(1, name=WORKER_NAME, tags={TAG_CLUSTER: "other", TAG_LAUNCH: "other-launch"})
    return Ec2Case(world=world, bystanders=foreign + other)


def failing(
    operation: str, status: int, code: str, *, sends: int | None = None, dry_runs: bool = False
) -> tuple[str, Callable[..., Any]]:
    """A before-send handler answering ``operation`` with an error: always, or the first ``sends``."""
    seen = {"sends": 0}

    def handler(request: Any, **_: Any) -> Any:
        if is_dry_run(request) and not dry_runs:
            return None
        seen["sends"] += 1
        if sends is None or seen["sends"] <= sends:
            return aws_error(status, code, f"injected {code}")
        return None

    return f"before-send.ec2.{operation}", handler


def after_launch(world: World, fault: tuple[str, Callable[..., Any]]) -> tuple[str, Callable[..., Any]]:
    """``fault`` only once the real RunInstances was sent: ``create`` lists the cluster before
    launching (to say how many nodes it already has), and that describe must not be the one hit."""
    event, handler = fault

    def later(request: Any, **kwargs: Any) -> Any:
        if world.calls.count("RunInstances", dry_run=False) == 0:
            return None
        return handler(request=request, **kwargs)

    return event, later


def lines(err: str) -> list[str]:
    return err.strip().splitlines()


# -- preflight, launch, wait: API errors --------------------------------------------------
def test_preflight_api_error_launches_nothing(case: Ec2Case, ess) -> None:
    case.world.calls.handlers.append(failing("DescribeKeyPairs", 500, "InternalError"))
    result = ess(*CREATE, "--no-verify")
    assert result.code == 1, result
    err = lines(result.err)
    assert len(err) == 1 and "cannot" in err[0] and "InternalError" in err[0], result
    assert case.world.calls.mutating() == []
    assert case.conclude("preflight", "500 InternalError (persistent)", result.code) == 0


def test_launch_api_error_past_retries_leaves_nothing(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "3")
    case.world.calls.handlers.append(failing("RunInstances", 500, "InternalError"))
    result = ess(*CREATE, "--no-verify")
    assert result.code == 1, result
    assert "cannot launch instances" in result.err and "InternalError" in result.err
    assert case.world.calls.sends["RunInstances"] == 1 + 3  # the dry run, then three real sends
    assert case.conclude("launch", "500 InternalError (persistent)", result.code) == 0


def test_capacity_error_at_launch_leaves_nothing(case: Ec2Case, ess) -> None:
    case.world.calls.handlers.append(failing("RunInstances", 500, "InsufficientInstanceCapacity"))
    result = ess(*CREATE, "--no-verify", "--number", "3")
    assert result.code == 1, result
    assert "not enough m3.medium capacity" in result.err
    assert case.conclude("launch", "InsufficientInstanceCapacity", result.code) == 0


def test_describe_error_past_retries_during_wait_rolls_back(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "3")
    # Every send of the wait's first describe fails (3 attempts); the rollback's describes work.
    case.world.calls.handlers.append(
        after_launch(case.world, failing("DescribeInstances", 500, "InternalError", sends=3))
    )
    result = ess(*CREATE, "--no-verify", "--number", "3")
    assert result.code == 1, result
    assert "cannot describe instances" in result.err
    assert "cleaned up: terminated 3 node(s) launched by this run" in result.err
    assert case.conclude("wait", "500 InternalError (persistent, then recovers)", result.code) == 0


def test_describe_outage_through_rollback_still_terminates_the_launched_ids(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "2")
    case.world.calls.handlers.append(after_launch(case.world, failing("DescribeInstances", 500, "InternalError")))
    result = ess(*CREATE, "--no-verify", "--number", "2")
    case.world.calls.handlers.clear()
    leak = case.conclude("wait", "500 InternalError (describe outage through rollback)", result.code)
    assert leak == 0, result


def test_describe_outage_through_rollback_says_how_to_clean_and_terminate_all_does(
    case: Ec2Case, ess, monkeypatch
) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "2")
    case.world.calls.handlers.append(after_launch(case.world, failing("DescribeInstances", 500, "InternalError")))
    result = ess(*CREATE, "--no-verify", "--number", "2")
    assert result.code == 1, result
    assert "termination of 2 instance(s) was accepted but cannot be confirmed" in result.err
    assert "check with: ess instance ec2 list" in result.err
    left = len(case.running())
    case.world.calls.handlers.clear()
    monkeypatch.delenv("ESS_API_MAX_ATTEMPTS")
    cleaned = ess("instance", "ec2", "terminate", "all", "--yes")
    assert cleaned.code == 0, cleaned
    assert (
        case.conclude(
            "wait", "describe outage through rollback, then terminate all", result.code, left_before_terminate_all=left
        )
        == 0
    )


# -- lost RunInstances replies and a proxy's HTML 502 (issue 12) ----------------------------
def losing_replies(sends: int | None) -> tuple[str, Callable[..., Any]]:
    """RunInstances reaches moto and launches, then its reply is lost (ReadTimeout): always, or
    the first ``sends`` times. botocore sends again; moto ignores the ClientToken."""
    seen = {"lost": 0}

    def handler(request: Any, **_: Any) -> None:
        if is_dry_run(request) or (sends is not None and seen["lost"] >= sends):
            return
        seen["lost"] += 1
        reply_lost(request)

    return "before-send.ec2.RunInstances", handler


@pytest.mark.parametrize("listed_late", [False, True], ids=["listed at once", "first listing misses the launch"])
def test_lost_launch_replies_keep_exactly_n(case: Ec2Case, ess, listed_late: bool) -> None:
    """A reply lost twice: keep 5, terminate the 10 duplicates. With ``listed_late`` the first
    listing after the launch misses them (EC2's eventual consistency); the check once made
    only that listing, and the duplicates stayed running as nodes nobody asked for."""
    case.world.calls.handlers.append(losing_replies(2))
    listings = {"n": 0}

    def late(request: Any, **_: Any) -> Any:
        if case.world.calls.count("RunInstances", dry_run=False) == 0 or not is_listing(request):
            return None
        listings["n"] += 1
        return empty_listing() if listed_late and listings["n"] == 1 else None

    case.world.calls.handlers.append(("before-send.ec2.DescribeInstances", late))
    result = ess(*CREATE, "--no-verify", "--number", "5", "--json")
    assert result.code == 0, result
    nodes = json.loads(result.out)["nodes"]
    assert sorted(n["id"] for n in nodes) == case.running() and len(nodes) == 5
    assert "found 15 instances of this launch, terminated 10 extra" in result.err
    fault = "reply lost twice (ReadTimeout), retried" + ("; the first listing misses the launch" if listed_late else "")
    assert case.conclude("launch", fault, result.code, kept=5) == 0


def test_lost_launch_replies_to_the_last_attempt_leave_nothing(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "3")
    case.world.calls.handlers.append(losing_replies(None))
    result = ess(*CREATE, "--no-verify", "--number", "5")
    assert result.code == 1, result
    assert "cleaned up: terminated 15 node(s) launched by this run" in result.err
    assert case.conclude("launch", "every reply lost (ReadTimeout x3)", result.code) == 0


def proxy_502(operation: str, sends: int | None) -> tuple[str, Callable[..., Any]]:
    seen = {"sends": 0}

    def handler(request: Any, **_: Any) -> Any:
        if is_dry_run(request):
            return None
        seen["sends"] += 1
        return proxy_page(502) if sends is None or seen["sends"] <= sends else None

    return f"before-send.ec2.{operation}", handler


def test_proxy_html_502_at_launch_is_retried(case: Ec2Case, ess) -> None:
    case.world.calls.handlers.append(proxy_502("RunInstances", 2))
    result = ess(*CREATE, "--no-verify", "--number", "2", "--json")
    assert result.code == 0, result
    assert len(json.loads(result.out)["nodes"]) == 2 == len(case.running())
    assert case.conclude("launch", "proxy HTML 502 x2, then OK", result.code, kept=2) == 0


def test_persistent_proxy_html_502_at_launch_is_one_line(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "3")
    case.world.calls.handlers.append(proxy_502("RunInstances", None))
    result = ess(*CREATE, "--no-verify", "--number", "2")
    assert result.code == 1, result
    # Not the progress lines, nor the note that this cluster has no time limit (issue 16).
    err = [line for line in lines(result.err) if line.startswith("ess:") and not line.startswith("ess: note:")]
    assert len(err) == 1 and "HTTP 502 Bad Gateway" in err[0] and os.environ["AWS_ENDPOINT_URL"] in err[0]
    assert case.conclude("launch", "proxy HTML 502 (persistent)", result.code) == 0


def test_persistent_proxy_html_502_after_launch_rolls_back(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "3")
    case.world.calls.handlers.append(after_launch(case.world, proxy_502("DescribeInstances", 3)))
    result = ess(*CREATE, "--no-verify", "--number", "3")
    assert result.code == 1, result
    assert "HTTP 502 Bad Gateway" in lines(result.err)[-1]
    assert "cleaned up: terminated 3 node(s) launched by this run" in result.err
    assert case.conclude("wait", "proxy HTML 502 (persistent, then recovers)", result.code) == 0


# -- ownership: forged tags and another team on the default cluster name (issue 12) ---------
def test_terminate_all_leaves_forged_and_other_key_pair_instances(case: Ec2Case, ess) -> None:
    world = case.world
    forged = world.foreign(1, name=WORKER_NAME, tags={TAG_CLUSTER: "default"})
    world.ec2.create_key_pair(KeyName="team_b")
    other_team = world.ec2.run_instances(
        ImageId=world.image,
        MinCount=1,
        MaxCount=1,
        InstanceType="m3.medium",
        KeyName="team_b",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": TAG_CLUSTER, "Value": "default"}, {"Key": TAG_LAUNCH, "Value": "team-b-launch"}],
            }
        ],
    )
    case.bystanders += forged + [i["InstanceId"] for i in other_team["Instances"]]
    made = ess(*CREATE, "--no-verify", "--number", "2")
    assert made.code == 0, made
    result = ess("instance", "ec2", "terminate", "all", "--yes", "--include-adopted")
    assert result.code == 0, result
    assert "skipped 2 instance(s)" in result.err
    assert case.conclude("terminate all", "forged ess:cluster tag + other key pair on 'default'", result.code) == 0


# -- throttling everywhere ------------------------------------------------------------------
def test_thirty_percent_throttling_everywhere_still_creates_exactly_n(case: Ec2Case, ess) -> None:
    rng = random.Random(7)
    throttled = {"sends": 0, "throttled": 0}

    def throttle(request: Any, **_: Any) -> Any:
        throttled["sends"] += 1
        if rng.random() < 0.3:
            throttled["throttled"] += 1
            return aws_error(503, "RequestLimitExceeded", "Request limit exceeded.")
        return None

    case.world.calls.handlers.append(("before-send", throttle))
    result = ess(*CREATE, "--no-verify", "--number", "3", "--json")
    assert result.code == 0, result
    assert throttled["throttled"] > 0
    nodes = json.loads(result.out)["nodes"]
    assert len(nodes) == len({n["id"] for n in nodes}) == 3
    assert sorted(n["id"] for n in nodes) == case.running()
    assert len(case.launches()) == 1
    assert case.world.calls.count("RunInstances", dry_run=False) == 1
    assert (
        case.conclude(
            "every call",
            "30% RequestLimitExceeded (seeded)",
            result.code,
            kept=3,
            sends=throttled["sends"],
            throttled=throttled["throttled"],
        )
        == 0
    )


# -- SIGINT during wait (in-process) ------------------------------------------------------
def test_sigint_during_wait_rolls_back(case: Ec2Case, ess) -> None:
    fired = {"done": False}

    def interrupt(request: Any, **_: Any) -> None:
        if not fired["done"]:
            fired["done"] = True
            os.kill(os.getpid(), signal.SIGINT)  # delivered as KeyboardInterrupt in this thread

    case.world.calls.handlers.append(after_launch(case.world, ("before-send.ec2.DescribeInstances", interrupt)))
    result = ess(*CREATE, "--no-verify", "--number", "2")
    assert fired["done"] and result.code == 130, result
    assert "interrupted; the nodes of this run were terminated" in result.err
    assert case.conclude("wait", "SIGINT (in-process)", result.code) == 0


# -- SIGINT while RunInstances is in flight, and EC2 lists the launch late -------------------
@pytest.mark.parametrize(
    "hidden",
    [(1, 2), (1, 2, 4)],
    ids=["first two listings miss it", "the rollback's own listing misses it too"],
)
def test_sigint_during_run_instances_finds_a_launch_ec2_lists_late(case: Ec2Case, ess, hidden) -> None:
    """EC2 launched, the interrupt came before the reply was read, and EC2's filtered listing
    does not show the new instances for a while (eventual consistency). Before, the rollback
    listed once, found nothing, and left the three nodes running."""
    fired = {"done": False}
    listings = {"n": 0}

    def interrupt(request: Any, **_: Any) -> None:
        if is_dry_run(request) or fired["done"]:
            return
        fired["done"] = True
        with contextlib.suppress(Exception):
            reply_lost(request)  # delivered: moto launches the nodes
        os.kill(os.getpid(), signal.SIGINT)  # delivered as KeyboardInterrupt in this thread
        time.sleep(5)  # not reached: the interrupt is raised first

    def late(request: Any, **_: Any) -> Any:
        if not fired["done"] or not is_listing(request):
            return None
        listings["n"] += 1
        return empty_listing() if listings["n"] in hidden else None

    case.world.calls.handlers.append(("before-send.ec2.RunInstances", interrupt))
    case.world.calls.handlers.append(("before-send.ec2.DescribeInstances", late))
    result = ess(*CREATE, "--no-verify", "--number", "3")
    assert fired["done"] and result.code == 130, result
    assert listings["n"] >= max(hidden)
    assert "interrupted; the nodes of this run were terminated" in result.err
    assert "cleaned up: terminated 3 node(s)" in result.err
    fault = f"SIGINT during RunInstances; listings {', '.join(map(str, hidden))} miss the launch"
    assert case.conclude("launch", fault, result.code) == 0


def test_a_capacity_refusal_is_not_searched_for(case: Ec2Case, ess) -> None:
    """EC2 said it launched nothing: no pause to look for instances (the error comes at once)."""
    case.world.calls.handlers.append(failing("RunInstances", 500, "InsufficientInstanceCapacity"))
    listed = {"n": 0}

    def count(request: Any, **_: Any) -> None:
        listed["n"] += is_listing(request)

    case.world.calls.handlers.append(("before-send.ec2.DescribeInstances", count))
    result = ess(*CREATE, "--no-verify", "--number", "2")
    assert result.code == 1, result
    # create's own listing before the launch and the rollback's; the search made none.
    assert listed["n"] == 2


# -- verify and after-create hooks ----------------------------------------------------------
def test_after_create_hook_that_raises_rolls_back(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_FAULT_AFTER_CREATE", "raise")
    result = ess(*CREATE, "--no-verify", "--number", "2")
    assert result.code == 1, result
    assert "after-create hook failed on purpose" in lines(result.err)[-1]
    assert "cleaned up: terminated 2 node(s)" in result.err
    assert case.conclude("after-create", "hook raises", result.code) == 0


def test_verify_failure_rolls_back(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_FAULT_CHECK_FAIL", "1")
    result = ess(*CREATE, "--number", "2")
    assert result.code == 1, result
    assert "verification failed on 1 of 2 node(s)" in result.err
    assert case.conclude("verify", "1 of 2 checks fail", result.code) == 0


def full_count(request: Any, **_: Any) -> None:
    """EC2 launches up to MaxCount when it has room; moto launches only MinCount: ask for all."""
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    if b"Action=RunInstances" in body and not is_dry_run(request):
        # Same length, so Content-Length still holds; moto does not check the signature.
        request.body = body.replace(b"MinCount=2", b"MinCount=3")


def test_verify_failure_with_min_keeps_the_good_nodes(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_FAULT_CHECK_FAIL", "1")
    case.world.calls.handlers.append(("before-send.ec2.RunInstances", full_count))
    result = ess(*CREATE, "--number", "3", "--min", "2", "--json")
    assert result.code == 3, result
    kept = json.loads(result.out)["nodes"]
    assert len(kept) == 2 and sorted(n["id"] for n in kept) == case.running()
    assert "kept 2 of 3 nodes; dropped" in lines(result.err)[-1]
    assert case.conclude("verify", "1 of 3 checks fail, --min 2", result.code, kept=2) == 0


def test_verify_failure_with_keep_on_failure_keeps_and_says_so(case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_FAULT_CHECK_FAIL", "2")
    result = ess(*CREATE, "--number", "2", "--keep-on-failure")
    assert result.code == 1, result
    assert "--keep-on-failure: keeping the nodes of this run" in result.err
    assert "remove them with: ess instance ec2 terminate all" in result.err
    assert len(case.running()) == 2
    assert case.conclude("verify", "all checks fail, --keep-on-failure", result.code, kept=2) == 0


# -- a real ess process: SIGKILL and SIGINT while the after-create hook runs ---------------
@contextlib.contextmanager
def ess_process(
    args: list[str], cwd: Path, ready: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """The ``ess`` console script, parked in the sleeping after-create hook once ``ready`` exists."""
    full_env = {**os.environ, "ESS_FAULT_AFTER_CREATE": "sleep", "ESS_FAULT_READY": str(ready), **(env or {})}
    proc = subprocess.Popen(
        ["ess", *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"ess exited early ({proc.returncode}): {err}")
            assert time.monotonic() < deadline, "ess never reached the after-create hook"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def test_sigkill_of_a_real_ess_process_then_terminate_all(case: Ec2Case, ess, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    with ess_process(list(CREATE) + ["--no-verify", "--number", "3"], case.world.folder, ready) as proc:
        launched = ready.read_text().split()
        assert sorted(launched) == case.running()  # moto agrees the nodes exist
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=30)
    left = len(case.running())
    assert code == -signal.SIGKILL and left == 3  # a crash leaves every node tagged
    cleaned = ess("instance", "ec2", "terminate", "all", "--yes")
    assert cleaned.code == 0, cleaned
    assert case.conclude("after-create", "SIGKILL, then terminate all", code, left_before_terminate_all=left) == 0


def test_sigint_to_a_real_ess_process_rolls_back(case: Ec2Case, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    with ess_process(list(CREATE) + ["--no-verify", "--number", "2"], case.world.folder, ready) as proc:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cleaned up: terminated 2 node(s)" in err and "interrupted" in err.splitlines()[-1]
    assert case.conclude("after-create", "SIGINT (real signal)", proc.returncode) == 0


# -- the local backend ----------------------------------------------------------------------
def node_pids(ess_home: Path) -> list[int]:
    """Live ess_local.node processes of this test (their command line points into ESS_HOME)."""
    return processes(lambda argv: "ess_local.node" in argv and any(str(ess_home) in part for part in argv))


@pytest.fixture
def local(ess_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("ESS_PLUGINS", FAULTS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)
    yield ess_home
    kill_test_nodes(ess_home)


def conclude_local(ess_home: Path, phase: str, fault: str, exit_code: int, **extra: Any) -> int:
    left = len(node_pids(ess_home))
    record(
        kind="fault",
        backend="local",
        phase=phase,
        fault=fault,
        exit_code=exit_code,
        left_running=left,
        kept=0,
        leak=left,
        foreign_touched=0,
        **extra,
    )
    return left


def test_local_after_create_hook_failure_rolls_back(local: Path, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_FAULT_AFTER_CREATE", "raise")
    monkeypatch.setenv("ESS_FAULT_READY", str(local.parent / "ready"))
    result = ess("instance", "local", "create", "--number", "2", "--no-verify")
    assert result.code == 1, result
    assert len((local.parent / "ready").read_text().split()) == 2  # the hook saw both nodes
    assert "cleaned up: terminated 2 node(s)" in result.err
    assert conclude_local(local, "after-create", "hook raises", result.code) == 0


def test_local_sigkill_then_terminate_all(local: Path, ess) -> None:
    ready = local.parent / "ready"
    with ess_process(["instance", "local", "create", "--number", "2", "--no-verify"], Path.cwd(), ready) as proc:
        pids = node_pids(local)
        assert len(pids) == 2
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=30)
    survivors = [pid for pid in pids if pid_alive(pid)]
    assert survivors == pids  # the nodes outlive their parent, and the state file knows them
    cleaned = ess("instance", "local", "terminate", "all", "--yes")
    assert cleaned.code == 0, cleaned
    assert not any(pid_alive(pid) for pid in pids)
    assert (
        conclude_local(
            local, "after-create", "SIGKILL, then terminate all", code, left_before_terminate_all=len(survivors)
        )
        == 0
    )


def test_local_sigint_rolls_back(local: Path) -> None:
    ready = local.parent / "ready"
    with ess_process(["instance", "local", "create", "--number", "2", "--no-verify"], Path.cwd(), ready) as proc:
        pids = node_pids(local)
        assert len(pids) == 2
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not any(pid_alive(pid) for pid in pids)
    assert conclude_local(local, "after-create", "SIGINT (real signal)", proc.returncode) == 0


# -- the fleet path: type and subnet lists, one CreateFleet (issue 15) ----------------------
FLEET_TYPES = ("m5.large", "m5a.large")
FLEET_ZONES = ("us-east-1a", "us-east-1b")


@pytest.fixture
def fleet_case(case: Ec2Case) -> Iterator[Ec2Case]:
    """The EC2 case with two types over two subnets, and capacity simulated in moto."""
    world = case.world
    found = world.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in found}
    world.conf.write_text(
        world.conf.read_text().replace("instance_type:  m3.medium\n", f"instance_type: {', '.join(FLEET_TYPES)}\n")
        + f"subnet_id: {', '.join(by_zone[z] for z in FLEET_ZONES)}\n"
    )
    with capacity.simulated():
        yield case


def fleet_launched(world: World) -> bool:
    return world.calls.count("CreateFleet") > 0


def test_fleet_api_error_past_retries_leaves_nothing(fleet_case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "3")
    fleet_case.world.calls.handlers.append(failing("CreateFleet", 500, "InternalError"))
    result = ess(*CREATE, "--no-verify", "--number", "3")
    assert result.code == 1, result
    assert "cannot launch instances" in result.err and "InternalError" in result.err
    assert fleet_case.world.calls.sends["CreateFleet"] == 3
    assert fleet_case.conclude("launch (fleet)", "500 InternalError (persistent)", result.code) == 0


def test_fleet_with_every_pool_out_leaves_nothing(fleet_case: Ec2Case, ess) -> None:
    for instance_type in FLEET_TYPES:
        for zone in FLEET_ZONES:
            capacity.CAPACITY.out(instance_type, zone)
    result = ess(*CREATE, "--no-verify", "--number", "4")
    assert result.code == 1, result
    assert "EC2 launched 0 of 4 node(s)" in lines(result.err)[-1]
    assert fleet_case.conclude("launch (fleet)", "InsufficientInstanceCapacity in every pool", result.code) == 0


def test_fleet_short_of_min_rolls_back_what_launched(fleet_case: Ec2Case, ess) -> None:
    capacity.CAPACITY.limit("m5.large", "us-east-1a", 2)
    for instance_type, zone in (("m5.large", "us-east-1b"), ("m5a.large", "us-east-1a"), ("m5a.large", "us-east-1b")):
        capacity.CAPACITY.out(instance_type, zone)
    result = ess(*CREATE, "--no-verify", "--number", "5", "--min", "3")
    assert result.code == 1, result
    assert "EC2 launched 2 of 5 node(s) and at least 3 were needed" in result.err
    assert "cleaned up: terminated 2 node(s) launched by this run" in result.err
    assert fleet_case.conclude("launch (fleet)", "capacity for 2 of 5, --min 3", result.code) == 0


def test_fleet_short_but_above_min_keeps_the_cluster(fleet_case: Ec2Case, ess) -> None:
    capacity.CAPACITY.limit("m5.large", "us-east-1a", 4)
    for instance_type, zone in (("m5.large", "us-east-1b"), ("m5a.large", "us-east-1a"), ("m5a.large", "us-east-1b")):
        capacity.CAPACITY.out(instance_type, zone)
    result = ess(*CREATE, "--no-verify", "--number", "5", "--min", "3", "--json")
    assert result.code == 0, result
    nodes = json.loads(result.out)["nodes"]
    assert len(nodes) == 4 and sorted(n["id"] for n in nodes) == fleet_case.running()
    assert "ess: launched 4 of 5 node(s); pools without capacity" in result.err
    assert fleet_case.conclude("launch (fleet)", "capacity for 4 of 5, --min 3", result.code, kept=4) == 0


def test_fleet_lost_reply_keeps_exactly_n(fleet_case: Ec2Case, ess) -> None:
    event, handler = losing_replies(1)
    fleet_case.world.calls.handlers.append(("before-send.ec2.CreateFleet", handler))
    result = ess(*CREATE, "--no-verify", "--number", "3", "--json")
    assert result.code == 0, result
    nodes = json.loads(result.out)["nodes"]
    assert sorted(n["id"] for n in nodes) == fleet_case.running() and len(nodes) == 3
    assert "CreateFleet was retried (2 attempts); found 6 instances of this launch, terminated 3 extra" in result.err
    assert fleet_case.conclude("launch (fleet)", "reply lost once (ReadTimeout), retried", result.code, kept=3) == 0


def test_fleet_describe_error_during_wait_rolls_back(fleet_case: Ec2Case, ess, monkeypatch) -> None:
    monkeypatch.setenv("ESS_API_MAX_ATTEMPTS", "3")
    world = fleet_case.world
    event, handler = failing("DescribeInstances", 500, "InternalError", sends=3)

    def later(request: Any, **kwargs: Any) -> Any:
        return handler(request=request, **kwargs) if fleet_launched(world) else None

    world.calls.handlers.append((event, later))
    result = ess(*CREATE, "--no-verify", "--number", "3")
    assert result.code == 1, result
    assert "cleaned up: terminated 3 node(s) launched by this run" in result.err
    assert fleet_case.conclude("wait (fleet)", "500 InternalError (persistent, then recovers)", result.code) == 0


def test_fleet_sigint_while_create_fleet_is_in_flight_rolls_back(fleet_case: Ec2Case, ess) -> None:
    """The fleet reaches EC2 and launches; the interrupt comes before its reply is read."""
    fired = {"done": False}

    def interrupt(request: Any, **_: Any) -> None:
        if not fired["done"]:
            fired["done"] = True
            with contextlib.suppress(Exception):
                reply_lost(request)  # delivered: moto launches the nodes
            os.kill(os.getpid(), signal.SIGINT)  # delivered as KeyboardInterrupt in this thread
            time.sleep(5)  # not reached: the interrupt is raised first

    fleet_case.world.calls.handlers.append(("before-send.ec2.CreateFleet", interrupt))
    result = ess(*CREATE, "--no-verify", "--number", "3")
    assert fired["done"] and result.code == 130, result
    assert "interrupted; the nodes of this run were terminated" in result.err
    assert "cleaned up: terminated 3 node(s)" in result.err  # found by their ess:launch tag
    assert fleet_case.conclude("launch (fleet)", "SIGINT during CreateFleet (in-process)", result.code) == 0


@contextlib.contextmanager
def ess_in_create_fleet(args: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """The ``ess`` console script, its CreateFleet executed by moto and its reply held back."""
    capacity.CAPACITY.holding.set()
    proc = subprocess.Popen(["ess", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not capacity.CAPACITY.held.wait(timeout=0.1):
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"ess exited early ({proc.returncode}): {err}")
            assert time.monotonic() < deadline, "ess never sent CreateFleet"
        yield proc
    finally:
        capacity.CAPACITY.holding.clear()
        capacity.CAPACITY.release.set()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def test_fleet_sigkill_during_create_fleet_then_terminate_all(fleet_case: Ec2Case, ess) -> None:
    with ess_in_create_fleet(list(CREATE) + ["--no-verify", "--number", "3"], fleet_case.world.folder) as proc:
        assert len(fleet_case.running()) == 3  # launched, tagged at launch, reply not yet read
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=30)
    left = len(fleet_case.running())
    assert code == -signal.SIGKILL and left == 3  # a crash leaves every node tagged
    cleaned = ess("instance", "ec2", "terminate", "all", "--yes")
    assert cleaned.code == 0, cleaned
    assert (
        fleet_case.conclude(
            "launch (fleet)", "SIGKILL during CreateFleet, then terminate all", code, left_before_terminate_all=left
        )
        == 0
    )


def test_fleet_sigint_to_a_real_process_during_create_fleet_rolls_back(fleet_case: Ec2Case) -> None:
    with ess_in_create_fleet(list(CREATE) + ["--no-verify", "--number", "3"], fleet_case.world.folder) as proc:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cleaned up: terminated 3 node(s)" in err and "interrupted" in err.splitlines()[-1]
    assert fleet_case.conclude("launch (fleet)", "SIGINT during CreateFleet (real signal)", proc.returncode) == 0
