"""The shipper's own Prometheus metrics, all in one place: `shipper_<name>_<unit>`, counters `_total`.

All live in the default registry that `/metrics` exposes. Label values are a small fixed set: event
types outside Azure ML's five are counted as `other`, so a sender cannot grow the series without bound.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shipper.core.events import KNOWN_TYPES

DOCUMENTS = Counter(
    "shipper_documents_total",
    "Documents handed to Elasticsearch, by family and outcome (written, noop, dead_lettered)",
    ["family", "outcome"],
)
BULK_SECONDS = Histogram(
    "shipper_bulk_request_seconds",
    "Latency of bulk writes, retries included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BULK_RETRIES = Counter("shipper_bulk_retries_total", "Bulk writes retried after a transient failure")
ES_ERRORS = Counter(
    "shipper_elasticsearch_errors_total",
    "Elasticsearch errors: `request` (whole request failed) or `rejected` (a document was refused)",
    ["kind"],
)
SYNC_PASSES = Counter("shipper_sync_passes_total", "MLflow sync passes, by outcome", ["outcome"])
MLFLOW_REQUESTS = Counter(
    "shipper_mlflow_requests_total", "Requests made to the MLflow tracking server, by kind", ["kind"]
)

# --- The webhook, enrichment, notifications and reconcile ---------------------------------------
DELIVERIES = Counter(
    "shipper_webhook_deliveries_total",
    "Webhook deliveries by outcome: accepted, validation, handshake, unauthorized, forbidden, "
    "invalid (400, dead-lettered), unavailable (503)",
    ["outcome"],
)
EVENTS = Counter(
    "shipper_webhook_events_total",
    "Events received by type (RunStatusChanged, ..., other) and outcome (written, invalid, unavailable)",
    ["event_type", "outcome"],
)
ACK_SECONDS = Histogram(
    "shipper_webhook_ack_seconds",
    "Time from a delivery's arrival to its answer, writes included",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RUN_STATUSES = Counter(
    "shipper_webhook_run_statuses_total", "Run status events written, by status", ["status"]
)
ENRICHMENTS = Counter(
    "shipper_azureml_enrichments_total",
    "Job enrichments by outcome: ok, failed, skipped (queue full), write_failed",
    ["outcome"],
)
ENRICHMENT_RETRIES = Counter(
    "shipper_azureml_enrichment_retries_total", "Azure ML calls retried after throttling or an outage"
)
ENRICHMENT_QUEUE = Gauge("shipper_azureml_enrichment_queue_runs", "Runs waiting for enrichment")
NOTIFICATIONS = Counter(
    "shipper_notifications_total",
    "Outgoing notifications by kind and outcome (sent, failed)",
    ["kind", "outcome"],
)
SYNC_TRIGGERS = Counter(
    "shipper_webhook_sync_triggers_total",
    "MLflow sync passes started because a run ended, by outcome (ok, failed)",
    ["outcome"],
)
RECONCILED = Counter(
    "shipper_azureml_reconciled_runs_total", "Runs written by reconcile because their events were missing"
)

_KNOWN_SHORT = frozenset(t.rsplit(".", 1)[-1] for t in KNOWN_TYPES)


def type_label(short_type: str) -> str:
    return short_type if short_type in _KNOWN_SHORT else "other"
