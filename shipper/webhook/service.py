"""One delivery in, one answer out, with Event Grid's retry rules in mind.

    200  the whole batch is written (events, run documents); or the validation handshake. Also when
         some events of a batch are unreadable (no id, type or time) beside good ones: the good ones
         are written and each bad one is dead-lettered with its original, in the same bulk request.
         Redelivery could never fix the bad ones, and a 400 would make Event Grid drop the good
         ones with them; the body lists the dead letters (`dead_lettered`). The same for events
         that cannot be stored (lone surrogates, nesting too deep) and for events dated outside
         the event-time window (SHIPPER_WEBHOOK_EVENT_MAX_AGE_DAYS back, _MAX_FUTURE_DAYS ahead of
         their receipt), which would otherwise open an index for their month each
    400  the payload can never succeed (not JSON, wrong shape, no readable event, too big, too
         many events); it is written to the dead-letter index first
    403  an event's topic is outside SHIPPER_WEBHOOK_ALLOWED_TOPICS (nothing written)
    503  Elasticsearch is unreachable or pushing back, within the write budget; `Retry-After`
         is set and Event Grid retries (for up to 24 hours): nothing is lost

Batches are all-or-none from the sender's view: a 200 means every event of it is written (or, for
an unreadable one, dead-lettered); after a 503 the whole batch comes again, and because every
document has a deterministic `_id` (the event id; the run id), the parts already written are
overwritten, never duplicated.

After the write, and never delaying the answer: job enrichment is queued, notifications are
queued, and a run that reached a terminal status triggers an MLflow sync pass.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from elasticsearch import ApiError, Elasticsearch, TransportError

from shipper import telemetry as metrics
from shipper.azure.enrich import Enricher, EnrichRequest
from shipper.core.entities import EntityWrite
from shipper.core.events import (
    MODEL_REGISTERED,
    SUBSCRIPTION_VALIDATION,
    Delivery,
    Event,
    InvalidEvent,
    InvalidPayload,
    json_text,
    normalise_topic,
    parse_delivery,
)
from shipper.core.names import DEAD_LETTER_INDEX, RUNS_INDEX
from shipper.errors import ShipperError, WriteError
from shipper.sink.bulk import BulkWriter
from shipper.sink.entities import upsert_entities
from shipper.transforms.azureml_events import (
    RunEvent,
    document_id,
    event_action,
    iso,
    normalise_data,
    notification_kind,
    run_entity,
    run_event,
    run_view,
    text,
)
from shipper.webhook.notify import Notification, Notifier, model_notification, run_notification

log = logging.getLogger(__name__)

DEAD_LETTER_ORIGINAL_BYTES = 1024 * 1024
# How long past the write budget a delivery may wait for its writes before it is answered 503.
ANSWER_GRACE_SECONDS = 1.0


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str = "accepted"


class WebhookService:
    def __init__(
        self,
        client: Elasticsearch,
        writer: BulkWriter,
        write_budget_seconds: float = 8.0,
        retry_after_seconds: int = 10,
        max_events: int = 5000,
        allowed_topics: Iterable[str] = (),
        enricher: Enricher | None = None,
        notifier: Notifier | None = None,
        on_terminal: Callable[[RunEvent], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_age_days: int = 400,
        max_future_days: int = 1,
    ) -> None:
        self.client = client
        self.writer = writer
        self.write_budget = write_budget_seconds
        self.retry_after = retry_after_seconds
        self.max_events = max_events
        self.allowed_topics = {normalise_topic(t) for t in allowed_topics}
        self.enricher = enricher
        self.notifier = notifier
        self.on_terminal = on_terminal
        self.clock = clock
        self.max_age = timedelta(days=max_age_days)
        self.max_future = timedelta(days=max_future_days)
        # Two writes per delivery (events, runs); writes hung on a frozen cluster hold their thread.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="events-bulk")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def use_elasticsearch(self, client: Elasticsearch, writer: BulkWriter) -> None:
        """Point the service at another client (tests: a cluster that goes away and comes back)."""
        self.client, self.writer = client, writer

    # -- answers ---------------------------------------------------------------------------------

    def unavailable(self, reason: str) -> Answer:
        metrics.DELIVERIES.labels(outcome="unavailable").inc()
        log.warning("delivery answered 503 (Event Grid will deliver it again): %s", reason)
        return Answer(
            503,
            {
                "error": "unavailable",
                "message": f"{reason}; nothing of this delivery was lost: send it again after "
                f"{self.retry_after} s (Event Grid redelivers a 503 by itself, for up to 24 hours)",
                "retry_after_seconds": self.retry_after,
            },
            {"Retry-After": str(self.retry_after)},
            outcome="unavailable",
        )

    # -- deliveries ------------------------------------------------------------------------------

    def handle(self, body: bytes, content_type: str | None, headers: Mapping[str, str]) -> Answer:
        """An authenticated delivery's body -> the answer."""
        try:
            delivery = parse_delivery(body, content_type, headers, self.max_events)
        except InvalidPayload as exc:
            return self.reject(body, content_type, exc.problems, attributes=ce_attributes(headers))
        foreign = self._foreign_topics(delivery.events)
        if foreign:
            metrics.DELIVERIES.labels(outcome="forbidden").inc()
            log.warning("delivery refused: topic %s is not in SHIPPER_WEBHOOK_ALLOWED_TOPICS", foreign[0])
            return Answer(
                403,
                {"error": "forbidden", "message": "the event topic is not in the webhook's allow-list"},
                outcome="forbidden",
            )
        if delivery.is_validation:
            real = [e for e in delivery.events if e.type != SUBSCRIPTION_VALIDATION]
            if real:
                # Event Grid's handshake comes alone; beside real events it must not cost them.
                answer = self.accept(dataclasses.replace(delivery, events=real))
                if answer.status == 200:
                    answer.body["validationResponse"] = delivery.validation_code
                return answer
            metrics.DELIVERIES.labels(outcome="validation").inc()
            log.info("answered the Event Grid subscription validation handshake")
            return Answer(200, {"validationResponse": delivery.validation_code}, outcome="validation")
        return self.accept(delivery)

    def _foreign_topics(self, events: list[Event]) -> list[str]:
        if not self.allowed_topics:
            return []
        return [e.source for e in events if normalise_topic(e.source) not in self.allowed_topics]

    def accept(self, delivery: Delivery) -> Answer:
        received = self.clock()
        # The same event twice in one batch: the last one counts.
        events = list({e.id: e for e in delivery.events}.values())
        invalid = list(delivery.invalid)
        events = [e for e in events if not self._outside_window(e, received, invalid)]
        actions: list[dict[str, Any]] = []
        runs: list[tuple[Event, RunEvent, dict[str, Any]]] = []
        for event in events:
            run = run_event(event, received)
            action = event_action(event, received, run)
            actions.append(action)
            if run is not None:
                runs.append((event, run, action))
        letters = [
            _letter(
                json_text(bad.raw).encode(),
                "application/json",
                bad.problems,
                received,
                event_position=bad.position,
                error_type=bad.kind,
            )
            for bad in invalid
        ]
        actions += letters
        # The event documents and the run documents are independent: written side by side, so the
        # answer waits for the slower of the two, not for both in turn. It never waits much past
        # the budget: on a cluster that takes requests and never answers, a retry begun late in the
        # budget (or a write queued behind hung ones) would hold the answer past Event Grid's 30 s.
        # A write still running then ends in the background; the redelivery rewrites the same ids.
        deadline = time.monotonic() + self.write_budget
        tasks: list[concurrent.futures.Future[Any]] = [
            self._pool.submit(self.writer.write, actions, max_retry_seconds=self.write_budget)
        ]
        if runs:
            tasks.append(self._pool.submit(self._write_runs, [run for _, run, _ in runs], deadline))
        _, late = concurrent.futures.wait(tasks, timeout=self.write_budget + ANSWER_GRACE_SECONDS)
        try:
            if late:
                raise WriteError(
                    f"Elasticsearch did not take the batch within the write budget ({self.write_budget:g} s, "
                    "SHIPPER_WEBHOOK_WRITE_BUDGET_SECONDS)"
                )
            for task in tasks:
                task.result()
        except (ShipperError, TransportError, ApiError) as exc:
            for event in events:
                metrics.EVENTS.labels(
                    event_type=metrics.type_label(event.short_type), outcome="unavailable"
                ).inc()
            return self.unavailable(_reason(exc))
        for event in events:
            metrics.EVENTS.labels(event_type=metrics.type_label(event.short_type), outcome="written").inc()
        for _, run, _ in runs:
            if run.status:
                metrics.RUN_STATUSES.labels(status=run.status).inc()
        body: dict[str, Any] = {"accepted": len(events), "runs": len({r.run_id for _, r, _ in runs})}
        if letters:
            metrics.EVENTS.labels(event_type="other", outcome="invalid").inc(len(letters))
            body["dead_lettered"] = [
                {"event": bad.position, "problems": bad.problems, "dead_letter_id": letter["_id"]}
                for bad, letter in zip(invalid, letters, strict=True)
            ]
            log.warning(
                "%d of %d events of a delivery are unreadable and were dead-lettered (%s); the other "
                "%d are written",
                len(letters),
                len(letters) + len(events),
                "; ".join(p for bad in invalid for p in bad.problems)[:500],
                len(events),
            )
        metrics.DELIVERIES.labels(outcome="partial" if letters else "accepted").inc()
        self._after_write(events, runs, received)
        return Answer(200, body, outcome="partial" if letters else "accepted")

    def _outside_window(self, event: Event, received: datetime, invalid: list[InvalidEvent]) -> bool:
        """An event dated too far from its receipt becomes a dead letter (added to `invalid`): each
        month it names would otherwise get an index of its own, without bound."""
        if event.time is None:
            return False
        field_name = "`time`" if event.schema == "CloudEvent" else "`eventTime`"
        if event.time < received - self.max_age:
            days, setting = self.max_age.days, "SHIPPER_WEBHOOK_EVENT_MAX_AGE_DAYS"
            where = "before"
        elif event.time > received + self.max_future:
            days, setting = self.max_future.days, "SHIPPER_WEBHOOK_EVENT_MAX_FUTURE_DAYS"
            where = "after"
        else:
            return False
        invalid.append(
            InvalidEvent(
                event.position,
                [
                    f"event {event.position}: {field_name} {iso(event.time)} is more than {days} "
                    f"day{'' if days == 1 else 's'} {where} its receipt ({iso(received)}); it is kept "
                    "here instead of opening an index for its month. Correct the sender's clock, or "
                    f"widen {setting} and send it again"
                ],
                event.raw,
                kind="event_time_outside_window",
            )
        )
        return True

    def _write_runs(self, runs: list[RunEvent], deadline: float) -> None:
        carried = self._carried(r.run_id for r in runs)
        writes = [self._run_write(run, carried.get(run.run_id)) for run in runs]
        left = max(0.5, deadline - time.monotonic())
        upsert_entities(self.client, self.writer, writes, max_retry_seconds=left)

    def _carried(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The job details already on each run document: a new event's view keeps them until its
        own enrichment replaces them."""
        ids = sorted(set(run_ids))
        if not ids or self.enricher is None:
            return {}
        found = self.client.mget(
            index=RUNS_INDEX, ids=[document_id(i) for i in ids], source_includes=["azureml.job"]
        ).get("docs", [])
        carried: dict[str, dict[str, Any]] = {}
        for run_id, doc in zip(ids, found, strict=True):
            job = ((doc.get("_source") or {}).get("azureml") or {}).get("job") if doc.get("found") else None
            if job:
                carried[run_id] = job
        return carried

    def _run_write(self, run: RunEvent, carried_job: dict[str, Any] | None) -> EntityWrite:
        view = run_view(run)
        if carried_job:
            view["job"] = carried_job
        if self.enricher is not None and run.workspace is not None:
            view["enrichment"] = {"status": "pending"}
        return run_entity(run.run_id, run.stamp, view)

    def _after_write(
        self, events: list[Event], runs: list[tuple[Event, RunEvent, dict[str, Any]]], received: datetime
    ) -> None:
        by_event = {event.id: (run, action) for event, run, action in runs}
        told: list[tuple[Notification, str | None]] = []
        for event in events:
            run, action = by_event.get(event.id, (None, None))
            try:
                if run is not None and action is not None:
                    self._after_run(run, action)
                if self.notifier is not None:
                    told += self._notification(event, run)
            except Exception:  # follow-ups never fail a written delivery
                log.exception("follow-up of event %s failed", event.id)
        if told and self.notifier is not None:
            # One delivery's notifications together: a big batch is coalesced into one message.
            self.notifier.submit_many(told)

    def _after_run(self, run: RunEvent, action: dict[str, Any]) -> None:
        if self.enricher is not None and run.workspace is not None:
            view = run_view(run)
            self.enricher.submit(
                EnrichRequest(
                    workspace=run.workspace,
                    run_id=run.run_id,
                    stamp=run.stamp,
                    view=view,
                    pipeline_run_id=run.pipeline_run_id,
                    event_index=action["_index"],
                    event_id=action["_id"],
                )
            )
        if run.terminal and self.on_terminal is not None:
            self.on_terminal(run)

    def _notification(self, event: Event, run: RunEvent | None) -> list[tuple[Notification, str | None]]:
        kind = notification_kind(event, run)
        if kind is None:
            return []
        workspace = event.workspace.name if event.workspace else None
        if event.type == MODEL_REGISTERED:
            data = normalise_data(event.data)
            name, version = text(data.get("model_name")), text(data.get("model_version"))
            return [(model_notification(name, version, workspace), None)]
        if run is not None:
            notification = run_notification(kind, run.run_id, run.experiment_name, workspace, run.status)
            return [(notification, run.experiment_name)]
        return []

    # -- payloads that can never succeed ---------------------------------------------------------

    def reject(
        self,
        body: bytes,
        content_type: str | None,
        problems: list[str],
        declared_size: int | None = None,
        truncated: bool = False,
        attributes: Mapping[str, str] | None = None,
    ) -> Answer:
        """Dead-letter the payload (or, when too big, a summary of it), then answer 400; if even
        the dead letter cannot be written, answer 503 so the payload comes again. `attributes`:
        a binary-mode CloudEvent's `ce-*` headers, kept with the letter and part of its id."""
        letter = _letter(
            body, content_type, problems, self.clock(), declared_size, truncated, attributes=attributes
        )
        digest = letter["_source"]["mlops"]["dead_letter"]["id"]
        try:
            self.writer.write([letter], max_retry_seconds=self.write_budget)
        except (WriteError, TransportError, ApiError) as exc:
            return self.unavailable(f"cannot write the dead letter of an invalid payload: {_reason(exc)}")
        metrics.DELIVERIES.labels(outcome="invalid").inc()
        metrics.EVENTS.labels(event_type="other", outcome="invalid").inc()
        log.warning(
            "delivery refused with 400 and dead-lettered (%s): %s", digest[:12], "; ".join(problems)[:500]
        )
        return Answer(
            400,
            {"error": "invalid_payload", "problems": problems, "dead_letter_id": letter["_id"]},
            outcome="invalid",
        )


def _letter(
    body: bytes,
    content_type: str | None,
    problems: list[str],
    now: datetime,
    declared_size: int | None = None,
    truncated: bool = False,
    event_position: int | None = None,
    attributes: Mapping[str, str] | None = None,
    error_type: str = "invalid_payload",
) -> dict[str, Any]:
    """The dead-letter document of a payload (or of one event of a batch) that can never succeed."""
    identity = hashlib.sha256(body)
    if attributes:
        # Binary mode: two events with the same body but other `ce-id`s are two letters.
        identity.update(orjson.dumps(dict(attributes), option=orjson.OPT_SORT_KEYS))
    digest = identity.hexdigest()
    original = body[:DEAD_LETTER_ORIGINAL_BYTES].decode("utf-8", errors="replace")
    letter: dict[str, Any] = {
        "_op_type": "index",
        "_index": DEAD_LETTER_INDEX,
        # The same payload (or event) sent again is the same dead letter.
        "_id": "webhook-" + digest[:40],
        "_source": {
            "@timestamp": iso(now),
            "error": {"type": error_type, "message": "; ".join(problems)[:8000]},
            # 200 when the rest of its batch was written: the event, not the delivery, failed.
            "http": {"response": {"status_code": 400 if event_position is None else 200}},
            "mlops": {
                "dead_letter": {
                    "index": "mlops-events-*",
                    "id": digest,
                    "operation": "webhook" if event_position is None else "webhook-event",
                    "source": "webhook",
                    "original": original,
                    "content_type": content_type,
                    "bytes": declared_size if declared_size is not None else len(body),
                    "truncated": truncated or len(body) > DEAD_LETTER_ORIGINAL_BYTES,
                }
            },
        },
    }
    if event_position is not None:
        letter["_source"]["mlops"]["dead_letter"]["event_position"] = event_position
    if attributes:
        letter["_source"]["mlops"]["dead_letter"]["attributes"] = dict(attributes)
    return letter


MAX_CE_ATTRIBUTES = 64


def ce_attributes(headers: Mapping[str, str]) -> dict[str, str]:
    """A binary-mode CloudEvent's attributes: its `ce-*` headers, by attribute name (`ce-id` ->
    `id`); {} for anything else."""
    found: dict[str, str] = {}
    for key, value in headers.items():
        lower = key.lower()
        if lower.startswith("ce-") and len(found) < MAX_CE_ATTRIBUTES:
            found[lower[3:]] = value[:4096]
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"Elasticsearch answered HTTP {exc.meta.status}"
    if isinstance(exc, TransportError):
        return f"Elasticsearch unreachable ({type(exc).__name__})"
    # The writers' own messages end with what a sync pass does next; a delivery is sent again instead.
    return str(exc).split("; nothing was checkpointed", 1)[0].split("; the next pass", 1)[0]
