"""`shipper compare` on the real stack: the demo experiment (examples/demo_experiment.py) and a
model with non-finite metrics are logged to the real MLflow server, `shipper setup` and `shipper
sync` ship them to the real Elasticsearch, and `shipper compare --json` must print the values that
were logged. The expected values are computed here from the demo's own recipe (seed, formula,
steps), not taken from the command's output."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from tests.integration.test_mlflow_sync import log_experiment

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def ship(es: Any) -> None:
    """`shipper setup` and `shipper sync`, then a refresh so the new versions are searchable."""
    shipper("setup")
    shipper("sync")
    es.indices.refresh(index="mlops-models")


def shipper(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main_group, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def run_demo(mlflow_uri: str, suffix: str) -> tuple[str, str]:
    """examples/demo_experiment.py, unchanged but for unique experiment and model names."""
    import mlflow

    spec = importlib.util.spec_from_file_location("demo_experiment", REPO / "examples" / "demo_experiment.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.EXPERIMENT = f"demo-churn-classifier-{suffix}"
    demo.MODEL = f"demo-churn-model-{suffix}"
    mlflow.set_tracking_uri(mlflow_uri)
    demo.main([])
    return demo.EXPERIMENT, demo.MODEL


def demo_expectations() -> list[dict[str, float]]:
    """What examples/demo_experiment.py logs last, per version: three runs (lr 0.1, 0.03, 0.01),
    30 epochs each from one Random(7); accuracy = 0.95 - 0.45 exp(-3 epoch lr) + U(-0.01, 0.01),
    loss = 1 - accuracy, auc = min(0.99, accuracy + 0.03); the final values are epoch 29's."""
    rng = random.Random(7)
    finals = []
    for lr in (0.1, 0.03, 0.01):
        accuracy = 0.0
        for epoch in range(30):
            accuracy = 0.95 - 0.45 * math.exp(-epoch * lr * 3) + rng.uniform(-0.01, 0.01)
        finals.append({"accuracy": accuracy, "auc": min(0.99, accuracy + 0.03), "loss": 1 - accuracy})
    return finals


def test_compare_prints_what_the_demo_logged(
    env: dict[str, str], mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, es: Any
) -> None:
    from mlflow import MlflowClient

    experiment, model = run_demo(mlflow_uri, uuid.uuid4().hex[:8])
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", experiment)
    ship(es)

    table = json.loads(shipper("compare", "--model", model, "--json"))
    finals = demo_expectations()
    champion = str(1 + max(range(3), key=lambda i: finals[i]["accuracy"]))
    run_ids = [
        mv.run_id
        for mv in sorted(
            MlflowClient(mlflow_uri).search_model_versions(f"name = '{model}'"), key=lambda m: int(m.version)
        )
    ]
    assert table == {
        "model": model,
        "versions": [
            {
                "version": str(n),
                "aliases": ["champion"] if str(n) == champion else [],
                "stage": "None",
                "run_id": run_ids[n - 1],
                "metrics": finals[n - 1],
                "datasets": {},  # the demo logs no MLflow 3 evaluations
            }
            for n in (1, 2, 3)
        ],
    }
    # The demo's champion is its best run; with this seed that is the fastest learner, version 1.
    assert champion == "1"
    assert table["versions"][0]["metrics"]["accuracy"] == pytest.approx(0.95, abs=0.011)

    only = json.loads(shipper("compare", "--model", model, "--metric", "auc", "--json"))
    assert [v["metrics"] for v in only["versions"]] == [{"auc": f["auc"]} for f in finals]

    text = shipper("compare", "--model", model, "--metric", "accuracy", "--metric", "loss")
    lines = text.splitlines()
    assert lines[0].split() == ["version", "aliases", "stage", "run", "accuracy", "loss"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert lines[1].split()[1] == "champion"
    assert float(lines[2].split()[4]) == pytest.approx(finals[1]["accuracy"], rel=1e-5)


def test_compare_keeps_nonfinite_values_visible(
    env: dict[str, str], mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, es: Any
) -> None:
    logged = log_experiment(mlflow_uri)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", logged.experiment)
    ship(es)
    table = json.loads(shipper("compare", "--model", logged.model, "--json"))
    # test_mlflow_sync.log_experiment: v1 accuracy ends at 0.7, v2 at 0.85 (aliased champion), v3 at 0.88
    # with grad_norm NaN then Infinity (the latest, at step 1).
    assert [v["version"] for v in table["versions"]] == ["1", "2", "3"]
    assert [v["aliases"] for v in table["versions"]] == [[], ["champion"], []]
    assert [v["run_id"] for v in table["versions"]] == [
        logged.runs["v1"],
        logged.runs["v2"],
        logged.runs["v3"],
    ]
    assert table["versions"][0]["metrics"] == {"accuracy": 0.7, "loss": 1.0 - 0.7}
    assert table["versions"][1]["metrics"] == {"accuracy": 0.85, "loss": 1.0 - 0.85}
    assert table["versions"][2]["metrics"] == {"accuracy": 0.88, "grad_norm": "Infinity", "loss": 1.0 - 0.88}


def test_unknown_model_and_metric_are_named(
    env: dict[str, str], mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, es: Any
) -> None:
    logged = log_experiment(mlflow_uri)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", logged.experiment)
    output = CliRunner().invoke(main_group, ["compare", "--model", "x"])
    assert output.exit_code == 3
    assert "mlops-models does not exist" in output.output
    ship(es)
    missing = CliRunner().invoke(main_group, ["compare", "--model", "no-such-model"])
    assert missing.exit_code == 2
    assert "no registered model 'no-such-model'" in missing.output
    assert logged.model in missing.output
    assert "churn-gbm" not in missing.output  # an MLflow 3 logged model is not a registered model
    metric = CliRunner().invoke(main_group, ["compare", "--model", logged.model, "--metric", "f1"])
    assert metric.exit_code == 2
    assert "--metric 'f1': no version" in metric.output
    assert "accuracy, grad_norm, loss" in metric.output
