"""Inputs that were once answered 5xx forever, each inside a batch of good events, over real HTTP
into the real Elasticsearch (the outcome per class is the table of docs/webhook-input.md).

For each: the answer is 200, the good events are written once (a redelivery writes nothing new),
and the bad one is in the dead-letter index with its original and a reason, or written normalised
where that is the documented outcome. Bodies are raw JSON text: the standard encoder writes lone
surrogates as `\\ud800` escapes, as a faulty sender would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from shipper.core.names import DEAD_LETTER_INDEX, events_index
from shipper.transforms.azureml_events import document_id
from tests.integration import test_webhook as base
from tests.integration.test_webhook import (
    WS,
    Hook,
    count_events,
    events_with_ids,
    refresh,
    run_doc,
    status_event,
    unique,
)

# The webhook fixtures of the main webhook tests (a real server per test).
installed, settings, start_hook, hook = base.installed, base.settings, base.start_hook, base.hook

pytestmark = pytest.mark.integration

STATUS = "Microsoft.MachineLearningServices.RunStatusChanged"
DRIFT = "Microsoft.MachineLearningServices.DatasetDriftDetected"
NOW = datetime.now(UTC).replace(microsecond=0)


def good_events() -> list[dict[str, Any]]:
    return [status_event(unique("good"), "Running", NOW - timedelta(minutes=1)) for _ in range(2)]


def bad_event(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "topic": WS,
        "subject": "experiments/e/runs/r",
        "eventType": STATUS,
        "eventTime": NOW.isoformat(),
        "data": {"runId": unique("bad-run"), "runStatus": "Running"},
        "dataVersion": "",
        "metadataVersion": "1",
    }
    return event | fields


def text_of(events: list[Any]) -> bytes:
    return json.dumps(events, ensure_ascii=True).encode()


def letter_of(es: Elasticsearch, letter_id: str) -> dict[str, Any]:
    refresh(es)
    return dict(es.get(index=DEAD_LETTER_INDEX, id=letter_id)["_source"])


def send_beside_good_ones(
    es: Elasticsearch, hook: Hook, bad: Any, content_type: str = "application/json", cloud: bool = False
) -> dict[str, Any]:
    """Send [good, bad, good]: 200, the good ones written once (also after a redelivery), and the
    answer body back."""
    good = good_events()
    if cloud:
        good = [as_cloud_event(e) for e in good]
    body = (
        text_of([good[0], bad, good[1]])
        if not isinstance(bad, bytes)
        else b"[%s,%s,%s]"
        % (
            orjson.dumps(good[0]),
            bad,
            orjson.dumps(good[1]),
        )
    )
    reply = hook.post(None, raw=body, content_type=content_type)
    assert reply.status == 200, reply.raw
    again = hook.post(None, raw=body, content_type=content_type)
    assert again.status == 200, again.raw
    # The same dead letters (their reasons may name the time of receipt).
    assert again.json()["accepted"] == reply.json()["accepted"]
    refs = [(r["event"], r["dead_letter_id"]) for r in reply.json().get("dead_lettered", [])]
    assert [(r["event"], r["dead_letter_id"]) for r in again.json().get("dead_lettered", [])] == refs
    assert count_events(es, [document_id(e["id"]) for e in good]) == 2
    for event in good:
        run_id = event["data"]["runId"]
        doc = run_doc(es, run_id)
        assert doc is not None and doc["azureml"]["run"]["status"] == "Running"
    return dict(reply.json())


def as_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": event["topic"],
        "subject": event["subject"],
        "type": event["eventType"],
        "time": event["eventTime"],
        "data": event["data"],
    }


def assert_dead_lettered(es: Elasticsearch, answer: dict[str, Any], bad: Any, *words: str) -> dict[str, Any]:
    assert answer["accepted"] == 2
    (ref,) = answer["dead_lettered"]
    assert ref["event"] == 1
    letter = letter_of(es, ref["dead_letter_id"])
    for word in words:
        assert word in letter["error"]["message"]
    assert letter["http"]["response"]["status_code"] == 200
    # The original, as JSON text that reads back to exactly what was sent.
    original = letter["mlops"]["dead_letter"]["original"]
    if isinstance(bad, bytes) and bad.count(b"[") > 500:
        assert original.encode() == bad  # too deep to compare as values; both are compact JSON
    else:
        assert loads(original) == (loads(bad) if isinstance(bad, bytes) else bad)
    return letter


def loads(text: str | bytes) -> Any:
    """JSON text back to a value: orjson reads 1,024 levels, the standard parser lone surrogates."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


# -- lone surrogates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "bad", "words"),
    [
        ("event id", bad_event(id="id-\ud800-x"), ["`id` holds a lone UTF-16 surrogate (U+D800)"]),
        (
            "tag value",
            bad_event(data={"runId": "r-s", "runStatus": "Running", "runTags": {"team": "a\udc01"}}),
            ["`data.runTags.team` holds a lone UTF-16 surrogate (U+DC01)"],
        ),
        (
            "key deep in data",
            bad_event(data={"runId": "r-k", "runProperties": {"x": [{"\ud83d": 1}]}}),
            ["a key in `data.runProperties.x[0]` holds a lone UTF-16 surrogate (U+D83D)"],
        ),
    ],
)
def test_lone_surrogates_are_dead_lettered(
    es: Elasticsearch, hook: Hook, where: str, bad: dict[str, Any], words: list[str]
) -> None:
    answer = send_beside_good_ones(es, hook, bad)
    assert_dead_lettered(es, answer, bad, *words, "encode its strings as UTF-8")


# -- nesting --------------------------------------------------------------------------------------------


def test_nesting_deeper_than_the_bulk_serialiser_takes_is_dead_lettered(
    es: Elasticsearch, hook: Hook
) -> None:
    bad = bad_event(data={"runId": "r-deep", "payload": nested(600)})
    answer = send_beside_good_ones(es, hook, bad)
    assert_dead_lettered(es, answer, bad, "nested more than 252 levels deep")
    # 250 levels are taken: the whole event is stored as it came.
    fine = bad_event(data={"runId": unique("r-250"), "runStatus": "Queued", "payload": nested(248)})
    assert "dead_lettered" not in send_beside_good_ones(es, hook, fine)
    (stored,) = events_with_ids(es, [fine["id"]])
    assert stored["_source"]["mlops"]["raw"]["data"]["payload"] == fine["data"]["payload"]


def test_nesting_in_a_structured_cloudevents_batch(es: Elasticsearch, hook: Hook) -> None:
    event = as_cloud_event(bad_event())
    event["data"] = "DATA"
    # 1,000 levels: the parser takes them (it stops at 1,024), the serialiser would not.
    bad = orjson.dumps(event).replace(b'"DATA"', b"[" * 1000 + b"1" + b"]" * 1000)
    answer = send_beside_good_ones(es, hook, bad, "application/cloudevents-batch+json", cloud=True)
    assert_dead_lettered(es, answer, bad, "nested more than 252 levels deep")


def test_nesting_in_a_binary_mode_cloudevent_is_400_after_dead_lettering(
    es: Elasticsearch, hook: Hook
) -> None:
    """Binary mode carries one event: it can never succeed, so 400 with the body dead-lettered (the
    rule for every delivery without a readable event)."""
    body = b"[" * 400 + b'"deep"' + b"]" * 400
    headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": WS, "ce-type": STATUS}
    reply = hook.post(None, raw=body, headers=headers)
    assert reply.status == 400, reply.raw
    assert "nested more than 252 levels deep" in reply.json()["problems"][0]
    letter = letter_of(es, reply.json()["dead_letter_id"])
    assert orjson.loads(letter["mlops"]["dead_letter"]["original"]) == nested(400)


# -- numbers ----------------------------------------------------------------------------------------------


def test_integers_beyond_a_double_are_kept_as_their_digits(es: Elasticsearch, hook: Hook) -> None:
    digits = "9" * 400
    run_id = unique("r-big")
    bad = (
        b'{"id": "%s", "topic": "%s", "eventType": "%s", "eventTime": "%s", "data": {"runId": "%s", '
        b'"runStatus": "Running", "runTags": {"n": %s}, "ratio": 1e400}}'
        % (
            unique("big").encode(),
            WS.encode(),
            STATUS.encode(),
            NOW.isoformat().encode(),
            run_id.encode(),
            digits.encode(),
        )
    )
    answer = send_beside_good_ones(es, hook, bad)
    assert answer == {"accepted": 3, "runs": 3}
    (stored,) = events_with_ids(es, [json.loads(bad)["id"]])
    assert stored["_source"]["azureml"]["run"]["tags"] == {"n": digits}
    assert stored["_source"]["mlops"]["raw"]["data"]["ratio"] == "1e400"
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["tags"] == {"n": digits}


# -- times ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["9999-12-31T23:00:00-05:00", "0001-01-01T01:00:00+05:00"])
def test_event_times_that_leave_the_utc_range_are_dead_lettered(
    es: Elasticsearch, hook: Hook, when: str
) -> None:
    bad = bad_event(eventTime=when)
    answer = send_beside_good_ones(es, hook, bad)
    assert_dead_lettered(es, answer, bad, f"`eventTime` '{when}' is outside the years 1970 to 9999")
    assert run_doc(es, bad["data"]["runId"]) is None


def test_a_data_time_that_leaves_the_utc_range_is_left_out(es: Elasticsearch, hook: Hook) -> None:
    bad = bad_event(
        eventType=DRIFT,
        data={
            "DataDriftId": unique("drift"),
            "StartTime": "9999-12-31T23:00:00-05:00",
            "EndTime": NOW.isoformat(),
        },
    )
    answer = send_beside_good_ones(es, hook, bad)
    assert answer == {"accepted": 3, "runs": 2}
    (stored,) = events_with_ids(es, [bad["id"]])
    drift = stored["_source"]["azureml"]["drift"]
    assert "start_time" not in drift and drift["end_time"] == NOW.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    assert stored["_source"]["mlops"]["raw"]["data"]["StartTime"] == "9999-12-31T23:00:00-05:00"


# -- ids and keyword values beyond Elasticsearch's limits ---------------------------------------------


def test_run_ids_and_values_beyond_elasticsearch_limits(es: Elasticsearch, hook: Hook) -> None:
    run_id = "run-" + "é" * 400 + uuid.uuid4().hex  # 800+ bytes: more than an _id may have
    long_text = "x" * 40_000  # more than a keyword term may have
    bad = bad_event(
        id="event-" + "e" * 600 + uuid.uuid4().hex,
        data={
            "runId": run_id,
            "runStatus": "Running",
            "experimentName": long_text,
            "runTags": {"t": long_text},
        },
    )
    answer = send_beside_good_ones(es, hook, bad)
    assert answer == {"accepted": 3, "runs": 3}
    # The run document's _id is the hash; the run id itself is kept whole.
    assert document_id(run_id) != run_id
    doc = run_doc(es, document_id(run_id))
    assert doc is not None
    assert doc["azureml"]["run"]["id"] == run_id
    assert doc["azureml"]["experiment"]["name"] == long_text
    (stored,) = events_with_ids(es, [document_id(bad["id"])])
    assert stored["_source"]["event"]["id"] == bad["id"]


# -- the event-time window --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "words"),
    [
        (
            NOW - timedelta(days=500),
            ["more than 400 days before its receipt", "SHIPPER_WEBHOOK_EVENT_MAX_AGE_DAYS"],
        ),
        (
            datetime(2091, 3, 1, tzinfo=UTC),
            ["more than 1 day after its receipt", "SHIPPER_WEBHOOK_EVENT_MAX_FUTURE_DAYS"],
        ),
    ],
)
def test_events_outside_the_time_window_open_no_index(
    es: Elasticsearch, hook: Hook, when: datetime, words: list[str]
) -> None:
    index = events_index(int(when.timestamp() * 1000))
    existed = bool(es.indices.exists(index=index))
    bad = bad_event(eventTime=when.isoformat())
    answer = send_beside_good_ones(es, hook, bad)
    letter = assert_dead_lettered(es, answer, bad, *words)
    assert letter["error"]["type"] == "event_time_outside_window"
    assert existed or not es.indices.exists(index=index)
    # Nor does it touch the run's state.
    assert run_doc(es, bad["data"]["runId"]) is None


def test_the_window_is_a_setting(es: Elasticsearch, start_hook: Callable[..., Hook]) -> None:
    hook = start_hook({"webhook_event_max_age_days": 1000})
    bad = bad_event(eventTime=(NOW - timedelta(days=500)).isoformat())
    assert send_beside_good_ones(es, hook, bad) == {"accepted": 3, "runs": 3}


def test_a_future_dated_status_cannot_lock_a_run(es: Elasticsearch, hook: Hook) -> None:
    """A sender's clock 12 h ahead (inside the window) says Running; the real Completed that follows
    is dated now: it wins, because a time after the receipt counts as of the receipt."""
    run_id = unique("r-future")
    ahead = status_event(run_id, "Running", NOW + timedelta(hours=12))
    assert hook.post([ahead]).status == 200
    done = status_event(run_id, "Completed", datetime.now(UTC) + timedelta(seconds=1))
    assert hook.post([done]).status == 200
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Completed"
    # And a status far in the future is a dead letter: it never reaches the run.
    far = status_event(run_id, "Running", datetime(2091, 1, 1, tzinfo=UTC))
    reply = hook.post([far, status_event(unique("other"), "Queued", NOW)])
    assert reply.status == 200 and len(reply.json()["dead_lettered"]) == 1
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Completed"


# -- out of shards ------------------------------------------------------------------------------------------


def test_a_cluster_out_of_shards_is_503_then_the_event_is_written(es: Elasticsearch, hook: Hook) -> None:
    """A new month's index cannot be opened while the cluster is at `cluster.max_shards_per_node`:
    503 (Event Grid retries), nothing dead-lettered; once there is room, the same delivery is written."""
    months = [NOW - timedelta(days=31 * n) for n in range(1, 13)]
    fresh = [m for m in months if not es.indices.exists(index=events_index(int(m.timestamp() * 1000)))]
    assert fresh, "every month of the past year has an events index already; use a clean stack"
    when = fresh[0]
    event = status_event(unique("r-shards"), "Running", when)
    es.cluster.put_settings(persistent={"cluster.max_shards_per_node": 1})
    try:
        reply = hook.post([event])
        assert reply.status == 503, reply.raw
        assert reply.headers["retry-after"] == "7"
        refresh(es)
        letters = es.count(
            index=DEAD_LETTER_INDEX, query={"term": {"mlops.dead_letter.id": document_id(event["id"])}}
        )
        assert letters["count"] == 0
    finally:
        es.cluster.put_settings(persistent={"cluster.max_shards_per_node": None})
    reply = hook.post([event])
    assert reply.status == 200, reply.raw
    assert count_events(es, [event["id"]]) == 1
