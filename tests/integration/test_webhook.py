"""The Event Grid webhook over real HTTP (uvicorn on 127.0.0.1) into the real Elasticsearch.

Payloads are built with azure-eventgrid's own models (`EventGridEvent`, `CloudEvent`) from the
documented Azure ML schemas; Azure ML job details come from REST JSON through azure-ai-ml's own
deserializer (tests.support.rest_jobs). Every test uses its own run ids, event ids and experiment
names, so the cluster can be shared with other tests; nothing is deleted.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, SystemEventNames
from azure.eventgrid._legacy._helpers import _cloud_event_to_generated
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from prometheus_client import REGISTRY
from pydantic import SecretStr

from shipper.config import Settings
from shipper.core.names import DEAD_LETTER_INDEX, RUNS_INDEX
from shipper.setup.installer import install
from shipper.sink.bulk import BulkWriter
from shipper.sink.client import build_client, probe
from shipper.sink.entities import upsert_entities
from shipper.transforms.azureml_events import run_entity, stamp
from shipper.webhook.server import Webhook, build_webhook
from tests.support.background_server import BackgroundServer
from tests.support.rest_jobs import RestJsonJobs

pytestmark = pytest.mark.integration

GOLDEN_JOBS = Path(__file__).resolve().parent.parent / "golden" / "azureml" / "jobs"
WS = (
    "/subscriptions/9f2c4e1a-7b3d-4c55-8e0f-2a6b1d3c4e5f/resourceGroups/ml-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/churn-ws"
)
STATUS_CHANGED = SystemEventNames.MachineLearningServicesRunStatusChangedEventName
RUN_COMPLETED = SystemEventNames.MachineLearningServicesRunCompletedEventName
MODEL_REGISTERED = SystemEventNames.MachineLearningServicesModelRegisteredEventName


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- payloads, from azure-eventgrid's models -------------------------------------------------------


def run_data(run_id: str, status: str | None, experiment: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "experimentId": "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1",
        "experimentName": experiment,
        "runId": run_id,
        "runType": None,
        "runTags": {},
        "runProperties": {"azureml.runsource": "azureml.scriptrun"},
    }
    if status is not None:
        data["runStatus"] = status
    return data | extra


def eg_event(
    event_type: str,
    data: dict[str, Any],
    when: datetime,
    subject: str = "experiments/0fa9dfaa/runs/x",
    topic: str = WS,
    event_id: str | None = None,
) -> dict[str, Any]:
    event = EventGridEvent(
        subject=subject,
        event_type=event_type,
        data=data,
        data_version="",
        topic=topic,
        event_time=when,
        id=event_id or str(uuid.uuid4()),
    )
    raw: dict[str, Any] = event.serialize()
    raw["metadataVersion"] = "1"
    return raw


def ce_event(event_type: str, data: dict[str, Any], when: datetime, subject: str = "x") -> dict[str, Any]:
    event = CloudEvent(source=WS, type=event_type, data=data, subject=subject, time=when)
    raw: dict[str, Any] = _cloud_event_to_generated(event).serialize()
    return raw


def status_event(
    run_id: str, status: str, when: datetime, experiment: str = "exp", **extra: Any
) -> dict[str, Any]:
    return eg_event(
        STATUS_CHANGED,
        run_data(run_id, status, experiment, **extra),
        when,
        subject=f"experiments/0fa9dfaa/runs/{run_id}",
    )


# -- a real server ---------------------------------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, body

    def json(self) -> Any:
        return orjson.loads(self.raw) if self.raw else None


def call(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
            )
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


class Hook:
    def __init__(self, webhook: Webhook, server: BackgroundServer, secret: str) -> None:
        self.webhook, self.server, self.secret = webhook, server, secret

    @property
    def url(self) -> str:
        return self.server.url

    def post(
        self,
        payload: Any,
        content_type: str = "application/json",
        secret: str | None = "default",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        query = "" if secret is None else f"?code={self.secret if secret == 'default' else secret}"
        body = raw if raw is not None else orjson.dumps(payload)
        return call(
            "POST", f"{self.url}/events{query}", body, {"Content-Type": content_type, **(headers or {})}
        )


@pytest.fixture(scope="module")
def installed(es: Elasticsearch) -> None:
    install(es, probe(es), 730, 90)


@pytest.fixture
def settings(es_url: str, installed: None) -> Settings:
    return Settings(
        elasticsearch_url=es_url,
        webhook_secret=f"{unique('secret')},rotated-{uuid.uuid4().hex}",
        webhook_write_budget_seconds=2.0,
        webhook_retry_after_seconds=7,
        azureml_enrichment_max_seconds=2.0,
    )


@pytest.fixture
def start_hook(settings: Settings) -> Iterator[Callable[..., Hook]]:
    started: list[Hook] = []

    def start(
        overrides: dict[str, Any] | None = None, jobs: RestJsonJobs | None = None, **kwargs: Any
    ) -> Hook:
        configured = settings.model_copy(update=overrides or {})
        kwargs.setdefault("sync_on_terminal", False)
        webhook = build_webhook(
            configured,
            client=build_client(configured),
            jobs=jobs,
            enrich=jobs is not None,
            **kwargs,
        )
        if webhook.enricher is not None:  # fast retries for tests
            webhook.enricher.initial_wait, webhook.enricher.max_wait = 0.05, 0.2
        webhook.start()
        server = BackgroundServer(webhook.app, settings=configured).start()
        secret = configured.webhook_secrets()[0].get_secret_value() if configured.webhook_secret else ""
        hook = Hook(webhook, server, secret)
        started.append(hook)
        return hook

    yield start
    for hook in started:
        hook.server.stop()
        hook.webhook.stop()


@pytest.fixture
def hook(start_hook: Callable[..., Hook]) -> Hook:
    return start_hook()


# -- reading back ----------------------------------------------------------------------------------


def refresh(es: Elasticsearch) -> None:
    es.indices.refresh(
        index=["mlops-events-*", RUNS_INDEX, DEAD_LETTER_INDEX],
        ignore_unavailable=True,
        allow_no_indices=True,
    )


def events_with_ids(es: Elasticsearch, ids: list[str]) -> list[dict[str, Any]]:
    refresh(es)
    found = es.search(
        index="mlops-events-*", query={"ids": {"values": ids}}, size=len(ids) + 10, allow_no_indices=True
    )
    return [hit for hit in found["hits"]["hits"]]


def count_events(es: Elasticsearch, ids: list[str]) -> int:
    refresh(es)
    return int(
        es.count(index="mlops-events-*", query={"ids": {"values": ids}}, allow_no_indices=True)["count"]
    )


def run_doc(es: Elasticsearch, run_id: str) -> dict[str, Any] | None:
    found = es.options(ignore_status=404).get(index=RUNS_INDEX, id=run_id)
    return dict(found["_source"]) if found.get("found") else None


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.1)


NOW = datetime.now(UTC).replace(microsecond=0)


# -- handshakes ------------------------------------------------------------------------------------


def test_subscription_validation_handshake(hook: Hook) -> None:
    validation = {
        "id": str(uuid.uuid4()),
        "topic": WS,
        "subject": "",
        "data": {
            "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
            "validationUrl": "https://x/validate",
        },
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": NOW.isoformat(),
        "metadataVersion": "1",
        "dataVersion": "1",
    }
    reply = hook.post([validation], headers={"aeg-event-type": "SubscriptionValidation"})
    assert reply.status == 200
    assert reply.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert hook.post([validation], secret=None).status == 401


def test_cloudevents_abuse_protection_handshake(hook: Hook) -> None:
    reply = call(
        "OPTIONS",
        f"{hook.url}/events",
        headers={"WebHook-Request-Origin": "eventgrid.azure.net", "x-shipper-secret": hook.secret},
    )
    assert reply.status == 200
    assert reply.headers["webhook-allowed-origin"] == "eventgrid.azure.net"
    assert reply.headers["webhook-allowed-rate"] == "*"
    refused = call("OPTIONS", f"{hook.url}/events", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert refused.status == 401


# -- batches ---------------------------------------------------------------------------------------


def test_eventgrid_batch_is_written_once_however_often_it_comes(es: Elasticsearch, hook: Hook) -> None:
    experiment = unique("exp")
    runs = [unique("run") for _ in range(20)]
    batch = [status_event(r, "Running", NOW - timedelta(minutes=5), experiment) for r in runs]
    batch += [status_event(r, "Completed", NOW - timedelta(minutes=1), experiment) for r in runs]
    batch.append(
        eg_event(MODEL_REGISTERED, {"ModelName": unique("model"), "ModelVersion": 3}, NOW, "models/m:3")
    )
    ids = [e["id"] for e in batch]
    first = hook.post(batch)
    assert first.status == 200, first.raw
    assert first.json() == {"accepted": 41, "runs": 20}
    # Event Grid redelivers (e.g. our 200 was lost): same documents, no more of them.
    assert hook.post(batch).status == 200
    random.shuffle(batch)
    assert hook.post(batch).status == 200
    assert count_events(es, ids) == 41
    refresh(es)
    assert es.count(index=RUNS_INDEX, query={"terms": {"azureml.run.id": runs}})["count"] == 20
    doc = run_doc(es, runs[0])
    assert doc is not None and doc["azureml"]["run"]["status"] == "Completed"
    assert doc["azureml"]["experiment"]["name"] == experiment
    assert set(doc) == {"azureml", "mlops", "event"}  # only its own field, plus the merge bookkeeping


def test_cloudevents_single_and_batched(es: Elasticsearch, hook: Hook) -> None:
    run_id = unique("ce-run")
    single = ce_event(STATUS_CHANGED, run_data(run_id, "Queued", "ce-exp"), NOW - timedelta(seconds=30))
    batch = [
        ce_event(STATUS_CHANGED, run_data(run_id, "Running", "ce-exp"), NOW - timedelta(seconds=20)),
        ce_event(RUN_COMPLETED, run_data(run_id, None, "ce-exp"), NOW - timedelta(seconds=10)),
    ]
    assert hook.post(single, "application/cloudevents+json; charset=utf-8").status == 200
    assert hook.post(batch, "application/cloudevents-batch+json; charset=utf-8").status == 200
    hits = events_with_ids(es, [single["id"], *(e["id"] for e in batch)])
    assert {h["_source"]["azureml"]["schema"] for h in hits} == {"CloudEvent"}
    assert len(hits) == 3
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Completed"


def test_out_of_order_and_concurrent_statuses_newest_wins(es: Elasticsearch, hook: Hook) -> None:
    run_id = unique("ooo-run")
    statuses = ["NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed"]
    events = [status_event(run_id, s, NOW - timedelta(minutes=10 - i)) for i, s in enumerate(statuses)]
    # Completed first, then the older ones, each in its own delivery, several at once.
    order = [events[-1], *random.sample(events[:-1], len(events) - 1)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda e: hook.post([e]), order + order))
    assert {r.status for r in replies} == {200}
    doc = run_doc(es, run_id)
    assert doc is not None
    assert doc["azureml"]["run"]["status"] == "Completed"
    assert doc["azureml"]["last_event"]["id"] == events[-1]["id"]
    assert count_events(es, [e["id"] for e in events]) == len(statuses)
    # A late "Running" changes nothing either.
    assert hook.post([events[3]]).status == 200
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Completed"


def test_same_millisecond_completed_beats_running(es: Elasticsearch, hook: Hook) -> None:
    run_id = unique("tie-run")
    when = NOW - timedelta(minutes=2)
    completed = status_event(run_id, "Completed", when)
    running = status_event(run_id, "Running", when)
    assert hook.post([completed]).status == 200
    assert hook.post([running]).status == 200
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Completed"


def test_unknown_event_types_are_kept(es: Elasticsearch, hook: Hook) -> None:
    unknown = eg_event(
        "Microsoft.MachineLearningServices.SomethingNew", {"Whatever": {"x": [1, 2]}}, NOW, "z"
    )
    foreign = eg_event("Contoso.Items.ItemReceived", {"itemSku": "x"}, NOW, "items/1", topic="/custom/topic")
    assert hook.post([unknown, foreign]).status == 200
    hits = {h["_id"]: h["_source"] for h in events_with_ids(es, [unknown["id"], foreign["id"]])}
    assert hits[unknown["id"]]["event"]["action"] == "SomethingNew"
    assert hits[unknown["id"]]["mlops"]["raw"]["data"] == {"Whatever": {"x": [1, 2]}}
    assert hits[foreign["id"]]["azureml"]["event_type"] == "Contoso.Items.ItemReceived"


def test_pipeline_step_carries_its_parent(es: Elasticsearch, hook: Hook) -> None:
    parent, step = unique("pipe"), unique("step")
    event = status_event(
        step,
        "Running",
        NOW,
        runType="azureml.StepRun",
        runProperties={"azureml.pipelinerunid": parent, "azureml.nodeid": "n1"},
    )
    assert hook.post([event]).status == 200
    (hit,) = events_with_ids(es, [event["id"]])
    assert hit["_source"]["azureml"]["pipeline"] == {"run_id": parent, "role": "step"}
    doc = run_doc(es, step)
    assert doc is not None and doc["azureml"]["pipeline"]["run_id"] == parent


# -- refusals --------------------------------------------------------------------------------------


def test_missing_and_wrong_secrets_are_401_and_write_nothing(es: Elasticsearch, hook: Hook) -> None:
    event = status_event(unique("auth-run"), "Running", NOW)
    assert hook.post([event], secret=None).status == 401
    assert hook.post([event], secret="wrong").status == 401
    assert hook.post([event], secret=None, headers={"x-shipper-secret": "wrong"}).status == 401
    assert count_events(es, [event["id"]]) == 0
    # The second secret of a rotation and the header form are both accepted.
    rotated = hook.webhook.settings.webhook_secrets()[1].get_secret_value()
    assert hook.post([event], secret=rotated).status == 200
    assert hook.post([event], secret=None, headers={"x-shipper-secret": hook.secret}).status == 200
    assert count_events(es, [event["id"]]) == 1


def dead_letter(es: Elasticsearch, letter_id: str) -> dict[str, Any]:
    refresh(es)
    return dict(es.get(index=DEAD_LETTER_INDEX, id=letter_id)["_source"])


def test_malformed_payloads_are_400_after_dead_lettering(es: Elasticsearch, hook: Hook) -> None:
    marker = unique("garbage")
    reply = hook.post(None, raw=f"{{not json {marker}".encode())
    assert reply.status == 400
    letter = dead_letter(es, reply.json()["dead_letter_id"])
    assert marker in letter["mlops"]["dead_letter"]["original"]
    assert "not JSON" in letter["error"]["message"]
    # A batch of nothing but bad events can never succeed: 400, the whole payload dead-lettered.
    bad = {"eventType": STATUS_CHANGED, "eventTime": NOW.isoformat(), "data": {"marker": unique("bad")}}
    reply = hook.post([bad])
    assert reply.status == 400
    assert reply.json()["problems"] == ["event 0: `id` is missing or not a non-empty string"]
    # The same bad payload again is the same dead letter, not a second one.
    assert hook.post([bad]).json()["dead_letter_id"] == reply.json()["dead_letter_id"]


def test_a_bad_event_costs_only_itself(es: Elasticsearch, hook: Hook) -> None:
    """Good events of a batch are written; the bad one is dead-lettered with its original, and the
    answer is 200: a redelivery could never fix the bad event, and a 400 would make Event Grid drop
    the good ones with it."""
    run_id = unique("beside-a-bad-one")
    good = [status_event(run_id, "Running", NOW), status_event(unique("other"), "Queued", NOW)]
    bad = {"eventType": STATUS_CHANGED, "eventTime": NOW.isoformat(), "data": {"marker": unique("bad")}}
    reply = hook.post([good[0], bad, good[1]])
    assert reply.status == 200, reply.json()
    body = reply.json()
    assert body["accepted"] == 2
    (letter_ref,) = body["dead_lettered"]
    assert letter_ref["event"] == 1
    assert letter_ref["problems"] == ["event 1: `id` is missing or not a non-empty string"]
    assert count_events(es, [e["id"] for e in good]) == 2
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Running"
    letter = dead_letter(es, letter_ref["dead_letter_id"])
    assert orjson.loads(letter["mlops"]["dead_letter"]["original"]) == bad
    assert "`id` is missing" in letter["error"]["message"]
    # Event Grid may still deliver it again: the same documents and the same dead letter.
    again = hook.post([good[0], bad, good[1]])
    assert again.json()["dead_lettered"] == body["dead_lettered"]
    assert count_events(es, [e["id"] for e in good]) == 2


def test_without_an_azure_credential_enrichment_is_off_with_one_line(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine has no Azure identity of any kind: DefaultAzureCredential finds none."""
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.INFO):
        webhook = build_webhook(settings, sync_on_terminal=False)
    webhook.stop()
    assert webhook.enricher is None
    lines = [r.getMessage() for r in caplog.records if "enrichment" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("job enrichment is off: no Azure credential is configured")
    assert "SHIPPER_AZUREML_ENRICHMENT=false" in lines[0]
    assert not [r for r in caplog.records if r.exc_info]


def test_oversized_body_is_400_with_a_summary_dead_lettered(
    es: Elasticsearch, start_hook: Callable[..., Hook]
) -> None:
    hook = start_hook({"webhook_max_body_bytes": 64 * 1024})
    big = [status_event(unique("big"), "Running", NOW, runTags={"blob": "x" * 1000}) for _ in range(100)]
    body = orjson.dumps(big)
    assert len(body) > 64 * 1024
    reply = hook.post(None, raw=body)
    assert reply.status == 400
    letter = dead_letter(es, reply.json()["dead_letter_id"])
    assert letter["mlops"]["dead_letter"]["truncated"] is True
    assert letter["mlops"]["dead_letter"]["bytes"] == len(body)
    assert count_events(es, [e["id"] for e in big]) == 0
    # More events than Event Grid ever batches is refused the same way.
    many = start_hook({"webhook_max_events": 10})
    assert many.post([status_event(unique("m"), "Running", NOW) for _ in range(11)]).status == 400


def test_topic_allow_list(es: Elasticsearch, start_hook: Callable[..., Hook]) -> None:
    hook = start_hook({"webhook_allowed_topics": [WS.lower() + "/"]})
    allowed = status_event(unique("topic-run"), "Running", NOW)
    other = eg_event(
        STATUS_CHANGED, run_data(unique("x"), "Running", "e"), NOW, topic=WS.replace("churn-ws", "other-ws")
    )
    assert hook.post([allowed]).status == 200
    assert hook.post([other]).status == 403
    assert count_events(es, [other["id"]]) == 0


# -- Elasticsearch going away ----------------------------------------------------------------------


def test_elasticsearch_down_is_503_then_everything_is_written_once(
    es: Elasticsearch, hook: Hook, settings: Settings
) -> None:
    run_id = unique("outage-run")
    batch = [
        status_event(run_id, s, NOW - timedelta(seconds=10 - i)) for i, s in enumerate(["Queued", "Running"])
    ]
    real_client, real_writer = hook.webhook.service.client, hook.webhook.service.writer
    closed = Elasticsearch("http://127.0.0.1:9", request_timeout=2, max_retries=0)
    hook.webhook.service.use_elasticsearch(closed, BulkWriter(closed, max_retry_seconds=1.0))
    retries_before = REGISTRY.get_sample_value("shipper_bulk_retries_total") or 0.0
    reply = hook.post(batch)
    assert reply.status == 503
    # The writer retried within its budget, then gave up and answered (how long an answer takes is
    # bench/webhook.py's measure, not a test's).
    assert (REGISTRY.get_sample_value("shipper_bulk_retries_total") or 0.0) > retries_before
    assert reply.headers["retry-after"] == "7"
    message = reply.json()["message"]
    assert "send it again after 7 s" in message and "Event Grid redelivers" in message
    assert "pass" not in message  # a delivery is redelivered, not repeated by a sync pass
    assert call("GET", f"{hook.url}/readyz").status == 503  # not ready while Elasticsearch is away
    # A payload that can never succeed cannot even be dead-lettered now: 503, so it comes again.
    assert hook.post(None, raw=b"[garbage").status == 503
    # Elasticsearch is back; Event Grid retries the same batch.
    hook.webhook.service.use_elasticsearch(real_client, real_writer)
    assert call("GET", f"{hook.url}/readyz").status == 200
    assert hook.post(batch).status == 200
    assert count_events(es, [e["id"] for e in batch]) == 2
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Running"


class SilentElasticsearch:
    """A port that takes connections and requests and never answers: a frozen cluster (a node in
    a long GC pause, or SIGSTOPped), the nearest real thing to it that a test can hold still."""

    def __init__(self) -> None:
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def test_a_cluster_that_never_answers_is_503_within_the_budget_not_a_hang(
    es: Elasticsearch, hook: Hook, settings: Settings
) -> None:
    # The client's own request timeout is far longer than the test's (60 s): only the service's
    # bound on the answer (the write budget, 2 s here) can produce an answer at all.
    silent = SilentElasticsearch()
    frozen = Elasticsearch(silent.url, request_timeout=600, max_retries=0)
    real_client, real_writer = hook.webhook.service.client, hook.webhook.service.writer
    hook.webhook.service.use_elasticsearch(frozen, BulkWriter(frozen, max_retry_seconds=2.0))
    run_id = unique("frozen-run")
    batch = [status_event(run_id, "Running", NOW)]
    try:
        reply = hook.post(batch)
        assert reply.status == 503
        assert reply.headers["retry-after"] == "7"
        assert (
            "within the write budget (2 s, SHIPPER_WEBHOOK_WRITE_BUDGET_SECONDS)" in reply.json()["message"]
        )
        assert silent.held  # the writes did reach the frozen cluster, and are still waiting on it
        assert call("GET", f"{hook.url}/healthz").status == 200
    finally:
        silent.close()  # the hung writes fail now, in the background
        hook.webhook.service.use_elasticsearch(real_client, real_writer)
    # The redelivery is written once, whatever the writes left behind did.
    assert hook.post(batch).status == 200
    assert count_events(es, [e["id"] for e in batch]) == 1
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Running"


def test_readiness_follows_elasticsearch(es: Elasticsearch, settings: Settings, installed: None) -> None:
    down = settings.model_copy(update={"elasticsearch_url": "http://127.0.0.1:9"})
    webhook = build_webhook(down, sync_on_terminal=False, enrich=False)
    with BackgroundServer(webhook.app) as server:
        assert call("GET", f"{server.url}/healthz").status == 200
        assert call("GET", f"{server.url}/readyz").status == 503
        secret = down.webhook_secrets()[0].get_secret_value()
        reply = call(
            "POST",
            f"{server.url}/events?code={secret}",
            orjson.dumps([status_event(unique("r"), "Running", NOW)]),
            {"Content-Type": "application/json"},
        )
        assert reply.status == 503


# -- enrichment ------------------------------------------------------------------------------------


def rest_job(name: str, template: str = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5") -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((GOLDEN_JOBS / f"{template}.json").read_bytes())
    document["id"] = document["id"].rsplit("/", 1)[0] + "/" + name
    document["name"] = name
    document["properties"]["services"]["Studio"]["endpoint"] = f"https://ml.azure.com/runs/{name}?wsid={WS}"
    return document


def test_enrichment_adds_job_details(es: Elasticsearch, start_hook: Callable[..., Hook]) -> None:
    run_id = unique("enrich-run")
    jobs = RestJsonJobs(
        [rest_job(run_id)], images={"azureml:AzureML-sklearn-1.5:12": "mcr.microsoft.com/azureml/sklearn:12"}
    )
    hook = start_hook(jobs=jobs)
    event = eg_event(
        RUN_COMPLETED, run_data(run_id, None, "automl-local-regression"), NOW, f"experiments/x/runs/{run_id}"
    )
    assert hook.post([event]).status == 200
    assert hook.webhook.wait_idle(30)

    def enriched() -> dict[str, Any]:
        doc = run_doc(es, run_id)
        assert doc is not None and doc["azureml"].get("enrichment", {}).get("status") == "ok"
        return doc

    doc = eventually(enriched)
    job = doc["azureml"]["job"]
    assert job["display_name"] == "lasso-lars-iteration-5"
    assert job["type"] == "command" and job["status"] == "Failed"
    assert job["compute"] == "cpu-cluster"
    assert job["environment"] == "azureml:AzureML-sklearn-1.5:12"
    assert job["image"] == "mcr.microsoft.com/azureml/sklearn:12"
    assert job["command"].startswith("python train.py")
    assert job["duration_ms"] == 585_000
    assert job["studio_url"].startswith("https://ml.azure.com/runs/")
    assert doc["azureml"]["run"]["status"] == "Completed"  # the event's view is kept beside the job's
    (hit,) = events_with_ids(es, [event["id"]])
    assert hit["_source"]["azureml"]["job"]["display_name"] == "lasso-lars-iteration-5"
    assert hit["_source"]["azureml"]["enrichment"]["status"] == "ok"
    # A newer event keeps the known job details while its own enrichment runs.
    later = status_event(run_id, "Completed", NOW + timedelta(seconds=1))
    assert hook.post([later]).status == 200
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["job"]["display_name"] == "lasso-lars-iteration-5"


def test_enrichment_of_a_pipeline_step_goes_through_its_parent(
    es: Elasticsearch, start_hook: Callable[..., Hook]
) -> None:
    parent, step = unique("pipe"), unique("step")
    child = orjson.loads((GOLDEN_JOBS / "children" / "pipe-7f3a" / "step-train-1.json").read_bytes())
    child |= {"runId": step, "parentRunId": parent, "rootRunId": parent}
    child["properties"]["azureml.pipelinerunid"] = parent
    jobs = RestJsonJobs([rest_job(parent, "pipe-7f3a")], children={parent: [child]})
    hook = start_hook(jobs=jobs)
    event = status_event(
        step,
        "Completed",
        NOW,
        "churn-training",
        runType="azureml.StepRun",
        runProperties={"azureml.pipelinerunid": parent},
    )
    assert hook.post([event]).status == 200

    def enriched() -> dict[str, Any]:
        doc = run_doc(es, step)
        assert doc is not None and doc["azureml"].get("enrichment", {}).get("status") == "ok"
        return doc

    job = eventually(enriched)["azureml"]["job"]
    assert job["parent_run_id"] == parent
    assert job["experiment_name"] == "churn-training"
    assert ("list_children", parent) in jobs.calls


def test_throttled_enrichment_is_retried(es: Elasticsearch, start_hook: Callable[..., Hook]) -> None:
    from azure.core.exceptions import ServiceRequestError

    run_id = unique("throttled")
    jobs = RestJsonJobs([rest_job(run_id)])
    jobs.fail(run_id, ServiceRequestError("connection reset"), ServiceRequestError("connection reset"))
    hook = start_hook(jobs=jobs)
    assert hook.post([status_event(run_id, "Running", NOW)]).status == 200

    def enriched() -> dict[str, Any]:
        doc = run_doc(es, run_id)
        assert doc is not None and doc["azureml"].get("enrichment", {}).get("status") == "ok"
        return doc

    assert eventually(enriched)["azureml"]["enrichment"]["attempts"] == 3


def test_enrichment_failure_never_loses_or_delays_the_event(
    es: Elasticsearch, start_hook: Callable[..., Hook]
) -> None:
    from azure.core.exceptions import ServiceRequestError

    run_id = unique("unenriched")
    jobs = RestJsonJobs([rest_job(run_id)])
    jobs.fail(run_id, *[ServiceRequestError("Azure is down") for _ in range(1000)])
    hook = start_hook(jobs=jobs)
    event = status_event(run_id, "Failed", NOW)
    assert hook.post([event]).status == 200
    # Written before the answer, enrichment still pending: the answer did not wait for Azure (the
    # acknowledgement latency is measured by bench/webhook.py).
    doc = run_doc(es, run_id)
    assert doc is not None and doc["azureml"]["run"]["status"] == "Failed"
    assert doc["azureml"]["enrichment"]["status"] == "pending"

    def failed() -> dict[str, Any]:
        doc = run_doc(es, run_id)
        assert doc is not None and doc["azureml"]["enrichment"]["status"] == "failed"
        return doc

    doc = eventually(failed)
    assert "Azure is down" in doc["azureml"]["enrichment"]["error"]
    assert doc["azureml"]["run"]["status"] == "Failed"

    def event_failed() -> dict[str, Any]:
        # The event document is updated just after the run document: wait for it too.
        (hit,) = events_with_ids(es, [event["id"]])
        # Until then the event carries no enrichment at all: a missing key is "not yet", not a failure.
        assert hit["_source"]["azureml"].get("enrichment", {}).get("status") == "failed"
        return dict(hit)

    hit = eventually(event_failed)
    assert "Azure is down" in hit["_source"]["error"]["message"]


# -- follow-ups: notifications and the MLflow sync -------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(orjson.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-token"


def test_notifications(start_hook: Callable[..., Hook]) -> None:
    receiver = Receiver()
    try:
        experiment = unique("notified")
        hook = start_hook({"notify_urls": SecretStr(receiver.url), "notify_experiments": [experiment]})
        run_id = unique("n-run")
        events = [
            status_event(run_id, "Running", NOW - timedelta(seconds=5), experiment),
            status_event(run_id, "Completed", NOW, experiment),
            eg_event(RUN_COMPLETED, run_data(run_id, None, experiment), NOW, "s"),  # same news twice
            status_event(unique("other"), "Failed", NOW, "someone-elses-experiment"),
            eg_event(
                MODEL_REGISTERED, {"ModelName": "churn-model", "ModelVersion": 9}, NOW, "models/churn-model:9"
            ),
        ]
        assert hook.post(events).status == 200
        assert hook.webhook.wait_idle(20)
        texts = sorted(b["text"] for b in receiver.bodies)
        assert len(texts) == 3, texts
        assert any("started" in t and run_id in t for t in texts)
        assert any("completed" in t and run_id in t for t in texts)
        assert any("churn-model" in t and "version `9`" in t for t in texts)
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_a_run_ending_triggers_an_mlflow_sync_into_the_same_document(
    es: Elasticsearch, mlflow_uri: str, start_hook: Callable[..., Hook], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    client = MlflowClient(mlflow_uri)
    experiment = unique("aml-sync")
    experiment_id = client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name="trained-in-azure")
    client.log_metric(run.info.run_id, "auc", 0.91, step=1)
    client.set_terminated(run.info.run_id, "FINISHED")
    hook = start_hook({"mlflow_experiments": [experiment]}, sync_on_terminal=True)
    # Azure ML's job name is the MLflow run id.
    event = status_event(run.info.run_id, "Completed", NOW, experiment)
    assert hook.post([event]).status == 200

    def both_sources() -> dict[str, Any]:
        doc = run_doc(es, run.info.run_id)
        assert doc is not None and "mlflow" in doc and "azureml" in doc
        return doc

    doc = eventually(both_sources, timeout=60)
    assert doc["mlflow"]["run"]["status"] == "FINISHED"
    assert doc["mlflow"]["metrics"]["auc"] == pytest.approx(0.91)
    assert doc["azureml"]["run"]["status"] == "Completed"
    assert set(doc["mlops"]["versions"]) == {"mlflow", "azureml"}


# -- reconcile -------------------------------------------------------------------------------------


def recent(document: dict[str, Any]) -> dict[str, Any]:
    document["systemData"]["createdAt"] = (NOW - timedelta(hours=1)).isoformat()
    return document


def test_reconcile_writes_the_runs_whose_events_never_came(
    es: Elasticsearch, hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, missed, parent, step = unique("seen"), unique("missed"), unique("pipe"), unique("step")
    pending = unique("pending")
    old = rest_job(unique("old"))
    old["systemData"]["createdAt"] = (NOW - timedelta(days=30)).isoformat()
    child = orjson.loads((GOLDEN_JOBS / "children" / "pipe-7f3a" / "step-train-1.json").read_bytes())
    child |= {"runId": step, "parentRunId": parent, "rootRunId": parent}
    folder = tmp_path / "jobs"
    (folder / "children" / parent).mkdir(parents=True)
    for document in (
        recent(rest_job(seen)),
        recent(rest_job(missed)),
        recent(rest_job(pending)),
        recent(rest_job(parent, "pipe-7f3a")),
        old,
    ):
        (folder / f"{document['name']}.json").write_bytes(orjson.dumps(document))
    (folder / "children" / parent / f"{step}.json").write_bytes(orjson.dumps(child))
    # `seen` arrived through Event Grid with the status the job has.
    assert hook.post([status_event(seen, "Failed", NOW - timedelta(minutes=30))]).status == 200
    # `pending` too, but its enrichment was still queued when the shipper stopped.
    view = {"run": {"id": pending, "status": "Failed"}, "enrichment": {"status": "pending"}}
    upsert_entities(es, BulkWriter(es), [run_entity(pending, stamp(NOW - timedelta(minutes=20)), view)])

    # Azure cannot run here: the command's jobs client answers from the saved REST documents.
    monkeypatch.setattr(
        "shipper.webhook.server.azure_jobs_client", lambda: RestJsonJobs.from_directory(folder)
    )

    def reconcile(*extra: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            __import__("shipper.cli", fromlist=["main_group"]).main_group,
            ["reconcile", "--workspace", WS, "--json", *extra],
            env={"SHIPPER_ELASTICSEARCH_URL": hook.webhook.settings.elasticsearch_url},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        return dict(orjson.loads(result.output.strip().splitlines()[-1]))

    dry = reconcile("--dry-run")
    assert sorted(dry["written"]) == sorted([missed, pending, parent, step])
    assert run_doc(es, missed) is None
    summary = reconcile()
    assert sorted(summary["written"]) == sorted([missed, pending, parent, step])
    assert summary["up_to_date"] == 1
    doc = run_doc(es, missed)
    assert doc is not None
    assert doc["azureml"]["source"] == "reconcile"
    assert doc["azureml"]["run"]["status"] == "Failed"
    assert doc["azureml"]["job"]["display_name"] == "lasso-lars-iteration-5"
    step_doc = run_doc(es, step)
    assert step_doc is not None and step_doc["azureml"]["pipeline"] == {"run_id": parent, "role": "step"}
    assert step_doc["azureml"]["job"]["experiment_name"] == "churn-training"
    # Nothing left to do the second time.
    again = reconcile()
    assert again["written"] == [] and again["up_to_date"] == 5


# -- operations ------------------------------------------------------------------------------------


def test_metrics_and_openapi(hook: Hook) -> None:
    assert hook.post([status_event(unique("m-run"), "Running", NOW)]).status == 200
    assert hook.post([], secret="wrong").status == 401
    text = call("GET", f"{hook.url}/metrics").raw.decode()
    for needle in (
        'shipper_webhook_deliveries_total{outcome="accepted"}',
        'shipper_webhook_deliveries_total{outcome="unauthorized"}',
        'shipper_webhook_events_total{event_type="RunStatusChanged",outcome="written"}',
        "shipper_webhook_ack_seconds_bucket",
        "shipper_bulk_request_seconds_bucket",
        'shipper_webhook_run_statuses_total{status="Running"}',
    ):
        assert needle in text, needle
    spec = call("GET", f"{hook.url}/openapi.json").json()
    operation = spec["paths"]["/events"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    }
    assert {p["name"] for p in operation["parameters"]} == {"code", "x-shipper-secret"}
    assert "options" in spec["paths"]["/events"]


def test_the_secret_never_appears_in_logs_or_output(
    hook: Hook, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = hook.secret
    event = status_event(unique("log-run"), "Running", NOW)
    assert hook.post([event]).status == 200
    assert hook.post([event], secret=secret + "x").status == 401
    assert hook.post(None, raw=b"nonsense").status == 400
    assert (
        call("OPTIONS", f"{hook.url}/events?code={secret}", headers={"WebHook-Request-Origin": "x"}).status
        == 200
    )
    out, err = capfd.readouterr()
    assert secret not in caplog.text and secret not in out and secret not in err
    assert "401" in caplog.text  # the refusal itself is logged


# -- Entra ID over HTTP ----------------------------------------------------------------------------


def test_entra_bearer_tokens(es: Elasticsearch, start_hook: Callable[..., Hook]) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    tenant, audience = "72f988bf-86f1-41af-91ab-2d7cd011db47", "api://shipper-webhook"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "alg": "RS256"}
    keys = orjson.dumps({"keys": [jwk]})

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(keys)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = start_hook(
            {
                "webhook_secret": None,
                "webhook_entra_tenant_id": tenant,
                "webhook_entra_audience": [audience],
                "webhook_entra_jwks_url": f"http://127.0.0.1:{server.server_address[1]}/keys",
            }
        )
        now = int(time.time())
        claims = {
            "iss": f"https://login.microsoftonline.com/{tenant}/v2.0",
            "aud": audience,
            "iat": now,
            "exp": now + 600,
        }
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        wrong = jwt.encode(claims | {"aud": "api://other"}, key, algorithm="RS256", headers={"kid": "k1"})
        event = status_event(unique("entra-run"), "Running", NOW)
        refused = hook.post([event], secret=None, headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert hook.post([event], secret=None, headers={"Authorization": f"Bearer {token}"}).status == 200
        assert count_events(es, [event["id"]]) == 1
    finally:
        server.shutdown()
        server.server_close()


# -- reconcile inside serve ------------------------------------------------------------------------


def test_periodic_reconcile_inside_serve(es: Elasticsearch, start_hook: Callable[..., Hook]) -> None:
    run_id = unique("periodic")
    jobs = RestJsonJobs([recent(rest_job(run_id))])
    start_hook({"azureml_workspaces": [WS], "azureml_reconcile_interval_seconds": 0.3}, jobs=jobs)

    def reconciled() -> dict[str, Any]:
        doc = run_doc(es, run_id)
        assert doc is not None and doc["azureml"]["source"] == "reconcile"
        return doc

    assert eventually(reconciled)["azureml"]["run"]["status"] == "Failed"


# -- the real command ------------------------------------------------------------------------------


def test_shipper_serve_as_a_process(es: Elasticsearch, es_url: str, installed: None, tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = unique("process-secret")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_") and k != "MLFLOW_TRACKING_URI"}
    env |= {
        "SHIPPER_ELASTICSEARCH_URL": es_url,
        "SHIPPER_WEBHOOK_SECRET": secret,
        "SHIPPER_AZUREML_ENRICHMENT": "false",
        "SHIPPER_LOG_LEVEL": "DEBUG",
        "SHIPPER_LOG_FORMAT": "json",
    }
    log_file = (tmp_path / "serve.log").open("w+b")
    process = subprocess.Popen(
        [sys.executable, "-m", "shipper", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return call("GET", f"{url}/readyz").status == 200
            except OSError:
                assert process.poll() is None, "shipper serve exited"
                return False

        eventually(ready, timeout=30)
        event = status_event(unique("proc-run"), "Completed", NOW)
        body = orjson.dumps([event])
        headers = {"Content-Type": "application/json"}
        assert call("POST", f"{url}/events?code={secret}", body, headers).status == 200
        assert call("POST", f"{url}/events?code=wrong-{secret}", body, headers).status == 401
        assert count_events(es, [event["id"]]) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        log_file.seek(0)
        output = log_file.read().decode()
        log_file.close()
    assert code == 0, output
    assert "webhook listening on 127.0.0.1" in output and "refused with 401" in output
    assert "limits: headers within 10 s, bodies within 20 s" in output
    assert secret not in output


# -- bad input rows of docs/reliability.md ---------------------------------------------------------


def test_invalid_utf8_is_400_and_dead_lettered_with_its_bytes(es: Elasticsearch, hook: Hook) -> None:
    marker = unique("utf8")
    body = (
        b'[{"id": "' + marker.encode() + b'\xff\xfe", "eventType": "x", "eventTime": "2024-01-01T00:00:00Z"}]'
    )
    reply = hook.post(None, raw=body)
    assert reply.status == 400
    letter = dead_letter(es, reply.json()["dead_letter_id"])
    assert marker in letter["mlops"]["dead_letter"]["original"]
    assert letter["error"]["message"]


def test_nan_and_infinity_literals_are_400_and_dead_lettered(es: Elasticsearch, hook: Hook) -> None:
    """JSON has no NaN or Infinity; Python's json module writes them anyway. Such a body is refused
    whole (the parser cannot read past the literal) and kept as it came."""
    marker = unique("nan")
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'[{"id": "' + marker.encode() + b'", "eventType": "x", "eventTime": "2024-01-01T00:00:00Z", '
        body += b'"data": {"score": ' + literal + b"}}]"
        reply = hook.post(None, raw=body)
        assert reply.status == 400, literal
        letter = dead_letter(es, reply.json()["dead_letter_id"])
        assert literal.decode() in letter["mlops"]["dead_letter"]["original"]


def test_ten_thousand_character_tags_and_unicode_are_kept_whole(es: Elasticsearch, hook: Hook) -> None:
    run_id = unique("long-tags")
    tags = {"notes": "n" * 10_000, "größe": "模型-🚀 \u202eRTL", "empty": ""}
    reply = hook.post([status_event(run_id, "Running", NOW, runTags=tags)])
    assert reply.status == 200, reply.json()
    refresh(es)
    doc = run_doc(es, run_id)
    assert doc is not None
    text = orjson.dumps(doc).decode()
    assert "n" * 10_000 in text
    assert "模型-🚀 \u202eRTL" in text
