"""MLflow -> Elasticsearch on the real stack: a realistic experiment is logged to a real MLflow
tracking server, `shipper setup` and `shipper sync` run for real, and the documents in a real
Elasticsearch are checked exactly."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from shipper.cli import main_group
from tests.support.refusing_proxy import BulkRefusingProxy

pytestmark = pytest.mark.integration

LONG_TAG = "x" * 5000  # longer than any keyword's ignore_above: must stay in _source


def shipper(*args: str) -> Any:
    result = CliRunner().invoke(main_group, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def sync_json(*args: str) -> dict[str, Any]:
    result = shipper("sync", "--json", *args)
    return dict(json.loads(result.output.strip().splitlines()[-1]))


def count(es: Any, index: str, query: dict[str, Any] | None = None) -> int:
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    body = {"query": query} if query else {}
    return int(es.count(index=index, allow_no_indices=True, ignore_unavailable=True, **body)["count"])


def by_run(run_id: str) -> dict[str, Any]:
    return {"term": {"mlflow.run.id": run_id}}


class Logged:
    """What the test logged, as the truth to compare with."""

    def __init__(self) -> None:
        self.experiment = ""
        self.experiment_id = ""
        self.model = ""
        self.runs: dict[str, str] = {}  # role -> run id
        self.points: dict[str, dict[str, list[tuple[int, float]]]] = {}  # run id -> key -> (step, value)
        self.logged_model_id = ""


def log_experiment(mlflow_uri: str) -> Logged:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    logged = Logged()
    suffix = uuid.uuid4().hex[:8]
    logged.experiment = f"churn-{suffix}"
    logged.model = f"churn-model-{suffix}"
    logged.experiment_id = client.create_experiment(logged.experiment)
    base = int(time.time() * 1000) - 3_600_000

    def run_with(role: str, name: str, accuracy: list[float], status: str = "FINISHED") -> str:
        run = client.create_run(logged.experiment_id, run_name=name, start_time=base)
        run_id = run.info.run_id
        client.log_param(run_id, "learning_rate", "0.01")
        client.log_param(run_id, "optimizer.name", "adam")
        client.log_param(run_id, "optimizer", "adam")  # a key that is also a prefix of another
        client.set_tag(run_id, "team", "growth")
        client.set_tag(run_id, "notes.long", LONG_TAG)
        points: dict[str, list[tuple[int, float]]] = {"accuracy": [], "loss": []}
        for step, acc in enumerate(accuracy):
            client.log_metric(run_id, "accuracy", acc, timestamp=base + step * 1000, step=step)
            client.log_metric(run_id, "loss", 1.0 - acc, timestamp=base + step * 1000, step=step)
            points["accuracy"].append((step, acc))
            points["loss"].append((step, 1.0 - acc))
        if status != "RUNNING":
            client.set_terminated(run_id, status=status, end_time=base + 60_000)
        logged.runs[role] = run_id
        logged.points[run_id] = points
        return run_id

    v1 = run_with("v1", "baseline", [0.5, 0.6, 0.7])
    v2 = run_with("v2", "tuned", [0.6, 0.75, 0.82, 0.85])
    v3 = run_with("v3", "größer-模型-🚀", [0.7, 0.88])
    # Non-finite values are legal in MLflow.
    client.log_metric(v3, "grad_norm", math.nan, timestamp=base + 5000, step=0)
    client.log_metric(v3, "grad_norm", math.inf, timestamp=base + 6000, step=1)
    logged.points[v3]["grad_norm"] = [(0, math.nan), (1, math.inf)]
    run_with("running", "still-training", [0.1, 0.2], status="RUNNING")

    client.create_registered_model(logged.model)
    for run_id in (v1, v2, v3):
        client.create_model_version(logged.model, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(logged.model, "champion", "2")
    # An MLflow 3 logged model, apart from the registry.
    logged.logged_model_id = client.create_logged_model(
        logged.experiment_id, name="churn-gbm", source_run_id=v3, params={"depth": "6"}
    ).model_id
    return logged


@pytest.fixture
def logged(mlflow_uri: str) -> Logged:
    return log_experiment(mlflow_uri)


def expected_points(logged: Logged) -> int:
    return sum(len(v) for keys in logged.points.values() for v in keys.values())


def test_setup_is_idempotent_and_dry_run_changes_nothing(env: dict[str, str], es: Any) -> None:
    templates = (
        es.options(ignore_status=404).indices.get_index_template(name="mlops-*").get("index_templates", [])
    )
    for template in templates:
        es.indices.delete_index_template(name=template["name"])
    dry = shipper("setup", "--dry-run")
    assert "would create" in dry.output
    assert not es.options(ignore_status=404).indices.exists_index_template(name="mlops-runs")
    first = shipper("setup")
    assert "assets changed" in first.output
    assert es.indices.exists_index_template(name="mlops-runs")
    second = shipper("setup")
    assert "nothing changed" in second.output
    # A user's @custom template survives upgrades untouched.
    es.cluster.put_component_template(
        name="mlops-runs@custom", template={"settings": {"index": {"refresh_interval": "5s"}}}
    )
    es.cluster.put_component_template(
        name="mlops-runs@settings",
        template={"settings": {"index": {"number_of_shards": 1}}},
        meta={"managed_by": "shipper", "version": 0},
    )
    third = shipper("setup")
    assert "update" in third.output and "mlops-runs@settings" in third.output
    custom = es.cluster.get_component_template(name="mlops-runs@custom")
    assert custom["component_templates"][0]["component_template"]["template"]["settings"]["index"] == {
        "refresh_interval": "5s"
    }


def test_setup_reports_a_foreign_asset_instead_of_overwriting_it(env: dict[str, str], es: Any) -> None:
    shipper("setup")
    foreign = {"mappings": {"properties": {"theirs": {"type": "keyword"}}}}
    es.cluster.put_component_template(name="mlops-runs@mappings", template=foreign)
    try:
        result = CliRunner().invoke(main_group, ["setup"])
        assert result.exit_code == 4
        assert "mlops-runs@mappings" in result.output and "not made by the shipper" in result.output
        stored = es.cluster.get_component_template(name="mlops-runs@mappings")["component_templates"][0]
        assert stored["component_template"]["template"] == foreign
    finally:
        es.indices.delete_index_template(name="mlops-runs")
        es.cluster.delete_component_template(name="mlops-runs@mappings")
        shipper("setup")


def test_sync_ships_exactly_what_was_logged(
    env: dict[str, str], es: Any, logged: Logged, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str
) -> None:
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", logged.experiment)
    shipper("setup")
    summary = sync_json()
    assert summary["runs_seen"] == 4
    assert summary["points_written"] == expected_points(logged) == 24

    total = count(es, "mlops-metrics-*", {"term": {"mlflow.experiment.name": logged.experiment}})
    assert total == expected_points(logged)
    assert count(es, "mlops-runs", {"term": {"mlflow.experiment.id": logged.experiment_id}}) == 4
    assert count(es, "mlops-models", {"term": {"ml.model.name": logged.model}}) == 3
    logged_model = es.get(index="mlops-models", id=f"logged/{logged.logged_model_id}")["_source"]
    assert logged_model["ml"]["model"]["kind"] == "logged"
    assert logged_model["ml"]["model"]["name"] == "churn-gbm"
    assert logged_model["mlflow"]["run"]["id"] == logged.runs["v3"]
    assert logged_model["mlflow"]["experiment"]["name"] == logged.experiment
    assert count(es, "mlops-dead-letter") == 0

    # Values, exactly, including the non-finite ones.
    v3 = logged.runs["v3"]
    hits = es.search(
        index="mlops-metrics-*",
        query={"bool": {"filter": [by_run(v3), {"term": {"mlflow.metric.key": "grad_norm"}}]}},
        sort=[{"mlflow.metric.step": "asc"}],
    )["hits"]["hits"]
    assert [h["_source"]["mlflow"]["metric"].get("value_nonfinite") for h in hits] == ["NaN", "Infinity"]
    assert all("value" not in h["_source"]["mlflow"]["metric"] for h in hits)

    run_doc = es.get(index="mlops-runs", id=v3)["_source"]
    assert run_doc["mlflow"]["run"]["name"] == "größer-模型-🚀"
    assert run_doc["mlflow"]["run"]["status"] == "FINISHED"
    assert run_doc["mlflow"]["params"] == {
        "learning_rate": "0.01",
        "optimizer.name": "adam",
        "optimizer": "adam",
    }
    assert run_doc["mlflow"]["tags"]["notes.long"] == LONG_TAG
    assert run_doc["mlflow"]["metrics"]["accuracy"] == 0.88
    assert run_doc["mlflow"]["metrics_nonfinite"] == {"grad_norm": "Infinity"}
    assert run_doc["ml"]["model"]["version"] == "3"

    champion = es.get(index="mlops-models", id=f"{logged.model}/2")["_source"]
    assert champion["ml"]["model"]["aliases"] == ["champion"]
    assert champion["mlflow"]["run"]["id"] == logged.runs["v2"]
    assert champion["mlflow"]["metrics"]["accuracy"] == 0.85

    # The data scientist's comparison: last accuracy per model version, straight from the metrics.
    agg = es.search(
        index="mlops-metrics-*",
        size=0,
        query={
            "bool": {
                "filter": [
                    {"term": {"mlflow.metric.key": "accuracy"}},
                    {"term": {"ml.model.name": logged.model}},
                ]
            }
        },
        aggs={
            "by_version": {
                "terms": {"field": "ml.model.version", "size": 10},
                "aggs": {
                    "last": {
                        "top_hits": {
                            "size": 1,
                            "sort": [{"mlflow.metric.step": "desc"}],
                            "_source": ["mlflow.metric.value"],
                        }
                    }
                },
            }
        },
    )
    compared = {
        b["key"]: b["last"]["hits"]["hits"][0]["_source"]["mlflow"]["metric"]["value"]
        for b in agg["aggregations"]["by_version"]["buckets"]
    }
    assert compared == {"1": 0.7, "2": 0.85, "3": 0.88}

    # A re-sync of unchanged data reads no history and writes nothing.
    again = sync_json()
    assert again["history_reads"] == 0
    assert again["writes"]["written"] == 0
    assert again["runs_unchanged"] == 4
    assert count(es, "mlops-metrics-*", {"term": {"mlflow.experiment.name": logged.experiment}}) == 24


def test_incremental_points_and_late_model_versions(
    env: dict[str, str], es: Any, logged: Logged, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", logged.experiment)
    shipper("setup")
    sync_json()
    client = MlflowClient(mlflow_uri)
    running = logged.runs["running"]
    base = int(time.time() * 1000)
    client.log_metric(running, "accuracy", 0.3, timestamp=base, step=2)
    client.log_metric(running, "accuracy", 0.4, timestamp=base + 1, step=3)

    gained = sync_json()
    assert gained["points_written"] == 2  # only what it gained
    assert gained["history_reads"] == 1
    assert count(es, "mlops-metrics-*", by_run(running)) == 6

    # The run finishes and is registered as a new version, and the alias moves to it.
    client.set_terminated(running, "FINISHED")
    client.create_model_version(logged.model, f"runs:/{running}/model", run_id=running)
    client.set_registered_model_alias(logged.model, "champion", "4")
    later = sync_json()
    # Both runs whose model links changed (the new version's, and v2's, which lost the alias) are
    # re-sent whole: 6 + 8 points, overwriting, not duplicating.
    assert later["points_written"] == 6 + 8
    assert later["relinked_runs"] == 2
    assert count(es, "mlops-metrics-*", by_run(running)) == 6
    es.indices.refresh(index="mlops-metrics-*")
    versions = {
        h["_source"]["ml"]["model"]["version"]
        for h in es.search(index="mlops-metrics-*", query=by_run(running), size=100)["hits"]["hits"]
    }
    assert versions == {"4"}
    # The alias left version 2: its run's points say so, without any new point being logged.
    v2_points = es.search(index="mlops-metrics-*", query=by_run(logged.runs["v2"]), size=100)["hits"]["hits"]
    assert v2_points and all("aliases" not in h["_source"]["ml"]["model"] for h in v2_points)
    assert es.get(index="mlops-models", id=f"{logged.model}/2")["_source"]["ml"]["model"]["aliases"] == []
    assert es.get(index="mlops-models", id=f"{logged.model}/4")["_source"]["ml"]["model"]["aliases"] == [
        "champion"
    ]


def _big_experiment(mlflow_uri: str, runs: int, steps: int) -> tuple[str, int]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(mlflow_uri)
    name = f"kill-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    base = int(time.time() * 1000) - 86_400_000
    for r in range(runs):
        run_id = client.create_run(experiment_id, run_name=f"r{r}").info.run_id
        metrics = [
            Metric(key, float(s) / (k + 1), base + s * 10, s)
            for k, key in enumerate(("a", "b"))
            for s in range(steps)
        ]
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        client.set_terminated(run_id, "FINISHED")
    return name, runs * steps * 2


def test_kill_9_mid_sync_then_resync_leaves_exact_documents(
    env: dict[str, str], es: Any, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, expected = _big_experiment(mlflow_uri, runs=12, steps=2500)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", name)
    shipper("setup")
    child_env = {**os.environ, "SHIPPER_BULK_MAX_ACTIONS": "1000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "sync"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    # Kill it as soon as some, but not all, points are in.
    while time.monotonic() < deadline:
        time.sleep(0.2)
        written = count(es, "mlops-metrics-*", {"term": {"mlflow.experiment.name": name}})
        if written > 0 or proc.poll() is not None:
            break
    assert proc.poll() is None, "sync finished before it could be killed; make the experiment bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = count(es, "mlops-metrics-*", {"term": {"mlflow.experiment.name": name}})
    assert 0 < partial < expected

    shipper("sync")
    assert count(es, "mlops-metrics-*", {"term": {"mlflow.experiment.name": name}}) == expected
    assert count(es, "mlops-runs", {"term": {"mlflow.experiment.name": name}}) == 12
    again = sync_json()
    assert again["writes"]["written"] == 0 and again["history_reads"] == 0


def test_rejected_documents_go_to_the_dead_letter_index(env: dict[str, str], es: Any) -> None:
    from shipper.config import load_settings
    from shipper.sink.bulk import BulkWriter
    from shipper.sink.client import build_client

    shipper("setup")
    writer = BulkWriter(build_client(load_settings()))
    result = writer.write(
        [
            {
                "_op_type": "index",
                "_index": "mlops-metrics-2024.01",
                "_id": "good",
                "_source": {
                    "@timestamp": "2024-01-02T00:00:00Z",
                    "mlflow": {"metric": {"key": "a", "value": 1.0}},
                },
            },
            # An object where the mapping wants a number: rejected whatever the retries.
            {
                "_op_type": "index",
                "_index": "mlops-metrics-2024.01",
                "_id": "bad",
                "_source": {"@timestamp": "2024-01-02T00:00:00Z", "mlflow": {"metric": {"key": {"oops": 1}}}},
            },
        ]
    )
    assert result.written == 1 and result.dead_lettered == 1
    es.indices.refresh(index="mlops-dead-letter")
    letter = es.search(index="mlops-dead-letter", query={"term": {"mlops.dead_letter.id": "bad"}})["hits"][
        "hits"
    ]
    assert len(letter) == 1
    assert letter[0]["_source"]["error"]["type"] == "document_parsing_exception"
    assert '"oops"' in letter[0]["_source"]["mlops"]["dead_letter"]["original"]


def test_check_and_validate(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert "ILM:" in shipper("check").output
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URLL", "http://x")
    result = CliRunner().invoke(main_group, ["validate"])
    assert result.exit_code == 2
    assert "did you mean SHIPPER_ELASTICSEARCH_URL" in result.output


def test_check_fails_clearly_when_elasticsearch_is_down(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(main_group, ["check"])
    assert result.exit_code == 3
    assert "cannot reach Elasticsearch" in result.output


def test_run_polls_until_sigterm_then_exits_cleanly(
    env: dict[str, str], es: Any, logged: Logged, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", logged.experiment)
    shipper("setup")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "--log-format", "json", "run", "--interval", "0.5"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum('"sync pass:' in line for line in seen) < 2:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    stderr = "".join(seen)
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    passes = [line["message"] for line in lines if line["message"].startswith("sync pass:")]
    assert len(passes) >= 2
    assert "24 metric points" in passes[0]
    assert "0 metric points" in passes[-1]
    assert lines[-1]["message"] == "stopped"
    assert count(es, "mlops-metrics-*", {"term": {"mlflow.experiment.name": logged.experiment}}) == 24


def test_sync_fails_without_moving_checkpoints_when_elasticsearch_goes_away(
    env: dict[str, str],
    es: Any,
    es_url: str,
    logged: Logged,
    mlflow_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", logged.experiment)
    shipper("setup")
    sync_json()
    run_id = logged.runs["running"]
    es.indices.refresh(index="mlops-shipper-state")
    before = es.get(index="mlops-shipper-state", id=f"run:{run_id}")["_source"]["state"]
    points_before = count(es, "mlops-metrics-*", by_run(run_id))
    accuracy = {"bool": {"filter": [by_run(run_id), {"term": {"mlflow.metric.key": "accuracy"}}]}}
    # The checkpoint read back is the pass's: it counts the accuracy points that are in Elasticsearch.
    assert before["keys"]["accuracy"]["count"] == count(es, "mlops-metrics-*", accuracy) > 0

    # New points, then a pass whose writes all fail.
    client = MlflowClient(mlflow_uri)
    now = int(time.time() * 1000)
    for step in (2, 3, 4):
        client.log_metric(run_id, "accuracy", 0.1 * step, timestamp=now + step, step=step)
    proxy = BulkRefusingProxy(es_url)
    try:
        monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", proxy.url)
        monkeypatch.setenv("SHIPPER_BULK_MAX_RETRY_SECONDS", "1.5")
        retries_before = REGISTRY.get_sample_value("shipper_bulk_retries_total") or 0.0
        result = CliRunner().invoke(main_group, ["sync"], catch_exceptions=False)
    finally:
        proxy.close()
    assert result.exit_code == 5, result.output
    assert "nothing was checkpointed" in result.output
    assert proxy.bulk_refused > 1, "the write was retried"
    assert (REGISTRY.get_sample_value("shipper_bulk_retries_total") or 0.0) > retries_before

    # The checkpoint in the real Elasticsearch did not move, and no point of the failed pass landed.
    es.indices.refresh(index="mlops-shipper-state")
    assert es.get(index="mlops-shipper-state", id=f"run:{run_id}")["_source"]["state"] == before
    assert count(es, "mlops-metrics-*", by_run(run_id)) == points_before

    # The next pass, with Elasticsearch back, ships exactly the three new points, once.
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
    summary = sync_json()
    assert summary["points_written"] == 3, summary
    assert count(es, "mlops-metrics-*", by_run(run_id)) == points_before + 3
    es.indices.refresh(index="mlops-shipper-state")
    after = es.get(index="mlops-shipper-state", id=f"run:{run_id}")["_source"]["state"]
    moved = after["keys"]["accuracy"]
    assert moved["count"] == before["keys"]["accuracy"]["count"] + 3
    assert (moved["last_step"], moved["last_timestamp"]) == (4, now + 4)


def test_local_sqlite_store_with_filters(
    env: dict[str, str], es: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local sqlite tracking store (no server), experiment filters and a since-date."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    keep = client.create_experiment("keep-me", artifact_location=str(tmp_path / "a1"))
    drop = client.create_experiment("drop-me", artifact_location=str(tmp_path / "a2"))
    now = int(time.time() * 1000)
    for experiment_id in (keep, drop):
        for start in (now - 10 * 86_400_000, now - 1000):
            run_id = client.create_run(experiment_id, start_time=start).info.run_id
            client.log_metric(run_id, "m", 1.0, timestamp=start, step=0)
            client.set_terminated(run_id, "FINISHED")
    logged_model = client.create_logged_model(keep, name="kept-model").model_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXCLUDE_EXPERIMENTS", "drop-me,0")
    monkeypatch.setenv(
        "SHIPPER_MLFLOW_SINCE", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 86_400))
    )
    shipper("setup")
    summary = sync_json()
    assert summary["experiments"] == 1
    assert summary["runs_seen"] == 1
    assert count(es, "mlops-runs", {"term": {"mlflow.experiment.name": "keep-me"}}) == 1
    assert count(es, "mlops-runs", {"term": {"mlflow.experiment.name": "drop-me"}}) == 0
    assert count(es, "mlops-models", {"term": {"ml.model.id": logged_model}}) == 1

    # A pass over other experiments leaves this experiment's logged models alone.
    monkeypatch.setenv("SHIPPER_MLFLOW_EXCLUDE_EXPERIMENTS", "keep-me")
    assert sync_json()["models_deleted"] == 0
    assert count(es, "mlops-models", {"term": {"ml.model.id": logged_model}}) == 1


def test_setup_gives_existing_indices_the_new_mappings(env: dict[str, str], es: Any) -> None:
    """A template shapes only indices created after it; setup also updates the ones that exist."""
    shipper("setup")
    es.indices.delete_index_template(name="mlops-runs")
    es.cluster.delete_component_template(name="mlops-runs@mappings")
    es.indices.create(index="mlops-runs", mappings={"properties": {"legacy": {"type": "keyword"}}})
    assert "mlflow" not in es.indices.get_mapping(index="mlops-runs")["mlops-runs"]["mappings"]["properties"]
    result = shipper("setup")
    assert "mlops-runs@mappings" in result.output
    properties = es.indices.get_mapping(index="mlops-runs")["mlops-runs"]["mappings"]["properties"]
    assert properties["mlflow"]["properties"]["run"]["properties"]["status"]["type"] == "keyword"
    assert properties["legacy"]["type"] == "keyword"


def test_setup_reports_an_overlapping_foreign_index_template(env: dict[str, str], es: Any) -> None:
    shipper("setup")
    es.indices.delete_index_template(name="mlops-models")
    es.indices.put_index_template(name="their-mlops", index_patterns=["mlops-mod*"], priority=300)
    try:
        result = CliRunner().invoke(main_group, ["setup"])
        assert result.exit_code == 4
        assert "their-mlops" in result.output
        assert "lower its priority or narrow its index_patterns" in result.output
    finally:
        es.indices.delete_index_template(name="their-mlops")
        shipper("setup")


def test_points_logged_out_of_order_are_not_missed(
    env: dict[str, str], es: Any, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    name = f"order-{uuid.uuid4().hex[:8]}"
    run_id = client.create_run(client.create_experiment(name)).info.run_id
    base = int(time.time() * 1000) - 60_000
    for step in range(3):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), timestamp=base + step * 1000, step=step)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", name)
    shipper("setup")
    assert sync_json()["points_written"] == 3
    # A late point with an old step and time (e.g. from a resumed worker), and a new latest one.
    client.log_metric(run_id, "loss", 0.7, timestamp=base + 500, step=1)
    client.log_metric(run_id, "loss", 0.2, timestamp=base + 5000, step=3)
    again = sync_json()
    assert again["history_reads"] == 2  # the newer point alone did not add up: read and sent whole
    assert count(es, "mlops-metrics-*", by_run(run_id)) == 5
