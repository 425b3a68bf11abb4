"""Plain records of what a source read, independent of any client library's classes.

Transforms take these and return Elasticsearch documents; tests build them from golden JSON.
Times are epoch milliseconds, as MLflow keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class MetricPoint(NamedTuple):
    """One logged value. A named tuple: millions are made during a backfill, and a tuple is made
    in half the time of a frozen dataclass."""

    key: str
    value: float
    timestamp: int
    step: int


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    user: str | None = None
    lifecycle_stage: str = "active"
    artifact_uri: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # The latest point of each metric key, as the tracking server reports it with the run.
    latest_metrics: dict[str, MetricPoint] = field(default_factory=dict)
    # False when the client reported only each metric's latest value, not its time and step: then
    # nothing tells a new point from an old one, and every history is read on every pass.
    latest_exact: bool = True
    # MLflow 3: the datasets the run logged as inputs, and the logged models it consumed.
    dataset_inputs: tuple[DatasetInput, ...] = ()
    model_inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetInput:
    """A dataset a run logged as an input (`mlflow.log_input(dataset, context=...)`)."""

    name: str
    digest: str
    source_type: str | None = None
    context: str | None = None  # the `mlflow.data.context` tag: training, eval, ...
    profile: str | None = None  # MLflow's JSON profile (row counts), when small


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    creation_timestamp: int
    last_updated_timestamp: int | None
    run_id: str | None
    stage: str | None = None
    status: str | None = None
    description: str | None = None
    source: str | None = None
    user: str | None = None
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    # MLflow 3: the logged model this version was registered from (`models:/<model id>`).
    model_id: str | None = None


@dataclass(frozen=True)
class LoggedModelMetric:
    """A metric point logged against a logged model, usually for an evaluation dataset."""

    key: str
    value: float
    timestamp: int
    step: int
    run_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


@dataclass(frozen=True)
class LoggedModel:
    """An MLflow 3 logged model (a model artifact tracked apart from registry versions)."""

    id: str
    name: str
    experiment_id: str
    creation_timestamp: int
    last_updated_timestamp: int | None
    source_run_id: str | None
    status: str | None = None
    model_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    # Every metric point logged against it, as the server lists them (its whole history).
    metrics: tuple[LoggedModelMetric, ...] = ()
