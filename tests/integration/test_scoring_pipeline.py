"""Golden tests of the scoring-log parsing, against real Elasticsearch code.

- grok: every golden record through Elasticsearch's own grok engine (the `elasticsearch-grok` library
  of the 9.5.4 node of `scripts/stack`), header patterns then message patterns, exactly as the ingest
  pipeline chains them.
- pipeline: the full pipeline set as `shipper setup` installs it (logs-mlops.scoring, its @parse
  sub-pipeline and the @custom hook) on the Elasticsearch 7.10.2 ingest node (ES_INGEST_URL,
  `scripts/stack up --ingest`: the newest ingest engine that runs here), then `_simulate` of every
  record: expected documents in `*-expected.json`, and the data-contract fields of golden lines
  checked against hand-written expectations (tests/support/scoring_contract.py). Failure paths
  and the Logstash pass-through too. Never skipped: no ingest node is a failure.

`pytest --update-golden` rewrites `tests/golden/scoring/*.log-expected.json`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from shipper.assets.scoring.pipeline import (
    CUSTOM_PIPELINE_ID,
    HEADER_PATTERNS,
    MESSAGE_PATTERNS,
    SCORING_PIPELINE_ID,
    TAG_BAD_TIMESTAMP,
    TAG_HEALTH_PROBE,
    TAG_PIPELINE_ERROR,
    TAG_UNPARSED,
    custom_pipeline,
    load_pattern_definitions,
    required_processors,
)
from tests.integration.test_scoring_data_stream import logstash_metric_event, logstash_request_event
from tests.support import golden
from tests.support.ingest_node import IngestNode, IngestNodeError, install_pipelines
from tests.support.scoring import GoldenCase, GrokEngine, golden_cases, strip_volatile
from tests.support.scoring_contract import CONTRACT

pytestmark = pytest.mark.integration

CASES = golden_cases()
IDS = [case.log.name for case in CASES]


def _expect_unparsed(case: GoldenCase) -> set[int]:
    config = case.log.with_name(case.log.name + "-config.json")
    if not config.exists():
        return set()
    return set(json.loads(config.read_text(encoding="utf-8")).get("expect_unparsed", []))


def _json_message(record: str) -> str | None:
    try:
        doc = json.loads(record)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    message = doc.get("message")
    return message if isinstance(message, str) else ""


def grok_results(engine: GrokEngine, records: list[str]) -> list[dict[str, Any]]:
    definitions = load_pattern_definitions()
    json_messages = [_json_message(r) if r.startswith("{") else None for r in records]
    text_indices = [i for i, m in enumerate(json_messages) if m is None]
    header = engine.run(definitions, HEADER_PATTERNS, [records[i] for i in text_indices])
    messages: list[str] = []
    headers: dict[int, Any] = {}
    for i, (name, captures) in zip(text_indices, header, strict=True):
        headers[i] = {"pattern": name, "fields": dict(sorted(captures.items()))}
    for i, record in enumerate(records):
        if json_messages[i] is not None:
            messages.append(json_messages[i] or "")
        elif headers[i]["pattern"] is not None:
            messages.append(headers[i]["fields"].get("message", ""))
        else:
            messages.append(record)
    body = engine.run(definitions, MESSAGE_PATTERNS, messages)
    out = []
    for i, record in enumerate(records):
        name, captures = body[i]
        head = "json" if json_messages[i] is not None else headers[i]["pattern"]
        out.append(
            {
                "event.original": record,
                "header": head if head == "json" else headers[i],
                "message": {"pattern": name, "fields": dict(sorted(captures.items()))},
                "unparsed": head is None and name is None,
            }
        )
    return out


@pytest.fixture(scope="module")
def engine(es: Any) -> GrokEngine:
    return GrokEngine.from_node(es)


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _leaves(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _load_expected(case: GoldenCase) -> list[dict[str, Any]]:
    golden.require(case.expected_path, __file__)
    data: list[dict[str, Any]] = json.loads(case.expected_path.read_text(encoding="utf-8"))["expected"]
    return data


def _write_expected(case: GoldenCase, entries: list[dict[str, Any]]) -> None:
    case.expected_path.write_text(
        json.dumps({"expected": entries}, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
        encoding="utf-8",
    )


def test_there_are_enough_golden_records() -> None:
    assert sum(len(case.records) for case in CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_grok_golden(case: GoldenCase, engine: GrokEngine, update_golden: bool) -> None:
    results = grok_results(engine, case.records)
    unparsed = {i for i, r in enumerate(results) if r["unparsed"]}
    assert unparsed == _expect_unparsed(case), [case.records[i][:120] for i in sorted(unparsed)]
    if update_golden:
        known = _load_expected(case) if case.expected_path.exists() else []
        documents = {e["event.original"]: e["document"] for e in known if "document" in e}
        for entry in results:
            if entry["event.original"] in documents:
                entry["document"] = documents[entry["event.original"]]
        _write_expected(case, results)
        return
    expected = _load_expected(case)
    assert [{k: v for k, v in e.items() if k != "document"} for e in expected] == results


@pytest.fixture(scope="module")
def ingest(es_ingest_url: str) -> IngestNode:
    """The 7.10.2 ingest node with the full pipeline set as `shipper setup` installs it."""
    node = IngestNode(es_ingest_url)
    assert node.version() == "7.10.2", "ES_INGEST_URL must be the 7.10.2 node of scripts/stack up --ingest"
    missing = required_processors() - node.processors()
    assert not missing, f"the ingest node lacks {sorted(missing)}"
    install_pipelines(node)
    return node


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pipeline_golden(case: GoldenCase, ingest: IngestNode, update_golden: bool) -> None:
    docs = [strip_volatile(d) for d in ingest.simulate(SCORING_PIPELINE_ID, case.input_docs())]
    for i, doc in enumerate(docs):
        tags = doc.get("tags", [])
        assert TAG_PIPELINE_ERROR not in tags, (case.records[i][:200], doc.get("error"))
        assert (TAG_UNPARSED in tags) == (i in _expect_unparsed(case)), case.records[i][:200]
        assert doc["event"]["original"] == case.records[i]
        assert doc["mlops"]["scoring"]["parser"] == "ingest"
        assert "_tmp" not in doc
    expected = _load_expected(case)
    if update_golden:
        for entry, doc in zip(expected, docs, strict=True):
            entry["document"] = doc
        _write_expected(case, expected)
        return
    assert all("document" in e for e in expected), (
        f"no documents in {case.expected_path.name}: --update-golden"
    )
    assert [e["document"] for e in expected] == docs


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_pipeline_contract_fields(name: str, ingest: IngestNode) -> None:
    """The data-contract fields of golden lines, as written by hand from reading each line."""
    (case,) = [c for c in CASES if c.log.name == name]
    docs = ingest.simulate(SCORING_PIPELINE_ID, case.input_docs())
    for index, expected in CONTRACT[name].items():
        doc = docs[index]
        got = {field: _get(doc, field) for field in expected}
        assert got == expected, (name, index, case.records[index][:160])


def test_logstash_parsed_events_pass_through_unchanged(ingest: IngestNode) -> None:
    """Path A (Logstash) and path B (Filebeat to the ingest pipeline) share the data stream: an
    event exactly as logstash/pipeline/scoring emits it comes out field by field the same."""
    for sent in (logstash_request_event("default"), logstash_metric_event("default")):
        (out,) = ingest.simulate(SCORING_PIPELINE_ID, [sent])
        assert isinstance(out["event"].pop("ingested"), str)
        sent_fields, out_fields = _leaves(sent), _leaves(out)
        for field, value in sent_fields.items():
            assert out_fields.get(field) == value, field
        assert out_fields.keys() == sent_fields.keys()


def test_custom_pipeline_runs_last(ingest: IngestNode) -> None:
    ingest.put_pipeline(
        CUSTOM_PIPELINE_ID,
        {"processors": [{"set": {"field": "labels.team", "value": "{{{ml.model.name}}}-team"}}]},
    )
    try:
        (doc,) = ingest.simulate(
            SCORING_PIPELINE_ID,
            [{"message": "2024-05-02 10:11:12,345 I [51] azmlinfsrv - GET /health 200 1ms 7"}],
        )
        assert doc["labels"] == {"team": "-team"}
        assert TAG_HEALTH_PROBE in doc["tags"]
        ingest.put_pipeline(CUSTOM_PIPELINE_ID, {"processors": [{"fail": {"message": "custom says no"}}]})
        (doc,) = ingest.simulate(SCORING_PIPELINE_ID, [{"message": "Accuracy : 0.9"}])
        # a failure in the user's pipeline keeps the parsed event, with the error and a tag
        assert doc["mlops"]["scoring"]["metric"] == {"name": "Accuracy", "value": 0.9}
        assert TAG_PIPELINE_ERROR in doc["tags"]
        assert doc["event"]["kind"] == "pipeline_error"
        assert doc["error"]["message"] == ["fail processor '' failed: custom says no"]
    finally:
        ingest.put_pipeline(CUSTOM_PIPELINE_ID, custom_pipeline())


# --- failure paths: the event is kept, never dropped ---------------------------------------------

HEADER = "2024-05-02 10:11:12,345 I [51] azmlinfsrv - "


def _one(ingest: IngestNode, message: str, **fields: Any) -> dict[str, Any]:
    (doc,) = ingest.simulate(SCORING_PIPELINE_ID, [{"message": message, **fields}])
    assert doc["event"]["original"] == message
    assert "_tmp" not in doc
    return doc


@pytest.mark.parametrize(
    "garbage",
    ["}{ ][ garbage", "\x00\x01\x02\x7f", "%{SCORING_AZML_LINE}", '{"message": ', "[[[[", "   ", "'\";--"],
)
def test_garbage_is_kept_and_tagged_unparsed(garbage: str, ingest: IngestNode) -> None:
    doc = _one(ingest, garbage)
    assert TAG_UNPARSED in doc["tags"]
    assert TAG_PIPELINE_ERROR not in doc["tags"]
    assert doc["message"] == garbage


def test_ten_thousand_character_lines(ingest: IngestNode) -> None:
    long_text = ("abc def " * 1250)[:10_000]
    doc = _one(ingest, long_text)
    assert TAG_UNPARSED in doc["tags"] and doc["message"] == long_text
    doc = _one(ingest, HEADER + long_text)
    assert doc["message"] == long_text and doc["log"]["logger"] == "azmlinfsrv"
    assert "tags" not in doc
    metric = "m" * 9_990 + " : 0.5"
    doc = _one(ingest, metric)
    assert doc["mlops"]["scoring"]["metric"]["value"] == 0.5


def test_invalid_utf8(ingest: IngestNode) -> None:
    # Filebeat decodes with replacement characters; a lone surrogate is what a broken decoder leaves.
    raw = b"2024-05-02 10:11:12,345 I [51] azmlinfsrv - caf\xe9 \xff\xfe end"
    text = raw.decode("utf-8", errors="replace")
    doc = _one(ingest, text)
    assert doc["message"] == "caf\ufffd \ufffd\ufffd end"
    assert doc["log"]["level"] == "info"
    doc = _one(ingest, HEADER + "lone \ud800 surrogate")
    assert doc["log"]["logger"] == "azmlinfsrv" and doc["message"].startswith("lone ")
    # Raw invalid bytes never reach a pipeline: the node's JSON parser refuses the request (400),
    # so the sender sees the error; nothing is dropped silently.
    body = b'{"docs":[{"_source":{"message":"' + raw + b'"}}]}'
    req = urllib.request.Request(
        f"{ingest.url}/_ingest/pipeline/{SCORING_PIPELINE_ID}/_simulate",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60)
    assert refused.value.code == 400


def test_multi_line_tracebacks(ingest: IngestNode) -> None:
    frames = "".join(f'  File "/app/m{i}.py", line {i}, in f{i}\n    call_{i}()\n' for i in range(300))
    record = HEADER.replace(" I ", " E ") + "Encountered Exception: Traceback (most recent call last):\n"
    record += frames + "RuntimeError: deep"
    doc = _one(ingest, record)
    assert doc["error"]["type"] == "RuntimeError"
    assert doc["log"]["level"] == "error"
    assert "error" in doc["event"]["type"]
    assert doc["error"]["stack_trace"].startswith("Traceback (most recent call last):\n")
    bare = "Traceback (most recent call last):\n" + frames + "KeyError: 'x'"
    doc = _one(ingest, bare)
    assert doc["error"]["type"] == "KeyError" and TAG_UNPARSED not in doc.get("tags", [])


def test_processor_failure_keeps_the_event(ingest: IngestNode) -> None:
    line = '{"@timestamp": "2024-05-02T10:11:12Z", "process.pid": "not-a-number", "message": "x"}'
    doc = _one(ingest, line)
    assert doc["event"]["kind"] == "pipeline_error"
    assert TAG_PIPELINE_ERROR in doc["tags"]
    (message,) = doc["error"]["message"]
    assert message.startswith("convert processor 'pid_long' failed:"), message
    # a bad date is a tagged error of its own, and parsing goes on
    doc = _one(ingest, '{"@timestamp": "yesterday", "message": "Accuracy : 0.5"}')
    assert TAG_BAD_TIMESTAMP in doc["tags"] and TAG_PIPELINE_ERROR not in doc["tags"]
    assert doc["error"]["message"][0].startswith("date processor 'date_json' failed:")
    assert doc["mlops"]["scoring"]["metric"]["value"] == 0.5


def test_the_ingest_node_rejects_options_it_lacks(ingest: IngestNode) -> None:
    """Why loading the pipelines on 7.10.2 proves their options exist there: unknown ones fail."""
    body = {"processors": [{"rename": {"field": "a", "target_field": "b", "override": True}}]}
    with pytest.raises(IngestNodeError) as refused:
        ingest.put_pipeline("shipper-test-rejects", body)
    assert refused.value.status == 400
    assert "[override]" in json.dumps(refused.value.body)


@pytest.mark.parametrize(
    ("line", "processor"),
    [
        ("2024-02-30 10:11:12,345 I [51] azmlinfsrv - x", "date_header"),
        ("2024-05-02 10:11:60.345 I [51] azmlinfsrv - x", "date_header_other"),
        ("[2024-05-02 10:11:60 +0000] [1] [INFO] x", "date_header_gunicorn"),
    ],
)
def test_impossible_header_dates_are_kept_and_tagged(line: str, processor: str, ingest: IngestNode) -> None:
    doc = _one(ingest, line)
    assert "@timestamp" not in doc  # no time was invented
    assert doc["tags"] == [TAG_BAD_TIMESTAMP]
    (message,) = doc["error"]["message"]
    assert message.startswith(f"date processor '{processor}' failed:"), message
    assert doc["message"] == "x"
