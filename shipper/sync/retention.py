"""Retention for clusters without ILM: delete whole monthly partitions past the retention age.

A partition is deleted only when its newest possible document (the end of its month) is older than
the retention, so nothing younger than the retention is ever removed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from elasticsearch import Elasticsearch

from shipper.core.names import month_start_ms, partition_families


def expired(index: str, retention_days: int, now: datetime) -> bool:
    for family in partition_families():
        if index.startswith(family + "-"):
            suffix = index[len(family) + 1 :]
            try:
                start = datetime.fromtimestamp(month_start_ms(suffix) / 1000, UTC)
            except ValueError:
                return False
            month_end = (start + timedelta(days=32)).replace(day=1)
            return month_end + timedelta(days=retention_days) < now
    return False


def prune(client: Elasticsearch, retention_days: int, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    names = client.indices.get(index=[f"{f}-*" for f in partition_families()], allow_no_indices=True)
    doomed = sorted(name for name in names if expired(name, retention_days, now))
    for index in doomed:
        client.indices.delete(index=index)
    return doomed
