"""A small EC2 world in moto for the EC2 backend's tests: config folder, key pair, group.

Also the test seam in use: :func:`count_calls` wraps ``ess_ec2.client.build_client`` so
every client the backend makes reports its API calls (and tests may add fault handlers).
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from ess.models import TAG_CLUSTER, TAG_LAUNCH, LaunchRequest, Settings
from ess.progress import Progress
from ess.settings import load_settings
from ess_ec2 import client as ec2_client
from ess_ec2.backend import Ec2Backend

#: Calls that change something in AWS. A DryRun RunInstances is not one of them.
MUTATING = (
    "RunInstances",
    "TerminateInstances",
    "StopInstances",
    "StartInstances",
    "CreateTags",
    "DeleteTags",
    "CreateKeyPair",
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "RevokeSecurityGroupIngress",
    "DeleteSecurityGroup",
    "CreateFleet",
    "CreateLaunchTemplate",
    "CreateLaunchTemplateVersion",
    "DeleteLaunchTemplate",
    "ImportKeyPair",
    "DeleteKeyPair",
    "RebootInstances",
)

ESSENTIA_CONF = """[EC2]
use_private_ip: False
instance_tag: Essentia Worker Node
instance_type:  m3.medium
instance_count: 2
key_name: pem_file
security_groups: essentia-access
username: ec2-user
"""


@dataclass
class Calls:
    """API calls the backend made: (operation, params) in order, plus sends (retries included)."""

    made: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sends: Counter = field(default_factory=Counter)
    handlers: list[tuple[str, Callable[..., Any]]] = field(default_factory=list)

    def count(self, operation: str, *, dry_run: bool | None = None) -> int:
        return sum(
            1
            for op, params in self.made
            if op == operation and (dry_run is None or bool(params.get("DryRun")) == dry_run)
        )

    def by_operation(self) -> Counter:
        return Counter(op for op, _ in self.made)

    def mutating(self) -> list[str]:
        return [op for op, params in self.made if op in MUTATING and not params.get("DryRun")]

    def reset(self) -> None:
        self.made.clear()
        self.sends.clear()


def install_call_counter(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()
    original = ec2_client.build_client

    def counting(session: Any, service: str, region: str, max_attempts: int) -> Any:
        made = original(session, service, region, max_attempts)

        def before_build(params: dict[str, Any], model: Any, **_: Any) -> None:
            calls.made.append((model.name, dict(params)))

        def before_send(request: Any, **kwargs: Any) -> None:
            calls.sends[kwargs.get("event_name", "").split(".")[-1]] += 1

        made.meta.events.register("before-parameter-build", before_build)
        made.meta.events.register("before-send", before_send)
        for event, handler in calls.handlers:
            made.meta.events.register(event, handler)
        return made

    monkeypatch.setattr(ec2_client, "build_client", counting)
    return calls


class _Raw:
    """The minimal raw-stream object botocore reads an injected response body from."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def aws_error(status: int, code: str, message: str) -> Any:
    """An EC2 error reply, as a ``before-send`` handler returns it to short-circuit a request."""
    from botocore.awsrequest import AWSResponse

    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>ess-test</RequestID></Response>"
    ).encode()
    return AWSResponse("https://ec2.us-east-1.amazonaws.com/", status, {}, _Raw(body))


def empty_listing() -> Any:
    """A DescribeInstances reply that lists nothing: what EC2's filtered listing says for a few
    seconds after a launch (eventual consistency), returned by a ``before-send`` handler."""
    from botocore.awsrequest import AWSResponse

    body = (
        b'<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        b"<requestId>ess-test</requestId><reservationSet/></DescribeInstancesResponse>"
    )
    return AWSResponse("https://ec2.us-east-1.amazonaws.com/", 200, {}, _Raw(body))


def is_listing(request: Any) -> bool:
    """A DescribeInstances by filter (a listing), not by instance id."""
    body = request.body or b""
    return b"Filter.1.Name" in (body if isinstance(body, bytes) else body.encode())


def proxy_page(status: int = 502) -> Any:
    """What a proxy in front of the endpoint answers: an HTML page, not AWS's XML."""
    from botocore.awsrequest import AWSResponse

    # Not well-formed XML (void <meta> and <hr>), as real proxy pages are not.
    body = (
        b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>502 Bad Gateway'
        b"</title></head><body><h1>Bad Gateway</h1><hr>The proxy received an invalid response.</body></html>"
    )
    return AWSResponse("https://ec2.us-east-1.amazonaws.com/", status, {"Content-Type": "text/html"}, _Raw(body))


def reply_lost(request: Any) -> None:
    """Deliver ``request`` to the endpoint (moto), then raise as if the reply never came back.

    Used in a ``before-send`` handler: botocore treats the ReadTimeoutError as transient and
    sends again, exactly what happens when a real reply is lost after EC2 acted on it.
    """
    import urllib.request

    from botocore.exceptions import ReadTimeoutError

    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    sent = urllib.request.Request(request.url, data=body, headers=headers, method=request.method)
    with urllib.request.urlopen(sent, timeout=60) as answer:
        answer.read()
    raise ReadTimeoutError(endpoint_url=request.url)


def is_dry_run(request: Any) -> bool:
    body = request.body or b""
    return b"DryRun=true" in (body if isinstance(body, bytes) else body.encode())


@dataclass
class World:
    """One test's AWS account in moto, and a config folder the Essentia way."""

    folder: Path
    conf: Path
    pem: Path
    ec2: Any
    group_id: str
    calls: Calls
    backend: Ec2Backend
    image: str
    sleeps: list[float]
    progress_stream: io.StringIO

    def settings(self, **cli: Any) -> Settings:
        return load_settings(self.backend, self.conf, cli=cli)

    def request(
        self, count: int = 2, min_count: int | None = None, launch_id: str = "launch-1", cluster: str = "default"
    ) -> LaunchRequest:
        tags = {TAG_CLUSTER: cluster, TAG_LAUNCH: launch_id, "ess:created-by": "tester@host"}
        return LaunchRequest(count=count, min_count=min_count or count, launch_id=launch_id, tags=tags)

    def progress(self) -> Progress:
        return Progress(self.progress_stream, tty=False)

    def launch(self, count: int = 2, launch_id: str = "launch-1", **cli: Any) -> list:
        settings = self.settings(**cli)
        request = self.request(count, launch_id=launch_id, cluster=settings.cluster)
        return self.backend.create(settings, self.preflight(settings, request), self.progress())

    def preflight(self, settings: Settings, request: LaunchRequest) -> LaunchRequest:
        """The backend's preflight; ``request`` carrying its plan, as the core hands it to create."""
        return replace(request, plan=self.backend.preflight(settings, request))

    def foreign(
        self, count: int = 1, name: str = "Essentia Worker Node", tags: dict[str, str] | None = None
    ) -> list[str]:
        """Instances ess did not launch (same Name, no ess:cluster tag unless given)."""
        all_tags = [{"Key": "Name", "Value": name}] + [{"Key": k, "Value": v} for k, v in (tags or {}).items()]
        reply = self.ec2.run_instances(
            ImageId=self.image,
            MinCount=count,
            MaxCount=count,
            InstanceType="m3.medium",
            TagSpecifications=[{"ResourceType": "instance", "Tags": all_tags}],
        )
        return [i["InstanceId"] for i in reply["Instances"]]

    def states(self, ids: list[str]) -> dict[str, str]:
        pages = self.ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
        return {
            i["InstanceId"]: i["State"]["Name"] for page in pages for r in page["Reservations"] for i in r["Instances"]
        }


def lean_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """No default AMIs in the next moto EC2 account: fresh accounts cost ~0.1 s instead of
    ~0.4 s, and moto scans every image on each launch.

    The moto server runs in this process and builds its EC2 backend on the first request
    after a reset, so the variable only has to be set before the world's first EC2 call.
    """
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


def quiet_moto() -> None:
    """The in-process moto server logs each request through werkzeug at INFO; under the CLI's
    log handler those lines would land in the stderr the tests read."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def register_image(ec2: Any) -> str:
    """One x86_64 Linux image (what a lean account launches, and image_id may name)."""
    return str(ec2.register_image(Name="al2023-ess-test", Architecture="x86_64", RootDeviceName="/dev/xvda")["ImageId"])


@functools.cache
def moto_client(endpoint: str) -> Any:
    """One boto3 EC2 client per moto endpoint for the session (a client costs ~50 ms to build)."""
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)


def make_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conf_text: str = ESSENTIA_CONF, key: tuple[str, str] | None = None
) -> World:
    """Key pair ``pem_file`` (its PEM saved 0600 next to instance.conf), group essentia-access,
    and one registered Linux image, in a moto account without moto's default AMIs.

    ``key`` = (private PEM, OpenSSH public key) is imported as the key pair; without it moto
    creates one (an RSA key generated per call: slower when a suite makes hundreds).
    The default image path (SSM's Amazon Linux 2023 parameter) still resolves: moto's SSM
    parameters do not depend on its EC2 images, and launches do not validate the AMI.
    """
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    assert endpoint.startswith("http://127.0.0.1"), "moto only"
    quiet_moto()
    lean_moto(monkeypatch)
    ec2 = moto_client(endpoint)
    image = register_image(ec2)
    folder = tmp_path / "conf"
    folder.mkdir()
    conf = folder / "instance.conf"
    conf.write_text(conf_text)
    if key is None:
        material = ec2.create_key_pair(KeyName="pem_file")["KeyMaterial"]
    else:
        material, public = key
        ec2.import_key_pair(KeyName="pem_file", PublicKeyMaterial=public.encode())
    pem = folder / "pem_file.pem"
    pem.write_text(material)
    pem.chmod(0o600)
    group_id = ec2.create_security_group(GroupName="essentia-access", Description="ess tests")["GroupId"]
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    calls = install_call_counter(monkeypatch)
    backend = Ec2Backend()
    sleeps: list[float] = []
    backend.sleep = sleeps.append
    return World(
        folder=folder,
        conf=conf,
        pem=pem,
        ec2=ec2,
        group_id=group_id,
        calls=calls,
        backend=backend,
        image=image,
        sleeps=sleeps,
        progress_stream=io.StringIO(),
    )
