"""click groups that answer a typo with the closest command, in ess's one-line shape."""

from __future__ import annotations

import click


class NoSuchCommand(click.UsageError):
    """A subcommand name no group knows; carries the name and the closest known ones."""

    def __init__(self, name: str, close: list[str], ctx: click.Context) -> None:
        super().__init__(f"no such command {name!r}", ctx)
        self.name, self.close = name, close


class SuggestingGroup(click.Group):
    """A group whose unknown-subcommand error names the typo and the closest command."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            raise NoSuchCommand(name, difflib.get_close_matches(name, self.list_commands(ctx), n=1), ctx)
        return super().resolve_command(ctx, args)
