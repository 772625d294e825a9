"""run_command (groundwork for `exec`) and the plugin's hook registration."""

from __future__ import annotations

from pathlib import Path

from support.ssh_helpers import make_access, make_settings, quiet_progress

from ess.testing.sshd import SshNode, generate_ed25519_key, write_private_key
from ess_ssh.run import run_command


def test_run_command_collects_output_per_node(tmp_path: Path):
    key = generate_ed25519_key()
    key_file = write_private_key(key, tmp_path / "k")
    with SshNode(authorized_keys=[key]) as a, SshNode(authorized_keys=[key]) as b:
        out = run_command(
            [a.node("a"), b.node("b")],
            "echo hi; echo err >&2; exit 5",
            make_access(key_file),
            make_settings(),
            quiet_progress()[0],
        )
    assert [(o.node_id, o.exit_code, o.stdout, o.stderr, o.ok) for o in out] == [
        ("a", 5, b"hi\n", b"err\n", False),
        ("b", 5, b"hi\n", b"err\n", False),
    ]
    assert a.commands == ["echo hi; echo err >&2; exit 5"]  # run once, never retried


def test_settings_are_declared_through_the_hook():
    from ess.plugins import get_plugin_manager

    keys = {spec.key: spec for specs in get_plugin_manager().hook.ess_settings() for spec in specs or []}
    assert keys["ssh_timeout"].flag == "--timeout" and keys["ssh_timeout"].default == 300.0
    assert keys["ssh_parallel"].maximum == 1024 and {"create", "verify", "exec", "push", "status"} <= set(
        keys["ssh_parallel"].commands
    )
    assert keys["verify_command"].default == "true"
    assert all(
        keys[k].help
        for k in (
            "verify_command",
            "ssh_timeout",
            "ssh_parallel",
            "ssh_connect_timeout",
            "strict_host_keys",
            "insecure_skip_host_key_check",
        )
    )
