"""`shipper setup`: the Elasticsearch assets, and with --kibana the Kibana saved objects."""

from __future__ import annotations

from pathlib import Path

import click

from shipper.commands._common import client_and_capabilities, fail, pass_context
from shipper.context import Context
from shipper.errors import ShipperError


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option(
    "--kibana",
    is_flag=True,
    help="After the Elasticsearch assets, import the dashboards and data views into Kibana "
    "(SHIPPER_KIBANA_URL, SHIPPER_KIBANA_SPACE, Kibana or Elasticsearch credentials).",
)
@click.option(
    "--kibana-only", is_flag=True, help="Only import the Kibana saved objects; leave Elasticsearch alone."
)
@click.option(
    "--kibana-objects",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Import this NDJSON file instead of the packaged saved objects (implies --kibana).",
)
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the exact request body of every asset to DIR/<kind>/<name>.json; change nothing.",
)
@pass_context
def setup(
    ctx: Context,
    dry_run: bool,
    kibana: bool,
    kibana_only: bool,
    kibana_objects: Path | None,
    export_dir: Path | None,
) -> None:
    """Install or upgrade the Elasticsearch assets the shipper manages, and with --kibana import the
    Kibana saved objects.

    Index templates (with an empty `@custom` component template per family that is yours),
    ingest pipelines, and retention: an ILM policy where the cluster has ILM, otherwise the data
    stream lifecycle for logs and `shipper run`'s retention pass for time-partitioned indices.
    Idempotent: a second run changes nothing and says so.

    --kibana imports the dashboards, visualizations and data views through Kibana's saved-objects
    import API, overwriting earlier imports (so it is idempotent too). Exit 6 when Kibana refuses
    some objects; each is listed with the reason and the fix.
    """
    from shipper.setup.installer import install

    if kibana_only:
        _setup_kibana(ctx, kibana_objects, dry_run)
        return
    try:
        settings = ctx.settings
        client, caps = client_and_capabilities(settings)
        if export_dir is not None:
            from shipper.setup.installer import export

            written = export(caps, settings.retention_days, settings.logs_retention_days, export_dir)
            click.echo(f"wrote {len(written)} request bodies under {export_dir}; Elasticsearch unchanged")
            return
        changes = install(
            client, caps, settings.retention_days, settings.logs_retention_days, dry_run=dry_run
        )
    except ShipperError as exc:
        fail(exc)
        return
    changed = [c for c in changes if c.action in ("create", "update")]
    for change in changes:
        if change.action != "unchanged" or dry_run:
            click.echo(
                ("would " if dry_run and change.action in ("create", "update") else "") + change.describe()
            )
    if not caps.ilm:
        click.echo(
            "note: this cluster has no ILM; retention uses the data stream lifecycle and `shipper run`"
        )
    if not changed:
        click.echo(f"all {len(changes)} assets are up to date; nothing changed")
    elif dry_run:
        click.echo(f"{len(changed)} of {len(changes)} assets would change (dry run: nothing changed)")
    else:
        click.echo(f"{len(changed)} of {len(changes)} assets changed")
    if kibana or kibana_objects is not None:
        _setup_kibana(ctx, kibana_objects, dry_run)


def _setup_kibana(ctx: Context, objects: Path | None, dry_run: bool) -> None:
    from shipper.kibana.setup import import_saved_objects

    try:
        import_saved_objects(ctx.settings, objects, dry_run, click.echo)
    except ShipperError as exc:
        fail(exc)
