"""Registered model versions side by side: the data behind `shipper compare` and the Kibana
comparison panel.

`mlops-models` holds one document per registered model version (`ml.model.kind: registered`) with
the final metric values of its source run: finite ones under `mlflow.metrics.<key>` (double),
non-finite ones (NaN, ±Infinity) under `mlflow.metrics_nonfinite.<key>` as the keywords "NaN",
"Infinity", "-Infinity". A version registered from an MLflow 3 logged model also has that model's
final metrics per evaluation dataset, `mlflow.datasets.<dataset>.<key>` (and
`mlflow.datasets_nonfinite`). `query()` is the Elasticsearch request; `comparison()` is a pure
function that turns its hits into the table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from shipper.core.names import MODELS_INDEX
from shipper.core.versions import version_number

PAGE_SIZE = 1000
SOURCE_FIELDS = [
    "ml.model.name",
    "ml.model.version",
    "ml.model.aliases",
    "ml.model.stage",
    "ml.model.status",
    "mlflow.run.id",
    "mlflow.metrics",
    "mlflow.metrics_nonfinite",
    "mlflow.datasets",
    "mlflow.datasets_nonfinite",
]
NONFINITE = ("NaN", "Infinity", "-Infinity")


def query(model: str) -> dict[str, Any]:
    """Every registered version of `model` (not MLflow 3 logged models), in version order."""
    return {
        "query": {
            "bool": {
                "filter": [{"term": {"ml.model.name": model}}],
                "must_not": [{"term": {"ml.model.kind": "logged"}}],
            }
        },
        "sort": [
            {"ml.model.version_number": {"order": "asc", "missing": "_last", "unmapped_type": "long"}},
            {"ml.model.version": {"order": "asc", "unmapped_type": "keyword"}},
        ],
        "_source": SOURCE_FIELDS,
        "size": PAGE_SIZE,
        "track_total_hits": False,
    }


def models_query() -> dict[str, Any]:
    """The registered model names that exist, for the error naming them."""
    return {
        "size": 0,
        "query": {"bool": {"must_not": [{"term": {"ml.model.kind": "logged"}}]}},
        "aggs": {"models": {"terms": {"field": "ml.model.name", "size": 200, "order": {"_key": "asc"}}}},
    }


def _get(source: dict[str, Any], dotted: str) -> Any:
    """A field of `_source`, whether stored nested ({"ml": {"model": ...}}) or with dotted keys."""
    if dotted in source:
        return source[dotted]
    head, _, rest = dotted.partition(".")
    if rest and isinstance(source.get(head), dict):
        return _get(source[head], rest)
    # a partly dotted key such as {"ml.model": {"name": ...}}
    for key, value in source.items():
        if dotted.startswith(key + ".") and isinstance(value, dict):
            return _get(value, dotted[len(key) + 1 :])
    return None


def version_key(version: str) -> tuple[int, int, str]:
    """Registries use strings: "2" before "10"; non-numeric versions after the numeric ones."""
    number = version_number(version)
    return (0, number, version) if number is not None else (1, 0, version)


def _metric_value(value: Any) -> float | str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return number
    if isinstance(value, str) and value in NONFINITE:
        return value
    return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _dataset_values(source: dict[str, Any]) -> dict[str, dict[str, float | str]]:
    """`mlflow.datasets` and `mlflow.datasets_nonfinite` of one version: {dataset: {key: value}}."""
    found: dict[str, dict[str, float | str]] = {}
    for group in ("mlflow.datasets", "mlflow.datasets_nonfinite"):
        datasets = _get(source, group)
        if not isinstance(datasets, dict):
            continue
        for dataset, values in datasets.items():
            if not isinstance(values, dict):
                continue
            for key, raw in values.items():
                value = _metric_value(raw)
                if value is not None:
                    found.setdefault(str(dataset), {})[str(key)] = value
    return found


def _chosen(values: dict[str, Any], metrics: Sequence[str] | None) -> dict[str, Any]:
    if metrics:
        return {key: values.get(key) for key in metrics}
    return {key: values[key] for key in sorted(values)}


def comparison(
    model: str,
    hits: Iterable[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Search hits of `mlops-models` -> `{"model": ..., "versions": [...]}`.

    Each version: its `version` (the registry's string), `aliases`, `stage`, `run_id`,
    `metrics`, the final value per key (numbers; non-finite values as "NaN", "Infinity",
    "-Infinity"), and `datasets`, the final values of its logged model per evaluation dataset
    (`{dataset: {key: value}}`; every dataset, or with `dataset` only that one, empty where the
    version has no value for it). With `metrics`, only those keys, in that order, and a key the
    version lacks is null; without, every key the version has, sorted. Versions in numeric order.
    """
    versions: list[dict[str, Any]] = []
    for hit in hits:
        source = hit.get("_source", hit)
        if _get(source, "ml.model.name") != model:
            continue
        values: dict[str, float | str | None] = {}
        for group in ("mlflow.metrics", "mlflow.metrics_nonfinite"):
            found = _get(source, group)
            if isinstance(found, dict):
                for key, raw in found.items():
                    value = _metric_value(raw)
                    if value is not None:
                        values[key] = value
        chosen = _chosen(values, metrics)
        per_dataset = _dataset_values(source)
        if dataset is not None:
            per_dataset = {dataset: per_dataset.get(dataset, {})}
        datasets = {name: _chosen(per_dataset[name], metrics) for name in sorted(per_dataset)}
        stage = _get(source, "ml.model.stage")
        run_id = _get(source, "mlflow.run.id")
        versions.append(
            {
                "version": str(_get(source, "ml.model.version")),
                "aliases": sorted(_as_list(_get(source, "ml.model.aliases"))),
                "stage": None if stage is None else str(stage),
                "run_id": None if run_id is None else str(run_id),
                "metrics": chosen,
                "datasets": datasets,
            }
        )
    versions.sort(key=lambda v: version_key(v["version"]))
    return {"model": model, "versions": versions}


def metric_keys(table: dict[str, Any], dataset: str | None = None) -> list[str]:
    """Every metric key of any version of the table (with `dataset`, of that dataset), sorted."""
    if dataset is not None:
        return sorted({key for v in table["versions"] for key in v["datasets"].get(dataset, {})})
    return sorted({key for version in table["versions"] for key in version["metrics"]})


def dataset_names(table: dict[str, Any]) -> list[str]:
    """Every evaluation dataset any version of the table has values for, sorted."""
    return sorted({name for v in table["versions"] for name, values in v["datasets"].items() if values})


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_text(
    table: dict[str, Any], metrics: Sequence[str] | None = None, dataset: str | None = None
) -> str:
    """The table for a terminal: one row per version, one column per metric (`metrics` in that
    order, else every metric, sorted); with `dataset`, the values logged for that dataset."""
    keys = list(metrics) if metrics else metric_keys(table, dataset)
    header = ["version", "aliases", "stage", "run", *keys]
    rows = [header]
    for v in table["versions"]:
        rows.append(
            [
                v["version"],
                ",".join(v["aliases"]) or "-",
                _cell(v["stage"]),
                _cell(v["run_id"]),
                *(_cell(_values(v, dataset).get(k)) for k in keys),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {i for i in range(4, len(header))}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    if dataset is not None:
        lines.insert(0, f"dataset: {dataset}")
    return "\n".join(lines)


def _values(version: dict[str, Any], dataset: str | None) -> dict[str, Any]:
    if dataset is None:
        return dict(version["metrics"])
    return dict(version["datasets"].get(dataset, {}))


def fetch(client: Any, model: str) -> list[dict[str, Any]]:
    """Every hit of `query(model)`, page by page (search_after), none lost to a size limit."""
    body = query(model)
    hits: list[dict[str, Any]] = []
    while True:
        page = client.search(index=MODELS_INDEX, **body)["hits"]["hits"]
        hits.extend(page)
        if len(page) < PAGE_SIZE:
            return hits
        body["search_after"] = page[-1]["sort"]


def model_names(client: Any) -> list[str]:
    result = client.search(index=MODELS_INDEX, **models_query())
    return [bucket["key"] for bucket in result["aggregations"]["models"]["buckets"]]
