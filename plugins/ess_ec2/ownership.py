"""Who owns an instance: the cluster's members, decided from one DescribeInstances record.

A tag alone proves nothing: anyone allowed to call CreateTags in the account can write
``ess:cluster=default`` on any instance. So an instance is a member of this cluster only if

* it carries ``ess:cluster=<cluster>``, and
* ess launched it for a config with this key pair: an ``ess:launch`` tag *and* ``KeyName``
  equal to this config's key pair (KeyName is fixed by RunInstances and cannot be re-tagged), or
* it was adopted with ``add`` by someone holding this cluster's private key: its
  ``ess:adopted-proof`` tag holds an HMAC of (instance id, cluster) keyed by a hash of the
  private key file, which a tag forger cannot compute.

Everything here reads fields the one describe already returned: no call per instance.

A key pair *name* is not proof either: anyone can type ``ESS_KEY_NAME=team_b``, and ``ess
clusters`` prints exactly that for a cluster whose config it does not know. So before ess
stops, starts, terminates or retags an instance that is a member by its key pair,
:func:`prove_key_pair` asks for the key pair's private key file on this machine whenever
the name comes from the environment, the command line or an API argument rather than a
config file (the proof ``add`` already asks for): a forged ``ess:launch`` tag on another
team's instance then stays untouched whichever name the user is told to type.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ess.errors import UsageError
from ess.models import TAG_ADOPTED, TAG_CLUSTER, TAG_LAUNCH, Settings, Value

from . import keys
from .client import tags_of

#: Set by ``add`` next to ``ess:adopted``: the HMACs that make an adoption verifiable.
TAG_ADOPTED_PROOF = "ess:adopted-proof"
#: Hex digits of each instance's HMAC kept in the proof tag (48 bits: a forger has no
#: way to test guesses offline, and ess tells a wrong guess only by skipping the instance).
MAC_HEX = 12
#: Instance MACs per proof tag: EC2 tag values hold at most 256 characters.
MACS_PER_TAG = 256 // (MAC_HEX + 1)


def adoption_key(key_file: Path) -> bytes:
    """The HMAC key of a cluster's adoptions: a hash of its private key file (never shown)."""
    return hashlib.sha256(b"ess adoption v1\0" + key_file.read_bytes()).digest()


def instance_mac(key: bytes, instance_id: str, cluster: str) -> str:
    return hmac.new(key, f"{instance_id}\0{cluster}".encode(), hashlib.sha256).hexdigest()[:MAC_HEX]


def proof_value(key: bytes, instance_ids: Iterable[str], cluster: str) -> str:
    """One tag value naming the MACs of up to :data:`MACS_PER_TAG` instances (one CreateTags)."""
    return ".".join(sorted(instance_mac(key, i, cluster) for i in instance_ids))


def proves(key: bytes, instance_id: str, cluster: str, value: str) -> bool:
    mac = instance_mac(key, instance_id, cluster)
    return any(hmac.compare_digest(mac, part) for part in value.split("."))


def why_not_ours(instance: dict[str, Any], cluster: str, key_pair: str, key: Callable[[], bytes | None]) -> str:
    """'' when ``instance`` is a member of ``cluster``; otherwise why not, in a few words.

    ``key`` returns the adoption key (None when the private key file cannot be read); it is
    only called for an instance that claims to be adopted.
    """
    tags = tags_of(instance)
    if tags.get(TAG_CLUSTER) != cluster:
        return f"not tagged {TAG_CLUSTER}={cluster}"
    if TAG_ADOPTED in tags or TAG_ADOPTED_PROOF in tags:
        secret = key()
        if secret is None:
            return "adopted, but the private key to verify the adoption cannot be read"
        if proves(secret, instance["InstanceId"], cluster, tags.get(TAG_ADOPTED_PROOF, "")):
            return ""
        if TAG_LAUNCH not in tags:
            return "adoption tag not signed with this cluster's key (forged, or added by an older ess)"
    if TAG_LAUNCH not in tags:
        return f"not launched by ess (no {TAG_LAUNCH} tag) nor adopted with add"
    launched_with = instance.get("KeyName")
    if launched_with != key_pair:
        return f"launched with key pair {launched_with or '(none)'!r}, not this config's {key_pair!r}"
    return ""


#: How directly a setting was given, as ess resolves them: the command line or an API
#: argument, then the environment, then a config file (the project's or the user's).
_GIVEN, _ENVIRONMENT, _CONFIG, _DEFAULT = 3, 2, 1, 0


def _directness(source: str) -> int:
    if source == "default":
        return _DEFAULT
    if source.startswith(("--", "Cluster(")):
        return _GIVEN
    if source.startswith("ESS_"):
        return _ENVIRONMENT
    return _CONFIG


def prove_key_pair(settings: Settings, action: str) -> None:
    """UsageError unless this machine may act on the key pair's instances (see the module doc).

    A key pair named by a config file is the config's own: nothing more is asked (the
    threat model: sharing a key pair name means sharing the cluster). One named more
    directly (``ESS_KEY_NAME``, a flag, ``Cluster(key_name=...)``) needs its private key
    file, checked as ``add`` checks it (present, a regular file, 0600): ``<name>.pem`` in the
    config folder or ``~/.ssh/``, or ``key_file`` when that is given at least as directly as
    the name. A ``key_file`` from the config proves nothing about a name typed over it: it is
    the key of the config's own key pair. ``action`` is the verb for the message.
    """
    named = settings.values.get("key_name")
    if named is None or _directness(named.source) <= _CONFIG:
        return
    proving = settings
    key_file = settings.values.get("key_file")
    if key_file is not None and _directness(key_file.source) < _directness(named.source):
        proving = replace(settings, values={**settings.values, "key_file": Value(None, "default")})
    try:
        keys.key_file(proving)
    except UsageError as exc:
        where = settings.where("key_name")
        detail = str(exc).removeprefix(f"{proving.where('key_file' if proving.get('key_file') else 'key_name')}: ")
        raise UsageError(
            f"{where}: will not {action} instances of key pair {keys.key_pair_name(settings)!r}, named here "
            f"rather than by a config file: {detail}; ess changes a key pair's instances only where its "
            "private key is, since a key pair name or an ess tag proves nothing; nothing was changed"
        ) from None
