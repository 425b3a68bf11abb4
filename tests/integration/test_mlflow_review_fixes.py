"""Review fixes on the MLflow side, on real MLflow stores: Azure ML style run ids, and a new point
whose value equals the last one."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from shipper.sources.mlflow_tracking import MlflowSource

pytestmark = pytest.mark.integration

AUTOML_ID = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"


def test_runs_by_id_finds_azure_ml_run_ids(tmp_path: Path) -> None:
    """Azure ML names runs like `AutoML_<uuid>_5`; a model version's source run of that kind must
    be found (it carries the metrics copied onto the version). A real sqlite tracking store, with one
    run renamed to such an id in the store itself."""
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("azure-ids", artifact_location=str(tmp_path / "artifacts"))
    plain = client.create_run(experiment).info.run_id
    renamed = client.create_run(experiment).info.run_id
    with sqlite3.connect(db) as store:
        for table in ("runs", "tags"):
            store.execute(f"UPDATE {table} SET run_uuid = ? WHERE run_uuid = ?", (AUTOML_ID, renamed))
    client.log_metric(AUTOML_ID, "AUC_weighted", 0.91, step=0)

    found = MlflowSource(uri).runs_by_id([AUTOML_ID, plain, "missing_run_1"], [experiment])
    assert sorted(found) == sorted([AUTOML_ID, plain])
    assert found[AUTOML_ID].latest_metrics["AUC_weighted"].value == 0.91


def _points(es: Any, run_id: str) -> list[int]:
    es.indices.refresh(index="mlops-metrics-*", allow_no_indices=True, ignore_unavailable=True)
    hits = es.search(
        index="mlops-metrics-*",
        query={"term": {"mlflow.run.id": run_id}},
        size=100,
        allow_no_indices=True,
        ignore_unavailable=True,
    )["hits"]["hits"]
    return sorted(int(hit["_source"]["mlflow"]["metric"]["step"]) for hit in hits)


def test_a_new_point_with_the_same_value_is_shipped(
    es_url: str, mlflow_uri: str, es: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run document shows only each metric's latest value; a new point equal to the last one
    changes nothing there, but its time and step are new, and it must be shipped."""
    from mlflow import MlflowClient

    name = f"same-value-{uuid.uuid4().hex[:10]}"
    client = MlflowClient(mlflow_uri)
    run_id = client.create_run(client.create_experiment(name)).info.run_id
    now = int(time.time() * 1000)
    client.log_metric(run_id, "loss", 0.25, timestamp=now, step=0)
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", name)

    def sync() -> dict[str, Any]:
        result = CliRunner().invoke(main_group, ["sync", "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output.strip().splitlines()[-1]))

    assert CliRunner().invoke(main_group, ["setup"]).exit_code == 0
    sync()
    assert _points(es, run_id) == [0]
    client.log_metric(run_id, "loss", 0.25, timestamp=now + 1000, step=1)  # the same value again
    second = sync()
    assert second["runs_written"] == 1
    assert _points(es, run_id) == [0, 1]
    assert sync()["runs_unchanged"] == 1  # and nothing more once it is shipped
