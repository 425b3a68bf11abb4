"""The shipper's own Prometheus metrics, named `shipper_<name>_<unit>` (counters end in `_total`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
