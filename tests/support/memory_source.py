"""An in-memory tracking source (`shipper.sources.interface.TrackingSource`) for the sync engine's
checkpoint tests: a test writes experiments, runs and metric points by hand, and reads back which
histories the engine asked for. Pure bookkeeping, no I/O; the real MLflow is tested in
tests/integration/test_mlflow_sync.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from shipper.sources.interface import HISTORY_PAGE, HistoryPage
from shipper.sources.records import Experiment, LoggedModel, MetricPoint, ModelVersion, Run


class MemorySource:
    def __init__(self) -> None:
        self._experiments: dict[str, Experiment] = {}
        self._runs: dict[str, Run] = {}  # in creation order; latest_metrics filled in when listed
        self._histories: dict[tuple[str, str], list[MetricPoint]] = {}
        self.versions: list[ModelVersion] = []
        self.logged: list[LoggedModel] = []
        self.history_reads: list[tuple[str, str]] = []  # (run id, key) per history read
        self.bulk_histories: bool | None = None  # a test sets False to read one history at a time
        self.page = HISTORY_PAGE  # points per history page
        self.pages_read = 0  # history pages answered so far (over all reads)
        # A test sets it to make the page read after this many (over all reads) fail, as a crash.
        self.crash_after_pages: int | None = None
        self.tokens: list[str | None] = []  # the page token of each history read

    # -- what a test writes ------------------------------------------------------------------------

    def add_experiment(self, experiment_id: str, name: str) -> None:
        self._experiments[experiment_id] = Experiment(experiment_id, name)

    def add_run(self, run_id: str, experiment_id: str, start_time: int, status: str = "RUNNING") -> None:
        self._runs[run_id] = Run(
            id=run_id,
            name=f"name-of-{run_id}",
            experiment_id=experiment_id,
            status=status,
            start_time=start_time,
            end_time=None,
        )

    def change_run(self, run_id: str, **changes: object) -> None:
        """E.g. status="FINISHED", end_time=..., lifecycle_stage="deleted"."""
        self._runs[run_id] = dataclasses.replace(self._runs[run_id], **changes)  # type: ignore[arg-type]

    def log(self, run_id: str, key: str, value: float, step: int, timestamp: int) -> None:
        self._histories.setdefault((run_id, key), []).append(MetricPoint(key, value, timestamp, step))

    # -- TrackingSource ----------------------------------------------------------------------------

    def experiments(self) -> list[Experiment]:
        return sorted(self._experiments.values(), key=lambda e: e.id)

    def runs(self, experiment_ids: Sequence[str], since: datetime | None = None) -> Iterator[Run]:
        for run in self._runs.values():
            started = run.start_time or 0
            if run.experiment_id in experiment_ids and (since is None or started >= since.timestamp() * 1000):
                yield self._listed(run)

    def runs_by_id(self, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> dict[str, Run]:
        return {i: self._listed(self._runs[i]) for i in run_ids if i in self._runs}

    def insert(self, run_id: str, key: str, position: int, value: float, step: int, timestamp: int) -> None:
        """A point logged out of order: it lands at `position` of the history's order."""
        self._histories[(run_id, key)].insert(position, MetricPoint(key, value, timestamp, step))

    def metric_history_pages(
        self, run_id: str, key: str, page_token: str | None = None
    ) -> Iterator[list[MetricPoint]]:
        """Pages by offset, as MLflow's SQL store does; the token is the offset."""
        self.history_reads.append((run_id, key))
        self.tokens.append(page_token)
        points = list(self._histories.get((run_id, key), []))
        for start in range(int(page_token or 0), max(len(points), 1), self.page):
            if self.crash_after_pages is not None and self.pages_read >= self.crash_after_pages:
                raise RuntimeError(f"simulated crash after {self.pages_read} history pages")
            self.pages_read += 1
            page = HistoryPage(points[start : start + self.page])
            page.next_token = str(start + self.page) if start + self.page < len(points) else None
            yield page

    def metric_histories(self, key: str, run_ids: Sequence[str]) -> dict[str, Iterable[list[MetricPoint]]]:
        return {run_id: list(self.metric_history_pages(run_id, key)) for run_id in run_ids}

    def model_versions(self) -> list[ModelVersion]:
        return list(self.versions)

    def logged_models(self, experiment_ids: Sequence[str]) -> list[LoggedModel]:
        return [m for m in self.logged if m.experiment_id in experiment_ids]

    def _listed(self, run: Run) -> Run:
        """The run as a tracking server lists it: with the latest point of each key, which MLflow
        picks by step, then timestamp, then value."""
        latest = {
            key: max(points, key=lambda p: (p.step, p.timestamp, p.value))
            for (run_id, key), points in self._histories.items()
            if run_id == run.id and points
        }
        return dataclasses.replace(run, latest_metrics=latest)
