"""`shipper sync` (one pass) and `shipper run` (passes until stopped)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click
import orjson

from shipper.commands._common import client_and_capabilities, fail, pass_context
from shipper.config import Settings, mlflow_tracking_uri
from shipper.context import Context
from shipper.errors import ShipperError

log = logging.getLogger("shipper")


def _engine(settings: Settings, progress: bool) -> Any:
    from shipper.sink.client import build_writer
    from shipper.sources.mlflow_tracking import MlflowSource
    from shipper.sync.engine import Progress, SyncEngine

    tracking_uri = mlflow_tracking_uri()  # offline, before anything is contacted
    client, caps = client_and_capabilities(settings)
    writer = build_writer(client, settings, ilm=caps.ilm)
    source = MlflowSource(tracking_uri)
    source.ping(settings.mlflow_connect_timeout_seconds)
    return SyncEngine(source, client, writer, settings, Progress() if progress else None), caps


def _emit(summary: Any, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(summary.as_dict()).decode())
    else:
        click.echo(summary.line())


@click.command()
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
        fail(exc)
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


@click.command()
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
        fail(exc)
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
