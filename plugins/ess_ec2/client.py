"""boto3 sessions and clients, AWS error translation, and the batched EC2 calls.

Every AWS client the backend uses is made by :func:`build_client`; tests wrap that one
function to register botocore event handlers (fault injection, call counting). boto3 is
imported inside functions only, so importing this module costs nothing at start-up.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ess.errors import EssError, UsageError
from ess.log import some
from ess.models import Node, Settings

from . import calllog
from .credentials import Credentials, load_credentials, redact

if TYPE_CHECKING:  # pragma: no cover
    import boto3

#: EC2 accepts at most 1000 instance ids per Describe/Terminate/Stop/Start call.
CHUNK = 1000
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60

#: Error codes that mean "these credentials are not accepted", whatever the operation.
AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "RequestExpired",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "OptInRequired",
        "AccessDenied",
        "ExpiredTokenException",
    }
)
NOT_FOUND_IDS = "InvalidInstanceID.NotFound"
#: Pauses before asking EC2 again about an instance this command launched that it says does
#: not exist (eventual consistency; AWS asks clients to retry with back-off): 15 s in all.
NOT_KNOWN_YET_PAUSES = (0.5, 1.0, 2.0, 4.0, 7.5)
_INSTANCE_ID = re.compile(r"\bi-[0-9a-f]{8,17}\b")

_shared_loader: Any = None
Result = TypeVar("Result")


def _loader() -> Any:
    """One botocore model loader for the process: parsing the EC2 model once, not per session."""
    global _shared_loader
    if _shared_loader is None:
        from botocore.loaders import create_loader

        _shared_loader = create_loader()
    return _shared_loader


#: botocore's session variable for the profile, with no environment variable and no
#: default: what a session whose credentials come from the CSV gets (see build_session).
_NO_PROFILE = (None, None, None, None)


def build_session(credentials: Credentials | None, profile: str | None, where: str = "profile") -> boto3.Session:
    """A boto3 session from the CSV's key, else the named profile, else boto3's chain.

    With the CSV's key the profile is ignored, as docs/config.md says, AWS_PROFILE included:
    botocore would otherwise read that variable and fail on a stale one. The AWS config
    file is read here, before any call, so a missing profile or a file that does not parse
    is one line naming what to fix (see :func:`setup_error`).
    """
    import boto3
    import botocore.session

    core = botocore.session.Session(session_vars={"profile": _NO_PROFILE} if credentials is not None else None)
    core.register_component("data_loader", _loader())
    with setup_errors(where if profile else None):
        if credentials is not None:
            session = boto3.Session(
                aws_access_key_id=credentials.access_key,
                aws_secret_access_key=credentials.secret_key,
                botocore_session=core,
            )
        else:
            session = boto3.Session(profile_name=profile or None, botocore_session=core)
        core.get_scoped_config()  # a missing profile or a broken file only shows when it is read
        return session


@contextmanager
def setup_errors(profile_where: str | None = None, service: str = "ec2") -> Iterator[None]:
    """Inside, an AWS setup mistake (see :func:`setup_error`) is raised as its one-line
    UsageError; anything else passes as it is."""
    try:
        yield
    except Exception as exc:
        problem = setup_error(exc, profile_where, service)
        if problem is None:
            raise
        raise problem from None


def setup_error(exc: BaseException, profile_where: str | None = None, service: str = "ec2") -> UsageError | None:
    """The user's AWS setup mistake behind ``exc`` as one line naming what to fix, else None.

    These come from the AWS config files and variables, not from AWS: a profile that is
    not there, a config file that does not parse, a malformed region or endpoint URL. They
    show before any request is sent, so nothing was done: bad input, exit 2.
    ``profile_where`` names where the profile was set (``--profile``, the config's
    ``profile`` key); None when boto3 found it in AWS_PROFILE or AWS_DEFAULT_PROFILE.
    """
    from botocore.exceptions import ConfigParseError, InvalidRegionError, ProfileNotFound

    if isinstance(exc, ProfileNotFound):
        name = exc.kwargs.get("profile")
        where = profile_where or _profile_variable(name)
        unset = f", or unset {where}" if where.startswith("AWS_") else ""
        return UsageError(
            f"{where}: AWS profile {name!r} is not in your AWS config ({_aws_config_file()}) "
            f"(run `aws configure --profile {name}`, fix the profile name{unset})"
        )
    if isinstance(exc, ConfigParseError):
        path = exc.kwargs.get("path") or _aws_config_file()
        return UsageError(
            f"{path}: cannot parse this AWS config file (fix its syntax: [section] headers and "
            "`key = value` lines; or point AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE elsewhere)"
        )
    if isinstance(exc, InvalidRegionError):
        region = str(exc.kwargs.get("region_name", ""))
        return UsageError(f"{_region_source(region)}: {_quoted(region)} is not an AWS region {_REGION_HINT}")
    if isinstance(exc, ValueError) and str(exc).startswith("Invalid endpoint: "):
        url = str(exc)[len("Invalid endpoint: ") :]
        source = _endpoint_source(service, url)
        return UsageError(
            f"{source}: {_quoted(url)} is not an endpoint URL (write it as https://host or "
            f"http://host:port{', or unset ' + source if source.startswith('AWS_') else ''})"
        )
    return None


_REGION_HINT = "(write a region such as us-east-1 or eu-west-1: `aws ec2 describe-regions` lists them)"
#: An availability zone (a region and a letter): a common slip for the region itself.
_ZONE = re.compile(r"([a-z]{2}(?:-[a-z]+)+-\d+)[a-z]")


def check_region(region: str, where: str) -> None:
    """UsageError unless ``region`` is shaped like an AWS region (botocore's own check, and
    not an availability zone); which regions exist is only known to AWS."""
    from botocore.exceptions import InvalidRegionError
    from botocore.utils import validate_region_name

    zone = _ZONE.fullmatch(region)
    if zone:
        raise UsageError(
            f"{where}: {_quoted(region)} is an availability zone, not a region (use {zone.group(1)}; "
            "subnet_id picks the zone)"
        )
    try:
        validate_region_name(region)
    except InvalidRegionError:
        raise UsageError(f"{where}: {_quoted(region)} is not an AWS region {_REGION_HINT}") from None


def _quoted(text: str) -> str:
    return repr(text) if len(text) <= 60 else f"{text[:60]!r}... ({len(text)} characters)"


def _variable_holding(value: object, *variables: str) -> str | None:
    """The first of ``variables`` set to ``value`` in the environment: where boto3 found it."""
    return next((variable for variable in variables if os.environ.get(variable) == value), None)


def _profile_variable(name: object) -> str:
    """The environment variable boto3 took profile ``name`` from (botocore reads AWS_DEFAULT_PROFILE first)."""
    return _variable_holding(name, "AWS_DEFAULT_PROFILE", "AWS_PROFILE") or "AWS_PROFILE"


def _aws_config_file() -> str:
    return os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"


def _region_source(region: str) -> str:
    return _variable_holding(region, "AWS_DEFAULT_REGION", "AWS_REGION") or f"region in {_aws_config_file()}"


def _endpoint_source(service: str, url: str) -> str:
    """Where boto3 found endpoint ``url``: its service variable, AWS_ENDPOINT_URL, or the AWS config."""
    service_variable = f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"
    return _variable_holding(url, service_variable, "AWS_ENDPOINT_URL") or f"endpoint_url in {_aws_config_file()}"


def build_client(session: boto3.Session, service: str, region: str, max_attempts: int) -> Any:
    """Make one client with standard retries and timeouts. THE seam tests wrap.

    ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_EC2`` are honoured by boto3 itself.
    """
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        user_agent_extra="ess",
    )
    with setup_errors(service=service):  # made before any request: a malformed endpoint URL, a broken AWS config
        client = session.client(service, config=config)
    client.meta.events.register("before-parse", proxy_page_as_server_error)
    calllog.install(client)  # --debug: one line per API call (operation, size, status, duration)
    return client


def proxy_page_as_server_error(response_dict: dict[str, Any], **_: Any) -> None:
    """A 5xx whose body is not AWS's XML (a proxy's HTML 502 page) becomes a bodiless 5xx.

    botocore recognises only pages starting with ``<html>`` as such; a ``<!DOCTYPE html>``
    page fails XML parsing with ResponseParserError, which is raised outside the retry
    logic. Without a body, botocore reads it as a generic HTTP 5xx error: transient,
    retried with back-off like any 500/502/503/504, and reported with its status code.
    """
    if int(response_dict.get("status_code") or 0) < 500:
        return
    body = response_dict.get("body") or b""
    text = body.lstrip()[:64].lower() if isinstance(body, bytes) else b""
    if text and not text.startswith((b"<?xml", b"<response", b"<errorresponse")):
        response_dict["body"] = b""


def resolve_region(settings: Settings, session: boto3.Session) -> str:
    """The region setting, else AWS_DEFAULT_REGION / AWS_REGION / the profile's region.

    Checked for shape here, naming where it came from: botocore would refuse it only when
    the first client is made, as an error that is no user's to read.
    """
    if settings.get("region"):
        region, where = str(settings["region"]), settings.where("region")
    else:
        with setup_errors():  # botocore reads the AWS config file for it
            found = session.region_name or os.environ.get("AWS_REGION")
        if not found:
            raise UsageError(
                f"{settings.where('region')}: no AWS region is set (add `region: us-east-1` "
                "to the config, pass --region, or set AWS_DEFAULT_REGION)"
            )
        region = str(found)
        where = _region_source(region)
    check_region(region, where)
    return region


@dataclass
class Aws:
    """The clients one command needs, built lazily from one session."""

    session: Any
    region: str
    max_attempts: int
    credential_source: str
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = build_client(self.session, service, self.region, self.max_attempts)
        return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")

    @property
    def endpoint(self) -> str:
        """The EC2 endpoint URL the clients talk to (named in errors about the endpoint)."""
        return str(self.ec2.meta.endpoint_url)


def connect(settings: Settings) -> Aws:
    """Credentials (CSV or chain), session and region for ``settings``; no API call yet.

    Builds a new session every time (~0.1 s of CPU): a command keeps the one it made in
    its :class:`ess_ec2.session.Ec2Session`, so its steps share one session and one HTTPS
    connection pool. Nothing is cached here, keyed on anything.
    """
    credentials = load_credentials(settings)
    profile = None if credentials else settings.get("profile")
    session = build_session(credentials, profile, settings.where("profile"))
    region = resolve_region(settings, session)
    if credentials is not None:
        source = f"{credentials.source} (aws_credential)"
    elif profile:
        source = f"AWS profile {profile!r}"
    else:
        source = "boto3's credential chain (environment, ~/.aws, SSO, instance role)"
    return Aws(
        session=session, region=region, max_attempts=int(settings.get("api_max_attempts", 8)), credential_source=source
    )


# -- errors ------------------------------------------------------------------------------
def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    message = str(response.get("Error", {}).get("Message", "")) or str(exc)
    # AWS appends an opaque blob to UnauthorizedOperation; it helps nobody on one line.
    message = message.split(" Encoded authorization failure message:")[0]
    return redact(" ".join(message.split()))


def translate(exc: BaseException, aws: Aws, action: str) -> EssError:
    """A botocore/boto3 exception as an ess error: one line, no secret, no request params."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    setup = setup_error(exc)  # the AWS config files, read late (the credentials file: at the first call)
    if setup is not None:
        return setup
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return UsageError(
            "aws_credential: no AWS credentials found (set aws_credential to the access "
            "key CSV, pass --profile, or run `aws configure`)"
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in AUTH_CODES:
            return UsageError(
                f"aws_credential: AWS rejected the credentials from {aws.credential_source} "
                f"while trying to {action} ({code}) (check the access key is active "
                "and the clock is right, or use another profile)"
            )
        if code == "UnauthorizedOperation":
            return UsageError(
                f"aws_credential: the credentials from {aws.credential_source} are not "
                f"allowed to {action} in {aws.region} (grant the IAM permissions listed "
                "in docs/ec2.md)"
            )
        if code.isdigit():  # a bare HTTP status: no AWS error body (a proxy, or an outage)
            attempts = 1 + int(getattr(exc, "response", {}).get("ResponseMetadata", {}).get("RetryAttempts", 0))
            return EssError(
                f"EC2: the endpoint {aws.endpoint} answered HTTP {code} {error_message(exc)} "
                f"to all {attempts} attempt(s) to {action} (a proxy or the AWS endpoint is "
                "failing; try again later, or check HTTPS_PROXY and AWS_ENDPOINT_URL)"
            )
        return EssError(f"EC2: cannot {action} in {aws.region}: {code}: {error_message(exc)}")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return EssError(
            f"EC2: cannot reach the AWS endpoint to {action} in {aws.region} "
            "(check the network, proxy and AWS_ENDPOINT_URL)"
        )
    if isinstance(exc, ReadTimeoutError):
        return EssError(
            f"EC2: AWS did not answer in {READ_TIMEOUT}s while trying to {action} "
            "(try again; nothing is left half-done that `terminate all` cannot find)"
        )
    if isinstance(exc, BotoCoreError):
        return EssError(f"EC2: cannot {action}: {redact(type(exc).__name__ + ': ' + str(exc))}")
    return EssError(f"EC2: cannot {action}: {redact(str(exc))}")


def is_aws_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


@contextmanager
def translated(aws: Aws, action: str) -> Iterator[None]:
    """Inside, a botocore/boto3 error becomes :func:`translate`'s one-line ess error; others pass."""
    try:
        yield
    except Exception as exc:
        if is_aws_error(exc):
            raise translate(exc, aws, action) from None
        raise


def call(settings: Settings, action: str, work: Callable[[Aws], Result]) -> Result:
    """``work(aws)`` on this command's client, its AWS errors as one-line ess errors."""
    from .session import session_for  # session.py builds on this module

    aws = session_for(settings).aws
    with translated(aws, action):
        return work(aws)


# -- batched calls -----------------------------------------------------------------------
def chunks(ids: list[str], size: int = CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _missing_ids(exc: BaseException) -> set[str]:
    return set(_INSTANCE_ID.findall(error_message(exc)))


def describe(aws: Aws, ids: Iterable[str], states: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """Instances by id, in one paginated describe per 1000 ids; unknown ids are left out.

    A describe with an unknown id fails as a whole (InvalidInstanceID.NotFound, which
    also happens for a second or two after launch): drop the ids the error names, ask again.
    With ``states``, only instances in one of them are returned (an ``instance-state-name``
    filter): EC2 answers in time that grows with what it returns.
    """
    paginator = aws.ec2.get_paginator("describe_instances")
    filters = [{"Name": "instance-state-name", "Values": sorted(states)}] if states else []
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(ids))):
        pages = _without_missing(chunk, lambda known: list(paginator.paginate(InstanceIds=known, Filters=filters)))
        for page in pages or []:
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    found[instance["InstanceId"]] = instance
    return found


def _without_missing(
    ids: list[str],
    call: Callable[[list[str]], Result],
    young: Collection[str] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> Result | None:
    """``call(ids)``, dropping the ids EC2 says do not exist and calling again; None if none exists.

    Ids in ``young`` (launched by this command) are not dropped: EC2 is eventually
    consistent, and for a few seconds after RunInstances it may answer NotFound for them.
    Dropping one there would leave a new instance running. They are asked for again after
    each of :data:`NOT_KNOWN_YET_PAUSES`; EssError naming them if EC2 still does not know them.
    """
    from botocore.exceptions import ClientError

    remaining = list(ids)
    pauses = iter(NOT_KNOWN_YET_PAUSES)
    while remaining:
        try:
            return call(remaining)
        except ClientError as exc:
            missing = _missing_ids(exc) & set(remaining) if error_code(exc) == NOT_FOUND_IDS else set()
            if not missing:
                raise
            unknown_yet = sorted(missing.intersection(young))
            remaining = [i for i in remaining if i not in missing or i in unknown_yet]
            if unknown_yet:
                pause = next(pauses, None)
                if pause is None:
                    raise EssError(
                        f"EC2 still does not know {len(unknown_yet)} instance(s) this command launched, "
                        f"{sum(NOT_KNOWN_YET_PAUSES):.0f}s after asking first ({some(unknown_yet)}) "
                        "(they may still start: check with `ess instance ec2 list` in a minute)"
                    ) from exc
                sleep(pause)
    return None


def describe_filtered(aws: Aws, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every instance matching ``filters``, following NextToken through all pages."""
    paginator = aws.ec2.get_paginator("describe_instances")
    instances: list[dict[str, Any]] = []
    for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": 1000}):
        for reservation in page.get("Reservations", []):
            instances.extend(reservation.get("Instances", []))
    return instances


def act(
    aws: Aws,
    operation: str,
    ids: list[str],
    young: Collection[str] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Call TerminateInstances/StopInstances/StartInstances with ≤ 1000 ids per call.

    Ids that no longer exist are dropped and the call repeated, so the action is idempotent;
    except the ``young`` ones (launched by this command), which EC2 may not know *yet*: those
    are asked for again after a pause (see :func:`_without_missing`).
    Returns each instance's state as the reply gives it (often not final yet).
    """
    method = getattr(aws.ec2, operation)
    reply_key = {
        "terminate_instances": "TerminatingInstances",
        "stop_instances": "StoppingInstances",
        "start_instances": "StartingInstances",
    }[operation]
    states: dict[str, str] = {}
    for chunk in chunks(sorted(set(ids))):
        reply = _without_missing(chunk, lambda known: method(InstanceIds=known), young, sleep)
        for change in (reply or {}).get(reply_key, []):
            states[change["InstanceId"]] = str(change.get("CurrentState", {}).get("Name", ""))
    return states


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", []) or []}


def to_node(instance: dict[str, Any], use_private_ip: bool) -> Node:
    """An EC2 instance description as an ess Node."""
    public_ip = instance.get("PublicIpAddress")
    private_ip = instance.get("PrivateIpAddress")
    launched = instance.get("LaunchTime")
    return Node(
        id=instance["InstanceId"],
        state=str(instance.get("State", {}).get("Name", "unknown")),
        address=private_ip if use_private_ip else public_ip,
        public_ip=public_ip,
        private_ip=private_ip,
        instance_type=instance.get("InstanceType"),
        launched_at=launched if isinstance(launched, datetime) else None,
        tags=tags_of(instance),
        zone=instance.get("Placement", {}).get("AvailabilityZone"),
        # EC2 sets InstanceLifecycle only on spot (and scheduled) instances.
        lifecycle=str(instance.get("InstanceLifecycle") or "on-demand"),
    )
