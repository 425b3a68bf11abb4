"""The scoring data stream on the test cluster (Elasticsearch 9.5.4, minimal distribution).

That distribution has no ingest processors, like a production cluster without an ingest node:
`shipper setup` must still install the `logs-mlops.scoring-*` template, its component templates
(with `@custom`), mappings and lifecycle, and leave out only the pipeline and `default_pipeline`.
Then a document shaped as the Logstash pipeline (logstash/pipeline/scoring/*.conf) emits it,
written as Logstash's data-stream output writes it, lands in a data stream with the contract's types.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from elasticsearch import NotFoundError

from shipper.assets.scoring.pipeline import SCORING_PIPELINE_ID, required_processors
from shipper.setup.installer import install
from shipper.sink.client import probe

pytestmark = pytest.mark.integration

FAMILY = "logs-mlops.scoring"

#: Data-contract fields of logs-mlops.scoring-* and the Elasticsearch type each must have.
CONTRACT_TYPES = {
    "@timestamp": "date",
    "log.level": "keyword",
    "log.logger": "keyword",
    "process.pid": "long",
    "message": "text",
    "http.request.method": "keyword",
    "url.path": "keyword",
    "http.response.status_code": "long",
    "http.response.body.bytes": "long",
    "event.duration": "long",
    "mlops.scoring.metric.name": "keyword",
    "mlops.scoring.metric.value": "double",
    "ml.model.name": "keyword",
    "ml.model.version": "keyword",
}


def logstash_request_event(namespace: str) -> dict[str, Any]:
    """What logstash/pipeline/scoring emits for an azmlinfsrv request line read by Filebeat: the
    Beats input's fields (ecs_compatibility v8), the parse stages' fields, `@version`, and the
    `data_stream.*` fields that `data_stream_sync_fields` sets."""
    return {
        "@timestamp": "2024-05-02T10:11:12.345Z",
        "@version": "1",
        "message": "POST /score 200 305.413ms 1121",
        "event": {
            "original": "2024-05-02 10:11:12,345 I [51] azmlinfsrv - POST /score 200 305.413ms 1121",
            "duration": 305413000,
            "kind": "event",
            "category": "web",
            "type": "access",
            "outcome": "success",
            "dataset": "mlops.scoring",
        },
        "log": {"level": "info", "logger": "azmlinfsrv", "file": {"path": "/var/log/x.log"}, "offset": 42},
        "process": {"pid": 51},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 200, "body": {"bytes": 1121}}},
        "url": {"original": "/score", "path": "/score"},
        "ml": {"model": {"name": "churn", "version": "7"}},
        "mlops": {"scoring": {"parser": "logstash", "request": {"kind": "score"}}},
        "container": {"id": "4b1c", "name": "scorer", "labels": {"ml_model_name": "churn"}},
        "host": {"name": "node-1"},
        "agent": {"type": "filebeat", "version": "9.5.4"},
        "ecs": {"version": "8.0.0"},
        "input": {"type": "filestream"},
        "tags": ["beats_input_codec_plain_applied"],
        "data_stream": {"type": "logs", "dataset": "mlops.scoring", "namespace": namespace},
    }


def logstash_metric_event(namespace: str) -> dict[str, Any]:
    """A printed metric, as Logstash emits it (`event.kind` metric, value converted to a float)."""
    return {
        "@timestamp": "2024-05-02T10:11:13.000Z",
        "@version": "1",
        "message": "Accuracy : 0.93",
        "event": {
            "original": "2024-05-02 10:11:13,000 I [51] azmlinfsrv.print - Accuracy : 0.93",
            "kind": "metric",
            "dataset": "mlops.scoring",
        },
        "log": {"level": "info", "logger": "azmlinfsrv.print"},
        "process": {"pid": 51},
        "mlops": {"scoring": {"parser": "logstash", "metric": {"name": "Accuracy", "value": 0.93}}},
        "ml": {"model": {"name": "churn", "version": "7"}},
        "data_stream": {"type": "logs", "dataset": "mlops.scoring", "namespace": namespace},
    }


def _field_type(mapping: dict[str, Any], dotted: str) -> str | None:
    node: dict[str, Any] = mapping
    for part in dotted.split("."):
        node = node.get("properties", {}).get(part, {})
    found = node.get("type")
    return str(found) if found else ("object" if "properties" in node else None)


def test_scoring_data_stream_without_ingest(es: Any) -> None:
    caps = probe(es)
    missing = caps.lacks_processors(required_processors())
    # The premise of this test: the cluster cannot run the pipeline (the minimal distribution).
    assert missing, "the test cluster has the ingest processors; this test is about one without"

    install(es, caps, 730, 90)

    templates = {
        t["name"]: t["index_template"]
        for t in es.indices.get_index_template(name=f"{FAMILY}*")["index_templates"]
    }
    template = templates[FAMILY]
    assert template["index_patterns"] == [f"{FAMILY}-*"]
    assert "data_stream" in template
    assert template["composed_of"] == [f"{FAMILY}@settings", f"{FAMILY}@mappings", f"{FAMILY}@custom"]
    for part in template["composed_of"]:
        assert es.cluster.get_component_template(name=part)["component_templates"]
    settings = es.cluster.get_component_template(name=f"{FAMILY}@settings")["component_templates"][0]
    body = settings["component_template"]["template"]
    assert "default_pipeline" not in body["settings"]["index"]
    retention = body.get("lifecycle", {}).get("data_retention") or body["settings"]["index"]["lifecycle"]
    assert retention
    with pytest.raises(NotFoundError):
        es.ingest.get_pipeline(id=SCORING_PIPELINE_ID)

    # A namespace of its own: the minimal distribution cannot delete data streams.
    namespace = f"it{uuid.uuid4().hex[:10]}"
    stream = f"{FAMILY}-{namespace}"
    sent = [logstash_request_event(namespace), logstash_metric_event(namespace)]
    for doc in sent:
        result = es.index(index=stream, document=doc, op_type="create", refresh=True)
        assert result["result"] == "created"
        assert result["_index"].startswith(f".ds-{stream}-")

    resolved = es.indices.resolve_index(name=stream)
    assert [d["name"] for d in resolved["data_streams"]] == [stream]

    hits = es.search(index=stream, sort="@timestamp", size=10)["hits"]["hits"]
    assert [h["_source"] for h in hits] == sent  # stored as sent: no pipeline touched them

    (mapping,) = es.indices.get_mapping(index=stream).body.values()
    types = {field: _field_type(mapping["mappings"], field) for field in CONTRACT_TYPES}
    assert types == CONTRACT_TYPES

    # The contract types hold in queries too: numbers range, keywords match exactly.
    found = es.search(
        index=stream,
        query={
            "bool": {
                "filter": [
                    {"range": {"event.duration": {"gte": 305_000_000}}},
                    {"range": {"http.response.status_code": {"gte": 200, "lt": 300}}},
                    {"term": {"ml.model.version": "7"}},
                ]
            }
        },
    )
    assert found["hits"]["total"]["value"] == 1
    metric = es.search(index=stream, query={"range": {"mlops.scoring.metric.value": {"gt": 0.9}}})
    assert metric["hits"]["hits"][0]["_source"]["mlops"]["scoring"]["metric"]["name"] == "Accuracy"
