"""MLflow records -> Elasticsearch documents. Pure functions: no I/O, no clock.

Field names follow DESIGN.md's data contract. Non-finite metric values (NaN, ±Infinity), which
MLflow accepts and an Elasticsearch double does not, are kept visibly: the numeric field is left
out and a keyword field says which value it was.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from shipper.core.entities import EntityWrite
from shipper.core.names import MODELS_INDEX, RUNS_INDEX, metrics_index
from shipper.core.versions import version_number
from shipper.sources.records import Experiment, LoggedModel, MetricPoint, ModelVersion, Run

MAX_ID_BYTES = 512
_INT64_MAX = 2**63 - 1  # the largest value of an Elasticsearch long


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as `2024-05-01T12:34:56.789Z` (UTC, millisecond precision)."""
    if ms is None:
        return None
    day, in_day = divmod(ms, 86_400_000)
    seconds, millis = divmod(in_day, 1000)
    clock = f"{_TWO[seconds // 3600]}:{_TWO[seconds // 60 % 60]}:{_TWO[seconds % 60]}.{_THREE[millis]}"
    return f"{_day_prefix(day)}{clock}Z"


# Zero-padded numbers, looked up instead of formatted (a third of the time).
_TWO = tuple(f"{n:02d}" for n in range(60))
_THREE = tuple(f"{n:03d}" for n in range(1000))


@lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    # Integer arithmetic for the time of day, one datetime per day: formatting a datetime per
    # point was 17% of a backfill's CPU. (The same text as datetime's isoformat, exactly.)
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")


def nonfinite_label(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return None


def _hash_id(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def metric_point_id(run_id: str, point: MetricPoint) -> str:
    """The natural key of a metric point: run, key, step, timestamp."""
    return _hash_id(run_id, point.key, str(point.step), str(point.timestamp))


def model_version_id(name: str, version: str) -> str:
    readable = f"{name}/{version}"
    return readable if len(readable.encode()) <= MAX_ID_BYTES else _hash_id(name, version)


def logged_model_id(model_id: str) -> str:
    return f"logged/{model_id}"


@dataclass(frozen=True)
class ModelLink:
    """The registered versions a run produced: what every metric point of that run is split by."""

    names: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        if not self.refs:
            return {}
        model: dict[str, Any] = {
            "name": _one_or_many(self.names),
            "version": _one_or_many(self.versions),
            "ref": _one_or_many(self.refs),
        }
        numbers = [n for n in (version_number(v) for v in self.versions) if n is not None]
        if numbers:
            model["version_number"] = _one_or_many(tuple(numbers))
        if self.aliases:
            model["aliases"] = list(self.aliases)
        return {"model": model}


def _one_or_many(values: tuple[Any, ...]) -> Any:
    return values[0] if len(values) == 1 else list(values)


def model_links(versions: Iterable[ModelVersion]) -> dict[str, ModelLink]:
    """run id -> the registered model versions whose source is that run."""
    by_run: dict[str, list[ModelVersion]] = {}
    for mv in versions:
        if mv.run_id:
            by_run.setdefault(mv.run_id, []).append(mv)
    return {run_id: link_of(mvs) for run_id, mvs in by_run.items()}


def link_of(mvs: list[ModelVersion]) -> ModelLink:
    """The link to these registered versions, in name and numeric version order."""
    mvs = sorted(mvs, key=lambda m: (m.name, version_number(m.version) or 0, m.version))
    return ModelLink(
        names=tuple(dict.fromkeys(m.name for m in mvs)),
        versions=tuple(m.version for m in mvs),
        aliases=tuple(sorted({a for m in mvs for a in m.aliases})),
        refs=tuple(f"{m.name}:{m.version}" for m in mvs),
    )


def run_inputs(run: Run, points: bool = False) -> dict[str, Any]:
    """`mlflow.inputs` (MLflow 3): the run's datasets (name, digest, source type, context, and on the
    run document the profile) and the logged models it consumed. Empty when it has none."""
    inputs: dict[str, Any] = {}
    if run.dataset_inputs:
        datasets = []
        for d in run.dataset_inputs:
            item: dict[str, Any] = {"name": d.name, "digest": d.digest}
            if d.source_type:
                item["source_type"] = d.source_type
            if d.context:
                item["context"] = d.context
            if d.profile and not points:
                item["profile"] = d.profile
            datasets.append(item)
        inputs["datasets"] = datasets
    if run.model_inputs:
        inputs["model_ids"] = list(run.model_inputs)
    return inputs


def metric_point_action(
    run: Run, experiment: Experiment, point: MetricPoint, link: ModelLink
) -> dict[str, Any]:
    return metric_point_actions(run, experiment, link, (point,))[0]


def metric_point_actions(
    run: Run, experiment: Experiment, link: ModelLink, points: Sequence[MetricPoint]
) -> list[dict[str, Any]]:
    """The bulk actions of several points of one run: the same documents as `metric_point_action`
    makes one at a time, built with what the points share (experiment, run, model link, id
    prefix) made once. The shared parts are the same objects in every action: read-only."""
    experiment_part = {"id": experiment.id, "name": experiment.name}
    run_part = {"id": run.id, "name": run.name}
    ml = link.fields()
    # Computed once: every point of the run carries the same inputs.
    inputs = run_inputs(run, points=True) if (run.dataset_inputs or run.model_inputs) else None
    id_prefix: dict[str, bytes] = {}
    days: dict[int, tuple[str, str]] = {}
    blake2b, two, three = hashlib.blake2b, _TWO, _THREE
    actions = []
    for point in points:
        key, value, timestamp, step = point.key, point.value, point.timestamp, point.step
        if value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
            metric: dict[str, Any] = {"key": key, "step": step, "value": value}
        else:
            metric = {"key": key, "step": step, "value_nonfinite": nonfinite_label(value)}
        day, in_day = divmod(timestamp, 86_400_000)
        known = days.get(day)
        if known is None:
            known = days[day] = (_day_prefix(day), metrics_index(timestamp))
        seconds, millis = divmod(in_day, 1000)
        source: dict[str, Any] = {
            "@timestamp": f"{known[0]}{two[seconds // 3600]}:{two[seconds // 60 % 60]}:{two[seconds % 60]}"
            f".{three[millis]}Z",
            "mlflow": {"experiment": experiment_part, "run": run_part, "metric": metric},
        }
        if ml:
            source["ml"] = ml
        if inputs:
            source["mlflow"]["inputs"] = inputs
        prefix = id_prefix.get(key)
        if prefix is None:
            prefix = id_prefix[key] = f"{run.id}\x1f{key}\x1f".encode()
        actions.append(
            {
                "_op_type": "index",
                "_index": known[1],
                # metric_point_id, inlined
                "_id": blake2b(prefix + b"%d\x1f%d" % (step, timestamp), digest_size=16).hexdigest(),
                "_source": source,
            }
        )
    return actions


def split_nonfinite(values: Iterable[tuple[str, float]]) -> tuple[dict[str, float], dict[str, str]]:
    """(key, value) pairs as two maps: finite values, and the labels of NaN and infinities (which a
    numeric field cannot hold)."""
    finite: dict[str, float] = {}
    other: dict[str, str] = {}
    for key, value in values:
        label = nonfinite_label(value)
        if label is None:
            finite[key] = value
        else:
            other[key] = label
    return finite, other


def run_document(run: Run, experiment: Experiment, link: ModelLink) -> dict[str, Any]:
    """The MLflow-owned part of a run entity (`mlflow.*`, `ml.*`, `user`, `event`, `@timestamp`)."""
    finite, nonfinite = split_nonfinite((p.key, p.value) for p in run.latest_metrics.values())
    run_fields: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "lifecycle_stage": run.lifecycle_stage,
        "start_time": iso(run.start_time),
        "end_time": iso(run.end_time),
    }
    if run.user:
        run_fields["user"] = run.user
    if run.artifact_uri:
        run_fields["artifact_uri"] = run.artifact_uri
    event: dict[str, Any] = {"kind": "state"}
    if run.start_time is not None and run.end_time is not None:
        run_fields["duration_ms"] = run.end_time - run.start_time
        nanoseconds = (run.end_time - run.start_time) * 1_000_000
        if abs(nanoseconds) <= _INT64_MAX:  # a long in ECS; beyond ~292 years only duration_ms says it
            event["duration"] = nanoseconds
    mlflow: dict[str, Any] = {
        "experiment": {"id": experiment.id, "name": experiment.name},
        "run": run_fields,
        "params": dict(run.params),
        "tags": dict(run.tags),
        "metrics": finite,
    }
    if nonfinite:
        mlflow["metrics_nonfinite"] = nonfinite
    if run.dataset_inputs or run.model_inputs:
        mlflow["inputs"] = run_inputs(run)
    doc: dict[str, Any] = {"@timestamp": iso(run.start_time), "mlflow": mlflow, "event": event}
    if run.user:
        doc["user"] = {"name": run.user}
    doc["ml"] = link.fields() or None
    return doc


def model_version_document(
    mv: ModelVersion, source_run: Run | None, experiment: Experiment | None
) -> dict[str, Any]:
    model: dict[str, Any] = {
        "kind": "registered",
        "name": mv.name,
        "version": mv.version,
        "aliases": list(mv.aliases),
        "stage": mv.stage,
        "status": mv.status,
        "ref": f"{mv.name}:{mv.version}",
        "last_updated": iso(mv.last_updated_timestamp),
        "tags": dict(mv.tags),
    }
    number = version_number(mv.version)
    if number is not None:
        model["version_number"] = number
    if mv.description:
        model["description"] = mv.description
    if mv.source:
        model["source"] = mv.source
    doc: dict[str, Any] = {"@timestamp": iso(mv.creation_timestamp), "ml": {"model": model}}
    mlflow: dict[str, Any] = {}
    if mv.run_id:
        mlflow["run"] = {"id": mv.run_id}
    if source_run is not None:
        # a version without run_id but with its run found (its logged model's run) keeps the run's id
        mlflow["run"] = {"id": mv.run_id or source_run.id, "name": source_run.name}
        finite, nonfinite = split_nonfinite((p.key, p.value) for p in source_run.latest_metrics.values())
        mlflow["metrics"] = finite
        if nonfinite:
            mlflow["metrics_nonfinite"] = nonfinite
        # The keys as values too: a dashboard's metric filter (`mlflow.metric.key`, as on metric
        # points) then keeps the versions that logged the metric instead of matching nothing.
        mlflow["metric"] = {"key": sorted(finite.keys() | nonfinite.keys())}
    if experiment is not None:
        mlflow["experiment"] = {"id": experiment.id, "name": experiment.name}
    if mlflow:
        doc["mlflow"] = mlflow
    if mv.user:
        doc["user"] = {"name": mv.user}
    return doc


def logged_model_document(lm: LoggedModel, experiment: Experiment | None) -> dict[str, Any]:
    model: dict[str, Any] = {
        "kind": "logged",
        "id": lm.id,
        "name": lm.name,
        "status": lm.status,
        "last_updated": iso(lm.last_updated_timestamp),
        "tags": dict(lm.tags),
    }
    if lm.model_type:
        model["type"] = lm.model_type
    doc: dict[str, Any] = {"@timestamp": iso(lm.creation_timestamp), "ml": {"model": model}}
    mlflow: dict[str, Any] = {"params": dict(lm.params)} if lm.params else {}
    if lm.source_run_id:
        mlflow["run"] = {"id": lm.source_run_id}
    if experiment is not None:
        mlflow["experiment"] = {"id": experiment.id, "name": experiment.name}
    if mlflow:
        doc["mlflow"] = mlflow
    return doc


def run_write(run: Run, experiment: Experiment, link: ModelLink, stamp: int) -> EntityWrite:
    return EntityWrite(RUNS_INDEX, run.id, "mlflow", stamp, run_document(run, experiment, link))


def model_version_write(
    mv: ModelVersion, source_run: Run | None, experiment: Experiment | None, stamp: int
) -> EntityWrite:
    return EntityWrite(
        MODELS_INDEX,
        model_version_id(mv.name, mv.version),
        "mlflow",
        stamp,
        model_version_document(mv, source_run, experiment),
    )


def logged_model_write(lm: LoggedModel, experiment: Experiment | None, stamp: int) -> EntityWrite:
    return EntityWrite(
        MODELS_INDEX, logged_model_id(lm.id), "mlflow", stamp, logged_model_document(lm, experiment)
    )
