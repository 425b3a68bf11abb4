"""Bulk writing with the guarantees of DESIGN.md "Delivery semantics".

- Transient failures (connection errors, timeouts, HTTP 429 and 5xx, for the whole request or for
  single items) are retried with exponential backoff until `max_retry_seconds` runs out; then
  `WriteError` is raised and the caller must not move its checkpoint.
- Every other rejected document goes to the dead-letter index with the error and the original,
  and the rest of its batch proceeds.
- A delete of a document that is already gone counts as done.

elasticsearch-py's `streaming_bulk` does the chunking (by count and bytes) and per-item 429 retries;
tenacity wraps it for whole-request failures. Every operation carries a deterministic `_id`, so
re-sending a batch after an ambiguous failure cannot duplicate anything.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from elasticsearch import ApiError, Elasticsearch, TransportError, helpers
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from shipper import telemetry
from shipper.errors import WriteError
from shipper.setup.names import DEAD_LETTER_INDEX, month_start_ms, partition_families

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class BulkResult:
    written: int = 0
    noop: int = 0
    dead_lettered: int = 0
    retries: int = 0
    # (index, id) of optimistic-concurrency conflicts, when the caller asked to get them back
    conflicts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: BulkResult) -> None:
        self.written += other.written
        self.noop += other.noop
        self.dead_lettered += other.dead_lettered
        self.retries += other.retries
        self.conflicts += other.conflicts


@dataclass
class _Retry(Exception):
    """Some or all operations failed transiently; `pending` are the ones to send again."""

    pending: list[dict[str, Any]]
    reason: str


@dataclass
class BulkWriter:
    client: Elasticsearch
    max_actions: int = 5000
    max_bytes: int = 10 * 1024 * 1024
    max_retry_seconds: float = 600.0
    ilm: bool = False
    dead_letters: bool = True
    _known_indices: set[str] = field(default_factory=set)

    def write(
        self,
        actions: Sequence[dict[str, Any]],
        max_retry_seconds: float | None = None,
        conflicts_retry: bool = False,
    ) -> BulkResult:
        """Write bulk actions (the helpers' dict form, each with `_index` and `_id`).

        With `conflicts_retry`, version conflicts (409) are handed back in `result.conflicts` for
        the caller to re-read and retry, instead of being dead-lettered."""
        result = BulkResult()
        if not actions:
            return result
        budget = self.max_retry_seconds if max_retry_seconds is None else max_retry_seconds
        rejected: list[tuple[dict[str, Any], Mapping[str, Any]]] = []
        pending = list(actions)

        def note_retry(state: RetryCallState) -> None:
            result.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            reason = exc.reason if isinstance(exc, _Retry) else repr(exc)
            telemetry.BULK_RETRIES.inc()
            log.warning("bulk write will be retried (attempt %d): %s", state.attempt_number, reason)

        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(_Retry),
                stop=stop_after_delay(budget),
                wait=wait_exponential_jitter(multiplier=0.5, max=20.0),
                before_sleep=note_retry,
                reraise=True,
            ):
                with attempt:
                    pending = self._send(pending, result, rejected, conflicts_retry)
        except _Retry as exc:
            raise WriteError(
                f"Elasticsearch did not take {len(exc.pending)} documents within {budget:.0f}s "
                f"({exc.reason}); nothing was checkpointed, the next pass will send them again"
            ) from None
        if rejected:
            if self.dead_letters:
                self._dead_letter(rejected, budget)
            result.dead_lettered += len(rejected)
        return result

    # -- internals ------------------------------------------------------------------------------

    def _send(
        self,
        pending: list[dict[str, Any]],
        result: BulkResult,
        rejected: list[tuple[dict[str, Any], Mapping[str, Any]]],
        conflicts_retry: bool = False,
    ) -> list[dict[str, Any]]:
        self._prepare_partitions(pending)
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for queued in pending:
            by_key.setdefault((queued["_index"], str(queued["_id"])), []).append(queued)
        again: list[dict[str, Any]] = []
        try:
            with telemetry.BULK_SECONDS.time():
                outcomes = list(
                    helpers.streaming_bulk(
                        self.client,
                        pending,
                        chunk_size=self.max_actions,
                        max_chunk_bytes=self.max_bytes,
                        raise_on_error=False,
                        raise_on_exception=True,
                        max_retries=3,
                        initial_backoff=1,
                        max_backoff=10,
                        yield_ok=True,
                    )
                )
        except (TransportError, ApiError) as exc:
            status = getattr(getattr(exc, "meta", None), "status", None)
            if isinstance(exc, ApiError) and status not in RETRYABLE_STATUS:
                raise WriteError(
                    f"Elasticsearch rejected a bulk request with HTTP {status}: {exc.message}; "
                    "check the credentials' privileges on the mlops-* indices"
                ) from None
            telemetry.ES_ERRORS.labels(kind="request").inc()
            raise _Retry(pending, f"{type(exc).__name__}: {exc}") from None
        for ok, item in outcomes:
            op_name, detail = next(iter(item.items()))
            key = (str(detail.get("_index")), str(detail.get("_id")))
            candidates = by_key.get(key)
            action: dict[str, Any] | None = candidates.pop() if candidates else None
            status = int(detail.get("status", 0))
            if ok:
                if detail.get("result") == "noop":
                    result.noop += 1
                else:
                    result.written += 1
                continue
            if action is None:  # pragma: no cover - Elasticsearch echoes index and id
                raise WriteError(f"bulk response item for unknown document {key}: {detail}")
            if status == 409 and conflicts_retry:
                result.conflicts.append(key)
            elif status == 404 and op_name == "delete":
                result.noop += 1  # already gone: the goal of a delete
            elif status in RETRYABLE_STATUS:
                again.append(action)
            else:
                telemetry.ES_ERRORS.labels(kind="rejected").inc()
                rejected.append((action, detail))
        if again:
            raise _Retry(again, f"{len(again)} documents answered with a retryable status")
        return []

    def _prepare_partitions(self, actions: Iterable[dict[str, Any]]) -> None:
        """With ILM, create a time partition before its first write so that its retention counts
        from the month its documents belong to, not from the day a backfill created it."""
        if not self.ilm:
            return
        families = partition_families()
        for index in {a["_index"] for a in actions} - self._known_indices:
            family = next((f for f in families if index.startswith(f + "-")), None)
            if family is not None:
                suffix = index[len(family) + 1 :]
                try:
                    self.client.indices.create(
                        index=index,
                        settings={"index.lifecycle.origination_date": month_start_ms(suffix)},
                    )
                except ApiError as exc:
                    if exc.meta.status != 400 or "resource_already_exists" not in str(exc.message):
                        raise
            self._known_indices.add(index)

    def _dead_letter(self, rejected: list[tuple[dict[str, Any], Mapping[str, Any]]], budget: float) -> None:
        now = datetime.now(UTC).isoformat()
        letters = []
        for action, detail in rejected:
            error = detail.get("error") or {}
            original = dict(action)
            key = f"{action['_index']}/{action['_id']}"
            letters.append(
                {
                    "_op_type": "index",
                    "_index": DEAD_LETTER_INDEX,
                    # One dead letter per rejected document, however often it is replayed.
                    "_id": hashlib.sha256(key.encode()).hexdigest()[:40],
                    "_source": {
                        "@timestamp": now,
                        "error": {
                            "type": error.get("type", "unknown"),
                            "message": error.get("reason", str(error))[:4000],
                        },
                        "http": {"response": {"status_code": detail.get("status")}},
                        "mlops": {
                            "dead_letter": {
                                "index": action["_index"],
                                "id": str(action["_id"]),
                                "operation": action.get("_op_type", "index"),
                                "original": orjson.dumps(original, default=str).decode(),
                            }
                        },
                    },
                }
            )
            log.error(
                "Elasticsearch rejected document %s (%s: %s); kept in %s",
                key,
                error.get("type"),
                error.get("reason"),
                DEAD_LETTER_INDEX,
            )
        # The dead letters get the same retry budget; if even they cannot be written, the pass fails.
        inner = BulkWriter(self.client, self.max_actions, self.max_bytes, budget, dead_letters=False)
        outcome = inner.write(letters)
        if outcome.dead_lettered:
            raise WriteError(
                f"the dead-letter index {DEAD_LETTER_INDEX} rejects documents; run `shipper setup`"
            )
