"""Every Lens and Vega-Lite panel of kibana/ replayed on the real test cluster holding the demo data.

The demo (examples/demo_experiment.py) logs to the real MLflow server of scripts/stack, `shipper
setup` and `shipper sync` ship it for real. Azure ML events are the golden Event Grid deliveries
(tests/golden/azureml/eventgrid-*.json) through the shipper's own parser and transform. Scoring-log
documents are written in the shape the scoring pipeline produces (the minimal Elasticsearch has no
ingest processors to run it): see `scoring_docs`.

Each panel's query (its data view's index, its KQL query and column filters, the dashboard control's
filter, its aggregations) is translated by tests/support/kibana_replay.py and run; the numbers are
checked against what was logged: the comparison table equals the final metric values MLflow holds
for each version's source run.

Kibana is not run: what is replayed is our translation of each panel into the search Lens makes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from tests.support import kibana_replay, vega_render

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NDJSON = REPO / "kibana" / "mlops-saved-objects.ndjson"
DEMO = REPO / "examples" / "demo_experiment.py"
MODEL = "demo-churn-model"
EXPERIMENT = "demo-churn-classifier"
# The scoring data stream of this run: `setup` makes every logs-mlops.scoring-* name a data stream,
# which this Elasticsearch cannot delete, so each run writes a namespace of its own and the scoring
# panels are replayed on it alone (other tests write other namespaces).
SCORING_INDEX = f"logs-mlops.scoring-kibanareplay{uuid.uuid4().hex[:8]}"
PNG = REPO / "docs" / "images" / "kibana-versions-parallel-coordinates.png"


def saved_objects() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for line in NDJSON.read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        for key in ("visState", "fieldFormatMap"):
            if isinstance(obj["attributes"].get(key), str):
                obj["attributes"][key] = json.loads(obj["attributes"][key])
        out[(obj["type"], obj["id"])] = obj
    return out


OBJECTS = saved_objects()
DATA_VIEWS = {oid: o["attributes"] for (t, oid), o in OBJECTS.items() if t == "index-pattern"}


def model_filter(name: str = MODEL) -> list[dict[str, Any]]:
    """What the comparison dashboard's model control adds when one model is picked."""
    return [{"match_phrase": {"ml.model.name": name}}]


def replay(es: Any, lens_id: str, filters: list[dict[str, Any]] = (), **kw: Any) -> list[dict[str, Any]]:  # type: ignore[assignment]
    panel = kibana_replay.lens_panel(OBJECTS[("lens", lens_id)], DATA_VIEWS, filters=list(filters), **kw)
    if panel.index == "logs-mlops.scoring-*":
        panel = dataclasses.replace(panel, index=SCORING_INDEX)
    return kibana_replay.run(es, panel)


def shipper(*args: str) -> None:
    result = CliRunner().invoke(main_group, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


# --- what was logged ----------------------------------------------------------------------------


class Truth:
    """The demo as MLflow holds it: per version, its source run's final metrics and its metadata."""

    def __init__(self, mlflow_uri: str) -> None:
        from mlflow import MlflowClient

        client = MlflowClient(mlflow_uri)
        self.versions: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, dict[str, list[tuple[int, int, float]]]] = {}
        registered = client.get_registered_model(MODEL)
        aliases: dict[str, list[str]] = {}
        for alias, version in (registered.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in client.search_model_versions(f"name = '{MODEL}'"):
            run = client.get_run(mv.run_id)
            histories = {
                key: [(m.step, m.timestamp, m.value) for m in client.get_metric_history(mv.run_id, key)]
                for key in run.data.metrics
            }
            self.histories[mv.version] = histories
            self.versions[mv.version] = {
                "run_id": mv.run_id,
                "stage": mv.current_stage,
                "status": mv.status,
                "aliases": sorted(aliases.get(mv.version, [])),
                "final": dict(run.data.metrics),
            }
        experiment = client.get_experiment_by_name(EXPERIMENT)
        self.runs = client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.fixture(scope="module")
def demo(es_url: str, mlflow_uri: str, es: Any) -> Iterator[Truth]:
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("SHIPPER_")]:
            mp.delenv(name)
        mp.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        stale = list(es.indices.get(index="mlops-*", expand_wildcards="all"))
        if stale:
            es.indices.delete(index=stale)
        shipper("setup")
        env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow_uri)
        done = subprocess.run(
            [sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        shipper("sync")
        index_golden_events(es)
        index_scoring_docs(es)
        es.indices.refresh(index="mlops-*," + SCORING_INDEX)
        yield Truth(mlflow_uri)


# --- the comparison dashboard --------------------------------------------------------------------


def test_comparison_table_equals_the_final_metrics_logged_per_version(demo: Truth, es: Any) -> None:
    rows = replay(es, "mlops-model-version-table", model_filter())
    assert [r["version"] for r in rows] == sorted(demo.versions, key=int), "versions in numeric order"
    assert len(rows) >= 3
    for row in rows:
        truth = demo.versions[row["version"]]
        assert row["run"] == truth["run_id"]
        assert row["stage"] == truth["stage"]
        assert row["status"] == truth["status"]
        aliases = row["aliases"]
        assert sorted([aliases] if isinstance(aliases, str) else aliases or []) == truth["aliases"]
        for key in ("accuracy", "auc", "loss"):
            assert row[f"metric-{key}"] == truth["final"][key], (row["version"], key)
    assert sum(r["aliases"] == "champion" or "champion" in (r["aliases"] or []) for r in rows) == 1
    # Picking metrics in the dashboard's metric control keeps the versions that logged them.
    picked = [*model_filter(), {"match_phrase": {"mlflow.metric.key": "accuracy"}}]
    assert replay(es, "mlops-model-version-table", picked) == rows


def test_final_values_are_the_last_step_of_each_history(demo: Truth) -> None:
    """The truth itself: MLflow's latest value is the value at the highest step, as the panels read it."""
    for version, histories in demo.histories.items():
        for key, points in histories.items():
            assert max(points)[2] == demo.versions[version]["final"][key]


def test_final_metric_bars_and_lineage_equal_the_logged_final_values(demo: Truth, es: Any) -> None:
    for lens_id in ("mlops-final-metric-by-version", "mlops-metric-over-lineage"):
        rows = replay(es, lens_id, model_filter())
        got = {(r["version"], r["key"]): r["final"] for r in rows}
        want = {(v, k): value for v, t in demo.versions.items() for k, value in t["final"].items()}
        assert got == want, lens_id
    lineage = replay(es, "mlops-metric-over-lineage", model_filter())
    versions = list(dict.fromkeys(r["version"] for r in lineage))
    assert versions == sorted(versions, key=int), "the lineage runs in version order"


def test_metric_history_lines_equal_every_logged_point(demo: Truth, es: Any) -> None:
    rows = replay(es, "mlops-metric-history-by-version", model_filter())
    got = {(r["series"][0], r["series"][1], r["step"]): r["value"] for r in rows}
    want = {
        (v, key, step): value
        for v, histories in demo.histories.items()
        for key, points in histories.items()
        for step, _, value in points
    }
    assert got.keys() == want.keys()
    for point, value in want.items():
        assert got[point] == pytest.approx(value, rel=1e-12), point


def test_parallel_coordinates_vega_lite_gets_the_final_values_and_renders(
    demo: Truth, es: Any, update_golden: bool, tmp_path: Path
) -> None:
    vis = OBJECTS[("visualization", "mlops-versions-parallel-coordinates")]["attributes"]["visState"]
    spec = json.loads(vis["params"]["spec"])
    url = spec["data"]["url"]
    body = vega_render.context_body(url, model_filter())
    response = dict(es.search(index=url["index"], body=body))
    buckets = vega_render.values(spec, response)
    got = {
        (b["key"], m["key"]): m["final"]["hits"]["hits"][0]["_source"]["mlflow"]["metric"]["value"]
        for b in buckets
        for m in b["metrics"]["buckets"]
    }
    want = {(v, k): value for v, t in demo.versions.items() for k, value in t["final"].items()}
    assert got == want
    assert {b["key"]: b["number"]["value"] for b in buckets} == {v: float(v) for v in demo.versions}
    png = vega_render.render_png(vega_render.inline(spec, buckets))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    vega = vega_render.compile_to_vega(vega_render.inline(spec, buckets))
    assert any(d.get("name") == "source_0" for d in vega["data"])
    if update_golden:
        PNG.parent.mkdir(parents=True, exist_ok=True)
        PNG.write_bytes(png)
    (tmp_path / PNG.name).write_bytes(png)


# --- training runs -------------------------------------------------------------------------------


def experiment_filter() -> list[dict[str, Any]]:
    return [{"match_phrase": {"mlflow.experiment.name": EXPERIMENT}}]


def test_run_panels_count_the_runs_mlflow_holds(demo: Truth, es: Any) -> None:
    by_status: dict[str, int] = {}
    for run in demo.runs:
        by_status[run.info.status] = by_status.get(run.info.status, 0) + 1
    rows = replay(es, "mlops-run-status-over-time", experiment_filter(), date_interval="1h")
    got: dict[str, int] = {}
    for row in rows:
        got[row["status"]] = got.get(row["status"], 0) + row["runs"]
    assert got == by_status

    recent = replay(es, "mlops-recent-runs", experiment_filter())
    assert sorted((r["id"], r["run"]) for r in recent) == sorted(
        (r.info.run_id, r.info.run_name) for r in demo.runs
    )
    durations = {run.info.run_id: run.info.end_time - run.info.start_time for run in demo.runs}
    for row in recent:
        assert row["duration"] == durations[row["id"]]
        assert row["status"] == "FINISHED"

    (failed,) = replay(es, "mlops-failed-run-count", experiment_filter())
    assert (failed["failed"], failed["runs"]) == (by_status.get("FAILED", 0), len(demo.runs))

    mean = replay(es, "mlops-run-duration-by-experiment", experiment_filter())
    assert len(mean) == 1 and mean[0]["compute"] == "__missing__"
    assert mean[0]["duration"] == pytest.approx(sum(durations.values()) / len(durations))
    assert replay(es, "mlops-failed-runs", experiment_filter()) == []


# --- Azure ML events -----------------------------------------------------------------------------

RECEIVED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def golden_event_docs() -> list[dict[str, Any]]:
    from shipper.core.events import parse_delivery
    from shipper.transforms.azureml_events import event_action

    actions = []
    for path in sorted((REPO / "tests" / "golden" / "azureml").glob("eventgrid-*.json")):
        if path.name.endswith("-expected.json"):
            continue
        delivery = parse_delivery(path.read_bytes(), "application/json")
        actions += [event_action(event, RECEIVED) for event in delivery.events]
    return actions


def index_golden_events(es: Any) -> None:
    from elasticsearch.helpers import bulk

    _, errors = bulk(es, golden_event_docs(), refresh=True, raise_on_error=False)
    assert not errors, errors


def test_pipeline_steps_and_drift_panels_match_the_golden_events(demo: Truth, es: Any) -> None:
    docs = [a["_source"] for a in golden_event_docs()]
    steps: dict[tuple[str, str], tuple[str, str]] = {}
    for doc in docs:
        az = doc.get("azureml", {})
        pipeline = az.get("pipeline", {}).get("run_id")
        if pipeline and doc["event"]["action"] in ("RunStatusChanged", "RunCompleted"):
            key = (pipeline, az["run"]["id"])
            steps[key] = max(steps.get(key, ("", "")), (doc["@timestamp"], az["run"]["status"]))
    assert steps, "the golden deliveries hold pipeline step runs"
    rows = replay(es, "mlops-pipeline-step-runs")
    assert {(r["pipeline"], r["step"]): r["status"] for r in rows} == {k: v[1] for k, v in steps.items()}

    drift = [d for d in docs if d["event"]["action"] == "DatasetDriftDetected"]
    rows = replay(es, "mlops-drift-events", date_interval="1d")
    assert [(r["name"], r["coef"]) for r in rows] == [
        (d["azureml"]["drift"]["name"], d["azureml"]["drift"]["coefficient"]) for d in drift
    ]


# --- scoring service -----------------------------------------------------------------------------


def _line(ts: str, logger: str, level: str = "info", **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@timestamp": ts,
        "log": {"level": level, "logger": logger},
        "event": {"kind": "event", "dataset": "mlops.scoring"},
        "mlops": {"scoring": {"parser": "ingest"}},
        "ml": {"model": {"name": "churn", "version": fields.pop("version")}},
    }
    for key, value in fields.items():
        node = doc
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return doc


def _request(
    ts: str, logger: str, method: str, path: str, status: int, version: str, ms: float | None = None
) -> dict[str, Any]:
    kind = (
        "health"
        if path.rstrip("/") in ("", "/health", "/liveness", "/readiness")
        else "score"
        if path == "/score"
        else "other"
    )
    extra: dict[str, Any] = {}
    if ms is not None:
        extra["event.duration"] = round(ms * 1_000_000)
    doc = _line(
        ts,
        logger,
        version=version,
        **{
            "http.request.method": method,
            "http.response.status_code": status,
            "url.path": path,
            "mlops.scoring.request.kind": kind,
            "event.outcome": "failure" if status >= 400 else "success",
            **extra,
        },
    )
    doc["event"] |= {"category": ["web"], "type": ["access"]}
    return doc


def scoring_docs() -> list[dict[str, Any]]:
    """The request lines of tests/golden/scoring/test-azmlinfsrv.log as the scoring pipeline writes
    them (ECS fields; mlops.scoring.request.kind from the path), with model labels added: version 3
    for the 2026 lines, version 2 for the 2024 ones, and one traceback line."""
    v3, v2 = "3", "2"
    return [
        _request("2026-11-22T03:06:14.316Z", "azmlinfsrv", "POST", "/score", 200, v3, 0.752),
        # gunicorn's line for the same request: must not be counted again
        _request("2026-11-22T03:06:14.317Z", "gunicorn.access", "POST", "/score", 200, v3),
        _request("2026-11-22T03:06:14.326Z", "azmlinfsrv", "POST", "/score", 500, v3, 1.254),
        _request("2026-11-22T03:06:14.343Z", "azmlinfsrv", "GET", "/swagger.json", 200, v3, 0.348),
        _request("2026-11-22T03:06:14.354Z", "gunicorn.access", "GET", "/nope", 404, v3),
        _request("2024-05-02T10:11:12.345Z", "azmlinfsrv", "POST", "/score", 200, v2, 305.413),
        _request("2024-05-02T10:11:13.001Z", "azmlinfsrv", "GET", "/", 200, v2, 0.112),
        _request("2024-05-02T10:11:13.502Z", "azmlinfsrv", "GET", "/health", 200, v2, 0.098),
        _request("2024-05-02T10:11:15.250Z", "azmlinfsrv", "POST", "/score", 200, v2, 1520.5),
        _line(
            "2024-05-02T10:11:15.253Z",
            "azmlinfsrv",
            "critical",
            version=v2,
            message="Invalid config file!: missing key",
        ),
        _line(
            "2026-11-22T03:06:14.325Z",
            "azmlinfsrv",
            "error",
            version=v3,
            **{
                "error.type": "ValueError",
                "error.message": "bad input",
                "error.stack_trace": (
                    'Traceback (most recent call last):\n  File "score.py", line 9\nValueError: bad input'
                ),
            },
        ),
    ]


def index_scoring_docs(es: Any) -> None:
    # written as Filebeat and Logstash write: into the data stream that `shipper setup` templates
    for n, doc in enumerate(scoring_docs()):
        es.index(index=SCORING_INDEX, id=str(n), document=doc, op_type="create")
    backing = list(es.indices.get(index=SCORING_INDEX))
    assert backing and all(name.startswith(".ds-") for name in backing), f"not a data stream: {backing}"


def test_scoring_requests_are_counted_once(demo: Truth, es: Any) -> None:
    rows = replay(es, "mlops-serving-traffic-by-version")
    table = {r["version"]: r for r in rows}
    # v3: two /score requests (200 and 500); gunicorn's line for the first one is not counted
    assert (table["3"]["requests"], table["3"]["c4xx"], table["3"]["c5xx"]) == (2, 0, 1)
    assert table["3"]["rate"] == pytest.approx(0.5)
    assert (table["2"]["requests"], table["2"]["c5xx"], table["2"]["rate"]) == (2, 0, 0.0)
    per_minute = replay(es, "mlops-scoring-requests-per-minute")
    assert sum(r["requests"] for r in per_minute) == 4
    by_version = replay(es, "mlops-serving-requests-by-version", date_interval="1d")
    assert {r["version"] for r in by_version} == {"2", "3"}
    assert sum(r["requests"] for r in by_version) == 4
    usage = replay(es, "mlops-model-usage-over-time")
    assert sum(r["requests"] for r in usage) == 4
    (kpi,) = replay(es, "mlops-scoring-error-rate")
    assert (kpi["requests"], kpi["rate"]) == (4, 0.25)


def test_scoring_latency_and_errors(demo: Truth, es: Any) -> None:
    durations = {"3": [752_000, 1_254_000], "2": [305_413_000, 1_520_500_000]}
    for row in replay(es, "mlops-serving-latency-by-version"):
        low, high = min(durations[row["version"]]), max(durations[row["version"]])
        assert low <= row["p50"] <= row["p95"] <= high, row
    percentiles = replay(es, "mlops-scoring-latency-percentiles", date_interval="1d")
    assert {r["time"][:10] for r in percentiles} == {"2024-05-02", "2026-11-22"}
    http = replay(es, "mlops-scoring-http-errors", date_interval="1d")
    assert sum(r["c5xx"] for r in http) == 1 and sum(r["c4xx"] for r in http) == 0
    errors = {
        (r["version"], r["deployment"]): r["errors"] for r in replay(es, "mlops-scoring-errors-by-version")
    }
    # v3: the traceback line and the 500 request line; v2: the critical line
    assert errors == {("3", "__missing__"): 2, ("2", "__missing__"): 1}
    (recent,) = replay(es, "mlops-scoring-recent-errors")
    assert (recent["type"], recent["version"], recent["count"]) == ("ValueError", "3", 1)
    assert recent["trace"].endswith("ValueError: bad input")


def test_registered_models_panel(demo: Truth, es: Any) -> None:
    # Filtered to the demo's model, as the dashboard's model control does: the panel lists the top
    # 20 models, and other tests' models on the same tracking server may fill those.
    rows = {r["model"]: r for r in replay(es, "mlops-registered-models", model_filter())}
    assert rows[MODEL]["versions"] == len(demo.versions)
    assert rows[MODEL]["newest"] == max(int(v) for v in demo.versions)
    (kpi,) = replay(es, "mlops-registered-version-count", model_filter())
    assert (kpi["versions"], kpi["models"]) == (len(demo.versions), 1)


def test_every_lens_panel_is_replayed_here() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    # MLflow 3 evaluation panels are replayed on the evaluation experiment (the demo logs none)
    source += (Path(__file__).parent / "test_mlflow_evaluation.py").read_text(encoding="utf-8")
    missing = [oid for (t, oid) in OBJECTS if t == "lens" and f'"{oid}"' not in source]
    assert missing == [], f"Lens panels without a replay test: {missing}"
