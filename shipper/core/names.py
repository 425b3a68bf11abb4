"""Names of everything the shipper writes to. Kibana, pipelines and users rely on them."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

METRICS_FAMILY = "mlops-metrics"
EVENTS_FAMILY = "mlops-events"
RUNS_INDEX = "mlops-runs"
MODELS_INDEX = "mlops-models"
DEAD_LETTER_INDEX = "mlops-dead-letter"
STATE_INDEX = "mlops-shipper-state"
SCORING_DATA_STREAM_PATTERN = "logs-mlops.scoring-*"


def partition_families() -> tuple[str, ...]:
    """Families stored as concrete monthly indices partitioned by the document's own time."""
    return (METRICS_FAMILY, EVENTS_FAMILY)


def partition_suffix(timestamp_ms: int) -> str:
    return _day_suffix(timestamp_ms // 86_400_000)


@lru_cache(maxsize=4096)
def _day_suffix(day: int) -> str:
    # Called once per metric point; points of one run share few days.
    moment = datetime.fromtimestamp(day * 86_400, UTC)
    return f"{moment.year:04d}.{moment.month:02d}"


def metrics_index(timestamp_ms: int) -> str:
    return f"{METRICS_FAMILY}-{partition_suffix(timestamp_ms)}"


def events_index(timestamp_ms: int) -> str:
    return f"{EVENTS_FAMILY}-{partition_suffix(timestamp_ms)}"


def month_start_ms(suffix: str) -> int:
    """`2024.05` -> epoch milliseconds of 2024-05-01T00:00Z."""
    year, month = suffix.split(".")
    return int(datetime(int(year), int(month), 1, tzinfo=UTC).timestamp() * 1000)
