"""Bulk history reads are exact: on the real MLflow server, `MlflowSource.metric_histories` (one
`get-history-bulk-interval` request for many runs, sampled answers read again) gives every point
that `get-history` gives, at the sampling boundary and beyond, with duplicate steps, NaN/±Inf and
out-of-order steps; and a server without the endpoint is detected and read with `get-history`."""

from __future__ import annotations

import http.client
import http.server
import json
import math
import random
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from shipper.cli import main_group
from shipper.sources.mlflow_rest import BULK_SAMPLE
from shipper.sources.mlflow_tracking import MlflowSource
from shipper.sources.records import MetricPoint

pytestmark = pytest.mark.integration

KEY = "loss"


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)  # NaN equals NaN, -0.0 differs from 0.0


def _shape(n: int, start: int) -> list[tuple[float, int, int]]:
    """(value, timestamp, step) of n points, one per step."""
    return [(0.5 + i / 1e6, start + i * 1000, i) for i in range(n)]


@pytest.fixture(scope="module")
def logged(mlflow_uri: str) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(mlflow_uri)
    experiment_id = client.create_experiment(f"bulk-history-{uuid.uuid4().hex[:8]}")
    start = 1_700_000_000_000
    rng = random.Random(15)
    shapes: dict[str, list[tuple[float, int, int]]] = {
        "p2499": _shape(2499, start),
        "p2500": _shape(2500, start),
        "p2501": _shape(2501, start),
        "p10000": _shape(10000, start),
        # 50 values at one step and one timestamp (one document id), between ordinary steps
        "duplicates": _shape(100, start) + [(float(v), start + 5000, 5) for v in range(50, 0, -1)],
        "nonfinite": [
            (math.nan, start, 0),
            (math.inf, start + 1000, 1),
            (-math.inf, start + 2000, 2),
            (0.0, start + 3000, 3),
            (-0.0, start + 4000, 4),
            (1e308, start + 5000, 5),
            (math.nan, start + 5000, 5),
        ],
        # logged in shuffled order, timestamps not following steps, a negative step
        "out_of_order": [
            *rng.sample([(rng.random(), start + rng.randrange(10**6), s) for s in range(300)], 300),
            (7.0, start, -3),
        ],
        "single": [(1.0, start, 0)],
    }
    runs: dict[str, str] = {}
    for name, points in shapes.items():
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        metrics = [Metric(KEY, value, ts, step) for value, ts, step in points]
        for at in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[at : at + 1000])
        client.set_terminated(run_id, "FINISHED")
        runs[name] = run_id
    return {"experiment_id": experiment_id, "runs": runs, "shapes": shapes}


def _flat(pages: Any) -> list[MetricPoint]:
    return [point for page in pages for point in page]


def _by_id(points: list[MetricPoint]) -> dict[tuple[int, int], list[bytes]]:
    """Points grouped by document id (step, timestamp), each group's values in the order read:
    the last one is the value a backfill leaves in Elasticsearch."""
    groups: dict[tuple[int, int], list[bytes]] = {}
    for p in points:
        groups.setdefault((p.step, p.timestamp), []).append(_bits(p.value))
    return groups


def test_bulk_reads_equal_get_history(mlflow_uri: str, logged: dict[str, Any]) -> None:
    source = MlflowSource(mlflow_uri)
    runs: dict[str, str] = logged["runs"]
    bulk = {
        run_id: _flat(pages) for run_id, pages in source.metric_histories(KEY, list(runs.values())).items()
    }
    assert source.bulk_histories is True, "the stack's MLflow serves get-history-bulk-interval"
    asked = dict(source.requests)
    for name, run_id in runs.items():
        truth = source.metric_history(run_id, KEY)  # get-history, paged
        assert len(truth) == len(logged["shapes"][name]), name
        got = bulk[run_id]
        assert len(got) == len(truth), f"{name}: {len(got)} points from the bulk read, {len(truth)} logged"
        assert sorted((p.step, p.timestamp, _bits(p.value)) for p in got) == sorted(
            (p.step, p.timestamp, _bits(p.value)) for p in truth
        ), name
        assert _by_id(got) == _by_id(truth), f"{name}: values of one id in another order"
        assert {p.key for p in got} == {KEY}
    # The runs of BULK_SAMPLE points or more (sampled, or unprovably complete) spoil the first
    # answer (it holds BULK_SAMPLE distinct steps or more): the others are asked for again without
    # them (and here, with 2,499 steps in one run and a negative step in another, still hold
    # BULK_SAMPLE distinct steps), so every run is read with get-history.
    assert asked == {"get_metric_history_bulk": 2, "get_metric_history": len(runs)}


def test_short_histories_take_one_request(mlflow_uri: str, logged: dict[str, Any]) -> None:
    source = MlflowSource(mlflow_uri)
    for names in (
        ["p2499", "duplicates", "nonfinite", "single"],
        ["out_of_order", "duplicates", "nonfinite"],
    ):
        source = MlflowSource(mlflow_uri)
        answer = source.metric_histories(KEY, [logged["runs"][name] for name in names])
        assert source.requests == {"get_metric_history_bulk": 1}, "no history read on its own"
        for name in names:
            got = _flat(answer[logged["runs"][name]])
            truth = source.metric_history(logged["runs"][name], KEY)
            assert len(got) == len(logged["shapes"][name])
            assert _by_id(got) == _by_id(truth), name
    # Together more than BULK_SAMPLE distinct steps: the answer is not trusted, whoever is in it.
    both = [logged["runs"]["p2499"], logged["runs"]["out_of_order"]]
    source = MlflowSource(mlflow_uri)
    answer = source.metric_histories(KEY, both)
    assert source.requests == {"get_metric_history_bulk": 1}  # nothing to split off: no second try
    assert [len(_flat(answer[run_id])) for run_id in both] == [2499, 301]
    assert source.requests == {"get_metric_history_bulk": 1, "get_metric_history": 2}


def test_bulk_answer_of_a_sample_is_never_trusted(mlflow_uri: str, logged: dict[str, Any]) -> None:
    """What the endpoint itself answers for the 10,000-point run: a sample of BULK_SAMPLE points,
    which is why such answers are read again."""
    source = MlflowSource(mlflow_uri)
    assert source._rest is not None
    raw = source._rest.history_bulk(KEY, [logged["runs"]["p10000"], logged["runs"]["p2499"]])
    assert raw is not None
    assert len(raw[logged["runs"]["p10000"]]) == BULK_SAMPLE
    assert len(raw[logged["runs"]["p2499"]]) == 2499


class _WithoutBulk(http.server.ThreadingHTTPServer):
    """The real MLflow server behind a proxy that answers 404 for MLflow's UI endpoints, as a
    tracking service without them (Azure ML, older MLflow) does."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.bulk_requests = 0
        super().__init__(("127.0.0.1", 0), _Proxy)


class _Proxy(http.server.BaseHTTPRequestHandler):
    server: _WithoutBulk

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        if self.path.startswith("/ajax-api/"):
            self.server.bulk_requests += 1
            body = b'{"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else None
        up = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        up.request(self.command, self.path, body=payload, headers=headers)
        answer = up.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        up.close()

    do_GET = do_POST = _forward


@pytest.fixture
def without_bulk(mlflow_uri: str) -> Iterator[_WithoutBulk]:
    proxy = _WithoutBulk(mlflow_uri)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_a_server_without_the_endpoint_is_read_with_get_history(
    without_bulk: _WithoutBulk, logged: dict[str, Any]
) -> None:
    source = MlflowSource(f"http://127.0.0.1:{without_bulk.server_address[1]}")
    runs = [logged["runs"]["p2499"], logged["runs"]["duplicates"], logged["runs"]["nonfinite"]]
    first = {run_id: _flat(pages) for run_id, pages in source.metric_histories(KEY, runs).items()}
    second = {run_id: _flat(pages) for run_id, pages in source.metric_histories(KEY, runs).items()}
    assert source.bulk_histories is False
    assert without_bulk.bulk_requests == 1, "asked once, then never again"
    for run_id in runs:
        truth = source.metric_history(run_id, KEY)
        assert [(p.step, p.timestamp, _bits(p.value)) for p in first[run_id]] == [
            (p.step, p.timestamp, _bits(p.value)) for p in truth
        ]
        assert [(p.step, p.timestamp, _bits(p.value)) for p in second[run_id]] == [
            (p.step, p.timestamp, _bits(p.value)) for p in truth
        ]


def test_backfill_through_bulk_reads_stores_what_get_history_gives(
    env: dict[str, str], es: Any, mlflow_uri: str, logged: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path: `shipper sync` of the experiment stores one document per (run, key, step,
    timestamp), with the value get-history gives last for that id."""
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", logged["experiment_id"])
    runner = CliRunner()
    assert runner.invoke(main_group, ["setup"], catch_exceptions=False).exit_code == 0
    labels = {"kind": "get_metric_history_bulk"}
    bulk_before = REGISTRY.get_sample_value("shipper_mlflow_requests_total", labels) or 0.0
    result = runner.invoke(main_group, ["sync", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (REGISTRY.get_sample_value("shipper_mlflow_requests_total", labels) or 0.0) > bulk_before
    summary = json.loads(result.output.strip().splitlines()[-1])
    source = MlflowSource(mlflow_uri)
    expected: dict[tuple[str, int, int], bytes] = {}
    for run_id in logged["runs"].values():
        for point in source.metric_history(run_id, KEY):
            expected[(run_id, point.step, point.timestamp)] = _bits(point.value)
    assert summary["points_written"] == sum(len(s) for s in logged["shapes"].values())
    es.indices.refresh(index="mlops-metrics-*")
    stored: dict[tuple[str, int, int], bytes] = {}
    deadline = time.monotonic() + 60
    from elasticsearch import helpers

    for hit in helpers.scan(es, index="mlops-metrics-*", query={"query": {"match_all": {}}}, size=5000):
        src = hit["_source"]
        metric = src["mlflow"]["metric"]
        value = metric["value"] if "value" in metric else float(metric["value_nonfinite"])
        from datetime import datetime

        ts = int(datetime.fromisoformat(src["@timestamp"].replace("Z", "+00:00")).timestamp() * 1000)
        stored[(src["mlflow"]["run"]["id"], metric["step"], ts)] = _bits(float(value))
        assert time.monotonic() < deadline
    assert set(stored) == set(expected)
    differing = [k for k in expected if stored[k] != expected[k]]
    # -0.0 is stored as JSON -0.0 and read back as -0.0: no exception needed
    assert not differing, differing[:5]
