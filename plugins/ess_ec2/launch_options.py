"""The launch settings of issue 15, read and checked without asking AWS anything.

Preflight calls :func:`read` first: a typo in a tag or a list is reported before the
first API call, and the AWS checks get typed values instead of raw settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from ess.errors import UsageError
from ess.models import Settings

from .specs import MARKETS

ON_DEMAND = MARKETS[0]
#: Tag key prefixes nobody may set through ``tags``: ess's bookkeeping, and AWS's own.
RESERVED_PREFIXES = ("ess:", "aws:")
#: EC2 allows 50 tags per resource; ess puts up to about ten of its own.
MAX_USER_TAGS = 40
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256


@dataclass(frozen=True)
class LaunchOptions:
    """What the launch settings ask for, checked for form (not yet against AWS)."""

    instance_types: tuple[str, ...]
    #: Subnet ids in order of preference; empty: EC2 picks one in the default VPC.
    subnet_ids: tuple[str, ...]
    market: str = ON_DEMAND
    max_price: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    iam_instance_profile: str | None = None
    root_volume_gb: int | None = None
    #: The root volume's type, None when the image's own type is kept.
    volume_type: str | None = None


def read(settings: Settings) -> LaunchOptions:
    """The launch settings as :class:`LaunchOptions`; UsageError naming the setting on bad form."""
    market = str(settings.get("market") or ON_DEMAND)
    volume_type = settings.get("volume_type")
    root_gb = settings.get("root_volume_gb")
    explicit_type = settings.values.get("volume_type") is not None and settings.source("volume_type") != "default"
    return LaunchOptions(
        instance_types=ordered_list(settings, "instance_type"),
        subnet_ids=ordered_list(settings, "subnet_id"),
        market=market,
        max_price=_max_price(settings, market),
        tags=_tags(settings),
        iam_instance_profile=str(settings.get("iam_instance_profile") or "") or None,
        root_volume_gb=int(root_gb) if root_gb is not None else None,
        volume_type=str(volume_type) if volume_type and (root_gb is not None or explicit_type) else None,
    )


def ordered_list(settings: Settings, key: str) -> tuple[str, ...]:
    """A comma-separated setting (``instance_type``, ``subnet_id``) as its items, in order.

    One value is a one-item list, so the single values of old configs mean what they did.
    An empty item or a repeated one is an error: it is a typo, and the order matters.
    """
    raw = settings.get(key)
    if raw is None or not str(raw).strip():
        return ()
    items = [item.strip() for item in str(raw).split(",")]
    where = settings.where(key)
    if "" in items:
        raise UsageError(
            f"{where}: {str(raw)!r} has an empty item (write the values separated by single commas, e.g. a, b)"
        )
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise UsageError(
            f"{where}: {', '.join(repr(r) for r in repeated)} is listed twice (name each once, in order of preference)"
        )
    return tuple(items)


def _max_price(settings: Settings, market: str) -> str | None:
    raw = settings.get("max_price")
    if raw in (None, ""):
        return None
    where = settings.where("max_price")
    try:
        price = Decimal(str(raw))
    except InvalidOperation:  # the spec's pattern normally catches this first
        price = Decimal(0)
    if not price.is_finite() or price <= 0:
        raise UsageError(f"{where}: {raw!r} is not a positive price (write US dollars per hour, such as 0.05)")
    if market == ON_DEMAND:
        # A price cap on on-demand nodes would be ignored: most likely market was forgotten.
        raise UsageError(
            f"{where}: a spot price is set but market is on-demand, where it would be ignored "
            "(set market to spot or spot-or-on-demand, or remove max_price)"
        )
    return str(raw)


def _tags(settings: Settings) -> dict[str, str]:
    """``key=value`` items as a dict; reserved, empty, repeated or malformed keys refused."""
    where = settings.where("tags")
    tags: dict[str, str] = {}
    for item in settings.get("tags") or []:
        key, equals, value = str(item).partition("=")
        key, value = key.strip(), value.strip()
        if not equals:
            raise UsageError(f"{where}: {item!r} is not key=value (write tags as key=value, comma-separated)")
        if not key:
            raise UsageError(f"{where}: {item!r} has an empty key (write tags as key=value)")
        if key.lower().startswith(RESERVED_PREFIXES):
            raise UsageError(
                f"{where}: tag key {key!r} is reserved (ess: keys are ess's bookkeeping, aws: "
                "keys are AWS's; pick another key)"
            )
        if key == "Name":
            raise UsageError(f"{where}: the Name tag comes from instance_tag (set instance_tag instead)")
        if key in tags:
            raise UsageError(f"{where}: tag key {key!r} is given twice (keep one)")
        if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise UsageError(
                f"{where}: tag {key[:40]!r} is too long (EC2 allows keys of {MAX_TAG_KEY} and "
                f"values of {MAX_TAG_VALUE} characters)"
            )
        tags[key] = value
    if len(tags) > MAX_USER_TAGS:
        raise UsageError(f"{where}: {len(tags)} tags given (at most {MAX_USER_TAGS}: EC2 allows 50 with ess's own)")
    return tags
