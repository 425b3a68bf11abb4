"""Job details for run documents, after the event is safely written.

The webhook writes each run event at once and then hands the run to `Enricher.submit`, which never
blocks: a bounded queue keeps one pending request per run (the newest event's), and worker threads
ask Azure ML for the job. Throttling and outages are retried with exponential backoff (tenacity)
for up to `max_seconds`; a job not found yet is retried a few times (the event can be faster than
the jobs API). The outcome is written back:

- on the run document (`mlops-runs`), as the same `azureml` view the event wrote, plus
  `azureml.job.*` and `azureml.enrichment.{status, time, attempts, error}`, at the event's stamp:
  if a newer event arrived meanwhile, this write is a no-op and that newer event's own enrichment
  follows;
- on the event document, by a partial update: `azureml.job.*`, `azureml.enrichment.*` and, on a
  final failure, ECS `error.message`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    wait_exponential_jitter,
)

from shipper import telemetry as metrics
from shipper.azure.jobs import JobsClient, classify, describe, job_fields
from shipper.core.events import Workspace
from shipper.sink.bulk import BulkWriter
from shipper.sink.entities import upsert_entities
from shipper.transforms.azureml_events import iso, run_entity

log = logging.getLogger(__name__)

NOT_FOUND_ATTEMPTS = 4


@dataclass(frozen=True)
class EnrichRequest:
    workspace: Workspace
    run_id: str
    stamp: int
    # The `azureml` view the event wrote; the enrichment adds `job` and `enrichment` to it.
    view: dict[str, Any]
    pipeline_run_id: str | None = None
    event_index: str | None = None
    event_id: str | None = None


@dataclass
class EnrichResult:
    status: str  # "ok" or "failed"
    attempts: int
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class _NotFound(Exception):
    pass


class PendingRuns:
    """A bounded FIFO of runs with at most one request per run: a newer stamp replaces an older."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, EnrichRequest] = OrderedDict()
        self._cond = threading.Condition()
        self._busy = 0
        self._closed = False

    def put(self, request: EnrichRequest) -> bool:
        with self._cond:
            current = self._items.get(request.run_id)
            if current is not None:
                if request.stamp >= current.stamp:
                    self._items[request.run_id] = request
                return True
            if len(self._items) >= self.capacity:
                return False
            self._items[request.run_id] = request
            metrics.ENRICHMENT_QUEUE.set(len(self._items))
            self._cond.notify()
            return True

    def get(self) -> EnrichRequest | None:
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            _, request = self._items.popitem(last=False)
            self._busy += 1
            metrics.ENRICHMENT_QUEUE.set(len(self._items))
            return request

    def done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Enricher:
    def __init__(
        self,
        jobs: JobsClient,
        client: Elasticsearch,
        writer: BulkWriter,
        max_seconds: float = 300.0,
        workers: int = 4,
        queue_size: int = 10_000,
        initial_wait: float = 1.0,
        max_wait: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.jobs = jobs
        self.client = client
        self.writer = writer
        self.max_seconds = max_seconds
        self.workers = workers
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        self.clock = clock
        self.pending = PendingRuns(queue_size)
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        for number in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"enrich-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self.pending.close()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        return self.pending.wait_idle(timeout)

    def submit(self, request: EnrichRequest) -> bool:
        """Queue a run for enrichment; False (and counted) when the queue is full."""
        if self.pending.put(request):
            return True
        metrics.ENRICHMENTS.labels(outcome="skipped").inc()
        log.warning(
            "enrichment queue full (%d runs); run %s keeps `azureml.enrichment.status: pending` until "
            "its next event or a reconcile pass",
            self.pending.capacity,
            request.run_id,
        )
        return False

    def _work(self) -> None:
        while True:
            request = self.pending.get()
            if request is None:
                return
            try:
                self.enrich(request)
            except Exception:  # a worker never dies; the run stays pending
                log.exception("enrichment of run %s failed unexpectedly", request.run_id)
            finally:
                self.pending.done()

    # -- one run ------------------------------------------------------------------------------------

    def fetch(self, request: EnrichRequest) -> EnrichResult:
        """Ask Azure ML, retrying transient failures; never raises."""
        attempts = 0

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, _NotFound) or classify(exc) == "transient"

        def note(state: RetryCallState) -> None:
            metrics.ENRICHMENT_RETRIES.inc()
            exc = state.outcome.exception() if state.outcome else None
            log.info(
                "enrichment of run %s will be retried (attempt %d): %s",
                request.run_id,
                state.attempt_number,
                describe(exc) if exc else "",
            )

        not_found_stop = stop_after_attempt(NOT_FOUND_ATTEMPTS)

        def stop(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _NotFound) and not_found_stop(state):
                return True
            return bool(stop_any(stop_after_delay(self.max_seconds))(state))

        try:
            for attempt in Retrying(
                retry=retry_if_exception(retryable),
                stop=stop,
                wait=wait_exponential_jitter(multiplier=self.initial_wait, max=self.max_wait),
                before_sleep=note,
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    fields = self._fetch_once(request)
            return EnrichResult("ok", attempts, fields)
        except _NotFound as exc:
            return EnrichResult("failed", attempts, error=f"job not found in Azure ML: {exc}")
        except Exception as exc:
            return EnrichResult("failed", attempts, error=describe(exc))

    def _fetch_once(self, request: EnrichRequest) -> dict[str, Any]:
        try:
            job = self.jobs.get_job(request.workspace, request.run_id)
        except Exception as exc:
            kind = classify(exc)
            if kind == "not_found":
                raise _NotFound(f"{request.run_id} in workspace {request.workspace.name}") from None
            if kind != "pipeline_child":
                raise
            # A pipeline step is not a job of its own to the jobs API: find it among its parent's.
            if not request.pipeline_run_id:
                raise _NotFound(f"{request.run_id} is a pipeline step and its parent is unknown") from None
            children = self.jobs.list_children(request.workspace, request.pipeline_run_id)
            job = next((c for c in children if getattr(c, "name", None) == request.run_id), None)
            if job is None:
                raise _NotFound(f"{request.run_id} among the steps of {request.pipeline_run_id}") from None
            fields = job_fields(job)
            # azure-ai-ml lists steps with the experiment's id where the name belongs.
            fields.pop("experiment_name", None)
            experiment = (request.view.get("experiment") or {}).get("name")
            if experiment:
                fields["experiment_name"] = experiment
        else:
            fields = job_fields(job)
        if (
            request.pipeline_run_id
            and "parent_run_id" not in fields
            and request.pipeline_run_id != request.run_id
        ):
            fields["parent_run_id"] = request.pipeline_run_id
        environment = fields.get("environment")
        if environment and "image" not in fields:
            try:
                image = self.jobs.environment_image(request.workspace, environment)
            except Exception as exc:  # the image is a detail: its absence never fails enrichment
                log.info(
                    "no image for environment %s of run %s: %s", environment, request.run_id, describe(exc)
                )
                image = None
            if image:
                fields["image"] = image
        return fields

    def enrich(self, request: EnrichRequest) -> EnrichResult:
        result = self.fetch(request)
        enrichment: dict[str, Any] = {
            "status": result.status,
            "time": iso(self.clock()),
            "attempts": result.attempts,
        }
        if result.error:
            enrichment["error"] = result.error
            log.warning(
                "enrichment of run %s failed after %d attempts: %s",
                request.run_id,
                result.attempts,
                result.error,
            )
        view = dict(request.view)
        if result.fields:
            view["job"] = result.fields
        view["enrichment"] = enrichment
        actions: list[dict[str, Any]] = []
        if request.event_index and request.event_id:
            partial: dict[str, Any] = {"azureml": {"enrichment": enrichment}}
            if result.fields:
                partial["azureml"]["job"] = result.fields
            if result.error:
                partial["error"] = {"message": result.error, "type": "enrichment"}
            actions.append(
                {"_op_type": "update", "_index": request.event_index, "_id": request.event_id, "doc": partial}
            )
        try:
            upsert_entities(self.client, self.writer, [run_entity(request.run_id, request.stamp, view)])
            if actions:
                self.writer.write(actions)
        except Exception as exc:  # ShipperError included: the enrichment is lost, the event is not
            metrics.ENRICHMENTS.labels(outcome="write_failed").inc()
            log.error("could not write the enrichment of run %s: %s", request.run_id, exc)
            return result
        metrics.ENRICHMENTS.labels(outcome=result.status).inc()
        return result
