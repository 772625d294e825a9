"""Every ess cluster in the account, for ``ess clusters``: one DescribeInstances per region.

Regions: the configured one, or with ``all_regions`` every region enabled for the account
(one DescribeRegions). Each region costs one DescribeInstances filtered by
``tag-key=ess:cluster`` and the live states (paginated; more pages only past 1,000
instances), and the regions are asked in parallel on a bounded pool, each with its own
client (boto3 clients are thread-safe; sessions are not, so each client is made in the
calling thread, and its region's describe starts while the next client is made).

What is a cluster here: the instances of one region with one ``ess:cluster`` value *and*
one key pair. Ownership is per key pair (see ownership.py): two configs with different
key pairs that both use cluster "default" are two clusters, each ended by its own
``terminate all``, so each is a row of its own with the command that ends it. Instances
that carry ``ess:cluster`` but that ess neither launched (``ess:launch``) nor adopted
(``ess:adopted``), or whose ``ess:cluster`` is not a name ess accepts, are not listed (a
forged or half-copied tag set); one note counts them.
Adopted instances join the row of their region and cluster when it has a single key pair.
This is a read-only view: nothing here proves ownership, terminate checks it again. A row
whose key pair's private key this machine lacks is named in a note: the ``ESS_KEY_NAME=...``
command printed for it is refused here (see ownership.prove_key_pair).
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from typing import Any

from ess.errors import EssError
from ess.models import (
    PENDING,
    RUNNING,
    SHUTTING_DOWN,
    STOPPED,
    STOPPING,
    TAG_ADOPTED,
    TAG_CLUSTER,
    TAG_LAUNCH,
    TERMINATED,
    ClusterInventory,
    ClusterSummary,
    Settings,
    Value,
)
from ess.names import CLUSTER_NAME
from ess.progress import Progress

from . import client as aws_client
from .membership import TAG_DESIRED
from .ownership import TAG_ADOPTED_PROOF

#: Regions asked at once: enough for all of them in about one round trip, few enough
#: threads (and connections) for a laptop.
MAX_PARALLEL = 8
#: What a cluster can cost money in; terminated instances (listed for about an hour) cannot.
LIVE = (PENDING, RUNNING, STOPPING, STOPPED, SHUTTING_DOWN)


def clusters(backend_name: str, settings: Settings, all_regions: bool, progress: Progress) -> ClusterInventory:
    from .session import session_for

    home = session_for(settings).aws
    with aws_client.translated(home, "list the account's regions" if all_regions else "list instances"):
        regions = _regions(home) if all_regions else [home.region]
    progress.stage(f"asking EC2 in {len(regions)} region(s)", len(regions))
    answers: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []

    def ask(aws: aws_client.Aws) -> tuple[str, list[dict[str, Any]] | str]:
        try:
            with aws_client.translated(aws, "list instances"):
                return aws.region, _tagged(aws)
        except EssError as exc:
            return aws.region, str(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL, len(regions)))) as pool:
        asked = []
        for region in regions:
            # Each region's client is built here, in this thread (a boto3 session is not
            # thread-safe), and its describe starts at once: the next client is built while
            # the earlier regions' answers travel.
            aws = home if region == home.region else _in_region(home, region)
            _ = aws.ec2
            asked.append(pool.submit(ask, aws))
        for done, future in enumerate(as_completed(asked), start=1):
            region, answer = future.result()
            progress.update(done)
            if isinstance(answer, str):
                failures.append(f"{region}: {answer}")
            else:
                answers[region] = answer
    failures.sort()
    if failures and not answers:
        raise EssError("; ".join(failures))
    use_private_ip = bool(settings.get("use_private_ip", False))
    summaries: list[ClusterSummary] = []
    skipped: list[str] = []
    for region in sorted(answers):
        found, strays = _group(backend_name, region, answers[region], use_private_ip)
        summaries += found
        skipped += strays
    notes = []
    if skipped:
        shown = ", ".join(sorted(skipped)[:5]) + (" ..." if len(skipped) > 5 else "")
        notes.append(
            f"{len(skipped)} instance(s) carry {TAG_CLUSTER} but were neither launched nor adopted "
            f"by ess, or carry a cluster name ess never gives ({shown}): not listed, and no ess "
            "command touches them"
        )
    strangers = _key_pairs_not_held(settings, summaries)
    if strangers:
        notes.append(
            f"this machine holds no private key for key pair(s) {', '.join(map(repr, strangers))}: a terminate "
            "command naming one with ESS_KEY_NAME is refused here (a key pair name or an ess tag proves "
            "nothing; run it where that key pair's .pem is, or with the config that names it)"
        )
    return ClusterInventory(clusters=tuple(summaries), failures=tuple(failures), notes=tuple(notes))


def _key_pairs_not_held(settings: Settings, summaries: list[ClusterSummary]) -> list[str]:
    """The rows' key pairs (other than the config's own) that ``terminate`` could not prove
    here when named by ``ESS_KEY_NAME``, as the printed command names them (ownership.py)."""
    from ess.errors import UsageError

    from .keys import key_pair_name
    from .ownership import prove_key_pair

    try:
        own = key_pair_name(settings)
    except UsageError:
        own = None
    missing = []
    for pair in sorted({s.key_pair for s in summaries if s.key_pair and s.key_pair != own}):
        named = replace(settings, values={**settings.values, "key_name": Value(pair, "ESS_KEY_NAME")})
        try:
            prove_key_pair(named, "terminate")
        except UsageError:
            missing.append(pair)
    return missing


def _regions(aws: aws_client.Aws) -> list[str]:
    """The regions enabled for the account, in one DescribeRegions."""
    reply = aws.ec2.describe_regions()
    return sorted(str(r["RegionName"]) for r in reply.get("Regions", []))


def _in_region(home: aws_client.Aws, region: str) -> aws_client.Aws:
    """The same credentials in another region."""
    return aws_client.Aws(
        session=home.session,
        region=region,
        max_attempts=home.max_attempts,
        credential_source=home.credential_source,
    )


def _tagged(aws: aws_client.Aws) -> list[dict[str, Any]]:
    """Live instances of the region carrying an ``ess:cluster`` tag: one paginated describe."""
    filters = [
        {"Name": "tag-key", "Values": [TAG_CLUSTER]},
        {"Name": "instance-state-name", "Values": list(LIVE)},
    ]
    return aws_client.describe_filtered(aws, filters)


def _group(
    backend_name: str, region: str, instances: list[dict[str, Any]], use_private_ip: bool
) -> tuple[list[ClusterSummary], list[str]]:
    """Rows of one region, keyed by (cluster, key pair); and the ids of tagged strangers."""
    launched: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    adopted: dict[str, list[dict[str, Any]]] = defaultdict(list)
    strays: list[str] = []
    for instance in instances:
        tags = aws_client.tags_of(instance)
        cluster = tags.get(TAG_CLUSTER, "")
        if tags.get(TAG_DESIRED) == TERMINATED and instance.get("State", {}).get("Name") == SHUTTING_DOWN:
            # ess terminated it and EC2 agrees: on its way out, no longer a cluster's cost.
            # The mark alone proves nothing: it is written before TerminateInstances, which
            # may then fail (termination protection, an IAM deny, a kill in between), and a
            # node still running or stopped must stay in view until it is really going.
            continue
        if not CLUSTER_NAME.match(cluster):
            # ess never names a cluster so (an empty, overlong or shell-special tag value):
            # written by someone else, and no `--cluster` could select it anyway.
            strays.append(str(instance["InstanceId"]))
        elif TAG_LAUNCH in tags:
            launched[(cluster, str(instance.get("KeyName") or ""))].append(instance)
        elif TAG_ADOPTED in tags or TAG_ADOPTED_PROOF in tags:
            adopted[cluster].append(instance)
        else:
            strays.append(str(instance["InstanceId"]))
    for cluster, members in adopted.items():
        pairs = [key for key in launched if key[0] == cluster]
        launched[pairs[0] if len(pairs) == 1 else (cluster, "")] += members
    summaries = []
    for (cluster, key_pair), members in sorted(launched.items()):
        selectors = {"region": region, **({"key_name": key_pair} if key_pair else {})}
        nodes = tuple(aws_client.to_node(i, use_private_ip) for i in members)
        summaries.append(
            ClusterSummary(
                backend=backend_name,
                cluster=cluster,
                nodes=tuple(sorted(nodes, key=lambda n: n.id)),
                region=region,
                key_pair=key_pair or None,
                selectors=selectors,
            )
        )
    return summaries, strays
