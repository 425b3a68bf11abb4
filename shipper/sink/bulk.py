"""Bulk writing with the guarantees of DESIGN.md "Delivery semantics".

- Transient failures (connection errors, timeouts, HTTP 429 and 5xx, for the whole request or for
  single items) are retried with exponential backoff until `max_retry_seconds` runs out; then
  `WriteError` is raised and the caller must not move its checkpoint.
- Every other rejected document goes to the dead-letter index with the error and the original,
  and the rest of its batch proceeds.
- A delete of a document that is already gone counts as done.
- A write refused because the cluster has no room for the shards of a new index
  (`cluster.max_shards_per_node`) is transient: it is retried, and never dead-lettered.
- A document that cannot be serialised at all (the callers guard against it; this is the last
  line) is dead-lettered with the reason, and the rest of its batch proceeds.

Requests are built and their answers read here (see `_chunks` for why not elasticsearch-py's bulk
helpers); tenacity retries whole requests and single items. Every operation carries a deterministic `_id`, so
re-sending a batch after an ambiguous failure cannot duplicate anything.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from elasticsearch import ApiError, Elasticsearch, TransportError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from shipper import telemetry
from shipper.core.events import json_text
from shipper.core.names import DEAD_LETTER_INDEX, month_start_ms, partition_families
from shipper.errors import WriteError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def out_of_shards(error: Mapping[str, Any] | None) -> bool:
    """An item error saying the cluster cannot open the shards of a new index: it can take the
    document once shards are freed or the limit is raised."""
    reason = str((error or {}).get("reason") or "")
    return "maximum normal shards open" in reason or "maximum shards open" in reason


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


_META_KEYS = ("if_seq_no", "if_primary_term", "routing", "retry_on_conflict", "pipeline", "require_alias")
_UPDATE_KEYS = ("doc", "doc_as_upsert", "upsert", "script", "scripted_upsert", "detect_noop")


def _serialise(action: Mapping[str, Any]) -> bytes:
    """One bulk action (elasticsearch-py's dict form) as NDJSON lines."""
    op = action.get("_op_type", "index")
    meta = {"_index": action["_index"], "_id": action["_id"]}
    if len(action) > 4:  # more than _op_type, _index, _id and a body: metadata to pass on
        meta.update((key, action[key]) for key in _META_KEYS if key in action)
    header = orjson.dumps({op: meta})
    if op == "delete":
        return header + b"\n"
    if op == "update":
        body = {key: action[key] for key in _UPDATE_KEYS if key in action}
    else:
        body = action["_source"]
    return header + b"\n" + orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS, default=_fallback) + b"\n"


def _fallback(value: Any) -> Any:
    # orjson refuses NaN/Infinity silently (null) and unknown types loudly; documents carry
    # neither by construction, so anything else is a programming error worth seeing.
    raise TypeError(f"cannot serialise {type(value).__name__} into a bulk request")


def _original(action: Mapping[str, Any]) -> str:
    try:
        return orjson.dumps(action, default=str).decode()
    except orjson.JSONEncodeError:  # lone surrogates, nesting too deep: written without recursion
        return json_text(action)


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
        again: list[dict[str, Any]] = []
        chunks = list(self._chunks(pending, rejected))
        for number, (chunk, body) in enumerate(chunks):
            try:
                with telemetry.BULK_SECONDS.time():
                    # Pre-serialised NDJSON: the client sends bytes through unchanged.
                    response = self.client.bulk(
                        operations=body,  # type: ignore[arg-type]
                        # Only what is read below; every item keeps its status, so order holds.
                        filter_path=["errors", "items.*.status", "items.*.error"],
                    )
            except (TransportError, ApiError) as exc:
                status = getattr(getattr(exc, "meta", None), "status", None)
                if isinstance(exc, ApiError) and status not in RETRYABLE_STATUS:
                    raise WriteError(
                        f"Elasticsearch rejected a bulk request with HTTP {status}: {exc.message}; "
                        "check the credentials' privileges on the mlops-* indices"
                    ) from None
                telemetry.ES_ERRORS.labels(kind="request").inc()
                unsent = [a for c, _ in chunks[number:] for a in c]
                raise _Retry(again + unsent, f"{type(exc).__name__}: {exc}") from None
            items = response["items"]
            if not response["errors"]:
                result.written += len(items)
                continue
            # Items answer in request order, one per action.
            for action, item in zip(chunk, items, strict=True):
                op_name, detail = next(iter(item.items()))
                status = int(detail.get("status", 0))
                if 200 <= status < 300:
                    result.written += 1
                elif status == 409 and conflicts_retry:
                    result.conflicts.append((str(action["_index"]), str(action["_id"])))
                elif status == 404 and op_name == "delete":
                    result.noop += 1  # already gone: the goal of a delete
                elif status in RETRYABLE_STATUS or out_of_shards(detail.get("error")):
                    again.append(action)
                else:
                    telemetry.ES_ERRORS.labels(kind="rejected").inc()
                    rejected.append((action, detail))
        if again:
            raise _Retry(again, f"{len(again)} documents answered with a retryable status")
        return []

    def _chunks(
        self,
        actions: list[dict[str, Any]],
        rejected: list[tuple[dict[str, Any], Mapping[str, Any]]] | None = None,
    ) -> Iterator[tuple[list[dict[str, Any]], bytes]]:
        """Serialise actions to NDJSON bulk bodies of at most max_actions / max_bytes.

        Written here rather than through elasticsearch-py's bulk helpers: profiling a 100,000-point
        backfill showed the helpers' per-action expansion and result handling at ~2 s of client CPU
        (the DESIGN.md budget is 0.2 core-seconds per 10,000 points); this costs a fraction of that.
        """
        batch: list[dict[str, Any]] = []
        pieces: list[bytes] = []
        size = 0
        for action in actions:
            try:
                piece = _serialise(action)
            except (TypeError, orjson.JSONEncodeError) as exc:
                if rejected is None:
                    raise
                telemetry.ES_ERRORS.labels(kind="rejected").inc()
                reason = f"the document cannot be serialised as JSON ({exc})"
                error = {"type": "serialisation", "reason": reason}
                rejected.append((action, {"status": 400, "error": error}))
                continue
            if batch and (len(batch) >= self.max_actions or size + len(piece) > self.max_bytes):
                yield batch, b"".join(pieces)
                batch, pieces, size = [], [], 0
            batch.append(action)
            pieces.append(piece)
            size += len(piece)
        if batch:
            yield batch, b"".join(pieces)

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
                                "original": _original(original),
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
