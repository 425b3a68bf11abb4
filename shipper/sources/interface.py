"""The small interface the sync engine reads a tracking server through.

`MlflowSource` (shipper.sources.mlflow_tracking) is the real one, over MLflow's REST API or its
client. The engine depends on nothing else of a source, so its checkpoint logic can be exercised with
an in-memory source whose runs and histories a test writes by hand (tests/support/memory_source.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from shipper.sources.records import Experiment, LoggedModel, MetricPoint, ModelVersion, Run

log = logging.getLogger(__name__)

# The most points one page of a metric history holds (the engine bounds its read-ahead by it).
HISTORY_PAGE = 25_000


class HistoryPage(list[MetricPoint]):
    """One page of a metric history. `next_token` is the server's page token for the rest of it
    (None on the last page, or where the server gives none): the engine records it so that a
    restarted pass resumes a long history after the pages it already shipped."""

    next_token: str | None = None


class TrackingSource(Protocol):
    """What one sync pass reads. Every call may raise ShipperError (e.g. ConnectivityError)."""

    def experiments(self) -> list[Experiment]:
        """Every experiment, deleted ones included, sorted by id."""
        ...

    def runs(self, experiment_ids: Sequence[str], since: datetime | None = None) -> Iterator[Run]:
        """The runs of these experiments (deleted ones included) started at or after `since`, each
        with the latest point of each metric key, in a stable order."""
        ...

    def runs_by_id(self, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> dict[str, Run]:
        """These runs, by id, where they exist; ids that do not exist are left out."""
        ...

    def metric_history_pages(
        self, run_id: str, key: str, page_token: str | None = None
    ) -> Iterator[list[MetricPoint]]:
        """A metric's full history, in pages of at most HISTORY_PAGE points (HistoryPage where the
        server pages it); from `page_token` (a HistoryPage's next_token) on when given."""
        ...

    # Whether metric_histories may be asked: None until the server was tried, False where it has
    # no bulk history endpoint (the engine then reads every history with metric_history_pages).
    bulk_histories: bool | None

    def metric_histories(self, key: str, run_ids: Sequence[str]) -> dict[str, Iterable[list[MetricPoint]]]:
        """The full history of `key` in each of these runs, by run id, exact (never a sample)."""
        ...

    def model_versions(self) -> list[ModelVersion]:
        """Every registered model version, with its aliases."""
        ...

    def logged_models(self, experiment_ids: Sequence[str]) -> list[LoggedModel]:
        """The MLflow 3 logged models of these experiments; empty where the server has none."""
        ...


def select_experiments(
    experiments: Sequence[Experiment], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[Experiment]:
    """Apply the include/exclude filters, which name experiments by name or id."""
    wanted, unwanted = set(include), set(exclude)
    unknown = wanted - {e.id for e in experiments} - {e.name for e in experiments}
    if unknown:
        log.warning("experiments %s named in SHIPPER_MLFLOW_EXPERIMENTS do not exist", sorted(unknown))
    return [
        e
        for e in experiments
        if (not wanted or e.id in wanted or e.name in wanted) and not ({e.id, e.name} & unwanted)
    ]
