"""One sync pass: read what changed in MLflow, write it, then move the checkpoints.

Cost model (what makes a no-op pass cheap): a pass lists experiments, runs (pages of 1,000, with
each run's latest metric values) and model versions. A run whose document would be unchanged is
skipped without further reads. For a changed run, only metric keys whose latest point changed are
read in full, and only points newer than the checkpoint are written; a run whose status changed
(e.g. it finished) has all its keys re-read once, which also catches points logged out of order.
"""

from __future__ import annotations

import base64
import functools
import gc
import hashlib
import itertools
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
from elasticsearch import Elasticsearch

from shipper import telemetry
from shipper.config import Settings
from shipper.core.entities import EntityWrite
from shipper.core.names import MODELS_INDEX
from shipper.sink.bulk import BulkResult, BulkWriter
from shipper.sink.entities import upsert_entities
from shipper.sources.interface import HISTORY_PAGE, TrackingSource, select_experiments
from shipper.sources.mlflow_rest import BULK_MAX_RUNS, BULK_SAMPLE
from shipper.sources.records import Experiment, LoggedModel, MetricPoint, Run
from shipper.sync.state import (
    KeyCheckpoint,
    KeyProgress,
    ModelsCheckpoint,
    RunCheckpoint,
    RunProgress,
    load_models_checkpoint,
    load_run_state,
    models_state_action,
    progress_action,
    progress_delete_action,
    run_state_action,
)
from shipper.transforms.mlflow_docs import (
    ModelLink,
    logged_model_id,
    metric_point_actions,
    model_links,
    run_inputs,
    run_write,
)
from shipper.transforms.mlflow_eval import (
    links_by_logged_model,
    logged_metric_action,
    logged_write,
    model_inputs_by_run,
    version_write,
    with_model_inputs,
)

log = logging.getLogger(__name__)


# Runs whose histories are read together (a window), bounded by their points (each key's latest
# step + 1, at most one page), so that memory stays bounded however long the histories are. One
# window is read while the one before it is shipped.
WINDOW_RUNS = BULK_MAX_RUNS
WINDOW_POINTS = 50_000
# The first window is small and each next one twice the last, up to WINDOW_POINTS: writing can
# only start once a window is read, so a pass whose runs fit in one full window would read
# everything before writing anything.
FIRST_WINDOW_POINTS = 5_000
# Points of one bulk history request (judged the same way).
BULK_POINTS = 25_000


# Allocations between two young-generation collections during a pass (Python's default: 700). A
# backfill allocates a few dicts per point, most of them alive until their bulk request is
# written, so with the default the collector walks the same young objects again and again.
GC_YOUNG_THRESHOLD = 50_000


@contextmanager
def collector_for_passes() -> Iterator[None]:
    """Python's garbage collector set for a pass: what exists before it (imports, clients,
    settings) is frozen out of collections, and young collections are rarer (see
    GC_YOUNG_THRESHOLD; measured in docs/benchmarks.md). Put back as it was afterwards."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def fingerprint(value: Any) -> str:
    raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY, default=str)
    return base64.urlsafe_b64encode(hashlib.blake2b(raw, digest_size=12).digest()).decode()


def _latest_fp(point: MetricPoint) -> str:
    return f"{point.timestamp}:{point.step}:{point.value!r}"


@dataclass
class PassSummary:
    experiments: int = 0
    runs_seen: int = 0
    runs_unchanged: int = 0
    runs_written: int = 0
    points_written: int = 0
    models_written: int = 0
    models_deleted: int = 0
    # MLflow 3: metric points read from logged models (with their evaluation dataset)
    logged_model_points: int = 0
    history_reads: int = 0
    relinked_runs: int = 0
    writes: BulkResult = field(default_factory=BulkResult)
    seconds: float = 0.0
    stopped_early: bool = False

    def line(self) -> str:
        return (
            f"sync pass: {self.experiments} experiments, {self.runs_seen} runs "
            f"({self.runs_written} written, {self.runs_unchanged} unchanged), "
            f"{self.points_written} metric points, {self.models_written} model documents"
            f" ({self.models_deleted} deleted), {self.history_reads} history reads, "
            f"{self.writes.written} writes, {self.writes.dead_lettered} dead-lettered, "
            f"{self.seconds:.1f}s" + (" (stopped early)" if self.stopped_early else "")
        )

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "writes"}
        data["writes"] = dict(self.writes.__dict__)
        return data


class Progress:
    """A one-line progress display on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0

    def update(self, summary: PassSummary) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        self.stream.write(
            f"\r  runs {summary.runs_seen:,} ({summary.runs_written:,} changed)  "
            f"points {summary.points_written:,}  "
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


@dataclass
class _Batch:
    """Writes waiting to go out, and the checkpoints that may move once they have.

    A flush hands its writes to one background thread, so Elasticsearch indexes one batch while the
    next is read from MLflow; flushes run one at a time and in order, and each writes its data,
    then its entity documents, then its checkpoints, so a checkpoint never gets ahead of its data.
    At most one flush is in flight: memory stays bounded, and a failure surfaces at the next flush.
    The progress documents of runs partly shipped go with the checkpoints: each flush writes the
    newest one of each such run, which covers no more than the points queued before it.
    """

    engine: SyncEngine
    actions: list[dict[str, Any]] = field(default_factory=list)
    entities: list[EntityWrite] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> newest progress
    progressed: set[str] = field(default_factory=set)  # runs with a progress document flushed
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "shipper-write"))
    _in_flight: Future[None] | None = None

    def add(self, actions: list[dict[str, Any]]) -> None:
        self.actions += actions
        if len(self.actions) >= self.engine.settings.bulk_max_actions:
            self.flush()

    def note_progress(self, progress: RunProgress) -> None:
        """How far a run's histories are queued: written with the next flush, after its data."""
        self.progress[progress.run_id] = progress_action(progress)

    def complete(
        self, entity: EntityWrite, checkpoint: dict[str, Any], stored_progress: bool = False
    ) -> None:
        """A run is fully queued: its entity document and then its checkpoint may be written, and
        its progress document (if one was stored, before this pass or by it) deleted after them."""
        self.entities.append(entity)
        self.checkpoints.append(checkpoint)
        run_id = checkpoint["_source"]["state"]["run_id"]
        self.progress.pop(run_id, None)
        if stored_progress or run_id in self.progressed:
            self.progressed.discard(run_id)
            self.checkpoints.append(progress_delete_action(run_id))
        if len(self.entities) >= 500:
            self.flush()

    def flush(self) -> None:
        self.wait()
        if self.actions or self.entities or self.checkpoints or self.progress:
            self.progressed.update(self.progress)
            work = (self.actions, self.entities, self.checkpoints + list(self.progress.values()))
            self.actions, self.entities, self.checkpoints, self.progress = [], [], [], {}
            self._in_flight = self._pool.submit(self._write, *work)

    def wait(self) -> None:
        """Until the flush in flight is written; re-raises its failure."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def _write(
        self, actions: list[dict[str, Any]], entities: list[EntityWrite], checkpoints: list[dict[str, Any]]
    ) -> None:
        engine = self.engine
        if actions:
            engine.summary.writes.add(engine.writer.write(actions))
        if entities:
            engine.summary.writes.add(upsert_entities(engine.client, engine.writer, entities))
        if checkpoints:
            engine.writer.write(checkpoints)


@dataclass
class _Plan:
    """A changed run: its document and checkpoint so far, and the metric keys to read."""

    run: Run
    experiment: Experiment
    link: ModelLink
    entity: EntityWrite
    run_fp: str
    link_fp: str
    keys: dict[str, KeyCheckpoint]
    relink: bool
    wanted: list[str]
    # What this pass ships of the run so far (a progress document, written for long histories),
    # where to resume keys a pass before it left partly shipped, and whether a progress document
    # of the run is stored (to delete with the run checkpoint).
    progress: RunProgress
    resume: dict[str, KeyProgress] = field(default_factory=dict)
    stored_progress: bool = False
    noted: bool = False

    def size(self, key: str) -> int:
        """The points expected in the first read of `key` (steps from 0 to its latest step)."""
        return min(HISTORY_PAGE, max(1, self.run.latest_metrics[key].step + 1))

    @property
    def points(self) -> int:
        return sum(self.size(key) for key in self.wanted)


_Pages = Iterable[list[MetricPoint]]


@dataclass
class _Window:
    """The reads of a window's histories, requested at once, answered in any order."""

    plans: list[_Plan]
    reads: dict[tuple[str, str], Future[_Pages]]

    def histories(self, plan: _Plan) -> Iterator[tuple[str, _Pages]]:
        for key in plan.wanted:
            yield key, self.reads.pop((plan.run.id, key)).result()


class _HistoryReads:
    """Reads metric histories with up to `in_flight` requests at a time (SHIPPER_MLFLOW_READS_IN_FLIGHT).

    Short histories (judged by the latest step) of one key in several runs are read in one bulk
    request where the tracking server offers it (`MlflowSource.metric_histories`, exact); longer
    ones on their own, the first page ahead and the rest while they are shipped.
    """

    def __init__(self, source: TrackingSource, in_flight: int) -> None:
        self.source = source
        self.pool = ThreadPoolExecutor(in_flight, "shipper-read")

    def submit(self, plans: list[_Plan]) -> _Window:
        reads: dict[tuple[str, str], Future[_Pages]] = {}
        groups: dict[str, list[_Plan]] = {}
        bulk = self.source.bulk_histories is not False
        for plan in plans:
            for key in plan.wanted:
                if key in plan.resume:  # the rest of a history a pass before this one left
                    token = plan.resume[key].token
                    reads[(plan.run.id, key)] = self.pool.submit(self._first_page, plan.run.id, key, token)
                elif bulk and plan.size(key) < BULK_SAMPLE:
                    group = groups.setdefault(key, [])
                    if len(group) >= BULK_MAX_RUNS or sum(p.size(key) for p in group) >= BULK_POINTS:
                        self._bulk(key, group, reads)
                        group = groups[key] = []
                    group.append(plan)
                else:
                    reads[(plan.run.id, key)] = self.pool.submit(self._first_page, plan.run.id, key)
        for key, group in groups.items():
            if group:
                self._bulk(key, group, reads)
        return _Window(plans, reads)

    def _bulk(self, key: str, group: list[_Plan], reads: dict[tuple[str, str], Future[_Pages]]) -> None:
        run_ids = [plan.run.id for plan in group]
        answer = self.pool.submit(self.source.metric_histories, key, run_ids)
        for run_id in run_ids:
            one: Future[_Pages] = Future()
            reads[(run_id, key)] = one
            answer.add_done_callback(functools.partial(_settle, one, run_id))

    def _first_page(self, run_id: str, key: str, token: str | None = None) -> _Pages:
        if token:
            pages = self.source.metric_history_pages(run_id, key, token)
            try:
                first = next(pages, [])
            except Exception as exc:  # e.g. a server that no longer takes the token it gave
                log.warning("run %s: reading %r on from its progress record failed (%s)", run_id, key, exc)
                return []  # seen as a changed history: read again from its start
            return itertools.chain([first], pages)
        pages = self.source.metric_history_pages(run_id, key)
        return itertools.chain([next(pages, [])], pages)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _settle(one: Future[_Pages], run_id: str, done: Future[dict[str, _Pages]]) -> None:
    if done.cancelled():
        one.cancel()
    elif done.exception() is not None:
        one.set_exception(done.exception())
    else:
        one.set_result(done.result()[run_id])


def _peek(pages: _Pages, resumed: KeyProgress) -> tuple[_Pages, bool]:
    """The rest of a history read from a progress record's page token, and whether it continues
    where that record stopped: its first point must come after the record's last one in MLflow's
    order of a history, (timestamp, step, value) (its SQL store's ORDER BY, paged by offset). A
    point inserted before the token since shifts the pages, and then the first point is one
    already seen: not after it. Ties this order cannot tell apart (NaN) count as changed."""
    rest = iter(pages)
    first = next(rest, None)
    if not first:
        return rest, False
    head, (ts, step, value) = first[0], resumed.last
    before = float(value)
    if (head.timestamp, head.step) != (ts, step):
        continues = (head.timestamp, head.step) > (ts, step)
    else:
        continues = not (math.isnan(before) or math.isnan(head.value)) and head.value > before
    return itertools.chain([first], rest), continues


class SyncEngine:
    def __init__(
        self,
        source: TrackingSource,
        client: Elasticsearch,
        writer: BulkWriter,
        settings: Settings,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.client = client
        self.writer = writer
        self.settings = settings
        self.progress = progress
        self.clock = clock
        self.summary = PassSummary()
        self._stamp = 0

    def run_pass(self, full: bool = False, stop: threading.Event | None = None) -> PassSummary:
        """One pass; `shipper_sync_passes_total{outcome="ok"|"failed"}` counts it either way."""
        try:
            with collector_for_passes():
                summary = self._run_pass(full, stop)
        except Exception:
            telemetry.SYNC_PASSES.labels(outcome="failed").inc()
            raise
        telemetry.SYNC_PASSES.labels(outcome="ok").inc()
        return summary

    def _run_pass(self, full: bool, stop: threading.Event | None) -> PassSummary:
        started = time.monotonic()
        self.summary = summary = PassSummary()
        self._stamp = stamp = int(self.clock() * 1000)
        # --full sends everything again and trusts no progress document (a stale one is not trusted
        # by later passes either: it names the checkpoint it started from).
        checkpoints, progress = ({}, {}) if full else load_run_state(self.client)
        listed = self.source.experiments()
        all_experiments = {e.id: e for e in listed}
        selected = select_experiments(
            listed, self.settings.mlflow_experiments, self.settings.mlflow_exclude_experiments
        )
        shard = self.settings.shard_of()
        if shard is not None:  # this poller owns only its share of the experiments, and their runs
            selected = [e for e in selected if shard.owns(e.id)]
        summary.experiments = len(selected)
        versions = self.source.model_versions()
        links = model_links(versions)
        # Listed before the runs: the logged models a run logged metrics against are its model inputs.
        logged = self.source.logged_models([e.id for e in selected])
        consumed = model_inputs_by_run(logged)
        batch = _Batch(self)
        runs: dict[str, Run] = {}
        reads = _HistoryReads(self.source, self.settings.mlflow_reads_in_flight)
        window: list[_Plan] = []
        window_points, window_limit = 0, FIRST_WINDOW_POINTS
        read_ahead: deque[_Window] = deque()
        try:
            for run in self.source.runs([e.id for e in selected], self.settings.mlflow_since):
                if run.id in consumed:
                    run = with_model_inputs(run, consumed[run.id])
                runs[run.id] = run
                plan = self._plan_run(
                    run,
                    all_experiments[run.experiment_id],
                    links.get(run.id, ModelLink()),
                    checkpoints.get(run.id),
                    progress.get(run.id),
                )
                if plan is not None:
                    window.append(plan)
                    window_points += plan.points
                    if len(window) >= WINDOW_RUNS or window_points >= window_limit:
                        # The histories of the next window are read while this one is shipped.
                        read_ahead.append(reads.submit(window))
                        window, window_points = [], 0
                        window_limit = min(window_limit * 2, WINDOW_POINTS)
                        while len(read_ahead) > 1:
                            self._ship(read_ahead.popleft(), batch)
                if self.progress is not None:
                    self.progress.update(summary)
                if stop is not None and stop.is_set():
                    # Runs planned but not shipped keep their checkpoints: the next pass does them.
                    summary.stopped_early = True
                    read_ahead.clear()
                    window = []
                    break
            if window:
                read_ahead.append(reads.submit(window))
            while read_ahead:
                self._ship(read_ahead.popleft(), batch)
            batch.flush()
            batch.wait()
            if not summary.stopped_early:
                self._sync_models(
                    versions, runs, all_experiments, [e.id for e in selected], full, stamp, logged
                )
        finally:
            reads.close()
            batch.close()
            if self.progress is not None:
                self.progress.done()
        summary.seconds = time.monotonic() - started
        telemetry.DOCUMENTS.labels(family="mlflow", outcome="written").inc(summary.writes.written)
        telemetry.DOCUMENTS.labels(family="mlflow", outcome="noop").inc(summary.writes.noop)
        telemetry.DOCUMENTS.labels(family="mlflow", outcome="dead_lettered").inc(summary.writes.dead_lettered)
        return summary

    def _plan_run(
        self,
        run: Run,
        experiment: Experiment,
        link: ModelLink,
        checkpoint: RunCheckpoint | None,
        stored: RunProgress | None = None,
    ) -> _Plan | None:
        """What a run needs (its document, the metric keys to read), or None when unchanged."""
        summary = self.summary
        summary.runs_seen += 1
        entity = run_write(run, experiment, link, self._stamp)
        # The latest points' times and steps are part of it: a new point whose value equals the
        # last one changes nothing else in the run document.
        marks = {key: (p.timestamp, p.step) for key, p in run.latest_metrics.items()}
        run_fp = fingerprint({"run": entity.doc, "latest": marks})
        if run.dataset_inputs or run.model_inputs:  # what the run's points carry besides the link
            link_fp = fingerprint({"link": link.fields(), "inputs": run_inputs(run, points=True)})
        else:
            link_fp = fingerprint(link.fields())
        if checkpoint is not None and checkpoint.fingerprint == run_fp and run.latest_exact:
            summary.runs_unchanged += 1
            return None
        keys = dict(checkpoint.keys) if checkpoint is not None else {}
        # A run whose registered versions (or their aliases) changed is re-sent whole, so that its
        # earlier points carry the new `ml.model.*` too; the same ids make that an overwrite.
        relink = checkpoint is not None and checkpoint.link != link_fp
        reread_all = checkpoint is None or checkpoint.status != run.status or relink
        wanted = [
            key
            for key, latest in sorted(run.latest_metrics.items())
            if reread_all or not run.latest_exact or key not in keys or keys[key].latest != _latest_fp(latest)
        ]
        base = checkpoint.fingerprint if checkpoint is not None else ""
        progress = RunProgress(run.id, base, link_fp)
        resume: dict[str, KeyProgress] = {}
        if stored is not None and stored.base == base and stored.link == link_fp:
            # A pass before this one, from the same checkpoint, shipped part of the run: keys it
            # finished whose latest point is still the same are done; a key it left partly
            # shipped is read on from where it stopped (checked when its next page arrives).
            for key, done in stored.done.items():
                if key in wanted and done.latest == _latest_fp(run.latest_metrics[key]):
                    keys[key] = progress.done[key] = done
            wanted = [key for key in wanted if key not in progress.done]
            resume = {key: part for key, part in stored.partial.items() if key in wanted}
        return _Plan(
            run,
            experiment,
            link,
            entity,
            run_fp,
            link_fp,
            keys,
            relink,
            wanted,
            progress,
            resume,
            stored_progress=stored is not None,
        )

    def _ship(self, window: _Window, batch: _Batch) -> None:
        """The window's runs in order: their points as they are read, then each run's document
        and checkpoint."""
        for plan in window.plans:
            self._ship_run(plan, window.histories(plan), batch)

    def _ship_run(
        self, plan: _Plan, histories: Iterator[tuple[str, Iterable[list[MetricPoint]]]], batch: _Batch
    ) -> None:
        summary, run, experiment, link, keys = self.summary, plan.run, plan.experiment, plan.link, plan.keys
        for key, pages in histories:
            latest = run.latest_metrics[key]
            known = keys.get(key)
            summary.history_reads += 1
            mark = (known.last_timestamp, known.last_step) if known is not None and not plan.relink else None
            total = sent = before = 0  # before: points a pass before this one shipped
            newest: tuple[int, int] | None = None
            resumed = plan.resume.get(key)
            if resumed is not None:
                pages, continues = _peek(pages, resumed)
                if continues:
                    total, sent = resumed.count, resumed.sent
                    before = sent
                    newest = (resumed.newest[0], resumed.newest[1]) if resumed.newest else None
                else:
                    # The history changed before the point where the last pass stopped (or the
                    # server does not keep its order): read it all again.
                    log.info(
                        "run %s: the history of %r changed since it was partly shipped; reading it all",
                        run.id,
                        key,
                    )
                    summary.history_reads += 1
                    pages = self.source.metric_history_pages(run.id, key)
            for page in pages:
                total += len(page)
                chosen = page if mark is None else [p for p in page if (p.timestamp, p.step) > mark]
                self._queue_points(run, experiment, link, chosen, batch)
                sent += len(chosen)
                if page:
                    last_ts = max(p.timestamp for p in page)
                    last = (last_ts, max(p.step for p in page if p.timestamp == last_ts))
                    newest = last if newest is None or last > newest else newest
                    token = getattr(page, "next_token", None)
                    if token:  # a long history: where a restart may resume it, once this is written
                        end = page[-1]
                        plan.progress.partial[key] = KeyProgress(
                            token, total, sent, [end.timestamp, end.step, repr(end.value)], list(newest)
                        )
                        plan.noted = True
                        batch.note_progress(plan.progress)
            if known is not None and mark is not None and known.count + sent != total:
                # Points were inserted before the mark (logged out of order): send the whole
                # history again; the deterministic ids make the repeats overwrites.
                summary.history_reads += 1
                for page in self.source.metric_history_pages(run.id, key):
                    self._queue_points(run, experiment, link, page, batch)
                    sent += len(page)
            summary.points_written += sent - before
            plan.progress.partial.pop(key, None)
            if newest is not None:
                keys[key] = plan.progress.done[key] = KeyCheckpoint(
                    total, newest[0], newest[1], _latest_fp(latest)
                )
            if plan.noted:
                batch.note_progress(plan.progress)
        summary.runs_written += 1
        if plan.relink:
            summary.relinked_runs += 1
        batch.complete(
            plan.entity,
            run_state_action(
                RunCheckpoint(run.id, run.experiment_id, plan.run_fp, run.status, plan.link_fp, keys)
            ),
            plan.stored_progress,
        )

    @staticmethod
    def _queue_points(
        run: Run, experiment: Experiment, link: ModelLink, points: list[MetricPoint], batch: _Batch
    ) -> None:
        for start in range(0, len(points), 10_000):
            batch.add(metric_point_actions(run, experiment, link, points[start : start + 10_000]))

    def _sync_models(
        self,
        versions: list[Any],
        runs: dict[str, Run],
        experiments: dict[str, Experiment],
        experiment_ids: list[str],
        full: bool,
        stamp: int,
        logged: list[LoggedModel] | None = None,
    ) -> None:
        shard = self.settings.shard_of()
        if logged is None:
            logged = self.source.logged_models(experiment_ids)
        by_model = links_by_logged_model(versions)
        checkpoint = ModelsCheckpoint() if full else load_models_checkpoint(self.client, shard)
        selected = set(experiment_ids)
        # Logged models of experiments this pass does not look at stay as they were.
        current = {
            doc_id: fp
            for doc_id, fp in checkpoint.documents.items()
            if doc_id in checkpoint.experiments and checkpoint.experiments[doc_id] not in selected
        }
        scopes = {doc_id: checkpoint.experiments[doc_id] for doc_id in current}
        changed: list[EntityWrite] = []
        writes: list[EntityWrite] = []
        # Source runs outside this pass's experiments, fetched in batches.
        # Registered model versions are not per experiment: of several shards, shard 0 alone writes
        # (and deletes) them; every shard still lists them to label its runs and points.
        if not self.settings.leads_pollers():
            versions = []
        missing = {mv.run_id for mv in versions if mv.run_id and mv.run_id not in runs}
        if missing:
            runs = {**runs, **self.source.runs_by_id(sorted(missing), sorted(experiments))}
        # Logged models that versions were registered from, outside the experiments listed here (a
        # filtered or sharded poller): one search of the other experiments (pages of 100), not a
        # request per version.
        by_id = {lm.id: lm for lm in logged}
        if any(mv.model_id and mv.model_id not in by_id for mv in versions):
            others = sorted(set(experiments) - set(experiment_ids))
            by_id |= {lm.id: lm for lm in self.source.logged_models(others)}
        for mv in versions:
            source_run = runs.get(mv.run_id) if mv.run_id else None
            experiment = experiments.get(source_run.experiment_id) if source_run else None
            lm_of = by_id.get(mv.model_id) if mv.model_id else None
            if experiment is None and lm_of is not None:
                experiment = experiments.get(lm_of.experiment_id)
            writes.append(version_write(mv, source_run, experiment, stamp, lm_of))
        for lm in logged:
            write = logged_write(lm, experiments.get(lm.experiment_id), stamp)
            scopes[write.id] = lm.experiment_id
            writes.append(write)
        # Their metric points: those logged since the last pass (all of them for a model whose
        # registered versions changed), as for run histories.
        logged_state = {
            model_id: mark
            for model_id, mark in checkpoint.logged_metrics.items()
            if logged_model_id(model_id) in current
        }
        points = self._logged_model_points(logged, experiments, runs, by_model, checkpoint, logged_state)
        for write in writes:
            doc_fp = fingerprint(write.doc)
            current[write.id] = doc_fp
            if checkpoint.documents.get(write.id) != doc_fp:
                changed.append(write)
        self.summary.models_written = len(changed)
        deletes = [
            {"_op_type": "delete", "_index": MODELS_INDEX, "_id": gone}
            for gone in sorted(set(checkpoint.documents) - set(current))
        ]
        self.summary.models_deleted = len(deletes)
        if not changed and not deletes and not points and logged_state == checkpoint.logged_metrics:
            return
        self.summary.writes.add(self.writer.write(points))
        self.summary.writes.add(upsert_entities(self.client, self.writer, changed))
        self.summary.writes.add(self.writer.write(deletes))
        self.writer.write([models_state_action(ModelsCheckpoint(current, scopes, logged_state), shard)])

    def _logged_model_points(
        self,
        logged: list[LoggedModel],
        experiments: dict[str, Experiment],
        runs: dict[str, Run],
        by_model: dict[str, ModelLink],
        checkpoint: ModelsCheckpoint,
        state: dict[str, list[Any]],
    ) -> list[dict[str, Any]]:
        """Index actions for the logged models' metric points not yet shipped; `state` gets each
        model's new mark. A model whose points are unchanged gives none: no read, no write."""
        actions: list[dict[str, Any]] = []
        for lm in logged:
            if not lm.metrics:
                state.pop(lm.id, None)
                continue
            link = by_model.get(lm.id, ModelLink())
            experiment = experiments.get(lm.experiment_id)
            names = {m.run_id: runs[m.run_id].name for m in lm.metrics if m.run_id and m.run_id in runs}
            link_fp = fingerprint(
                {"link": link.fields(), "runs": names, "experiment": experiment.name if experiment else None}
            )
            newest = max(lm.metrics, key=lambda m: (m.timestamp, m.step))
            known = checkpoint.logged_metrics.get(lm.id)
            chosen = list(lm.metrics)
            if known is not None and known[3] == link_fp:
                mark = (known[1], known[2])
                fresh = [m for m in lm.metrics if (m.timestamp, m.step) > mark]
                # Fewer or more than expected: points logged out of order; send them all again
                # (the same ids make the repeats overwrites).
                chosen = fresh if known[0] + len(fresh) == len(lm.metrics) else chosen
            actions += [logged_metric_action(lm, m, experiment, names, link) for m in chosen]
            state[lm.id] = [len(lm.metrics), newest.timestamp, newest.step, link_fp]
        self.summary.logged_model_points = len(actions)
        return actions
