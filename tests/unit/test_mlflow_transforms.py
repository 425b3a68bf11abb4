"""Golden tests of the MLflow transforms: records in, documents out, no server."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from shipper.core.versions import version_number
from shipper.sources.records import Experiment, MetricPoint, ModelVersion, Run
from shipper.transforms.mlflow_docs import (
    metric_point_action,
    metric_point_id,
    model_links,
    model_version_write,
    nonfinite_label,
    run_write,
)
from tests.support import golden

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "mlflow"


def _value(raw: Any) -> float:
    return float(raw)  # "NaN", "Infinity", "-Infinity" parse as Python floats


def _point(raw: dict[str, Any]) -> MetricPoint:
    return MetricPoint(raw["key"], _value(raw["value"]), raw["timestamp"], raw["step"])


def _load() -> dict[str, Any]:
    data = json.loads((GOLDEN / "input.json").read_text(encoding="utf-8"))
    raw_run = data["run"]
    run = Run(
        **{k: v for k, v in raw_run.items() if k != "latest_metrics"},
        latest_metrics={k: _point(v) for k, v in raw_run["latest_metrics"].items()},
    )
    versions = [ModelVersion(**{**v, "aliases": tuple(v["aliases"])}) for v in data["model_versions"]]
    return {
        "experiment": Experiment(**data["experiment"]),
        "run": run,
        "points": [_point(p) for p in data["points"]],
        "versions": versions,
        "stamp": data["stamp"],
    }


def _render() -> dict[str, Any]:
    g = _load()
    links = model_links(g["versions"])
    link = links[g["run"].id]
    return {
        "metric_points": [metric_point_action(g["run"], g["experiment"], p, link) for p in g["points"]],
        "run": asdict(run_write(g["run"], g["experiment"], link, g["stamp"])),
        "model_versions": [
            asdict(model_version_write(mv, g["run"], g["experiment"], g["stamp"])) for mv in g["versions"]
        ],
    }


def test_documents_match_golden(update_golden: bool) -> None:
    expected_file = GOLDEN / "expected.json"
    actual = json.loads(json.dumps(_render(), ensure_ascii=False))
    expected, actual = golden.compare_json(expected_file, actual, update_golden, __file__)
    assert actual == expected


def test_nonfinite_values_are_kept_visibly() -> None:
    docs = _render()["metric_points"]
    loss = next(d for d in docs if d["_source"]["mlflow"]["metric"]["key"] == "loss")
    assert "value" not in loss["_source"]["mlflow"]["metric"]
    assert loss["_source"]["mlflow"]["metric"]["value_nonfinite"] == "NaN"
    assert nonfinite_label(-math.inf) == "-Infinity"
    assert nonfinite_label(0.0) is None


def test_points_partition_by_their_own_month() -> None:
    docs = _render()["metric_points"]
    assert docs[0]["_index"] == "mlops-metrics-2024.05"
    assert docs[-1]["_index"] == "mlops-metrics-2024.06"


def test_ids_are_deterministic_and_distinguish_natural_keys() -> None:
    p = MetricPoint("acc", 0.5, 1000, 1)
    assert metric_point_id("r", p) == metric_point_id("r", MetricPoint("acc", 0.9, 1000, 1))
    assert metric_point_id("r", p) != metric_point_id("r", MetricPoint("acc", 0.5, 1000, 2))
    assert metric_point_id("r", p) != metric_point_id("r2", p)


@pytest.mark.parametrize(
    ("version", "number"),
    [
        ("1", 1),
        ("10", 10),
        ("v2", None),
        ("", None),
        ("\u00b2", None),  # isdigit() is True for "²", int() refuses it
        ("1\u0661", None),  # an Arabic-Indic digit: int() would read it, the registry never writes it
        ("9" * 18, 10**18 - 1),
        ("9" * 19, None),  # more than a long holds
    ],
)
def test_version_number(version: str, number: int | None) -> None:
    assert version_number(version) == number


def test_model_links_sort_versions_numerically() -> None:
    g = _load()
    link = model_links(g["versions"])[g["run"].id]
    assert link.versions == ("2", "10")
    assert link.fields()["model"]["version_number"] == [2, 10]
    assert link.fields()["model"]["aliases"] == ["champion"]


def test_experiment_filters_by_name_or_id() -> None:
    from shipper.sources.interface import select_experiments

    experiments = [Experiment("0", "Default"), Experiment("7", "churn"), Experiment("9", "fraud")]
    assert [e.id for e in select_experiments(experiments)] == ["0", "7", "9"]
    assert [e.id for e in select_experiments(experiments, include=["churn", "9"])] == ["7", "9"]
    assert [e.id for e in select_experiments(experiments, exclude=["0"])] == ["7", "9"]
    assert select_experiments(experiments, include=["nope"]) == []


def test_a_version_without_run_id_takes_the_id_of_the_run_it_is_given() -> None:
    g = _load()
    mv = ModelVersion("churn", "3", 1_700_000_000_000, None, run_id=None)
    doc = model_version_write(mv, g["run"], g["experiment"], g["stamp"]).doc
    assert doc["mlflow"]["run"] == {"id": g["run"].id, "name": g["run"].name}
    alone = model_version_write(mv, None, None, g["stamp"]).doc
    assert "mlflow" not in alone or "run" not in alone["mlflow"]
