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
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ess.models import TAG_ADOPTED, TAG_CLUSTER, TAG_LAUNCH

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
