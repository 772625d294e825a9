"""``ess clusters``: every ess cluster these credentials can see, on every backend that can tell."""

from __future__ import annotations

import os
from typing import Any

import click

from .options import EXIT_CODES_HELP, common_options, invocation, progress, setting_values


def _where_flags() -> list[tuple[str, str, str]]:
    """(flag, key) of the settings that say where to look (ec2's --region, --profile): those a
    backend with ``clusters`` exposes on every command, except --cluster (all are listed)."""
    from ..plugins import backends
    from ..settings import specs_for

    found: dict[str, tuple[str, str]] = {}
    for name, backend in sorted(backends().items()):
        if backend.supports("clusters"):
            for spec in specs_for(backend.settings).values():
                if spec.flag and "*" in spec.commands and spec.key != "cluster":
                    found.setdefault(spec.flag, (spec.key, f"{name}: {spec.help}"))
    return [(flag, key, text) for flag, (key, text) in sorted(found.items())]


class ClustersCommand(click.Command):
    """Adds the backends' --region-like flags lazily (defining the command loads no plugin),
    once per plugin manager: the backends installed can differ from one run to the next in
    one process (ESS_DISABLE_PLUGINS, tests)."""

    _made_for: object = None
    _flags: list[click.Parameter] = []

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        from ..plugins import get_plugin_manager

        manager = get_plugin_manager()
        if self._made_for is not manager:
            self._made_for = manager
            self._flags = [
                click.Option([flag, f"setting__{key}"], default=None, metavar="VALUE", help=text)
                for flag, key, text in _where_flags()
            ]
        params = super().get_params(ctx)
        shown = len(self.params)  # what follows self.params is click's --help: it stays last
        return [*params[:shown], *self._flags, *params[shown:]]


@click.command("clusters", cls=ClustersCommand, epilog=EXIT_CODES_HELP)
@click.option(
    "--all-regions",
    is_flag=True,
    help="Ask every region of the account (one extra call to list them), not only the configured one.",
)
@common_options
def clusters_command(all_regions: bool, **flags: Any) -> None:
    """List every ess cluster you have, whatever config made it, with the command that ends it.

    \b
    Shows, per cluster: backend, region, name, nodes by state, instance types, age, who
    created it, expiry, key pair and the config file it came from (when this machine
    created it). EXPIRED: past its ess:expires deadline; OLD, NO LIMIT: older than a day
    with no deadline. Exit 3 when a backend or region could not be asked (the list is
    then partial); see docs/clusters.md.
    \b
    Examples:
      ess clusters
      ess clusters --all-regions --json
      ess clusters --region eu-west-1 --profile work
    """
    from ..clusters import HEADERS, survey, table_rows
    from ..errors import EssError, PartialFailure
    from ..log import warn
    from ..output import emit, emit_json, table
    from ..plugins import backends
    from ..settings import find_config, load_settings, specs_for

    path, _ = find_config(invocation().config, os.environ)
    # Every backend's settings first: a bad config is one line and exit 2 before any call.
    given = setting_values(flags)
    asked = []
    for _, backend in sorted(backends().items()):
        if backend.supports("clusters"):
            mine = set(specs_for(backend.settings))
            asked.append((backend, load_settings(backend, path, cli={k: v for k, v in given.items() if k in mine})))
    report = survey(asked, all_regions, progress(), config=path)
    for note in report.notes:
        warn(f"ess: note: {note}")
    for failure in report.failures:
        warn(f"ess: warning: {failure}")
    if invocation().json:
        emit_json(report.to_dict())
    elif report.rows:
        emit(table(table_rows(report), HEADERS))
    else:
        scope = ", every region" if all_regions else ""
        emit(f"no ess clusters found (asked: {', '.join(report.backends) or 'no backend'}{scope})")
    if report.failures:
        if report.unreachable == report.backends:
            raise EssError("no backend could be asked for its clusters (see the warnings above)")
        raise PartialFailure(
            f"{len(report.failures)} backend(s) or region(s) could not be asked: the list above is partial"
        )
