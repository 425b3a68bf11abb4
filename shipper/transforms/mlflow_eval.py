"""MLflow 3's evaluation context -> Elasticsearch fields. Pure functions: no I/O, no clock.

MLflow 3 logs a metric against a logged model and an evaluation dataset
(`mlflow.log_metric(key, value, model_id=..., dataset=...)`); a run's metric history does not say
which. The logged model lists every such point with its dataset, so:

- each becomes a metric point of its own in `mlops-metrics-*`, with `ml.model.logged_id`,
  `mlflow.dataset.{name,digest}` and the registered versions registered from that logged model;
- a registered version (and the logged model's own document) carries the final value of each metric
  per dataset, `mlflow.datasets.<dataset>.<key>`;
- runs (and their points) carry their inputs: `mlflow.inputs.datasets` and `mlflow.inputs.model_ids`
  (`run_inputs` in shipper.transforms.mlflow_docs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from shipper.core.entities import EntityWrite
from shipper.core.names import metrics_index
from shipper.sources.records import Experiment, LoggedModel, LoggedModelMetric, ModelVersion, Run
from shipper.transforms.mlflow_docs import (
    ModelLink,
    iso,
    link_of,
    logged_model_write,
    model_version_write,
    nonfinite_label,
    split_nonfinite,
)

ORIGIN = "logged_model"  # `mlflow.metric.origin` of points read from a logged model


def logged_metric_id(model_id: str, metric: LoggedModelMetric) -> str:
    """The natural key of a logged model's metric point: model, run, key, step, timestamp and
    dataset. Not the run history's id: the same value at the same step is a point of the run and,
    separately, a point of the model on that dataset."""
    parts = (
        ORIGIN,
        model_id,
        metric.run_id or "",
        metric.key,
        str(metric.step),
        str(metric.timestamp),
        metric.dataset_name or "",
        metric.dataset_digest or "",
    )
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def links_by_logged_model(versions: Iterable[ModelVersion]) -> dict[str, ModelLink]:
    """logged model id -> the registered versions registered from it."""
    by_model: dict[str, list[ModelVersion]] = {}
    for mv in versions:
        if mv.model_id:
            by_model.setdefault(mv.model_id, []).append(mv)
    return {model_id: link_of(mvs) for model_id, mvs in by_model.items()}


def model_inputs_by_run(models: Iterable[LoggedModel]) -> dict[str, tuple[str, ...]]:
    """run id -> the logged models that run logged metrics against. MLflow records these as the
    run's model inputs, but its run search does not return model inputs (only `runs/get` does), so
    they are taken from the logged models the pass lists anyway."""
    found: dict[str, set[str]] = {}
    for lm in models:
        for metric in lm.metrics:
            if metric.run_id:
                found.setdefault(metric.run_id, set()).add(lm.id)
    return {run_id: tuple(sorted(ids)) for run_id, ids in found.items()}


def logged_metric_action(
    lm: LoggedModel,
    metric: LoggedModelMetric,
    experiment: Experiment | None,
    run_names: dict[str, str],
    link: ModelLink,
) -> dict[str, Any]:
    """A logged model's metric point as an index action for `mlops-metrics-*`."""
    fields: dict[str, Any] = {"key": metric.key, "step": metric.step, "origin": ORIGIN}
    label = nonfinite_label(metric.value)
    if label is None:
        fields["value"] = metric.value
    else:
        fields["value_nonfinite"] = label
    mlflow: dict[str, Any] = {}
    if experiment is not None:
        mlflow["experiment"] = {"id": experiment.id, "name": experiment.name}
    if metric.run_id:
        mlflow["run"] = {"id": metric.run_id}
        if metric.run_id in run_names:
            mlflow["run"]["name"] = run_names[metric.run_id]
    mlflow["metric"] = fields
    if metric.dataset_name or metric.dataset_digest:
        mlflow["dataset"] = {"name": metric.dataset_name, "digest": metric.dataset_digest}
    model: dict[str, Any] = {"logged_id": lm.id, "logged_name": lm.name}
    model |= link.fields().get("model", {})
    return {
        "_op_type": "index",
        "_index": metrics_index(metric.timestamp),
        "_id": logged_metric_id(lm.id, metric),
        "_source": {"@timestamp": iso(metric.timestamp), "mlflow": mlflow, "ml": {"model": model}},
    }


def final_by_dataset(
    metrics: Iterable[LoggedModelMetric],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str]], list[LoggedModelMetric]]:
    """The final point of each (dataset, key): the highest step, then the latest time, as MLflow
    picks a run's latest metric. Returns finite values {dataset: {key: value}}, non-finite ones as
    labels, and the final points logged without a dataset."""
    final: dict[tuple[str | None, str], LoggedModelMetric] = {}
    for m in metrics:
        slot = (m.dataset_name, m.key)
        known = final.get(slot)
        if known is None or (m.step, m.timestamp) >= (known.step, known.timestamp):
            final[slot] = m
    finite: dict[str, dict[str, float]] = {}
    other: dict[str, dict[str, str]] = {}
    undated: list[LoggedModelMetric] = []
    for (dataset, key), m in sorted(final.items(), key=lambda item: (item[0][0] or "", item[0][1])):
        if dataset is None:
            undated.append(m)
            continue
        label = nonfinite_label(m.value)
        if label is None:
            finite.setdefault(dataset, {})[key] = m.value
        else:
            other.setdefault(dataset, {})[key] = label
    return finite, other, undated


def evaluation_fields(lm: LoggedModel | None) -> dict[str, Any]:
    """What a model document (a registered version, or the logged model itself) says of the
    logged model's evaluations: `mlflow.datasets.<dataset>.<key>` (final values),
    `mlflow.datasets_nonfinite`, and `mlflow.dataset.{name,digest}` (the datasets, for filters)."""
    if lm is None or not lm.metrics:
        return {}
    finite, other, _ = final_by_dataset(lm.metrics)
    fields: dict[str, Any] = {}
    if finite:
        fields["datasets"] = finite
    if other:
        fields["datasets_nonfinite"] = other
    named = sorted({(m.dataset_name, m.dataset_digest or "") for m in lm.metrics if m.dataset_name})
    if named:
        fields["dataset"] = {
            "name": sorted({name for name, _ in named if name}),
            "digest": sorted({digest for _, digest in named if digest}),
        }
    return fields


def undated_metrics(lm: LoggedModel | None) -> tuple[dict[str, float], dict[str, str]]:
    """The final values of the metrics logged against `lm` without a dataset: the metrics of a
    version registered from a logged model that has no source run."""
    if lm is None:
        return {}, {}
    _, _, undated = final_by_dataset(lm.metrics)
    return split_nonfinite((m.key, m.value) for m in undated)


def with_model_inputs(run: Run, model_ids: Iterable[str]) -> Run:
    """The run, its model inputs completed with the logged models it logged metrics against."""
    merged = tuple(sorted(set(run.model_inputs) | set(model_ids)))
    return run if merged == run.model_inputs else replace(run, model_inputs=merged)


def _add_evaluation(doc: dict[str, Any], lm: LoggedModel | None, model_id: str | None) -> dict[str, Any]:
    if model_id:
        doc["ml"]["model"]["logged_id"] = model_id
    fields = evaluation_fields(lm)
    if fields:
        doc.setdefault("mlflow", {}).update(fields)
    return doc


def version_write(
    mv: ModelVersion,
    source_run: Run | None,
    experiment: Experiment | None,
    stamp: int,
    lm: LoggedModel | None,
) -> EntityWrite:
    """A registered version's document, with `ml.model.logged_id` and its logged model's final
    metrics per dataset. A version with no source run takes its `mlflow.metrics` from the metrics
    logged against its logged model without a dataset."""
    write = model_version_write(mv, source_run, experiment, stamp)
    doc = _add_evaluation(write.doc, lm, mv.model_id)
    if source_run is None and lm is not None:
        finite, other = undated_metrics(lm)
        if finite or other:
            mlflow = doc.setdefault("mlflow", {})
            mlflow["metrics"] = finite
            if other:
                mlflow["metrics_nonfinite"] = other
            mlflow["metric"] = {"key": sorted(finite.keys() | other.keys())}
    return write


def logged_write(lm: LoggedModel, experiment: Experiment | None, stamp: int) -> EntityWrite:
    """A logged model's document, with `ml.model.logged_id` and its final metrics per dataset."""
    write = logged_model_write(lm, experiment, stamp)
    _add_evaluation(write.doc, lm, lm.id)
    return write
