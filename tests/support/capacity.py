"""EC2 capacity, simulated inside the moto server that runs in this process.

moto launches whatever it is asked for: it never answers ``InsufficientInstanceCapacity``,
and its CreateFleet puts the whole count in one pool whatever the priorities. Tests and
bench/cloud_calls.py need both, so :func:`install` patches moto's EC2 models (the server
runs in the test or benchmark process, so a patch here is a patch in the server) to:

- keep a per-pool capacity, a pool being (instance type, availability zone): unlimited
  unless :data:`CAPACITY` says otherwise (``CAPACITY.out("m5.large", "us-east-1a")``, or
  ``CAPACITY.limit(type, zone, k)`` for a pool with only ``k`` instances left; either for
  one market, ``market="spot"``);
- fail RunInstances in a pool without room for MinCount with ``InsufficientInstanceCapacity``
  and EC2's message naming the type and zone;
- make CreateFleet(Type=instant) fill its target the way EC2 does: on-demand pools in
  ``Priority`` order (``prioritized``), spot pools in the order given; a pool without room
  goes into the reply's ``Errors`` and the next pool fills the rest. Instances are launched
  from the launch template version named (key pair, security groups, user data, block
  devices, IAM instance profile, shutdown behaviour), with the fleet's instance tags and the
  template's volume tags; spot ones carry ``InstanceLifecycle: spot``.

:data:`CAPACITY` is process-wide: call ``CAPACITY.reset()`` between tests
(:func:`simulated` does). Nothing here changes moto when :func:`install` is not
called.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


class Capacity:
    """Instances left per pool: (instance type, availability zone), for one market or both.

    A pool not named has no limit. ``market`` is ``"spot"``, ``"on-demand"`` or None (the
    limit counts for both, unless the market has its own).
    """

    def __init__(self) -> None:
        self._left: dict[tuple[str, str, str | None], int] = {}
        self._lock = threading.Lock()
        #: While ``holding`` is set, a CreateFleet launches its instances, sets ``held`` and
        #: then waits (up to a minute) before answering: the moment a client may be killed
        #: with its nodes launched and the reply not yet received.
        self.holding = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()

    def out(self, instance_type: str, zone: str, market: str | None = None) -> None:
        """No capacity at all in this pool."""
        self.limit(instance_type, zone, 0, market)

    def limit(self, instance_type: str, zone: str, left: int, market: str | None = None) -> None:
        with self._lock:
            self._left[(instance_type, zone, market)] = left

    def reset(self) -> None:
        with self._lock:
            self._left.clear()
        self.release.set()  # a CreateFleet still held answers now
        for event in (self.holding, self.held, self.release):
            event.clear()

    def take(self, instance_type: str, zone: str, wanted: int, market: str = "on-demand") -> int:
        """Take up to ``wanted`` instances from the pool; how many it had room for."""
        with self._lock:
            key: tuple[str, str, str | None] = (instance_type, zone, market)
            if key not in self._left:
                key = (instance_type, zone, None)
            left = self._left.get(key)
            if left is None:
                return wanted
            granted = min(wanted, left)
            self._left[key] = left - granted
            return granted


#: The capacity of the moto server in this process.
CAPACITY = Capacity()
_installed: list[bool] = []


def _message(instance_type: str, zone: str) -> str:
    return (
        f"We currently do not have sufficient {instance_type} capacity in the Availability Zone you "
        f"requested ({zone}). Our system will be working on provisioning additional capacity."
    )


def _zone(backend: Any, subnet_id: str | None, placement: str | None) -> str:
    """Where moto puts an instance: its subnet's zone, else the placement, else the region's 'a'."""
    if subnet_id:
        return str(backend.get_subnet(subnet_id).availability_zone)
    return placement or f"{backend.region_name}a"


def _insufficient(instance_type: str, zone: str) -> Exception:
    from moto.ec2.exceptions import EC2ClientError

    # moto answers errors its model does not list with HTTP 400; EC2 answers this one with a
    # 5xx, which botocore retries a few times before ess sees the same error.
    return EC2ClientError("InsufficientInstanceCapacity", _message(instance_type, zone))


def install() -> None:
    """Patch moto's EC2 models (once per process): capacity for RunInstances and CreateFleet."""
    if _installed:
        return
    from moto.ec2.models.fleets import Fleet
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.responses.fleets import Fleets

    original_run = InstanceBackend.run_instances

    def run_instances(
        self: Any, image_id: str, count: int, user_data: Any, security_group_names: Any, **kw: Any
    ) -> Any:
        instance_type = kw.get("instance_type") or "m1.small"
        zone = _zone(self, kw.get("subnet_id"), kw.get("placement"))
        # RunInstances asks moto for MinCount: fewer than that is EC2's capacity error.
        market = "spot" if kw.get("instance_market_options") or kw.get("lifecycle") == "spot" else "on-demand"
        if CAPACITY.take(instance_type, zone, count, market) < count:
            raise _insufficient(instance_type, zone)
        return original_run(self, image_id, count, user_data, security_group_names, **kw)

    def fill(fleet: Any, wanted: float, lifecycle: str) -> None:
        """Launch ``wanted`` instances pool by pool, recording the pools that had no room."""
        fleet.__dict__.setdefault("ess_launched", [])
        fleet.__dict__.setdefault("ess_errors", [])
        specs = list(fleet.launch_specs)
        if lifecycle == "on-demand":
            specs.sort(key=lambda s: float((s.overrides or {}).get("Priority", "inf")))
        remaining = int(wanted)
        for spec in specs:
            if remaining <= 0:
                break
            zone = _zone(fleet.ec2_backend, spec.subnet_id, None)
            granted = CAPACITY.take(spec.instance_type, zone, remaining, lifecycle)
            if granted < remaining:
                fleet.ess_errors.append(
                    {
                        "LaunchTemplateAndOverrides": {
                            "LaunchTemplateSpecification": spec.launch_template_spec,
                            "Overrides": spec.overrides or {},
                        },
                        "Lifecycle": lifecycle,
                        "ErrorCode": "InsufficientInstanceCapacity",
                        "ErrorMessage": _message(spec.instance_type, zone),
                    }
                )
            if granted:
                launch(fleet, spec, granted, lifecycle)
            remaining -= granted
        fleet.fulfilled_capacity += int(wanted) - remaining

    def launch(fleet: Any, spec: Any, count: int, lifecycle: str) -> None:
        backend = fleet.ec2_backend
        template = spec.launch_template_spec or {}
        data = backend.get_launch_template(template["LaunchTemplateId"]).get_version(template["Version"]).data
        extra: dict[str, Any] = {}
        if lifecycle == "spot":
            extra["lifecycle"] = "spot"
        if data.get("InstanceInitiatedShutdownBehavior"):
            extra["instance_initiated_shutdown_behavior"] = data["InstanceInitiatedShutdownBehavior"]
        reservation = original_run(
            backend,
            spec.image_id,
            count,
            None,  # the template's user data is used
            [],
            instance_type=spec.instance_type,
            is_instance_type_default=False,
            subnet_id=spec.subnet_id,
            associate_public_ip=None,  # as RunInstances without the flag: the subnet's default
            fleet_id=fleet.id,
            tags=spec.tag_specifications,
            launch_template={"LaunchTemplateId": template["LaunchTemplateId"], "Version": template["Version"]},
            **extra,
        )
        profile = data.get("IamInstanceProfile") or {}
        for instance in reservation.instances:
            if profile:
                backend.associate_iam_instance_profile(
                    instance_id=instance.id,
                    iam_instance_profile_name=profile.get("Name"),
                    iam_instance_profile_arn=profile.get("Arn"),
                )
            fleet.ess_launched.append((instance, lifecycle, spec))

    def instances(fleet: Any) -> list[dict[str, Any]] | None:
        if fleet.fleet_type != "instant":
            return None
        return [
            {
                "Lifecycle": lifecycle,
                "InstanceIds": [instance.id],
                "InstanceType": instance.instance_type,
                "LaunchTemplateAndOverrides": {
                    "LaunchTemplateSpecification": spec.launch_template_spec,
                    "Overrides": spec.overrides or {},
                },
            }
            for instance, lifecycle, spec in fleet.__dict__.get("ess_launched", [])
        ]

    original_create_fleet = Fleets.create_fleet

    def create_fleet(self: Any) -> Any:
        result = original_create_fleet(self)
        reply: dict[str, Any] = result.result  # type: ignore[assignment]  # create_fleet's is a dict
        fleet = self.ec2_backend.get_fleet(reply["FleetId"])
        errors = fleet.__dict__.get("ess_errors", []) if fleet is not None else []
        if errors:
            reply["Errors"] = errors
        if CAPACITY.holding.is_set():
            CAPACITY.held.set()
            CAPACITY.release.wait(timeout=60)
        return result

    patches: list[tuple[Any, str, Any]] = [
        (InstanceBackend, "run_instances", run_instances),
        (Fleet, "create_on_demand_requests", lambda fleet, weight: fill(fleet, weight, "on-demand")),
        (Fleet, "create_spot_requests", lambda fleet, weight: fill(fleet, weight, "spot")),
        (Fleet, "instances", property(instances)),
        (Fleets, "create_fleet", create_fleet),
    ]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    _installed.append(True)


@contextlib.contextmanager
def simulated() -> Iterator[Capacity]:
    """The moto server's capacity (patched in if it was not), unlimited at the start and again
    at the end. A test module's fixture wraps it::

        @pytest.fixture
        def ec2_capacity(moto_endpoint):
            with capacity.simulated() as pools:
                yield pools
    """
    install()
    CAPACITY.reset()
    try:
        yield CAPACITY
    finally:
        CAPACITY.reset()
