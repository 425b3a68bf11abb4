"""MLflow 3's evaluation context on the real stack: metrics logged against logged models and
evaluation datasets, run inputs, and registered versions registered from logged models, logged to a
real MLflow 3 server with MLflow's own fluent API, synced by `shipper sync`, and checked exactly in a
real Elasticsearch; then `shipper compare --dataset` reads them back."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from shipper.cli import main_group
from tests.support import kibana_replay

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def shipper(*args: str) -> str:
    result = CliRunner().invoke(main_group, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def sync_json() -> dict[str, Any]:
    return dict(json.loads(shipper("sync", "--json").strip().splitlines()[-1]))


def count(es: Any, index: str, *filters: dict[str, Any]) -> int:
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    query = {"bool": {"filter": list(filters)}}
    return int(es.count(index=index, allow_no_indices=True, ignore_unavailable=True, query=query)["count"])


def term(field_name: str, value: Any) -> dict[str, Any]:
    return {"term": {field_name: value}}


def requests(kind: str) -> float:
    return REGISTRY.get_sample_value("shipper_mlflow_requests_total", {"kind": kind}) or 0.0


def replay(es: Any, lens_id: str, model: str) -> list[dict[str, Any]]:
    """A Lens panel of kibana/ as the comparison dashboard queries it with `model` picked."""
    objects = {}
    for line in (REPO / "kibana" / "mlops-saved-objects.ndjson").read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        objects[(obj["type"], obj["id"])] = obj
    views = {oid: o["attributes"] for (kind, oid), o in objects.items() if kind == "index-pattern"}
    filters = [{"match_phrase": {"ml.model.name": model}}]
    return kibana_replay.run(es, kibana_replay.lens_panel(objects[("lens", lens_id)], views, filters=filters))


@dataclass
class Evaluated:
    experiment: str
    model: str
    runs: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # logged model ids
    digests: dict[str, str] = field(default_factory=dict)


def log_evaluations(mlflow_uri: str) -> Evaluated:
    """Two trained models and one imported without a source run, each evaluated on eval-a and
    eval-b, and each registered as a version of one model."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.data.pandas_dataset import from_pandas

    mlflow.set_tracking_uri(mlflow_uri)
    client = MlflowClient(mlflow_uri)
    tag = uuid.uuid4().hex[:8]
    done = Evaluated(experiment=f"evaluation-{tag}", model=f"churn-eval-{tag}")
    experiment_id = mlflow.set_experiment(done.experiment).experiment_id
    train = from_pandas(pd.DataFrame({"x": [1, 2, 3, 4], "y": [0, 1, 0, 1]}), name="train")
    eval_a = from_pandas(pd.DataFrame({"x": [5, 6, 7], "y": [1, 0, 1]}), name="eval-a")
    eval_b = from_pandas(pd.DataFrame({"x": [8, 9], "y": [0, 0]}), name="eval-b")
    done.digests = {"train": train.digest, "eval-a": eval_a.digest, "eval-b": eval_b.digest}
    t = int(time.time() * 1000) - 60_000

    # (accuracy on eval-a, accuracy on eval-b, f1 on eval-a) of the two trained models
    for name, (acc_a, acc_b, f1_a) in {"r1": (0.81, 0.71, 0.61), "r2": (0.91, 0.65, 0.72)}.items():
        with mlflow.start_run(run_name=f"train-{name}") as run:
            mlflow.log_input(train, context="training")
            mlflow.log_input(eval_a, context="eval")
            mlflow.log_input(eval_b, context="eval")
            model_id = mlflow.initialize_logged_model(name=f"clf-{name}").model_id
            mlflow.log_metric("loss", 0.5, step=0, timestamp=t)
            mlflow.log_metric("accuracy", acc_a, step=0, timestamp=t + 1, model_id=model_id, dataset=eval_a)
            mlflow.log_metric("accuracy", acc_b, step=0, timestamp=t + 2, model_id=model_id, dataset=eval_b)
            mlflow.log_metric("f1", f1_a, step=0, timestamp=t + 3, model_id=model_id, dataset=eval_a)
            if name == "r2":  # evaluated twice on eval-a: the later, higher step is final
                mlflow.log_metric(
                    "accuracy", 0.93, step=1, timestamp=t + 4, model_id=model_id, dataset=eval_a
                )
        done.runs[name] = run.info.run_id
        done.models[name] = model_id

    # A model imported from elsewhere: no source run; an evaluation run measures it.
    imported = client.create_logged_model(experiment_id=experiment_id, name="imported-clf").model_id
    with mlflow.start_run(run_name="evaluate-imported") as run:
        mlflow.log_input(eval_a, context="eval")
        mlflow.log_metric("accuracy", 0.88, step=0, timestamp=t + 5, model_id=imported, dataset=eval_a)
        mlflow.log_metric("accuracy", 0.80, step=0, timestamp=t + 6, model_id=imported, dataset=eval_b)
        mlflow.log_metric("latency_ms", 12.0, step=0, timestamp=t + 7, model_id=imported)
    done.runs["r3"] = run.info.run_id
    done.models["r3"] = imported

    for name in ("r1", "r2", "r3"):
        mlflow.register_model(f"models:/{done.models[name]}", done.model)
    return done


@pytest.fixture
def evaluated(mlflow_uri: str) -> Evaluated:
    return log_evaluations(mlflow_uri)


def accuracy_on(es: Any, model: str, dataset: str) -> dict[str, float]:
    """The analyst's question: accuracy on one evaluation dataset, by registered version (the
    final point: highest step, then latest)."""
    es.indices.refresh(index="mlops-metrics-*")
    found = es.search(
        index="mlops-metrics-*",
        size=0,
        query={
            "bool": {
                "filter": [
                    term("ml.model.name", model),
                    term("mlflow.dataset.name", dataset),
                    term("mlflow.metric.key", "accuracy"),
                ]
            }
        },
        aggs={
            "version": {
                "terms": {"field": "ml.model.version", "size": 100},
                "aggs": {
                    "final": {
                        "top_hits": {
                            "size": 1,
                            "sort": [{"mlflow.metric.step": "desc"}, {"@timestamp": "desc"}],
                            "_source": ["mlflow.metric.value"],
                        }
                    }
                },
            }
        },
    )
    return {
        b["key"]: b["final"]["hits"]["hits"][0]["_source"]["mlflow"]["metric"]["value"]
        for b in found["aggregations"]["version"]["buckets"]
    }


def test_metrics_per_dataset_and_logged_model(
    env: dict[str, str], es: Any, evaluated: Evaluated, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str
) -> None:
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", evaluated.experiment)
    shipper("setup")
    first = sync_json()
    assert first["runs_seen"] == 3
    # run histories: r1 accuracy x2, f1, loss; r2 accuracy x3, f1, loss; r3 accuracy x2, latency_ms
    assert first["points_written"] == 4 + 5 + 3
    # logged models: 3 + 4 + 3 points, each with its model and dataset
    assert first["logged_model_points"] == 10
    in_experiment = term("mlflow.experiment.name", evaluated.experiment)
    assert count(es, "mlops-metrics-*", in_experiment) == 22
    assert count(es, "mlops-metrics-*", in_experiment, {"exists": {"field": "ml.model.logged_id"}}) == 10
    assert count(es, "mlops-metrics-*", in_experiment, term("mlflow.metric.origin", "logged_model")) == 10
    assert count(es, "mlops-metrics-*", in_experiment, term("mlflow.dataset.name", "eval-a")) == 6
    assert count(es, "mlops-metrics-*", in_experiment, term("mlflow.dataset.name", "eval-b")) == 3
    assert count(es, "mlops-metrics-*", term("mlflow.dataset.digest", evaluated.digests["eval-b"])) == 3
    assert count(es, "mlops-dead-letter") == 0
    es.indices.refresh(index="mlops-models")

    # One logged-model point, whole.
    r2, m2 = evaluated.runs["r2"], evaluated.models["r2"]
    es.indices.refresh(index="mlops-metrics-*")
    [point] = es.search(
        index="mlops-metrics-*",
        query={
            "bool": {
                "filter": [term("ml.model.logged_id", m2), term("mlflow.metric.step", 1)],
            }
        },
    )["hits"]["hits"]
    source = point["_source"]
    assert source["mlflow"]["metric"] == {
        "key": "accuracy",
        "step": 1,
        "value": 0.93,
        "origin": "logged_model",
    }
    assert source["mlflow"]["dataset"] == {"name": "eval-a", "digest": evaluated.digests["eval-a"]}
    assert source["mlflow"]["run"] == {"id": r2, "name": "train-r2"}
    assert source["ml"]["model"]["logged_id"] == m2
    assert source["ml"]["model"]["name"] == evaluated.model
    assert source["ml"]["model"]["version"] == "2"

    # The analyst's question, straight from the metric points.
    assert accuracy_on(es, evaluated.model, "eval-a") == {"1": 0.81, "2": 0.93, "3": 0.88}
    assert accuracy_on(es, evaluated.model, "eval-b") == {"1": 0.71, "2": 0.65, "3": 0.80}

    # The comparison dashboard: its dataset panel, replayed as Lens would query it for this model,
    # shows the same; the run-history panels keep to the source runs' points (version 3 has none).
    by_dataset = {
        (r["version"], r["series"]): r["final"]
        for r in replay(es, "mlops-final-metric-by-dataset", evaluated.model)
    }
    assert by_dataset == {
        ("1", ("eval-a", "accuracy")): 0.81,
        ("1", ("eval-a", "f1")): 0.61,
        ("1", ("eval-b", "accuracy")): 0.71,
        ("2", ("eval-a", "accuracy")): 0.93,
        ("2", ("eval-a", "f1")): 0.72,
        ("2", ("eval-b", "accuracy")): 0.65,
        ("3", ("eval-a", "accuracy")): 0.88,
        ("3", ("eval-b", "accuracy")): 0.8,
    }
    final = {(r["version"], r["key"]) for r in replay(es, "mlops-final-metric-by-version", evaluated.model)}
    assert final == {(v, k) for v in ("1", "2") for k in ("accuracy", "f1", "loss")}

    # Registered versions carry their logged model and its final metrics per dataset.
    v2 = es.get(index="mlops-models", id=f"{evaluated.model}/2")["_source"]
    assert v2["ml"]["model"]["logged_id"] == m2
    assert v2["mlflow"]["run"]["id"] == r2
    assert v2["mlflow"]["datasets"] == {
        "eval-a": {"accuracy": 0.93, "f1": 0.72},
        "eval-b": {"accuracy": 0.65},
    }
    assert v2["mlflow"]["dataset"]["name"] == ["eval-a", "eval-b"]
    # No source run: its metrics still come, from the logged model.
    v3 = es.get(index="mlops-models", id=f"{evaluated.model}/3")["_source"]
    assert v3["ml"]["model"]["logged_id"] == evaluated.models["r3"]
    assert "run" not in v3["mlflow"]
    assert v3["mlflow"]["metrics"] == {"latency_ms": 12.0}
    assert v3["mlflow"]["datasets"] == {"eval-a": {"accuracy": 0.88}, "eval-b": {"accuracy": 0.8}}
    assert v3["mlflow"]["experiment"]["name"] == evaluated.experiment
    logged_doc = es.get(index="mlops-models", id=f"logged/{m2}")["_source"]
    assert logged_doc["ml"]["model"]["logged_id"] == m2
    assert logged_doc["mlflow"]["datasets"] == v2["mlflow"]["datasets"]
    hits = es.search(
        index="mlops-models",
        query={
            "bool": {"filter": [in_experiment, {"range": {"mlflow.datasets.eval-a.accuracy": {"gte": 0.85}}}]}
        },
        size=10,
    )["hits"]["hits"]
    assert sorted(h["_id"] for h in hits) == sorted(
        [f"{evaluated.model}/2", f"{evaluated.model}/3", f"logged/{m2}", f"logged/{evaluated.models['r3']}"]
    )

    # Run inputs, on runs and on their points.
    r1_doc = es.get(index="mlops-runs", id=evaluated.runs["r1"])["_source"]
    datasets = {d["name"]: d for d in r1_doc["mlflow"]["inputs"]["datasets"]}
    assert sorted(datasets) == ["eval-a", "eval-b", "train"]
    assert datasets["train"]["context"] == "training"
    assert datasets["eval-a"]["context"] == "eval"
    assert datasets["train"]["digest"] == evaluated.digests["train"]
    assert datasets["train"]["source_type"] == "code"
    assert json.loads(datasets["train"]["profile"])["num_rows"] == 4
    assert r1_doc["mlflow"]["inputs"]["model_ids"] == [evaluated.models["r1"]]
    r3_doc = es.get(index="mlops-runs", id=evaluated.runs["r3"])["_source"]
    assert r3_doc["mlflow"]["inputs"]["model_ids"] == [evaluated.models["r3"]]
    r3_points = es.search(index="mlops-metrics-*", query=term("mlflow.run.id", evaluated.runs["r3"]), size=50)
    run_points = [
        h["_source"] for h in r3_points["hits"]["hits"] if "origin" not in h["_source"]["mlflow"]["metric"]
    ]
    assert len(run_points) == 3
    for p in run_points:
        assert p["mlflow"]["inputs"]["model_ids"] == [evaluated.models["r3"]]
        assert p["mlflow"]["inputs"]["datasets"] == [
            {
                "name": "eval-a",
                "digest": evaluated.digests["eval-a"],
                "source_type": "code",
                "context": "eval",
            },
            # logged by MLflow itself when a metric names the dataset, without a context
            {"name": "eval-b", "digest": evaluated.digests["eval-b"], "source_type": "code"},
        ]
    assert count(es, "mlops-runs", term("mlflow.inputs.datasets.context", "training")) == 2

    # `shipper compare --dataset`: per version, the values logged for that dataset.
    es.indices.refresh(index="mlops-models")
    table = json.loads(shipper("compare", "--model", evaluated.model, "--dataset", "eval-a", "--json"))
    assert [(v["version"], v["datasets"]) for v in table["versions"]] == [
        ("1", {"eval-a": {"accuracy": 0.81, "f1": 0.61}}),
        ("2", {"eval-a": {"accuracy": 0.93, "f1": 0.72}}),
        ("3", {"eval-a": {"accuracy": 0.88}}),
    ]
    assert table["versions"][2]["metrics"] == {"latency_ms": 12.0}

    # A re-sync reads no history and writes nothing.
    reads = {kind: requests(kind) for kind in ("get_metric_history", "get_run")}
    again = sync_json()
    assert again["history_reads"] == 0
    assert again["logged_model_points"] == 0
    assert again["writes"]["written"] == 0
    assert again["models_written"] == 0
    assert again["runs_unchanged"] == 3
    assert {kind: requests(kind) for kind in reads} == reads
    assert count(es, "mlops-metrics-*", in_experiment) == 22

    # A metric logged to a logged model after the first sync is picked up, alone.
    from mlflow import MlflowClient

    MlflowClient(mlflow_uri).log_metric(
        r2,
        "accuracy",
        0.95,
        step=2,
        model_id=m2,
        dataset_name="eval-a",
        dataset_digest=evaluated.digests["eval-a"],
    )
    later = sync_json()
    assert later["logged_model_points"] == 1
    assert later["points_written"] == 1  # the run's own history gained it too
    assert later["history_reads"] == 1
    assert count(es, "mlops-metrics-*", in_experiment) == 24
    assert count(es, "mlops-metrics-*", term("ml.model.logged_id", m2)) == 5
    assert accuracy_on(es, evaluated.model, "eval-a") == {"1": 0.81, "2": 0.95, "3": 0.88}
    v2 = es.get(index="mlops-models", id=f"{evaluated.model}/2")["_source"]
    assert v2["mlflow"]["datasets"]["eval-a"] == {"accuracy": 0.95, "f1": 0.72}
    es.indices.refresh(index="mlops-models")
    table = json.loads(shipper("compare", "--model", evaluated.model, "--dataset", "eval-a", "--json"))
    assert table["versions"][1]["datasets"] == {"eval-a": {"accuracy": 0.95, "f1": 0.72}}

    last = sync_json()
    assert last["writes"]["written"] == 0
    assert last["logged_model_points"] == 0
    assert last["history_reads"] == 0
