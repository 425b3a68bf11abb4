"""MLflow 3's evaluation context without a server: the REST JSON of a logged model and of a run's
inputs (as MLflow 3.17 answers, under tests/golden/mlflow_eval/) in, records and documents out,
with the expected values written by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

from shipper.sources.mlflow_rest import _inputs, _logged_model
from shipper.sources.mlflow_tracking import (
    dataset_inputs_of,
    logged_model_record,
    model_id_of_source,
    model_inputs_of,
)
from shipper.sources.records import (
    DatasetInput,
    Experiment,
    LoggedModel,
    LoggedModelMetric,
    MetricPoint,
    ModelVersion,
    Run,
)
from shipper.transforms.mlflow_docs import ModelLink, metric_point_action, run_write
from shipper.transforms.mlflow_eval import (
    evaluation_fields,
    links_by_logged_model,
    logged_metric_action,
    logged_metric_id,
    model_inputs_by_run,
    version_write,
    with_model_inputs,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mlflow_eval"
MODEL = "m-a60f677f89b74614805870af3353fc7b"
RUN = "6d832dc691be414eb9aa5a5da7952d17"
EXPERIMENT = Experiment("1", "churn")
POINT = MetricPoint("loss", 0.5, 1796072739126, 0)


def logged_model() -> LoggedModel:
    return logged_model_record(_logged_model(json.loads((GOLDEN / "logged-model.json").read_text())))


def version(number: str, model_id: str | None = MODEL, run_id: str | None = None) -> ModelVersion:
    return ModelVersion("churn", number, 1796072740923, 1796072740923, run_id, model_id=model_id)


def test_logged_model_metrics_from_rest_json() -> None:
    lm = logged_model()
    assert lm.status == "READY"
    assert [(m.key, m.step, m.dataset_name, m.dataset_digest) for m in lm.metrics] == [
        ("accuracy", 0, "eval-a", "a5357541"),  # proto3 JSON leaves out step 0
        ("accuracy", 1, "eval-b", "f8000997"),
        ("accuracy", 2, "eval-a", "a5357541"),
        ("accuracy", 2, "eval-a", "a5357541"),
        ("loss", 0, "eval-b", "f8000997"),
        ("latency_ms", 0, None, None),
    ]
    assert lm.metrics[0] == LoggedModelMetric("accuracy", 0.9, 1796072739126, 0, RUN, "eval-a", "a5357541")
    assert math.isnan(lm.metrics[4].value)


def test_run_inputs_from_rest_json() -> None:
    inputs = _inputs(json.loads((GOLDEN / "run-inputs.json").read_text()))
    assert dataset_inputs_of(inputs) == (
        DatasetInput("eval-a", "a5357541", "code", "eval", '{"num_rows": 3, "num_elements": 6}'),
        DatasetInput("eval-b", "f8000997", "code", None, '{"num_rows": 2, "num_elements": 4}'),
    )
    assert model_inputs_of(inputs) == (MODEL,)
    assert dataset_inputs_of(None) == () and model_inputs_of(_inputs({})) == ()


def test_a_versions_logged_model_comes_from_its_source_uri() -> None:
    assert model_id_of_source(f"models:/{MODEL}") == MODEL
    assert model_id_of_source("models:/churn/3") is None  # another registry version
    assert model_id_of_source("models:/churn@champion") is None
    assert model_id_of_source(f"runs:/{RUN}/model") is None
    assert model_id_of_source(None) is None


def test_a_logged_model_metric_point() -> None:
    lm = logged_model()
    link = links_by_logged_model([version("2"), version("1"), version("9", model_id="m-other")])[MODEL]
    action = logged_metric_action(lm, lm.metrics[2], EXPERIMENT, {RUN: "gentle-owl"}, link)
    assert action == {
        "_op_type": "index",
        "_index": "mlops-metrics-2026.11",
        "_id": logged_metric_id(MODEL, lm.metrics[2]),
        "_source": {
            "@timestamp": "2026-11-30T21:06:04.064Z",
            "mlflow": {
                "experiment": {"id": "1", "name": "churn"},
                "run": {"id": RUN, "name": "gentle-owl"},
                "metric": {"key": "accuracy", "step": 2, "origin": "logged_model", "value": 0.95},
                "dataset": {"name": "eval-a", "digest": "a5357541"},
            },
            "ml": {
                "model": {
                    "logged_id": MODEL,
                    "logged_name": "clf",
                    "name": "churn",
                    "version": ["1", "2"],
                    "ref": ["churn:1", "churn:2"],
                    "version_number": [1, 2],
                }
            },
        },
    }
    # NaN kept visibly; no dataset, no `mlflow.dataset`; a run not known by name: its id alone
    nan = logged_metric_action(lm, lm.metrics[4], None, {}, link)["_source"]
    assert nan["mlflow"]["metric"] == {
        "key": "loss",
        "step": 0,
        "origin": "logged_model",
        "value_nonfinite": "NaN",
    }
    plain = logged_metric_action(lm, lm.metrics[5], EXPERIMENT, {}, link)["_source"]["mlflow"]
    assert "dataset" not in plain and plain["run"] == {"id": RUN}


def test_ids_tell_models_datasets_and_times_apart() -> None:
    lm = logged_model()
    ids = {logged_metric_id(MODEL, m) for m in lm.metrics}
    assert len(ids) == len(lm.metrics)  # same key and step, another time: another point
    moved = LoggedModelMetric("accuracy", 0.9, 1796072739126, 0, RUN, "eval-b", "a5357541")
    assert logged_metric_id(MODEL, moved) != logged_metric_id(MODEL, lm.metrics[0])
    assert logged_metric_id("m-other", lm.metrics[0]) != logged_metric_id(MODEL, lm.metrics[0])
    assert logged_metric_id(MODEL, lm.metrics[0]) == logged_metric_id(MODEL, logged_model().metrics[0])


def test_final_values_per_dataset_highest_step_then_latest() -> None:
    assert evaluation_fields(logged_model()) == {
        # accuracy on eval-a: step 2 twice, the later (0.96) wins over 0.95 and step 0's 0.9
        "datasets": {"eval-a": {"accuracy": 0.96}, "eval-b": {"accuracy": 0.8}},
        "datasets_nonfinite": {"eval-b": {"loss": "NaN"}},
        "dataset": {"name": ["eval-a", "eval-b"], "digest": ["a5357541", "f8000997"]},
    }
    assert evaluation_fields(None) == {}


def test_a_version_without_source_run_takes_its_metrics_from_the_logged_model() -> None:
    doc = version_write(version("3"), None, EXPERIMENT, 5, logged_model()).doc
    assert doc["ml"]["model"]["logged_id"] == MODEL
    assert doc["mlflow"]["metrics"] == {"latency_ms": 12.5}  # the one logged without a dataset
    assert doc["mlflow"]["metric"] == {"key": ["latency_ms"]}
    assert doc["mlflow"]["datasets"]["eval-a"] == {"accuracy": 0.96}
    assert doc["mlflow"]["experiment"] == {"id": "1", "name": "churn"}
    # A version of a run without a logged model is as before.
    before = version_write(version("4", model_id=None), None, None, 5, None).doc
    assert "logged_id" not in before["ml"]["model"] and "mlflow" not in before


def test_run_inputs_on_the_run_and_on_its_points() -> None:
    run = Run(
        RUN,
        "gentle-owl",
        "1",
        "FINISHED",
        1,
        2,
        dataset_inputs=(DatasetInput("eval-a", "a5357541", "code", "eval", '{"num_rows": 3}'),),
    )
    consumed = model_inputs_by_run([logged_model()])
    assert consumed == {RUN: (MODEL,)}
    run = with_model_inputs(run, consumed[RUN])
    doc = run_write(run, EXPERIMENT, ModelLink(), 5).doc
    assert doc["mlflow"]["inputs"] == {
        "datasets": [
            {
                "name": "eval-a",
                "digest": "a5357541",
                "source_type": "code",
                "context": "eval",
                "profile": '{"num_rows": 3}',
            }
        ],
        "model_ids": [MODEL],
    }
    point = metric_point_action(run, EXPERIMENT, POINT, ModelLink())
    assert point["_source"]["mlflow"]["inputs"] == {
        "datasets": [{"name": "eval-a", "digest": "a5357541", "source_type": "code", "context": "eval"}],
        "model_ids": [MODEL],
    }
    # A run without inputs gets no `mlflow.inputs` at all (its documents are unchanged).
    bare = Run(RUN, "gentle-owl", "1", "FINISHED", 1, 2)
    assert "inputs" not in run_write(bare, EXPERIMENT, ModelLink(), 5).doc["mlflow"]
    assert "inputs" not in metric_point_action(bare, EXPERIMENT, POINT, ModelLink())["_source"]["mlflow"]
