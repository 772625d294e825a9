"""Help that tells the truth: every example parses, only supported commands are offered,
and usage errors are one readable line."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import click
import pytest

from ess.cli import cli

BUILTIN_BACKENDS = ("ec2", "hosts", "local")
SHELL_STOP = set("|;&<>()")


def walk(command: click.Command, path: tuple[str, ...], ctx: click.Context):
    """Every command below ``command`` (groups included), with its command path."""
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from walk(sub, (*path, name), click.Context(sub, parent=ctx, info_name=name))


def examples_in(text: str) -> list[list[str]]:
    """``ess ...`` command lines in a help text: at a line's start or inside ``$(``/``<(``."""
    found = []
    for line in text.splitlines():
        for match in re.finditer(r"(?:^\s*|\$\(|<\()ess ", line):
            start = line.index("ess ", match.start())
            lexer = shlex.shlex(line[start:], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = []
            for token in lexer:
                if token and set(token) <= SHELL_STOP:
                    break
                words.append(token)
            found.append(words)
    return found


def parse(args: list[str]) -> click.Context:
    """Parse ``ess <args>`` down the real command tree, as click does, without running it."""
    ctx = cli.make_context("ess", list(args))
    command: click.Command = cli
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return ctx


def all_examples() -> list[tuple[str, list[str]]]:
    root = click.Context(cli, info_name="ess")
    out = []
    for path, command in walk(cli, ("ess",), root):
        for words in examples_in(command.help or ""):
            out.append((" ".join(path), words))
    return out


def test_every_help_example_parses():
    examples = all_examples()
    seen_backends = {words[2] for _, words in examples if len(words) > 2 and words[1] == "instance"}
    assert set(BUILTIN_BACKENDS) <= seen_backends
    assert len(examples) > 60
    failures = []
    for where, words in examples:
        assert words[0] == "ess"
        try:
            parse(words[1:])
        except click.UsageError as exc:
            failures.append(f"{where}: `{shlex.join(words)}`: {exc.format_message()}")
        except Exception as exc:  # ess's own UsageError for a refused command
            failures.append(f"{where}: `{shlex.join(words)}`: {exc}")
    assert failures == []


def test_the_walk_catches_an_example_that_does_not_parse():
    with pytest.raises(click.UsageError):
        parse(["instance", "hosts", "create", "--number", "2"])
    with pytest.raises(click.UsageError):
        parse(["instance", "local", "exec"])


@pytest.mark.parametrize(
    "argv",
    [["config", "--help"], ["instance", "ec2", "security-group", "--help"], ["instance", "ec2", "key-pair", "--help"]],
)
def test_groups_have_an_example(ess, argv):
    r = ess(*argv)
    assert r.code == 0
    assert "Example" in r.out and f"\n    ess {' '.join(argv[:-1])} " in r.out


@pytest.mark.parametrize("command", ["exec", "push"])
def test_exec_and_push_help_show_examples_one_per_line(ess, command):
    r = ess("instance", "local", command, "--help")
    assert r.code == 0
    assert "\\b" not in r.out
    lines = [line.strip() for line in r.out.splitlines() if line.strip().startswith("ess instance local")]
    assert len(lines) == 2 and all(line.count("ess instance") == 1 for line in lines)


def test_add_remove_examples_use_the_backends_own_ids(ess):
    r = ess("instance", "ec2", "add", "--help")
    assert "ess instance ec2 add i-0abc123 --yes" in r.out
    r = ess("instance", "local", "terminate", "--help")
    assert "local-1a2b3c4d" in r.out and "i-0abc" not in r.out


@pytest.mark.parametrize(
    ("backend", "hidden", "shown"),
    [
        ("local", {"add", "remove"}, {"stop", "start", "ssh", "ssh-config"}),
        ("hosts", {"add", "remove", "stop", "start"}, {"ssh", "ssh-config", "exec"}),
        ("ec2", set(), {"add", "remove", "stop", "start", "ssh"}),
    ],
)
def test_help_lists_only_what_the_backend_supports(ess, backend, hidden, shown):
    r = ess("instance", backend, "--help")
    listed = set(r.out.split("Commands:")[1].split())
    assert not hidden & listed and shown <= listed


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["instance", "local", "add", "x", "--yes"],
            "ess: add: backend local does not support `add`; `ess instance local create --number 2` starts new nodes",
        ),
        (
            ["instance", "hosts", "remove", "10.0.0.5", "--yes"],
            "ess: remove: backend hosts does not support `remove`; `ess instance hosts terminate 10.0.0.5` "
            "releases a node and leaves the machine running",
        ),
        (
            ["instance", "hosts", "stop", "--yes"],
            "ess: stop: backend hosts does not support `stop`; `ess instance hosts terminate all` releases "
            "the nodes (the machines keep running)",
        ),
        (["instance", "local", "exec"], "ess: -- COMMAND...: missing argument (see `ess instance local exec --help`)"),
        (["instance", "local", "push"], "ess: SRC: missing argument (see `ess instance local push --help`)"),
        (
            ["instance", "local", "exec", "uname", "-a"],
            "ess: -a: no such option for `ess instance local exec` (to pass it to the command, put the command "
            "after `--`: `ess instance local exec -- uname -a`)",
        ),
        (["instanc", "local", "list"], "ess: instanc: no such command for `ess` (did you mean instance?)"),
        (
            ["instance", "local", "terminate", "all", "--purge", "--yes"],
            "ess: --purge: backend local has nothing to purge (drop --purge)",
        ),
        (["instance", "local", "lst"], "ess: lst: no such command for `ess instance local` (did you mean list?)"),
    ],
)
def test_refusals_and_usage_errors_are_one_helpful_line(ess, argv, line):
    r = ess(*argv)
    assert r.code == 2, r
    assert r.err.strip().splitlines() == [line]
    assert r.out == ""


def test_supports_is_derived_from_the_subclass():
    from ess.backend import Backend
    from ess_hosts.backend import HostsBackend
    from ess_local.backend import LocalBackend

    class Minimal(Backend):
        name = "minimal"

        def stop(self, settings, nodes, progress):
            pass

    assert Minimal().supports("stop") and not Minimal().supports("start")
    assert LocalBackend().supports("start") and not LocalBackend().supports("adopt")
    assert not HostsBackend().supports("stop") and HostsBackend().supports("access")
    with pytest.raises(ValueError):
        Minimal().supports("fly")


@pytest.mark.parametrize(
    "argv", [["instance", "local", "--json", "list"], ["instance", "local", "--config", "/dev/null", "--json", "list"]]
)
def test_global_options_work_after_the_backend(ess, argv):
    r = ess(*argv)
    assert r.code == 0, r
    assert r.out.startswith("{")


def test_python_dash_m_ess_is_the_same_cli():
    proc = subprocess.run([sys.executable, "-m", "ess", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ess instance local create --number 3" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "ess", "instanc"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("(did you mean instance?)")
