"""``ess clusters``: every ess cluster these credentials can see, on every backend that can tell."""

from __future__ import annotations

import os

import click

from .options import EXIT_CODES_HELP, common_options, invocation, progress


@click.command("clusters", epilog=EXIT_CODES_HELP)
@click.option(
    "--all-regions",
    is_flag=True,
    help="Ask every region of the account (one extra call to list them), not only the configured one.",
)
@common_options
def clusters_command(all_regions: bool) -> None:
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
    """
    from ..clusters import HEADERS, survey, table_rows
    from ..errors import EssError, PartialFailure
    from ..log import warn
    from ..output import emit, emit_json, table
    from ..plugins import backends
    from ..settings import find_config, load_settings

    path, _ = find_config(invocation().config, os.environ)
    # Every backend's settings first: a bad config is one line and exit 2 before any call.
    asked = [
        (backend, load_settings(backend, path))
        for _, backend in sorted(backends().items())
        if backend.supports("clusters")
    ]
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
