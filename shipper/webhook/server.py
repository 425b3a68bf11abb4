"""Wiring of `shipper serve`: settings -> Elasticsearch client, writer, service, background workers,
app; and uvicorn to run it, in the foreground (the command) or in a thread (tests, bench).

The webhook's Elasticsearch client has its request timeout bounded by the write budget, so that
a hung cluster is answered 503 well inside Event Grid's 30 seconds. Enrichment, notifications,
the MLflow sync trigger and reconcile run on their own threads with the ordinary client.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from elasticsearch import Elasticsearch
from fastapi import FastAPI

from shipper.azure.enrich import Enricher
from shipper.azure.jobs import JobsClient
from shipper.config import Settings
from shipper.core.events import Workspace, parse_workspace
from shipper.sink.bulk import BulkWriter
from shipper.sink.client import build_client, build_writer
from shipper.webhook.app import create_app
from shipper.webhook.auth import Authenticator, EntraVerifier
from shipper.webhook.limits import DeliveryLimits, bounded_protocol
from shipper.webhook.notify import Notifier
from shipper.webhook.service import WebhookService
from shipper.webhook.sync_trigger import SyncTrigger

log = logging.getLogger(__name__)


@dataclass
class Webhook:
    """Everything `shipper serve` runs, built from settings; `start`/`stop` the background parts."""

    settings: Settings
    client: Elasticsearch
    service: WebhookService
    auth: Authenticator
    app: FastAPI
    enricher: Enricher | None = None
    notifier: Notifier | None = None
    trigger: SyncTrigger | None = None
    reconcile_every: float = 0.0
    jobs: JobsClient | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for part in (self.enricher, self.notifier, self.trigger):
            if part is not None:
                part.start()
        if self.reconcile_every > 0 and self.jobs is not None:
            thread = threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for part in (self.enricher, self.notifier, self.trigger):
            if part is not None:
                part.stop()
        for thread in self._threads:
            thread.join(5)
        self.service.close()

    def use_ilm(self, ilm: bool) -> None:
        """Tell the writers whether the cluster has ILM (known only once it answers)."""
        self.service.writer.ilm = ilm
        if self.enricher is not None:
            self.enricher.writer.ilm = ilm

    def wait_idle(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        for part in (self.enricher, self.notifier, self.trigger):
            if part is not None and not part.wait_idle(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def _reconcile_loop(self) -> None:
        from shipper.azure.reconcile import reconcile

        assert self.jobs is not None
        workspaces = workspaces_of(self.settings)
        writer = build_writer(self.client, self.settings)
        while not self._stop.wait(self.reconcile_every):
            try:
                summary = reconcile(
                    self.client,
                    writer,
                    self.jobs,
                    workspaces,
                    lookback=timedelta(hours=self.settings.azureml_reconcile_lookback_hours),
                )
                log.info("%s", summary.line())
            except Exception as exc:
                log.error("reconcile pass failed: %s", exc)


def workspaces_of(settings: Settings) -> list[Workspace]:
    found = []
    for resource_id in settings.azureml_workspaces:
        workspace = parse_workspace(resource_id)
        if workspace is None:
            raise ValueError(
                f"SHIPPER_AZUREML_WORKSPACES: {resource_id!r} is not a workspace resource id; write it as "
                "/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.MachineLearningServices/"
                "workspaces/<name>"
            )
        found.append(workspace)
    return found


def azure_jobs_client() -> JobsClient | None:
    """The azure-ai-ml backed client, or None when the `azure` extra is not installed."""
    try:
        if any(importlib.util.find_spec(name) is None for name in ("azure.ai.ml", "azure.identity")):
            return None
    except ModuleNotFoundError:  # no `azure` namespace at all
        return None
    from shipper.azure.jobs import AzureMLJobs

    return AzureMLJobs()


# Where DefaultAzureCredential can find a credential, told apart without importing azure-identity
# (about 0.6 s of CPU at start): Azure's own variables (service principal, workload identity, a
# managed identity's client id or endpoint), the sign-in tools it asks (Azure CLI, Developer CLI,
# PowerShell), its shared token cache, and Azure compute, whose metadata endpoint serves managed
# identities without any variable (an Azure VM carries this chassis asset tag).
AZURE_CREDENTIAL_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TENANT_ID",
    "AZURE_USERNAME",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
)
AZURE_SIGN_IN_TOOLS = ("az", "azd", "pwsh")
AZURE_TOKEN_CACHE = Path.home() / ".IdentityService" / "msal.cache"
AZURE_VM_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
ASSET_TAG_FILE = Path("/sys/class/dmi/id/chassis_asset_tag")


def azure_credential_possible(
    environ: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
    token_cache: Path | None = None,
    asset_tag_file: Path | None = None,
) -> bool:
    """Whether anything on this machine could give DefaultAzureCredential a credential; False means
    it certainly finds none, so azure-identity need not even be imported to ask it."""
    environ = os.environ if environ is None else environ
    if any(environ.get(name, "").strip() for name in AZURE_CREDENTIAL_ENV):
        return True
    if any(which(tool) for tool in AZURE_SIGN_IN_TOOLS) or (token_cache or AZURE_TOKEN_CACHE).is_file():
        return True
    try:
        return (asset_tag_file or ASSET_TAG_FILE).read_text().strip() == AZURE_VM_ASSET_TAG
    except OSError:
        return False


def azure_credential_problem(timeout: float = 5.0) -> str | None:
    """Why DefaultAzureCredential has no credential at all, or None. Asked once at start, so that a
    machine without any Azure identity gets one line instead of a failed enrichment per event.

    None also when a credential exists but its token request failed (Azure unreachable: enrichment
    retries later) or is still running after `timeout` (a slow managed identity endpoint)."""
    if not azure_credential_possible():  # said without importing azure-identity
        return (
            "no Azure credential is configured on this machine (no AZURE_* credential variables, no "
            "managed identity endpoint, no az, azd or pwsh sign-in, not an Azure VM)"
        )
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            DefaultAzureCredential().get_token("https://management.azure.com/.default")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=ask, name="azure-credential-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return None
    exc = outcome[0]
    # The chain raises with a cause when a configured credential failed, without one when every
    # credential said it is not configured here.
    if isinstance(exc, ClientAuthenticationError) and exc.__cause__ is None:
        return "no Azure credential is configured on this machine (DefaultAzureCredential found none)"
    log.info("the Azure credential could not get a token at start (%s); enrichment retries per run", exc)
    return None


def build_webhook(
    settings: Settings,
    *,
    client: Elasticsearch | None = None,
    insecure_no_auth: bool = False,
    enrich: bool = True,
    sync_on_terminal: bool = True,
    jobs: JobsClient | None = None,
    make_engine: Callable[[], Any] | None = None,
    ilm: bool = False,
) -> Webhook:
    """Raise ValueError when the configuration cannot make a safe webhook (e.g. no credentials)."""

    entra = None
    if settings.webhook_entra_tenant_id:
        entra = EntraVerifier(
            settings.webhook_entra_tenant_id,
            settings.webhook_entra_audience,
            settings.webhook_entra_issuers,
            settings.webhook_entra_jwks_url,
            settings.webhook_entra_required_role,
            allowed_applications=settings.webhook_entra_allowed_applications,
            jwks_timeout_seconds=settings.webhook_entra_jwks_timeout_seconds,
        )
    auth = Authenticator(
        settings.webhook_secrets(), entra, insecure_no_auth or settings.webhook_insecure_no_auth
    )
    base = client if client is not None else build_client(settings)
    budget = settings.webhook_write_budget_seconds
    bounded = base.options(request_timeout=min(settings.elasticsearch_request_timeout, budget))
    writer = build_writer(bounded, settings, ilm=ilm, max_retry_seconds=budget)
    background_writer = build_writer(base, settings, ilm=ilm)

    enricher = None
    if enrich and settings.azureml_enrichment:
        if jobs is None:
            jobs = azure_jobs_client()
            no_credential = azure_credential_problem() if jobs is not None else None
            if no_credential is not None:
                log.warning(
                    "job enrichment is off: %s; events and runs are written without `azureml.job.*`. "
                    "Give the shipper an identity that can read the workspace (AZURE_CLIENT_ID, "
                    "AZURE_TENANT_ID and AZURE_CLIENT_SECRET, a managed or workload identity, or "
                    "`az login`), or set SHIPPER_AZUREML_ENRICHMENT=false to silence this",
                    no_credential,
                )
                jobs = None
            elif jobs is None:
                log.warning(
                    "job enrichment is off: azure-ai-ml is not installed (pip install 'shipper[azure]'); "
                    "set SHIPPER_AZUREML_ENRICHMENT=false to silence this"
                )
        if jobs is not None:
            enricher = Enricher(
                jobs,
                base,
                background_writer,
                max_seconds=settings.azureml_enrichment_max_seconds,
                workers=settings.azureml_enrichment_workers,
                queue_size=settings.azureml_enrichment_queue_size,
            )

    notifier = None
    urls = settings.notify_url_list()
    if urls:
        notifier = Notifier(
            urls,
            settings.notify_on,
            settings.notify_experiments,
            coalesce_above=settings.notify_coalesce_above,
        )

    trigger = None
    if sync_on_terminal and settings.webhook_sync_on_terminal:
        if make_engine is None and os.environ.get("MLFLOW_TRACKING_URI"):
            make_engine = _engine_factory(settings, base, background_writer)
        if make_engine is not None:
            trigger = SyncTrigger(make_engine)
        else:
            log.info("no MLflow sync on run end: MLFLOW_TRACKING_URI is not set")

    service = WebhookService(
        bounded,
        writer,
        write_budget_seconds=budget,
        retry_after_seconds=settings.webhook_retry_after_seconds,
        max_events=settings.webhook_max_events,
        allowed_topics=settings.webhook_allowed_topics,
        enricher=enricher,
        notifier=notifier,
        on_terminal=(lambda run: trigger.request(run.run_id, run.experiment_name)) if trigger else None,
        max_age_days=settings.webhook_event_max_age_days,
        max_future_days=settings.webhook_event_max_future_days,
    )
    limits = DeliveryLimits(
        settings.webhook_max_concurrent_deliveries, settings.webhook_max_request_memory_bytes
    )
    app = create_app(service, auth, max_body_bytes=settings.webhook_max_body_bytes, limits=limits)
    return Webhook(
        settings,
        base,
        service,
        auth,
        app,
        enricher,
        notifier,
        trigger,
        reconcile_every=settings.azureml_reconcile_interval_seconds,
        jobs=jobs if settings.azureml_workspaces else None,
    )


def _engine_factory(settings: Settings, client: Elasticsearch, writer: BulkWriter) -> Callable[[], Any]:
    def make() -> Any:
        from shipper.sources.mlflow_tracking import MlflowSource
        from shipper.sync.engine import SyncEngine

        return SyncEngine(MlflowSource(), client, writer, settings)

    return make


class RedactQuery(logging.Filter):
    """Strips the query string (which carries `?code=<secret>`) from uvicorn's access lines, should
    anything turn that log on."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?<redacted>", *args[3:])
        return True


def uvicorn_config(app: FastAPI, host: str, port: int, settings: Settings | None = None) -> uvicorn.Config:
    """uvicorn as `shipper serve` runs it, with the connection bounds of `settings` (limits.py)."""
    # No access log (request lines carry ?code=), and the shipper's own logging setup stays.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())

    def bound(name: str) -> Any:  # the setting, or its default (without reading the environment)
        return getattr(settings, name) if settings is not None else Settings.model_fields[name].default

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        timeout_keep_alive=75,
        lifespan="off",
        http=bounded_protocol(
            bound("webhook_header_timeout_seconds"),
            bound("webhook_body_timeout_seconds"),
            bound("webhook_max_header_bytes"),
        ),
        h11_max_incomplete_event_size=bound("webhook_max_header_bytes"),
        limit_concurrency=bound("webhook_max_connections"),
    )


def run_forever(webhook: Webhook, host: str, port: int, drain_seconds: float = 10.0) -> None:
    """Serve until SIGTERM/SIGINT, then give queued follow-ups (enrichment, notifications) a moment
    and stop. uvicorn handles the signals (it stops taking requests and finishes the ones in
    flight) and afterwards re-raises them to the handlers it found: those are no-ops here, so the
    shutdown below still runs and the command exits 0."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    webhook.start()
    try:
        uvicorn.Server(uvicorn_config(webhook.app, host, port, webhook.settings)).run()
    finally:
        if not webhook.wait_idle(drain_seconds):
            log.warning("stopping with follow-ups still queued; affected runs keep enrichment 'pending'")
        webhook.stop()
        log.info("stopped")
