"""Any JSON value in any field the transforms read: the delivery is refused as a whole (400, its
dead letter serialisable), or each event becomes a document (and a run document) the bulk writer
can send, or a dead letter with a reason. Never an unhandled exception.

The values include what has answered 5xx before (docs/webhook-input.md): lone surrogates in keys
and strings, nesting beyond what the bulk serialiser takes, integers beyond a double, and times
that leave the UTC range when their offset is applied.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipper.core.entities import merge
from shipper.core.events import KNOWN_TYPES, InvalidPayload, json_text, parse_delivery
from shipper.sink.bulk import _serialise
from shipper.transforms.azureml_events import (
    event_action,
    free_form,
    notification_kind,
    run_entity,
    run_event,
    run_view,
)
from shipper.webhook.service import _letter

RECEIVED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WS = (
    "/subscriptions/9f2c4e1a-7b3d-4c55-8e0f-2a6b1d3c4e5f/resourceGroups/ml-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/churn-ws"
)
# Every key of `data` the transforms read (in the casing Azure ML writes them).
DATA_KEYS = [
    "runId",
    "runStatus",
    "runType",
    "runTags",
    "runProperties",
    "experimentName",
    "experimentId",
    "ModelName",
    "ModelVersion",
    "ModelTags",
    "ModelProperties",
    "ModelIds",
    "ServiceName",
    "ServiceComputeType",
    "ServiceTags",
    "ServiceProperties",
    "DataDriftId",
    "DataDriftName",
    "BaseDatasetId",
    "TargetDatasetId",
    "DriftCoefficient",
    "StartTime",
    "EndTime",
    "RunId",
]

# Text with lone surrogates (category Cs) and everything else Unicode has.
texts = st.text(st.characters(codec=None), max_size=30) | st.sampled_from(["\ud800", "a\udfff", ""])
times = st.sampled_from(
    [
        "9999-12-31T23:00:00-05:00",
        "0001-01-01T01:00:00+05:00",
        "9999-12-31T23:59:59.9999999Z",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2026-06-01T11:59:00.1234567Z",
        "2026-06-01T11:59:00+14:00",
        "not a time",
    ]
)
numbers = (
    st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([10**30, 2**64, -(2**63) - 1])
)


def _nest(depth: int) -> Any:
    value: Any = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


scalars = st.none() | st.booleans() | numbers | texts | times
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
) | st.integers(min_value=240, max_value=300).map(_nest)
long_ids = st.integers(min_value=500, max_value=600).map(lambda n: "é" * n)


@st.composite
def raw_events(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(st.dictionaries(st.sampled_from(DATA_KEYS), values | long_ids, max_size=8))
    # Mostly readable ids and times, so that the values inside reach the transforms.
    return {
        "id": draw(st.uuids().map(str) | st.uuids().map(str) | texts | long_ids | values),
        "eventType": draw(st.sampled_from(KNOWN_TYPES) | values),
        "eventTime": draw(st.just("2026-06-01T11:59:00Z") | times | values),
        "topic": draw(st.just(WS) | values),
        "subject": draw(st.just("experiments/e/runs/r") | values),
        "dataVersion": draw(st.just("") | values),
        "data": data if draw(st.booleans()) else draw(values),
    }


def _cloud_event(raw: dict[str, Any], base64_data: bool) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": raw["id"],
        "type": raw["eventType"],
        "time": raw["eventTime"],
        "source": raw["topic"],
        "subject": raw["subject"],
    }
    if base64_data:  # the data as base64 of its JSON text, which may be nested 1,000 levels deep
        data = raw["data"]
        if isinstance(data, dict) and data:  # deep values where the transforms read them
            data = data | {key: {"t": "DEEP"} for key in ("runTags", "ModelTags", "ServiceTags")}
        text = json.dumps(data, ensure_ascii=True).encode().replace(b'"DEEP"', b"[" * 1000 + b"]" * 1000)
        return event | {"data_base64": base64.b64encode(text).decode()}
    return event | {"data": raw["data"]}


def _body(events: list[dict[str, Any]]) -> bytes:
    # The standard encoder writes lone surrogates as `\\ud800` escapes, as a faulty sender would.
    return json.dumps(events, ensure_ascii=True).encode()


def _as_read(value: Any) -> Any:
    """Integers beyond 64 bits that a double holds are read as doubles (as orjson reads them)."""
    if isinstance(value, dict):
        return {key: _as_read(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_as_read(inner) for inner in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        try:
            return float(value)
        except OverflowError:
            return value
    return value


def _sendable(action: dict[str, Any]) -> None:
    """As the bulk writer sends it: serialisable, an `_id` Elasticsearch takes."""
    assert _serialise(action)
    assert 0 < len(str(action["_id"]).encode()) <= 512


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_events(), min_size=1, max_size=4), st.booleans(), st.booleans())
def test_any_value_in_any_field_is_written_or_dead_lettered(
    events: list[dict[str, Any]], cloud: bool, base64_data: bool
) -> None:
    payload = [_cloud_event(e, base64_data) for e in events] if cloud else events
    content_type = "application/cloudevents-batch+json" if cloud else "application/json"
    body = _body(payload)
    try:
        delivery = parse_delivery(body, content_type)
    except InvalidPayload as exc:
        assert exc.problems and all(exc.problems)
        _sendable(_letter(body, content_type, exc.problems, RECEIVED))
        return
    assert len(delivery.events) + len(delivery.invalid) == len(payload)
    for bad in delivery.invalid:
        assert bad.problems and all(p.startswith(f"event {bad.position}: ") for p in bad.problems)
        letter = _letter(json_text(bad.raw).encode(), "application/json", bad.problems, RECEIVED)
        _sendable(letter)
        # The original is kept as JSON text that reads back to what was sent.
        original = json.loads(letter["_source"]["mlops"]["dead_letter"]["original"])
        assert _as_read(original) == _as_read(payload[bad.position])
    for event in delivery.events:
        run = run_event(event, RECEIVED)
        action = event_action(event, RECEIVED, run)
        _sendable(action)
        assert orjson.loads(_serialise(action).split(b"\n")[1])["event"]["id"] == event.id
        notification_kind(event, run)
        if run is not None:
            write = run_entity(run.run_id, run.stamp, run_view(run))
            merged = merge(None, write)
            assert merged is not None
            _sendable({"_index": write.index, "_id": write.id, "_source": merged})
            assert merged["azureml"]["run"]["id"] == run.run_id


def test_base64_data_nested_1000_levels_in_read_fields() -> None:
    """Outside hypothesis, which raises the recursion limit while it runs a test: a run event whose
    base64 data nests 1,000 levels deep where tags are read is written (its data kept as the base64
    text), not an exception."""
    raw = {
        "id": "e",
        "eventType": KNOWN_TYPES[0],
        "eventTime": "2026-06-01T11:59:00Z",
        "topic": WS,
        "subject": "experiments/e/runs/r",
        "data": {"runId": "r"},
    }
    event = _cloud_event(raw, base64_data=True)
    (parsed,) = parse_delivery(_body([event]), "application/cloudevents-batch+json").events
    assert parsed.data == event["data_base64"]
    run = run_event(parsed, RECEIVED)
    assert run is not None and run.run_id == "r"
    _sendable(event_action(parsed, RECEIVED, run))
    # And a value that deep reaching `text` is written as JSON text, without recursion.
    deep = orjson.loads(b"[" * 1000 + b"]" * 1000)
    assert free_form({"t": deep}) == {"t": "[" * 1000 + "]" * 1000}
