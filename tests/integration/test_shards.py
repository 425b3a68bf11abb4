"""Scale-out on the real stack: several `shipper sync` processes, each SHIPPER_SHARD=i/n, run at the
same time against one MLflow and one Elasticsearch. Their union must be exactly what was logged (and
what one unsharded shipper writes), nothing lost, nothing duplicated, also after n changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from shipper.config import Shard
from shipper.core.names import STATE_INDEX
from shipper.sources.records import MetricPoint
from shipper.transforms.mlflow_docs import metric_point_id

pytestmark = pytest.mark.integration


class Logged:
    def __init__(self) -> None:
        self.experiments: dict[str, str] = {}  # id -> name
        self.points: dict[str, list[MetricPoint]] = {}  # run id -> its points
        self.model = ""
        self.versions = 0
        self.logged_models: list[str] = []


def _log(mlflow_uri: str) -> tuple[Any, Logged]:
    """Experiments until each shard of 2 and of 3 owns at least one (ids are the server's)."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    logged = Logged()
    prefix = f"shard-{uuid.uuid4().hex[:8]}"
    base = int(time.time() * 1000) - 3_600_000

    def covered() -> bool:
        return all(any(Shard(i, n).owns(e) for e in logged.experiments) for n in (2, 3) for i in range(n))

    while len(logged.experiments) < 5 or not covered():
        assert len(logged.experiments) < 30, "the hash put 30 experiments into too few shards"
        name = f"{prefix}-{len(logged.experiments)}"
        experiment_id = client.create_experiment(name)
        logged.experiments[experiment_id] = name
        for r in range(2):
            run_id = client.create_run(experiment_id, run_name=f"r{r}", start_time=base).info.run_id
            points = []
            for step in range(3 + r):
                for key, value in (("accuracy", 0.5 + step / 10), ("loss", 0.5 - step / 10)):
                    client.log_metric(run_id, key, value, timestamp=base + step * 1000, step=step)
                    points.append(MetricPoint(key, value, base + step * 1000, step))
            client.set_terminated(run_id, "FINISHED", end_time=base + 60_000)
            logged.points[run_id] = points
        logged.logged_models.append(
            client.create_logged_model(experiment_id, name=f"lm-{len(logged.logged_models)}").model_id
        )
    logged.model = f"{prefix}-model"
    client.create_registered_model(logged.model)
    first_run = next(iter(logged.points))
    client.create_model_version(logged.model, f"runs:/{first_run}/model", run_id=first_run)
    logged.versions = 1
    return client, logged


def _sync_shards(count: int, *extra: str) -> list[dict[str, Any]]:
    """`shipper sync --json` as `count` processes at once, SHIPPER_SHARD=i/count; their summaries."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shipper", "sync", "--json", *extra],
            env={**os.environ, "SHIPPER_SHARD": f"{i}/{count}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-4000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    return summaries


def _ids(es: Any, index: str, query: dict[str, Any]) -> list[str]:
    es.indices.refresh(index=index, allow_no_indices=True, ignore_unavailable=True)
    hits = es.search(index=index, query=query, size=10_000, source=False)["hits"]["hits"]
    return sorted(hit["_id"] for hit in hits)


def _check_exact(es: Any, logged: Logged) -> None:
    in_experiments = {"terms": {"mlflow.experiment.id": sorted(logged.experiments)}}
    expected_points = sorted(
        metric_point_id(run_id, p) for run_id, points in logged.points.items() for p in points
    )
    # Every logged point once: same ids, and as many documents as ids (no copy in another index).
    metric_ids = _ids(es, "mlops-metrics-*", in_experiments)
    assert metric_ids == expected_points
    assert es.count(index="mlops-metrics-*", query=in_experiments)["count"] == len(expected_points)
    assert _ids(es, "mlops-runs", in_experiments) == sorted(logged.points)
    assert _ids(es, "mlops-models", {"term": {"ml.model.name": logged.model}}) == [
        f"{logged.model}/{v}" for v in range(1, logged.versions + 1)
    ]
    assert _ids(es, "mlops-models", {"ids": {"values": [f"logged/{m}" for m in logged.logged_models]}}) == (
        sorted(f"logged/{m}" for m in logged.logged_models)
    )
    assert es.count(index="mlops-dead-letter", allow_no_indices=True, ignore_unavailable=True)["count"] == 0


def test_shards_together_ship_exactly_what_one_shipper_does(
    env: dict[str, str], es: Any, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, logged = _log(mlflow_uri)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", ",".join(logged.experiments.values()))
    result = CliRunner().invoke(main_group, ["setup"], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    two = _sync_shards(2)
    # Each experiment was looked at by exactly one shard, and each shard had some.
    assert sorted(s["experiments"] for s in two) == sorted(
        sum(Shard(i, 2).owns(e) for e in logged.experiments) for i in range(2)
    )
    assert sum(s["experiments"] for s in two) == len(logged.experiments)
    assert sum(s["runs_seen"] for s in two) == len(logged.points)
    assert sum(s["points_written"] for s in two) == sum(len(p) for p in logged.points.values())
    _check_exact(es, logged)
    # Each shard keeps its own models checkpoint; the unsharded one is not written.
    es.indices.refresh(index=STATE_INDEX)
    assert es.exists(index=STATE_INDEX, id="models-shard-0-of-2")
    assert es.exists(index=STATE_INDEX, id="models-shard-1-of-2")
    assert not es.exists(index=STATE_INDEX, id="models")

    # One unsharded shipper, from scratch, over the same data: the same documents, no more.
    before = {i: _ids(es, i, {"match_all": {}}) for i in ("mlops-metrics-*", "mlops-runs", "mlops-models")}
    result = CliRunner().invoke(main_group, ["sync", "--full"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    after = {i: _ids(es, i, {"match_all": {}}) for i in ("mlops-metrics-*", "mlops-runs", "mlops-models")}
    assert after == before
    _check_exact(es, logged)

    # More data, then three shards instead of two: nothing lost, nothing duplicated.
    for run_id, points in list(logged.points.items())[::2]:
        point = MetricPoint("accuracy", 0.99, points[-1].timestamp + 1000, points[-1].step + 1)
        client.log_metric(run_id, point.key, point.value, timestamp=point.timestamp, step=point.step)
        points.append(point)
    last_run = list(logged.points)[-1]
    client.create_model_version(logged.model, f"runs:/{last_run}/model", run_id=last_run)
    logged.versions = 2
    three = _sync_shards(3)
    assert sum(s["experiments"] for s in three) == len(logged.experiments)
    assert all(s["experiments"] > 0 for s in three)
    _check_exact(es, logged)
    # And again: a pass with nothing new writes nothing.
    again = _sync_shards(3)
    assert sum(s["writes"]["written"] for s in again) == 0
    _check_exact(es, logged)
