"""Entity documents (runs, model versions) written by several sources, newest view winning.

Each source owns some top-level fields of an entity (MLflow: `mlflow`, `ml`, `user`, `event`,
`@timestamp`; Azure ML events: `azureml`) and stamps its view with a source time in
`mlops.versions.<source>`. A write replaces only the writer's own fields, and only when its stamp is
not older than the stored one, so arrival order does not matter.

This is done with optimistic concurrency (read, merge, write with `if_seq_no`/`if_primary_term`,
repeat on conflict) rather than a Painless script: it needs no scripting module, so it works the
same on every Elasticsearch, including the minimal distribution the tests run on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch

from shipper.core.entities import EntityWrite, merge
from shipper.errors import WriteError
from shipper.sink.bulk import BulkResult, BulkWriter

MAX_ROUNDS = 10


def upsert_entities(
    client: Elasticsearch,
    writer: BulkWriter,
    writes: Sequence[EntityWrite],
    max_retry_seconds: float | None = None,
) -> BulkResult:
    result = BulkResult()
    # The same entity twice in one batch: apply them in stamp order, keeping the newest merge.
    pending: dict[tuple[str, str], list[EntityWrite]] = {}
    for write in sorted(writes, key=lambda w: w.stamp):
        pending.setdefault((write.index, write.id), []).append(write)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for _ in range(MAX_ROUNDS):
        if not pending:
            return result
        keys = list(pending)
        found = client.mget(docs=[{"_index": index, "_id": id_} for index, id_ in keys])["docs"]
        actions = []
        for key, doc in zip(keys, found, strict=True):
            exists = bool(doc.get("found"))
            merged: dict[str, Any] | None = doc.get("_source") if exists else None
            changed = False
            for write in pending[key]:
                after = merge(merged, write)
                if after is not None:
                    merged, changed = after, True
            if not changed or merged is None:
                result.noop += 1
                continue
            # Ingest pipelines do not see these writes' merge, so the shipper stamps ingestion.
            merged["event"] = {**(merged.get("event") or {}), "ingested": now}
            action: dict[str, Any] = {"_index": key[0], "_id": key[1], "_source": merged}
            if exists:
                action |= {
                    "_op_type": "index",
                    "if_seq_no": doc["_seq_no"],
                    "if_primary_term": doc["_primary_term"],
                }
            else:
                action["_op_type"] = "create"
            actions.append(action)
        outcome = writer.write(actions, max_retry_seconds=max_retry_seconds, conflicts_retry=True)
        result.add(outcome)
        conflicted = set(outcome.conflicts)
        pending = {k: v for k, v in pending.items() if k in conflicted}
    raise WriteError(
        f"{len(pending)} entity documents kept changing under concurrent writers "
        f"(e.g. {next(iter(pending))}); the next pass will try again"
    )
