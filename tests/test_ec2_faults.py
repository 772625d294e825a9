"""Faults on the wire: throttling, capacity, lost replies, rejected credentials, and secrets."""

from __future__ import annotations

import logging

import boto3
import pytest
from support.ec2_world import aws_error, is_dry_run, make_world, proxy_page, reply_lost

from ess import provision
from ess.errors import EssError, UsageError
from ess_ec2 import client as ec2_client
from ess_ec2.backend import client_token

CSV_ACCESS = "AKIAESSCSVTESTKEY001"
CSV_SECRET = "csvSecret/NeverPrintThis+x7Qp2Wv9Lm4Rt6Yb1Nc3"


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    import botocore.retries.standard

    # Retries happen for real, without their back-off pauses.
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    return make_world(tmp_path, monkeypatch)


def fail_first(k: int, status: int, code: str, message: str):
    """A before-send handler answering the first ``k`` real (not DryRun) sends with an error."""
    seen = {"sends": 0}

    def handler(request, **_):
        if is_dry_run(request):
            return None
        seen["sends"] += 1
        if seen["sends"] <= k:
            return aws_error(status, code, message)
        return None

    return handler, seen


def test_throttled_launch_is_retried_and_launches_once(world):
    handler, seen = fail_first(3, 503, "RequestLimitExceeded", "Request limit exceeded.")
    world.calls.handlers.append(("before-send.ec2.RunInstances", handler))
    nodes = world.launch(2)
    assert len(nodes) == 2
    assert seen["sends"] == 4  # three throttled sends, then the one that worked
    assert world.calls.count("RunInstances", dry_run=False) == 1  # one API call, retried inside botocore
    assert len(world.backend.nodes(world.settings())) == 2


def test_throttling_beyond_the_attempts_is_one_clear_error_and_launches_nothing(world):
    handler, seen = fail_first(100, 503, "RequestLimitExceeded", "Request limit exceeded.")
    world.calls.handlers.append(("before-send.ec2.RunInstances", handler))
    with pytest.raises(EssError) as info:
        world.launch(2, api_max_attempts=3)
    assert seen["sends"] == 3
    assert "RequestLimitExceeded" in str(info.value) and "\n" not in str(info.value)
    assert world.ec2.describe_instances()["Reservations"] == []


def test_throttled_describes_during_wait_are_retried(world):
    nodes = world.launch(2)
    handler, seen = fail_first(2, 503, "RequestLimitExceeded", "Request limit exceeded.")
    world.calls.handlers.append(("before-send.ec2.DescribeInstances", handler))
    ready = world.backend.wait(world.settings(), nodes, world.progress(), timeout=60)
    assert {n.state for n in ready} == {"running"} and seen["sends"] == 3


def test_capacity_error_names_type_zone_and_what_to_try_and_leaves_nothing(world):
    message = (
        "We currently do not have sufficient m3.medium capacity in the Availability Zone you "
        "requested (us-east-1a). Our system will be working on provisioning additional capacity."
    )
    handler, _ = fail_first(100, 500, "InsufficientInstanceCapacity", message)
    world.calls.handlers.append(("before-send.ec2.RunInstances", handler))
    settings = world.settings()
    request = world.request(3, launch_id="no-room")
    request = provision.preflight(world.backend, settings, request)
    with pytest.raises(EssError) as info:
        provision.create(world.backend, settings, request, world.progress(), verify=False)
    text = str(info.value)
    assert "m3.medium" in text and "us-east-1a" in text
    assert "--type" in text and "subnet_id" in text and "fewer nodes" in text
    assert world.backend.nodes(settings) == []
    assert world.ec2.describe_instances()["Reservations"] == []
    assert world.calls.mutating() == ["RunInstances"]  # the failed launch itself, nothing else


def lose_first(k: int):
    """A before-send handler that lets the first ``k`` real RunInstances reach moto, then loses
    their replies (ReadTimeout), so botocore sends again: moto, unlike EC2, ignores ClientToken."""
    seen = {"lost": 0}

    def handler(request, **_):
        if is_dry_run(request) or seen["lost"] >= k:
            return None
        seen["lost"] += 1
        reply_lost(request)

    return handler, seen


def live_of_launch(world, launch_id: str) -> list[str]:
    reply = world.ec2.describe_instances(
        Filters=[
            {"Name": "tag:ess:launch", "Values": [launch_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return sorted(i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"])


def test_lost_run_instances_replies_keep_exactly_n_and_terminate_the_rest(world):
    handler, seen = lose_first(2)
    world.calls.handlers.append(("before-send.ec2.RunInstances", handler))
    nodes = world.launch(5, launch_id="lost-twice")
    assert seen["lost"] == 2  # three launches of 5 reached moto
    assert len(nodes) == 5
    assert live_of_launch(world, "lost-twice") == sorted(n.id for n in nodes)
    said = world.progress_stream.getvalue()
    assert "RunInstances was retried (3 attempts); found 15 instances of this launch, terminated 10 extra" in said
    # One describe by the launch tag and one batched terminate, not a call per instance.
    assert world.calls.count("TerminateInstances") == 1
    terminated = next(p for op, p in world.calls.made if op == "TerminateInstances")
    assert len(terminated["InstanceIds"]) == 10


def test_a_retry_that_launched_nothing_extra_says_nothing(world):
    handler, _ = fail_first(1, 503, "RequestLimitExceeded", "Request limit exceeded.")
    world.calls.handlers.append(("before-send.ec2.RunInstances", handler))
    nodes = world.launch(3, launch_id="throttled-once")
    assert len(nodes) == 3 and live_of_launch(world, "throttled-once") == sorted(n.id for n in nodes)
    assert "RunInstances was retried" not in world.progress_stream.getvalue()
    assert world.calls.count("TerminateInstances") == 0


def html_502_first(k: int | None, operation_sends: dict):
    def handler(request, **_):
        if is_dry_run(request):
            return None
        operation_sends["sends"] += 1
        if k is None or operation_sends["sends"] <= k:
            return proxy_page(502)
        return None

    return handler


def test_a_proxy_html_502_is_retried_like_a_5xx(world):
    seen = {"sends": 0}
    world.calls.handlers.append(("before-send.ec2.RunInstances", html_502_first(2, seen)))
    nodes = world.launch(2, launch_id="through-proxy")
    assert len(nodes) == 2 and seen["sends"] == 3
    assert live_of_launch(world, "through-proxy") == sorted(n.id for n in nodes)


def test_a_persistent_proxy_502_is_one_line_naming_the_endpoint(world):
    import os

    seen = {"sends": 0}
    world.calls.handlers.append(("before-send.ec2.RunInstances", html_502_first(None, seen)))
    with pytest.raises(EssError) as info:
        world.launch(2, launch_id="proxy-down", api_max_attempts=3)
    text = str(info.value)
    assert seen["sends"] == 3 and "\n" not in text
    assert os.environ["AWS_ENDPOINT_URL"] in text and "HTTP 502 Bad Gateway" in text
    assert "ResponseParserError" not in text
    assert live_of_launch(world, "proxy-down") == []


def test_same_launch_id_sends_the_same_client_token(world, monkeypatch):
    from botocore.stub import ANY, Stubber

    request = world.preflight(world.settings(), world.request(2, launch_id="retry-me"))
    plan = request.plan
    stubbed = boto3.client("ec2", region_name="us-east-1")
    monkeypatch.setattr(ec2_client, "build_client", lambda *args: stubbed)
    settings = world.settings()  # a new command: its session's clients come from the stub
    expected = {
        "MinCount": 2,
        "MaxCount": 2,
        "ClientToken": client_token("retry-me"),
        "TagSpecifications": ANY,
        "ImageId": plan.image_id,
        "InstanceType": "m3.medium",
        "KeyName": "pem_file",
        "SecurityGroupIds": [world.group_id],
    }
    reply = {
        "Instances": [
            {"InstanceId": f"i-00000000000000{n:03d}", "State": {"Name": "pending", "Code": 0}} for n in (1, 2)
        ]
    }
    with Stubber(stubbed) as stub:
        # The first reply is lost (the launch may have happened); the retry must not launch twice.
        stub.add_client_error(
            "run_instances", service_error_code="RequestTimeout", http_status_code=500, expected_params=expected
        )
        stub.add_response("run_instances", reply, expected_params=expected)
        with pytest.raises(EssError):
            world.backend.create(settings, request, world.progress())
        nodes = world.backend.create(settings, request, world.progress())
        stub.assert_no_pending_responses()
    assert [n.id for n in nodes] == ["i-00000000000000001", "i-00000000000000002"]
    assert client_token("retry-me") != client_token("another-launch")
    assert len(client_token("x" * 500)) <= 64


def test_the_secret_key_never_appears_in_output_logs_or_errors(world, caplog, capsys):
    csv = world.folder / "credential_file.csv"
    csv.write_text(f"\ufeffUser Name,Access Key Id,Secret Access Key\r\nessentia,{CSV_ACCESS},{CSV_SECRET}\r\n")
    world.conf.write_text(world.conf.read_text() + "aws_credential: credential_file\n")
    caplog.set_level(logging.DEBUG)
    boto3.set_stream_logger("botocore", logging.DEBUG)
    boto3.set_stream_logger("boto3", logging.DEBUG)
    try:
        settings = world.settings()
        texts = [repr(settings.masked()), repr(settings.values)]
        nodes = world.launch(2)
        world.backend.terminate(settings, world.backend.nodes(settings), world.progress())
        assert len(nodes) == 2
        world.calls.handlers.append(
            ("before-send.ec2.DescribeKeyPairs", lambda **_: aws_error(401, "AuthFailure", "not able to validate"))
        )
        with pytest.raises(UsageError) as info:
            world.backend.preflight(world.settings(), world.request(1, launch_id="denied"))
        texts += [str(info.value), repr(info.value)]
        assert "credential_file.csv (aws_credential)" in str(info.value)
    finally:
        for name in ("botocore", "boto3"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
    captured = capsys.readouterr()
    assert "DescribeKeyPairs" in caplog.text or "DescribeKeyPairs" in captured.err  # debug logging was on
    for text in [caplog.text, captured.out, captured.err, world.progress_stream.getvalue(), *texts]:
        assert CSV_SECRET not in text


def test_throttled_create_fleet_is_retried_and_launches_once(world):
    from dataclasses import replace

    from support import capacity

    handler, seen = fail_first(2, 503, "RequestLimitExceeded", "Request limit exceeded.")
    world.calls.handlers.append(("before-send.ec2.CreateFleet", handler))
    settings = world.settings()
    request = world.preflight(settings, world.request(3, launch_id="throttled-fleet"))
    plan = replace(request.plan, instance_types=("m5.large", "m5a.large"))
    with capacity.simulated():
        nodes = world.backend.create(settings, replace(request, plan=plan), world.progress())
    assert len(nodes) == 3 and seen["sends"] == 3
    assert world.calls.count("CreateFleet") == 1
    assert live_of_launch(world, "throttled-fleet") == sorted(n.id for n in nodes)
    # The retry was checked for duplicates by the launch tag, listed until two listings agree
    # (EC2 lists a launch late): two describes 1 s apart; none found, so no word.
    assert world.calls.count("DescribeInstances") == 2 and world.sleeps == [1.0]
    assert world.calls.count("TerminateInstances") == 0
    assert "CreateFleet was retried" not in world.progress_stream.getvalue()
