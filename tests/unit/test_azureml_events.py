"""Azure ML events: the documented payloads (Event Grid and CloudEvents schemas) in, documents out.

Golden files in tests/golden/azureml/: `<name>.json` is a delivery body, `<name>.json-expected.json`
the documents it becomes (`pytest --update-golden` rewrites them). The inputs are Microsoft's
documented examples ("Azure Machine Learning as an Event Grid source") with distinct ids and a
concrete workspace, plus corners (pipelines, casing, unknown types, CloudEvents without time).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, SystemEventNames
from azure.eventgrid._legacy._helpers import _cloud_event_to_generated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipper.core.events import (
    KNOWN_TYPES,
    SUBSCRIPTION_VALIDATION,
    InvalidPayload,
    parse_delivery,
    parse_time,
    parse_workspace,
)
from shipper.core.names import RUNS_INDEX
from shipper.transforms.azureml_events import (
    document_id,
    event_action,
    event_document,
    model_refs,
    notification_kind,
    run_entity,
    run_event,
    run_view,
    snake,
    stamp,
)
from tests.support import golden

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "azureml"
RECEIVED = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
WS = (
    "/subscriptions/9f2c4e1a-7b3d-4c55-8e0f-2a6b1d3c4e5f/resourceGroups/ml-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/churn-ws"
)
CONTENT_TYPES = {"eventgrid": "application/json", "cloudevents": "application/cloudevents-batch+json"}


def documents(body: bytes, content_type: str) -> dict[str, Any]:
    delivery = parse_delivery(body, content_type)
    runs = []
    for event in delivery.events:
        run = run_event(event, RECEIVED)
        if run is not None:
            write = run_entity(run.run_id, run.stamp, run_view(run))
            runs.append(
                {
                    "index": write.index,
                    "id": write.id,
                    "owner": write.owner,
                    "stamp": write.stamp,
                    "doc": write.doc,
                }
            )
    return {"events": [event_action(e, RECEIVED) for e in delivery.events], "runs": runs}


GOLDEN_INPUTS = sorted(p for p in GOLDEN.glob("*.json") if not p.name.endswith("-expected.json"))


def _render(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


@pytest.mark.parametrize("path", GOLDEN_INPUTS, ids=lambda p: p.stem)
def test_golden(path: Path, update_golden: bool) -> None:
    content_type = CONTENT_TYPES[path.stem.split("-")[0]]
    actual = documents(path.read_bytes(), content_type)
    expected_path = path.with_name(path.name + "-expected.json")
    expected, rendered = golden.compare_json(expected_path, actual, update_golden, __file__, _render)
    assert expected == rendered


def by_action(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["_source"]["event"]["action"]: a for a in body["events"]}


def test_documented_eventgrid_examples_give_the_contract_fields() -> None:
    out = documents((GOLDEN / "eventgrid-documented.json").read_bytes(), "application/json")
    actions = by_action(out)
    assert set(actions) == {
        "ModelRegistered",
        "ModelDeployed",
        "RunCompleted",
        "DatasetDriftDetected",
        "RunStatusChanged",
    }
    for action in actions.values():
        source = action["_source"]
        assert action["_id"] == source["event"]["id"]
        assert source["azureml"]["workspace"]["name"] == "churn-ws"
        assert source["azureml"]["subscription_id"] == "9f2c4e1a-7b3d-4c55-8e0f-2a6b1d3c4e5f"
        assert source["azureml"]["resource_group"] == "ml-prod"
        # Partitioned by the event's own time (2017), not by the time it arrived (2024).
        assert action["_index"] == "mlops-events-2017.06"
        assert source["@timestamp"].startswith("2017-06-26T18:41:0")
    registered = actions["ModelRegistered"]["_source"]
    assert registered["ml"]["model"] == {
        "name": "sklearn_regression_model",
        "version": "20",  # a number in the payload; always a keyword string here
        "version_number": 20,
        "ref": "sklearn_regression_model:20",
        "tags": {"area": "diabetes", "type": "regression"},
    }
    deployed = actions["ModelDeployed"]["_source"]
    assert deployed["ml"]["model"]["name"] == "sklearn_regression_model"
    assert deployed["ml"]["model"]["version"] == ["1", "2"]
    assert deployed["azureml"]["deployment"]["name"] == "my-sklearn-service"
    assert deployed["azureml"]["deployment"]["compute_type"] == "ACI"
    completed = actions["RunCompleted"]["_source"]["azureml"]
    assert completed["run"]["id"] == "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
    assert completed["run"]["status"] == "Completed"
    assert completed["experiment"] == {
        "name": "automl-local-regression",
        "id": "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1",
    }
    changed = actions["RunStatusChanged"]["_source"]
    assert changed["azureml"]["run"]["status"] == "Failed"  # "failed" in the documented example
    assert changed["event"]["outcome"] == "failure"
    drift = actions["DatasetDriftDetected"]["_source"]["azureml"]
    assert drift["drift"]["coefficient"] == pytest.approx(0.835034906847)
    assert drift["drift"]["start_time"] == "2019-07-04T00:00:00.000Z"
    assert drift["run"]["id"] == "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380"
    # The two run events update one run document; the Completed one is the newer.
    assert {r["id"] for r in out["runs"]} == {"AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"}
    assert all(
        r["index"] == RUNS_INDEX and r["owner"] == "azureml" and set(r["doc"]) == {"azureml"}
        for r in out["runs"]
    )
    newest = max(out["runs"], key=lambda r: r["stamp"])
    assert newest["doc"]["azureml"]["run"]["status"] == "Completed"


def test_cloudevents_and_eventgrid_schemas_give_the_same_documents() -> None:
    eg = documents((GOLDEN / "eventgrid-documented.json").read_bytes(), "application/json")
    ce = documents(
        (GOLDEN / "cloudevents-documented.json").read_bytes(), "application/cloudevents-batch+json"
    )

    def comparable(action: dict[str, Any]) -> dict[str, Any]:
        source = dict(action["_source"])
        source.pop("mlops")
        source["event"] = {k: v for k, v in source["event"].items() if k != "id"}
        source["azureml"] = {k: v for k, v in source["azureml"].items() if k != "schema"}
        return source

    assert [comparable(a) for a in eg["events"]] == [comparable(a) for a in ce["events"]]
    assert {a["_source"]["azureml"]["schema"] for a in ce["events"]} == {"CloudEvent"}


def test_single_structured_cloudevent() -> None:
    one = orjson.loads((GOLDEN / "cloudevents-documented.json").read_bytes())[2]
    delivery = parse_delivery(orjson.dumps(one), "application/cloudevents+json; charset=utf-8")
    assert [e.short_type for e in delivery.events] == ["RunCompleted"]


def test_binary_mode_cloudevent() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": WS,
        "ce-type": "Microsoft.MachineLearningServices.RunStatusChanged",
        "ce-time": "2024-05-01T10:00:00Z",
        "ce-subject": "experiments/e/runs/r1",
    }
    body = orjson.dumps({"runId": "r1", "runStatus": "Running"})
    delivery = parse_delivery(body, "application/json", headers)
    (event,) = delivery.events
    run = run_event(event, RECEIVED)
    assert run is not None and run.run_id == "r1" and run.status == "Running"


def test_subscription_validation_handshake() -> None:
    body = orjson.dumps(
        [
            {
                "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
                "topic": WS,
                "subject": "",
                "data": {
                    "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                    "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/x/validate?id=1",
                },
                "eventType": SUBSCRIPTION_VALIDATION,
                "eventTime": "2018-01-25T22:12:19.4556811Z",
                "metadataVersion": "1",
                "dataVersion": "1",
            }
        ]
    )
    delivery = parse_delivery(body, "application/json")
    assert delivery.validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert delivery.validation_url is not None


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"", "application/json", "empty"),
        (b"{not json", "application/json", "not JSON"),
        (b'{"a": 1}', "application/json", "neither"),
        (b"[1, 2]", "application/json", "neither"),
        (b"[]", "application/cloudevents+json", "one JSON object"),
        (b"{}", "application/cloudevents-batch+json", "JSON array"),
        (b'[{"eventType": "x", "eventTime": "2024-01-01T00:00:00Z"}]', "application/json", "`id`"),
        (b'[{"id": "1", "eventType": "x", "eventTime": "yesterday"}]', "application/json", "RFC 3339"),
        (b'[{"id": "1", "eventType": "x", "eventTime": "1900-01-01T00:00:00Z"}]', "application/json", "1970"),
        (b'[{"eventType": "x"}, 5]', "application/json", "event 1"),
        (
            b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}',
            "application/cloudevents+json",
            "1.0",
        ),
        (b'{"specversion": "1.0", "id": "1", "type": "t"}', "application/cloudevents+json", "`source`"),
        (
            b'[{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", '
            b'"eventTime": "2024-01-01T00:00:00Z", "data": {}}]',
            "application/json",
            "validationCode",
        ),
    ],
)
def test_payloads_that_can_never_succeed(body: bytes, content_type: str, problem: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_delivery(body, content_type)
    assert problem in str(caught.value)


def test_bad_events_beside_good_ones_are_set_apart_with_their_original() -> None:
    good = {"id": "g", "eventType": "t", "eventTime": "2024-01-01T00:00:00Z"}
    no_id = {"eventType": "t", "eventTime": "2024-01-01T00:00:00Z", "data": {"runId": "r"}}
    delivery = parse_delivery(orjson.dumps([good, no_id, 5, good | {"id": "h"}]), "application/json")
    assert [e.id for e in delivery.events] == ["g", "h"]
    assert [(bad.position, bad.raw) for bad in delivery.invalid] == [(1, no_id), (2, 5)]
    assert delivery.invalid[0].problems == ["event 1: `id` is missing or not a non-empty string"]
    assert delivery.invalid[1].problems == ["event 2: is not a JSON object"]


def test_a_validation_handshake_with_a_bad_event_is_refused_whole() -> None:
    handshake = {
        "id": "v",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2024-01-01T00:00:00Z",
        "data": {"validationCode": "c"},
    }
    with pytest.raises(InvalidPayload, match="event 1"):
        parse_delivery(orjson.dumps([handshake, {"eventType": "t"}]), "application/json")


def test_too_many_events() -> None:
    event = {"id": "x", "eventType": "t", "eventTime": "2024-01-01T00:00:00Z"}
    with pytest.raises(InvalidPayload, match="at most 3"):
        parse_delivery(orjson.dumps([event] * 4), "application/json", max_events=3)


def test_every_problem_is_listed() -> None:
    bad = [{"id": "", "eventType": "t", "eventTime": "x"}, {"eventType": 3}]
    with pytest.raises(InvalidPayload) as caught:
        parse_delivery(orjson.dumps(bad), "application/json")
    assert len(caught.value.problems) >= 4
    assert any(p.startswith("event 0") for p in caught.value.problems)
    assert any(p.startswith("event 1") for p in caught.value.problems)


# -- built with azure-eventgrid's own models --------------------------------------------------------


def test_payloads_built_by_the_azure_eventgrid_models() -> None:
    moment = datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    eg = EventGridEvent(
        subject="experiments/e1/runs/run-sdk",
        event_type=SystemEventNames.MachineLearningServicesRunStatusChangedEventName,
        data={"experimentId": "e1", "experimentName": "sdk", "runId": "run-sdk", "runStatus": "Running"},
        data_version="",
        topic=WS,
        event_time=moment,
    )
    delivery = parse_delivery(orjson.dumps([eg.serialize()]), "application/json")
    (event,) = delivery.events
    assert (event.id, event.type, event.time, event.source) == (str(eg.id), eg.event_type, moment, WS)
    ce = CloudEvent(
        source=WS,
        type=SystemEventNames.MachineLearningServicesModelRegisteredEventName,
        data={"ModelName": "m", "ModelVersion": "3"},
        subject="models/m:3",
        time=moment,
    )
    body = orjson.dumps([_cloud_event_to_generated(ce).serialize()])
    (event,) = parse_delivery(body, "application/cloudevents-batch+json").events
    assert (event.id, event.type, event.time) == (ce.id, ce.type, moment)
    assert event_document(event, RECEIVED)["ml"]["model"]["version"] == "3"


@pytest.mark.parametrize("path", [GOLDEN / "eventgrid-documented.json", GOLDEN / "eventgrid-corners.json"])
def test_golden_eventgrid_inputs_are_valid_for_the_sdk(path: Path) -> None:
    for raw in orjson.loads(path.read_bytes()):
        parsed = EventGridEvent.from_dict(raw)
        assert parsed.event_type == raw["eventType"]


@pytest.mark.parametrize(
    "path", [GOLDEN / "cloudevents-documented.json", GOLDEN / "cloudevents-corners.json"]
)
def test_golden_cloudevent_inputs_are_valid_for_the_sdk(path: Path) -> None:
    for raw in orjson.loads(path.read_bytes()):
        parsed = CloudEvent.from_dict(raw)
        assert parsed.type == raw["type"]


# -- pieces -------------------------------------------------------------------------------------------


def test_workspace_from_topic() -> None:
    ws = parse_workspace(
        WS.upper().replace("MICROSOFT.MACHINELEARNINGSERVICES", "microsoft.machinelearningservices")
    )
    assert ws is not None and ws.name == "CHURN-WS"
    ws = parse_workspace(WS + "/jobs/abc")
    assert ws is not None and (ws.subscription_id, ws.resource_group, ws.name) == (
        "9f2c4e1a-7b3d-4c55-8e0f-2a6b1d3c4e5f",
        "ml-prod",
        "churn-ws",
    )
    assert (
        parse_workspace("/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a")
        is None
    )
    assert parse_workspace(None) is None


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ModelName", "model_name"),
        ("modelName", "model_name"),
        ("model_name", "model_name"),
        ("RunID", "run_id"),
        ("ModelIds", "model_ids"),
        ("ServiceComputeType", "service_compute_type"),
        ("DataDriftId", "data_drift_id"),
    ],
)
def test_snake(key: str, expected: str) -> None:
    assert snake(key) == expected


def test_model_ids() -> None:
    assert model_refs("a:1, b:2,,c") == [("a", "1"), ("b", "2"), ("c", None)]
    assert model_refs(None) == []


def test_times_with_seven_fractional_digits_and_offsets() -> None:
    assert parse_time("2017-06-26T18:41:00.9584103Z") == datetime(2017, 6, 26, 18, 41, 0, 958410, tzinfo=UTC)
    assert parse_time("2019-07-04T02:00:00+02:00") == datetime(2019, 7, 4, tzinfo=UTC)


def test_same_millisecond_terminal_status_wins() -> None:
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    assert (
        stamp(moment, "Completed")
        > stamp(moment, "Finalizing")
        > stamp(moment, "Running")
        > stamp(moment, None)
    )
    assert stamp(moment + timedelta(milliseconds=1), "Queued") > stamp(moment, "Completed")
    assert stamp(datetime(2262, 1, 1, tzinfo=UTC), "Completed") < 2**53


def test_long_event_ids_are_hashed_stably() -> None:
    long_id = "x" * 600
    assert document_id(long_id) == document_id(long_id) != long_id
    assert len(document_id(long_id).encode()) <= 512
    assert document_id("short") == "short"


def test_notification_kinds() -> None:
    body = (GOLDEN / "eventgrid-documented.json").read_bytes()
    kinds = {}
    for event in parse_delivery(body, "application/json").events:
        kinds[event.short_type] = notification_kind(event, run_event(event, RECEIVED))
    assert kinds == {
        "ModelRegistered": "model_registered",
        "ModelDeployed": None,
        "RunCompleted": "completed",
        "DatasetDriftDetected": None,
        "RunStatusChanged": "failed",
    }


# -- properties (hypothesis) ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from([*CONTENT_TYPES.values(), None, "text/plain"]),
)
def test_any_bytes_parse_or_are_refused_cleanly(body: bytes, content_type: str | None) -> None:
    try:
        parse_delivery(body, content_type)
    except InvalidPayload as exc:
        assert exc.problems


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(document=json_values, content_type=st.sampled_from(list(CONTENT_TYPES.values())))
def test_any_json_parses_or_is_refused_cleanly(document: Any, content_type: str) -> None:
    try:
        delivery = parse_delivery(json.dumps(document).encode(), content_type)
    except InvalidPayload:
        return
    for event in delivery.events:
        orjson.dumps(event_action(event, RECEIVED))


def _case(key: str, style: str) -> str:
    if style == "pascal":
        return key[0].upper() + key[1:]
    if style == "snake":
        return snake(key)
    return key


statuses = st.sampled_from(
    [
        "NotStarted",
        "Queued",
        "Preparing",
        "Running",
        "Finalizing",
        "Completed",
        "Failed",
        "Canceled",
        "CancelRequested",
    ]
)
safe_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)
user_maps = st.dictionaries(safe_text, json_values, max_size=5)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    event_id=safe_text,
    run_id=safe_text,
    experiment=safe_text,
    status=statuses,
    status_case=st.sampled_from([str.lower, str.upper, lambda s: s]),
    style=st.sampled_from(["camel", "pascal", "snake"]),
    millis=st.integers(min_value=0, max_value=4_000_000_000_000),
    tags=user_maps,
    properties=user_maps,
    schema=st.sampled_from(["eventgrid", "cloudevents"]),
)
def test_run_events_in_any_casing_give_one_document(
    event_id: str,
    run_id: str,
    experiment: str,
    status: str,
    status_case: Any,
    style: str,
    millis: int,
    tags: dict[str, Any],
    properties: dict[str, Any],
    schema: str,
) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    data = {
        "experimentName": experiment,
        "runId": run_id,
        "runStatus": status_case(status),
        "runTags": tags,
        "runProperties": properties,
    }
    cased = {_case(k, style): v for k, v in data.items()}
    if schema == "eventgrid":
        raw: dict[str, Any] = {
            "id": event_id,
            "topic": WS,
            "subject": "s",
            "eventType": KNOWN_TYPES[0],
            "eventTime": moment.isoformat(),
            "data": cased,
            "dataVersion": "",
        }
        body, content_type = json.dumps([raw]).encode(), "application/json"
    else:
        raw = {
            "specversion": "1.0",
            "id": event_id,
            "source": WS,
            "type": KNOWN_TYPES[0],
            "time": moment.isoformat(),
            "data": cased,
        }
        body, content_type = json.dumps(raw).encode(), "application/cloudevents+json"
    (event,) = parse_delivery(body, content_type).events
    document = event_document(event, RECEIVED)
    action = event_action(event, RECEIVED)
    run = run_event(event, RECEIVED)
    assert run is not None
    assert run.run_id == run_id and run.status == status and run.experiment_name == experiment
    assert document["azureml"]["run"]["status"] == status
    assert document["event"]["id"] == event_id
    assert action["_id"] == document_id(event_id)
    assert action["_index"] == "mlops-events-" + moment.strftime("%Y.%m")
    assert document["@timestamp"] == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for values in (
        document["azureml"]["run"].get("tags") or {},
        document["azureml"]["run"].get("properties") or {},
    ):
        assert all(isinstance(v, str) for v in values.values())
        assert all(k and not k.startswith(".") and not k.endswith(".") and ".." not in k for k in values)
    # Serialisable as it is, and the same event gives the same document again.
    assert orjson.dumps(action) == orjson.dumps(event_action(event, RECEIVED))
    # A time after the receipt counts as the receipt's (a clock ahead cannot hold the run's state).
    assert run.stamp == stamp(min(moment, RECEIVED), status)


def test_json_numbers_beyond_a_double_are_taken() -> None:
    body = (
        b'[{"id": "n", "eventType": "t", "eventTime": "2024-01-01T00:00:00Z", '
        b'"data": {"big": 1e400, "huge": 123456789012345678901234567890}}]'
    )
    (event,) = parse_delivery(body, "application/json").events
    # A double cannot hold it: kept as its JSON text.
    assert event.data["big"] == "1e400"
    orjson.dumps(event_action(event, RECEIVED))
    with pytest.raises(InvalidPayload):
        parse_delivery(
            b'[{"id": "n", "eventType": "t", "eventTime": "2024-01-01T00:00:00Z", "data": NaN}]', None
        )


@settings(database=None)
@given(st.text(max_size=40))
def test_data_base64_that_is_not_json_is_kept(text: str) -> None:
    encoded = base64.b64encode(text.encode()).decode()
    raw = {
        "specversion": "1.0",
        "id": "1",
        "source": WS,
        "type": "t",
        "data_base64": encoded,
        "datacontenttype": "text/plain",
    }
    (event,) = parse_delivery(orjson.dumps(raw), "application/cloudevents+json").events
    assert event.data == encoded
