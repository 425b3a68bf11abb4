"""`shipper serve` and `shipper reconcile`. Heavy imports happen inside the commands, so that
`shipper --help` stays fast."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click
import orjson

from shipper.errors import ConfigError, ShipperError


def _fail(exc: ShipperError) -> None:
    from shipper import logs

    logs.fail(exc, exc.exit_code, type(exc).__name__)


@click.command()
@click.option("--host", help="Address to listen on (default SHIPPER_WEBHOOK_HOST, 0.0.0.0).")
@click.option("--port", type=int, help="Port to listen on (default SHIPPER_WEBHOOK_PORT, 8080).")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Accept deliveries without credentials. Only for a loopback test; never expose it.",
)
@click.option("--no-enrich", is_flag=True, help="Do not add job details from azure-ai-ml.")
@click.option("--no-sync-on-end", is_flag=True, help="Do not run an MLflow sync pass when a run ends.")
@click.pass_obj
def serve(
    obj: Any,
    host: str | None,
    port: int | None,
    insecure_no_auth: bool,
    no_enrich: bool,
    no_sync_on_end: bool,
) -> None:
    """Receive Azure ML events from Event Grid at POST /events and write them to Elasticsearch.

    Takes the Event Grid schema and CloudEvents 1.0 (single and batched), answers the subscription
    validation and the CloudEvents OPTIONS handshakes, and answers 200 only after a batch is
    written (503 while Elasticsearch cannot take it, so Event Grid retries). Authentication:
    SHIPPER_WEBHOOK_SECRET as ?code= or the x-shipper-secret header, and/or Entra ID tokens
    (SHIPPER_WEBHOOK_ENTRA_*). Also serves /healthz, /readyz, /metrics and /docs.
    """
    import logging

    from shipper.sink.client import build_client, probe
    from shipper.webhook.server import build_webhook, run_forever

    log = logging.getLogger("shipper.webhook")
    try:
        settings = obj.settings
        try:
            # Nothing is contacted here: a webhook without credentials is refused before anything.
            webhook = build_webhook(
                settings,
                client=build_client(settings),
                insecure_no_auth=insecure_no_auth,
                enrich=not no_enrich,
                sync_on_terminal=not no_sync_on_end,
            )
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
        try:
            webhook.use_ilm(probe(webhook.client).ilm)
        except ShipperError as exc:  # Event Grid retries 503s for 24 h: start anyway
            log.warning("Elasticsearch is not reachable yet (%s); deliveries get 503 until it is", exc)
    except ShipperError as exc:
        _fail(exc)
        return
    listen_host = host or settings.webhook_host
    listen_port = port or settings.webhook_port
    log.info(
        "webhook listening on %s:%d; authentication: %s; enrichment: %s; notifications: %d receivers",
        listen_host,
        listen_port,
        ", ".join(webhook.auth.methods),
        "on" if webhook.enricher else "off",
        len(settings.notify_url_list()),
    )
    log.info(
        "limits: headers within %g s, bodies within %g s, %d connections, %d deliveries and %d body bytes "
        "at once (docs/security.md)",
        settings.webhook_header_timeout_seconds,
        settings.webhook_body_timeout_seconds,
        settings.webhook_max_connections,
        settings.webhook_max_concurrent_deliveries,
        settings.webhook_max_request_memory_bytes,
    )
    if webhook.auth.insecure:
        log.warning("authentication is OFF (--insecure-no-auth): anyone who reaches the port can write")
    run_forever(webhook, listen_host, listen_port)


@click.command()
@click.option(
    "--workspace",
    "workspaces",
    multiple=True,
    help="Workspace resource id (repeatable). Default: SHIPPER_AZUREML_WORKSPACES.",
)
@click.option(
    "--hours",
    type=float,
    help="Jobs created this recently (default SHIPPER_AZUREML_RECONCILE_LOOKBACK_HOURS).",
)
@click.option(
    "--max-jobs", type=int, default=1000, show_default=True, help="At most this many jobs per workspace."
)
@click.option("--dry-run", is_flag=True, help="Say which runs would be written; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def reconcile(
    obj: Any,
    workspaces: tuple[str, ...],
    hours: float | None,
    max_jobs: int,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Write the Azure ML runs whose Event Grid events never arrived.

    Lists recent jobs (and pipeline steps) through azure-ai-ml with DefaultAzureCredential and
    writes each run whose mlops-runs document is missing or shows another status.
    """
    from shipper.azure.reconcile import reconcile as run_reconcile
    from shipper.core.events import parse_workspace
    from shipper.sink.client import build_client, build_writer, probe
    from shipper.webhook.server import azure_jobs_client, workspaces_of

    try:
        settings = obj.settings
        if workspaces:
            targets = []
            for resource_id in workspaces:
                workspace = parse_workspace(resource_id)
                if workspace is None:
                    raise ConfigError(
                        [
                            f"--workspace {resource_id!r} is not a workspace resource id; write it as "
                            "/subscriptions/<id>/resourceGroups/<group>/providers/"
                            "Microsoft.MachineLearningServices/workspaces/<name>"
                        ]
                    )
                targets.append(workspace)
        else:
            try:
                targets = workspaces_of(settings)
            except ValueError as exc:
                raise ConfigError([str(exc)]) from None
        if not targets:
            raise ConfigError(
                ["no workspace to reconcile: pass --workspace or set SHIPPER_AZUREML_WORKSPACES"]
            )
        jobs = azure_jobs_client()
        if jobs is None:
            raise ConfigError(
                ["reconcile needs azure-ai-ml and azure-identity: pip install 'shipper[azure]'"]
            )
        client = build_client(settings)
        caps = probe(client)
        writer = build_writer(client, settings, ilm=caps.ilm)
        summary = run_reconcile(
            client,
            writer,
            jobs,
            targets,
            lookback=timedelta(hours=hours or settings.azureml_reconcile_lookback_hours),
            max_jobs=max_jobs,
            dry_run=dry_run,
        )
    except ShipperError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(orjson.dumps(summary.as_dict()).decode())
    else:
        click.echo(("(dry run) " if dry_run else "") + summary.line())
        for run_id in summary.written:
            click.echo(f"  {'would write' if dry_run else 'wrote'} run {run_id}")
        for error in summary.errors:
            click.echo(f"  error: {error}", err=True)
    if summary.errors:
        sys.exit(3)
