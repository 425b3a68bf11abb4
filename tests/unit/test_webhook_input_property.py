"""Any JSON value in any field the transforms read: the delivery is refused as a whole (400, its
dead letter serialisable), or each event becomes a document (and a run document) the bulk writer
can send, or a dead letter with a reason. Never an unhandled exception.

The values include what has answered 5xx before (docs/webhook-input.md): lone surrogates in keys
and strings, nesting beyond what the bulk serialiser takes, integers beyond a double, and times
that leave the UTC range when their offset is applied.
"""

from __future__ import annotations

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
    return {
        "id": draw(texts | long_ids | values),
        "eventType": draw(st.sampled_from(KNOWN_TYPES) | values),
        "eventTime": draw(times | values),
        "topic": draw(st.just(WS) | values),
        "subject": draw(st.just("experiments/e/runs/r") | values),
        "dataVersion": draw(st.just("") | values),
        "data": data if draw(st.booleans()) else draw(values),
    }


def _cloud_event(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": raw["id"],
        "type": raw["eventType"],
        "time": raw["eventTime"],
        "source": raw["topic"],
        "subject": raw["subject"],
        "data": raw["data"],
    }


def _body(events: list[dict[str, Any]]) -> bytes:
    # The standard encoder writes lone surrogates as `\\ud800` escapes, as a faulty sender would.
    return json.dumps(events, ensure_ascii=True).encode()


def _sendable(action: dict[str, Any]) -> None:
    """As the bulk writer sends it: serialisable, an `_id` Elasticsearch takes."""
    assert _serialise(action)
    assert 0 < len(str(action["_id"]).encode()) <= 512


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_events(), min_size=1, max_size=4), st.booleans())
def test_any_value_in_any_field_is_written_or_dead_lettered(
    events: list[dict[str, Any]], cloud: bool
) -> None:
    payload = [_cloud_event(e) for e in events] if cloud else events
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
        assert json.loads(letter["_source"]["mlops"]["dead_letter"]["original"]) == payload[bad.position]
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
