"""Who owns an instance (issue 12): a tag alone is not ownership.

Forged ess:cluster tags, another team's ess on the default cluster name with its own key
pair, and adoptions (genuine, forged, copied) — through the CLI against moto.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.ec2_world import ESSENTIA_CONF, make_world

from ess.models import TAG_ADOPTED, TAG_CLUSTER, TAG_LAUNCH
from ess_ec2 import ownership


@pytest.fixture
def world(moto_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    return make_world(tmp_path, monkeypatch)


def cli(ess, conf: Path, *args: str):
    return ess("instance", "ec2", *args, "--config", str(conf))


def listed(ess, conf: Path) -> tuple[set[str], str]:
    result = cli(ess, conf, "list", "--json")
    assert result.code == 0, result.err
    return {n["id"] for n in json.loads(result.out)["nodes"]}, result.err


def tags_of(world, instance_id: str) -> dict[str, str]:
    reply = world.ec2.describe_instances(InstanceIds=[instance_id])
    return {t["Key"]: t["Value"] for t in reply["Reservations"][0]["Instances"][0].get("Tags", [])}


def second_team(world, tmp_path: Path) -> Path:
    """Another team's config: same account, default cluster name, its own key pair."""
    folder = tmp_path / "team-b"
    folder.mkdir()
    material = world.ec2.create_key_pair(KeyName="team_b")["KeyMaterial"]
    pem = folder / "team_b.pem"
    pem.write_text(material)
    pem.chmod(0o600)
    conf = folder / "instance.conf"
    conf.write_text(ESSENTIA_CONF.replace("key_name: pem_file", "key_name: team_b") + f"image_id: {world.image}\n")
    return conf


def test_a_forged_cluster_tag_is_never_listed_or_terminated(world, ess):
    mine = [n.id for n in world.launch(2)]
    bare = world.foreign(1, tags={TAG_CLUSTER: "default"})  # only the cluster tag
    launchy = world.foreign(1, tags={TAG_CLUSTER: "default", TAG_LAUNCH: "forged"})  # no key pair
    ids, err = listed(ess, world.conf)
    assert ids == set(mine)
    assert f"{bare[0]} (not launched by ess (no ess:launch tag) nor adopted with add)" in err
    assert f"{launchy[0]} (launched with key pair '(none)', not this config's 'pem_file')" in err
    assert "aws ec2 terminate-instances --instance-ids ID" in err and err.count("\n") == 1
    gone = cli(ess, world.conf, "terminate", "all", "--yes", "--include-adopted")
    assert gone.code == 0, gone.err
    assert set(world.states(mine).values()) == {"terminated"}
    assert world.states(bare + launchy) == {bare[0]: "running", launchy[0]: "running"}
    assert "skipped 2 instance(s)" in gone.err


def test_two_teams_on_the_default_cluster_name_never_destroy_each_others_nodes(world, ess, tmp_path):
    team_b = second_team(world, tmp_path)
    world.conf.write_text(world.conf.read_text() + f"image_id: {world.image}\n")
    a = cli(ess, world.conf, "create", "--yes", "--no-verify", "--json", "--number", "2")
    b = cli(ess, team_b, "create", "--yes", "--no-verify", "--json", "--number", "2")
    assert a.code == 0 and b.code == 0, (a.err, b.err)
    ours = {n["id"] for n in json.loads(a.out)["nodes"]}
    theirs = {n["id"] for n in json.loads(b.out)["nodes"]}
    assert listed(ess, world.conf)[0] == ours and listed(ess, team_b)[0] == theirs
    gone = cli(ess, world.conf, "terminate", "all", "--yes", "--include-adopted")
    assert gone.code == 0, gone.err
    assert "not this config's 'pem_file'" in gone.err
    assert set(world.states(sorted(ours)).values()) == {"terminated"}
    assert set(world.states(sorted(theirs)).values()) == {"running"}
    assert listed(ess, team_b)[0] == theirs


def test_genuine_adoption_is_a_member_and_kept_unless_include_adopted(world, ess):
    adopted = world.foreign(2)
    world.calls.reset()
    assert cli(ess, world.conf, "add", *adopted, "--yes").code == 0
    assert world.calls.count("CreateTags") == 1  # both proofs in one tag value, one call
    proof = tags_of(world, adopted[0])[ownership.TAG_ADOPTED_PROOF]
    assert proof == tags_of(world, adopted[1])[ownership.TAG_ADOPTED_PROOF] and len(proof) <= 256
    assert listed(ess, world.conf)[0] == set(adopted)
    kept = cli(ess, world.conf, "terminate", "all", "--yes")
    assert kept.code == 0 and set(world.states(adopted).values()) == {"running"}
    gone = cli(ess, world.conf, "terminate", "all", "--yes", "--include-adopted")
    assert gone.code == 0, gone.err
    assert set(world.states(adopted).values()) == {"terminated"}


def test_forged_and_copied_adoptions_are_skipped_even_with_include_adopted(world, ess):
    genuine = world.foreign(1)
    assert cli(ess, world.conf, "add", *genuine, "--yes").code == 0
    real_proof = tags_of(world, genuine[0])[ownership.TAG_ADOPTED_PROOF]
    forged = world.foreign(
        1, tags={TAG_CLUSTER: "default", TAG_ADOPTED: "true", ownership.TAG_ADOPTED_PROOF: "0123456789ab"}
    )
    copied = world.foreign(
        1, tags={TAG_CLUSTER: "default", TAG_ADOPTED: "true", ownership.TAG_ADOPTED_PROOF: real_proof}
    )
    ids, err = listed(ess, world.conf)
    assert ids == set(genuine)
    assert "adoption tag not signed with this cluster's key" in err
    gone = cli(ess, world.conf, "terminate", "all", "--yes", "--include-adopted")
    assert gone.code == 0, gone.err
    assert world.states(genuine) == {genuine[0]: "terminated"}
    assert world.states(forged + copied) == {forged[0]: "running", copied[0]: "running"}


def test_adopting_a_skipped_instance_on_purpose_makes_it_a_member(world, ess):
    forged = world.foreign(1, tags={TAG_CLUSTER: "default"})
    assert listed(ess, world.conf)[0] == set()
    added = cli(ess, world.conf, "add", forged[0], "--yes")
    assert added.code == 0, added.err
    assert listed(ess, world.conf)[0] == set(forged)


def test_adoption_proofs_are_bound_to_instance_cluster_and_key(tmp_path):
    key_file = tmp_path / "k.pem"
    key_file.write_text("one key")
    key = ownership.adoption_key(key_file)
    value = ownership.proof_value(key, ["i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"], "default")
    assert ownership.proves(key, "i-0aaaaaaaaaaaaaaaa", "default", value)
    assert not ownership.proves(key, "i-0cccccccccccccccc", "default", value)
    assert not ownership.proves(key, "i-0aaaaaaaaaaaaaaaa", "other", value)
    key_file.write_text("another key")
    assert not ownership.proves(ownership.adoption_key(key_file), "i-0aaaaaaaaaaaaaaaa", "default", value)
    many = ownership.proof_value(key, [f"i-{n:017x}" for n in range(ownership.MACS_PER_TAG)], "c")
    assert len(many) <= 256


def test_add_without_the_private_key_is_one_line_and_changes_nothing(world, ess):
    foreign = world.foreign(1)
    world.pem.unlink()
    world.calls.reset()
    result = cli(ess, world.conf, "add", foreign[0], "--yes")
    assert result.code == 2 and result.err.count("\n") == 1 and "private key not found" in result.err
    assert world.calls.mutating() == []


def test_a_terminated_stranger_is_neither_listed_nor_reported(world, ess):
    forged = world.foreign(1, tags={TAG_CLUSTER: "default"})
    world.ec2.terminate_instances(InstanceIds=forged)
    ids, err = listed(ess, world.conf)
    assert ids == set() and "skipped" not in err
