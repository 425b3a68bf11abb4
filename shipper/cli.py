"""The `shipper` command line.

Exit codes: 0 success; 1 unexpected error; 2 configuration invalid; 3 Elasticsearch or MLflow
unreachable or refusing; 4 an asset of someone else's is in the way of `setup`; 5 a write failed
after all retries (nothing was checkpointed; run again); 6 Kibana refused some saved objects.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
import orjson

from shipper import __version__
from shipper.commands import layer_commands
from shipper.config import (
    Settings,
    env_name,
    log_format_asked,
    mlflow_tracking_uri,
    mlflow_tracking_uri_given,
    mlflow_uri_problem,
    redact_uri,
)
from shipper.context import Context
from shipper.errors import ConfigError, ConnectivityError, ShipperError

log = logging.getLogger("shipper")


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="shipper")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file of settings (environment variables SHIPPER_* win over it).",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Overrides SHIPPER_LOG_FORMAT.")
@click.pass_context
def main_group(ctx: click.Context, config_file: Path | None, log_format: str | None) -> None:
    """Ship MLflow and Azure Machine Learning telemetry into Elasticsearch.

    Typical use: `shipper validate`, `shipper check`, `shipper setup`, then `shipper sync` once or
    `shipper run` as a service. MLflow is read from MLFLOW_TRACKING_URI.
    """
    ctx.obj = Context(config_file, log_format)
    from shipper import logs

    logs.quiet_libraries()


for _command in layer_commands():
    main_group.add_command(_command)


def _fail(exc: ShipperError) -> None:
    from shipper import logs

    logs.fail(exc, exc.exit_code, type(exc).__name__)


def _client_and_capabilities(settings: Settings) -> tuple[Any, Any]:
    from shipper.sink.client import build_client, probe

    client = build_client(settings)
    return client, probe(client)


@main_group.command()
@pass_context
def validate(ctx: Context) -> None:
    """Check the configuration offline: every problem is listed with its fix.

    Also checks MLflow's MLFLOW_TRACKING_URI (scheme, shape, plugin installed). Exit 0 when
    valid, 2 otherwise. Contacts nothing.
    """
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = ctx.settings
    except ConfigError as exc:
        problems += exc.problems
    except ShipperError as exc:
        _fail(exc)
        return
    uri = mlflow_tracking_uri_given()
    uri_problem = mlflow_uri_problem(uri) if uri else None
    if uri_problem:
        problems.append(uri_problem)
    if problems or settings is None:
        _fail(ConfigError(problems))
        return
    click.echo("configuration is valid")
    # model_dump keeps SecretStr values, whose str() is masked: secrets never print.
    for name, value in settings.model_dump().items():
        click.echo(f"  {env_name(name)}={'' if value is None else value}")
    click.echo(f"  MLFLOW_TRACKING_URI={redact_uri(uri)}")
    if not uri:
        click.echo(
            "note: MLFLOW_TRACKING_URI is not set: `check`, `sync` and `run` will refuse to start "
            "(`serve` runs without it, with no sync on run end); set it with "
            "export MLFLOW_TRACKING_URI=https://mlflow.example:5000"
        )
    serve_refuses = not (
        settings.webhook_secrets() or settings.webhook_entra_tenant_id or settings.webhook_insecure_no_auth
    )
    if serve_refuses:
        click.echo(
            "note: `shipper serve` will refuse to start: set SHIPPER_WEBHOOK_SECRET or "
            "SHIPPER_WEBHOOK_ENTRA_TENANT_ID (other commands do not need them)"
        )


@main_group.command()
@pass_context
def check(ctx: Context) -> None:
    """Check connectivity and capabilities: Elasticsearch version, ILM, security, credentials, MLflow,
    and Kibana's status and version when SHIPPER_KIBANA_URL is set.

    Exit 0 when everything answers, 3 when something does not.
    """
    try:
        settings = ctx.settings
        tracking_uri = mlflow_tracking_uri()
        _client, caps = _client_and_capabilities(settings)
        click.echo(
            f"elasticsearch: {caps.version}; ILM: {'yes' if caps.ilm else 'no'}; "
            f"security: {'on' if caps.security else 'off'}; "
            f"ingest processors: {len(caps.ingest_processors)}"
        )
        if caps.major < 8:
            raise ConnectivityError(f"Elasticsearch {caps.version} is too old; 8.x or newer is needed")
        from shipper.sources.mlflow_tracking import MlflowSource

        source = MlflowSource(tracking_uri)
        source.ping(settings.mlflow_connect_timeout_seconds)
        click.echo(f"mlflow: {source.tracking_uri} answers")
        if settings.kibana_url:
            from shipper.kibana.setup import check_kibana

            for line in check_kibana(settings):
                click.echo(line)
    except ShipperError as exc:
        _fail(exc)


@main_group.command()
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
        client, caps = _client_and_capabilities(settings)
        if export_dir is not None:
            from shipper.setup.installer import export

            written = export(caps, settings.retention_days, settings.logs_retention_days, export_dir)
            click.echo(f"wrote {len(written)} request bodies under {export_dir}; Elasticsearch unchanged")
            return
        changes = install(
            client, caps, settings.retention_days, settings.logs_retention_days, dry_run=dry_run
        )
    except ShipperError as exc:
        _fail(exc)
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
        _fail(exc)


def _engine(settings: Settings, progress: bool) -> Any:
    from shipper.sink.client import build_writer
    from shipper.sources.mlflow_tracking import MlflowSource
    from shipper.sync.engine import Progress, SyncEngine

    tracking_uri = mlflow_tracking_uri()  # offline, before anything is contacted
    client, caps = _client_and_capabilities(settings)
    writer = build_writer(client, settings, ilm=caps.ilm)
    source = MlflowSource(tracking_uri)
    source.ping(settings.mlflow_connect_timeout_seconds)
    return SyncEngine(source, client, writer, settings, Progress() if progress else None), caps


def _emit(summary: Any, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(summary.as_dict()).decode())
    else:
        click.echo(summary.line())


@main_group.command()
@click.option(
    "--full", is_flag=True, help="Ignore checkpoints and ship everything again (overwrites; no duplicates)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the pass summary as JSON.")
@pass_context
def sync(ctx: Context, full: bool, as_json: bool) -> None:
    """One pass: ship what changed in MLflow since the last pass (everything the first time).

    Experiments, runs (params, tags, latest metrics), every metric point of every run, registered
    model versions and MLflow 3 logged models. Filters: SHIPPER_MLFLOW_EXPERIMENTS,
    SHIPPER_MLFLOW_EXCLUDE_EXPERIMENTS, SHIPPER_MLFLOW_SINCE.
    """
    try:
        engine, _ = _engine(ctx.settings, progress=True)
        stop = _stop_on_signals()
        summary = engine.run_pass(full=full, stop=stop)
    except ShipperError as exc:
        _fail(exc)
        return
    _emit(summary, as_json)


def _stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT ask the current pass to finish its batch and stop."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second signal: stop now
            raise SystemExit(128 + signum)
        log.info("received %s; finishing the current batch, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


@main_group.command()
@click.option(
    "--interval", type=float, help="Seconds between passes (default SHIPPER_SYNC_INTERVAL_SECONDS)."
)
@pass_context
def run(ctx: Context, interval: float | None) -> None:
    """Poll MLflow until stopped: a sync pass, a pause, again.

    On SIGTERM or Ctrl-C the current batch is finished and checkpointed, then it exits 0.
    Without ILM it also deletes time-partitioned indices older than SHIPPER_RETENTION_DAYS
    (of several pollers, SHIPPER_SHARD=0/n alone does).
    """
    from shipper.sync.retention import prune

    try:
        settings = ctx.settings
        engine, caps = _engine(settings, progress=False)
    except ShipperError as exc:
        _fail(exc)
        return
    stop = _stop_on_signals()
    pause = interval if interval is not None else settings.sync_interval_seconds
    failures = 0
    while not stop.is_set():
        try:
            summary = engine.run_pass(stop=stop)
            log.info("%s", summary.line())
            if not caps.ilm and settings.leads_pollers():  # one retention pass, not one per shard
                for index in prune(engine.client, settings.retention_days):
                    log.info("retention: deleted %s", index)
            failures = 0
        except ShipperError as exc:
            failures += 1
            log.error("sync pass failed (%d in a row): %s", failures, exc)
        except Exception as exc:  # e.g. Elasticsearch or MLflow down between passes: back off, never exit
            failures += 1
            from elasticsearch import ApiError, TransportError

            if isinstance(exc, ApiError | TransportError):  # said in a sentence, without a traceback
                from shipper.sink.client import connectivity_error

                log.error("sync pass failed (%d in a row): %s", failures, connectivity_error(exc))
            else:
                log.exception("sync pass failed unexpectedly (%d in a row)", failures)
        stop.wait(pause if failures == 0 else min(pause * 2**failures, 600))
    log.info("stopped")


def _format_asked(argv: list[str]) -> str | None:
    for position, arg in enumerate(argv):
        if arg == "--log-format" and position + 1 < len(argv):
            return argv[position + 1]
        if arg.startswith("--log-format="):
            return arg.split("=", 1)[1]
    asked = log_format_asked()  # the settings may be what fails: this one is read alone
    return asked.value if asked else None


def main() -> None:
    from shipper import logs

    fmt = _format_asked(sys.argv[1:])
    try:
        main_group(prog_name="shipper")
    except ShipperError as exc:  # raised outside a command's own handling
        logs.fail(exc, exc.exit_code, type(exc).__name__, fmt)
    except Exception as exc:  # a bug: one sentence, and the traceback only where asked for
        log.debug("unexpected error", exc_info=True)
        logs.fail(
            RuntimeError(
                f"unexpected {type(exc).__name__}: {str(exc)[:500]}; this is a bug in the shipper: "
                "run again with SHIPPER_LOG_LEVEL=DEBUG for the traceback and report it"
            ),
            1,
            type(exc).__name__,
            fmt,
        )
