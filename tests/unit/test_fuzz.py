"""Property-based fuzzing (hypothesis) of the MLflow transforms, the bulk serialiser, the MLflow REST
reader's run parser and the configuration loader: whatever they are given, they either produce what
Elasticsearch can take or refuse with the shipper's own error naming the problem; no other exception.

The webhook's parser is fuzzed in tests/unit/test_azureml_events.py (same approach), its HTTP side
from its OpenAPI description elsewhere. The budget is fixed for CI; a longer run:

    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/unit/test_fuzz.py -q
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipper.config import load_settings
from shipper.errors import ConfigError
from shipper.sink.bulk import _serialise
from shipper.sources.mlflow_rest import _run
from shipper.sources.records import Experiment, MetricPoint, ModelVersion, Run
from shipper.transforms.mlflow_docs import (
    ModelLink,
    metric_point_action,
    metric_point_id,
    model_links,
    model_version_write,
    run_write,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What MLflow can hold: keys up to 250 characters, values up to 8,000, any float, int64 steps, and
# timestamps in milliseconds between year 1 and 9999 (a datetime's range).
text = st.text(max_size=40)
long_text = st.text(max_size=200) | st.builds(lambda c, n: c * n, st.characters(), st.integers(0, 8000))
keys = st.text(min_size=1, max_size=250)
floats = st.floats(allow_nan=True, allow_infinity=True)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
times_ms = st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999)
# Run start and end anywhere in years 1-9999: event.duration (nanoseconds, an int64, 292 years) is
# left out when it cannot hold the span, and duration_ms keeps it.
run_times = times_ms
INDEX = re.compile(r"^mlops-metrics-\d{4}\.\d{2}$")


def bulk_lines(action: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = _serialise(action)
    assert raw.endswith(b"\n")
    header, body = raw.rstrip(b"\n").split(b"\n")
    return orjson.loads(header), orjson.loads(body)


points = st.builds(MetricPoint, key=keys, value=floats, timestamp=times_ms, step=int64)
runs = st.builds(
    Run,
    id=st.text(min_size=1, max_size=64),
    name=text,
    experiment_id=text,
    status=st.sampled_from(["RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED", ""]),
    start_time=st.none() | run_times,
    end_time=st.none() | run_times,
    user=st.none() | text,
    params=st.dictionaries(keys, long_text, max_size=5),
    tags=st.dictionaries(keys, long_text, max_size=5),
    latest_metrics=st.dictionaries(keys, points, max_size=5),
)
experiments = st.builds(Experiment, id=text, name=text)
versions = st.builds(
    ModelVersion,
    name=st.text(min_size=1, max_size=60),
    version=st.integers(min_value=1, max_value=10**6).map(str) | text,
    creation_timestamp=times_ms,
    last_updated_timestamp=st.none() | times_ms,
    run_id=st.none() | text,
    aliases=st.lists(text, max_size=3).map(tuple),
    tags=st.dictionaries(keys, text, max_size=3),
)


@FUZZ
@given(run=runs, experiment=experiments, point=points, mvs=st.lists(versions, max_size=3))
def test_any_point_becomes_one_bulk_action_elasticsearch_can_read(
    run: Run, experiment: Experiment, point: MetricPoint, mvs: list[ModelVersion]
) -> None:
    link = model_links(mvs).get(run.id, ModelLink())
    action = metric_point_action(run, experiment, point, link)
    header, source = bulk_lines(action)
    assert INDEX.match(header["index"]["_index"])
    assert header["index"]["_id"] == metric_point_id(run.id, point)
    metric = source["mlflow"]["metric"]
    assert metric["key"] == point.key and metric["step"] == point.step
    if math.isfinite(point.value):
        assert metric["value"] == point.value
    else:
        assert "value" not in metric and metric["value_nonfinite"] in {"NaN", "Infinity", "-Infinity"}


@FUZZ
@given(a=points, b=points, run_id=st.text(min_size=1, max_size=40))
def test_point_ids_differ_exactly_when_the_natural_key_differs(
    a: MetricPoint, b: MetricPoint, run_id: str
) -> None:
    same_key = (a.key, a.timestamp, a.step) == (b.key, b.timestamp, b.step)
    assert (metric_point_id(run_id, a) == metric_point_id(run_id, b)) == same_key or (
        same_key and a.value != b.value
    )


@FUZZ
@given(run=runs, experiment=experiments, stamp=st.integers(min_value=0, max_value=2**62))
def test_any_run_becomes_a_document_that_keeps_every_param_and_tag(
    run: Run, experiment: Experiment, stamp: int
) -> None:
    write = run_write(run, experiment, ModelLink(), stamp)
    doc = orjson.loads(orjson.dumps(write.doc, option=orjson.OPT_NON_STR_KEYS))
    mlflow = doc["mlflow"]
    assert mlflow["params"] == run.params
    assert mlflow["tags"] == run.tags
    assert mlflow["run"]["id"] == run.id
    if run.start_time is not None and run.end_time is not None:
        span = run.end_time - run.start_time
        assert mlflow["run"]["duration_ms"] == span
        fits = abs(span * 1_000_000) < 2**63
        assert doc["event"].get("duration") == (span * 1_000_000 if fits else None)


@FUZZ
@given(mv=versions, run=st.none() | runs, experiment=st.none() | experiments)
def test_any_model_version_becomes_a_document(
    mv: ModelVersion, run: Run | None, experiment: Experiment | None
) -> None:
    write = model_version_write(mv, run, experiment, 1)
    doc = orjson.loads(orjson.dumps(write.doc, option=orjson.OPT_NON_STR_KEYS))
    assert write.id
    if run is not None:  # the version's own run id wins; else the run it was given
        assert doc["mlflow"]["run"]["id"] == (mv.run_id or run.id)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
rest_metric = st.fixed_dictionaries(
    {"key": keys, "value": st.floats(allow_nan=False)},
    optional={"timestamp": st.integers(0, 2**53), "step": st.integers(-(2**53), 2**53)},
)
rest_pairs = st.lists(st.fixed_dictionaries({"key": keys}, optional={"value": text}), max_size=4)
rest_runs = st.fixed_dictionaries(
    {},
    optional={
        "info": st.fixed_dictionaries(
            {},
            optional={
                "run_id": text,
                "run_uuid": text,
                "status": text,
                "start_time": st.none() | st.integers(0, 2**53),
                "lifecycle_stage": st.sampled_from(["active", "deleted"]),
            },
        ),
        "data": st.fixed_dictionaries(
            {},
            optional={"metrics": st.lists(rest_metric, max_size=4), "params": rest_pairs, "tags": rest_pairs},
        ),
    },
)


@FUZZ
@given(raw=rest_runs)
def test_any_run_answer_of_the_rest_api_is_read(raw: dict[str, Any]) -> None:
    """Whatever subset of its documented fields an MLflow server sends for a run, it is read."""
    run = _run(raw)
    data = raw.get("data") or {}
    assert len(run.data.params) <= len(data.get("params") or ())
    assert set(run.data.metrics) == {m["key"] for m in data.get("metrics") or ()}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {
        k: v for k, v in os.environ.items() if k.startswith("SHIPPER_") and not k.startswith("SHIPPER_STACK_")
    }
    for k in saved:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        for k in values:
            os.environ.pop(k, None)
        os.environ.update(saved)


SETTINGS = [
    "SHIPPER_ELASTICSEARCH_URL",
    "SHIPPER_BULK_MAX_ACTIONS",
    "SHIPPER_SYNC_INTERVAL_SECONDS",
    "SHIPPER_ELASTICSEARCH_VERIFY_CERTS",
    "SHIPPER_MLFLOW_SINCE",
    "SHIPPER_LOG_LEVEL",
    "SHIPPER_RETENTION_DAYS",
    "SHIPPER_SHARD",
    "SHIPPER_AZUREML_WORKSPACES",
    "SHIPPER_MLFLOW_EXPERIMENTS",
]
env_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


@FUZZ
@given(values=st.dictionaries(st.sampled_from(SETTINGS), env_text, max_size=4))
def test_any_environment_is_valid_or_refused_with_every_problem_named(values: dict[str, str]) -> None:
    with environment(values):
        try:
            load_settings()
        except ConfigError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert any(name in problem for name in values), (problem, values)
