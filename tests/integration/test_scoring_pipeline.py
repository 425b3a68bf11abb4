"""Golden tests of the scoring-log parsing, on the real Elasticsearch of `scripts/stack` (or ES_URL).

Two levels, both against real Elasticsearch code:
- grok: every golden record through Elasticsearch's own grok engine (the `elasticsearch-grok` library
  of the node under test), header patterns then message patterns, exactly as the ingest pipeline
  chains them. Runs on any local node, including the minimal integ-test distribution.
- pipeline: `PUT _ingest/pipeline/logs-mlops.scoring` with `scoring_pipeline()`, then `_simulate`
  of every record. Needs the ingest processors and painless (modules of the default distribution);
  where the node lacks them the test is skipped with the list of what is missing.

`pytest --update-golden` rewrites `tests/golden/scoring/*.log-expected.json`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipper.assets.scoring.pipeline import (
    HEADER_PATTERNS,
    MESSAGE_PATTERNS,
    SCORING_PIPELINE_ID,
    TAG_PIPELINE_ERROR,
    TAG_UNPARSED,
    load_pattern_definitions,
    scoring_pipeline,
)
from tests.support.scoring import (
    GoldenCase,
    GrokEngine,
    golden_cases,
    missing_processors,
    simulate,
    strip_volatile,
)

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


def _load_expected(case: GoldenCase) -> list[dict[str, Any]]:
    if not case.expected_path.exists():
        return []
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
    expected = _load_expected(case)
    if update_golden:
        documents = {e["event.original"]: e["document"] for e in expected if "document" in e}
        for entry in results:
            if entry["event.original"] in documents:
                entry["document"] = documents[entry["event.original"]]
        _write_expected(case, results)
        return
    assert expected, f"{case.expected_path.name} is missing: run pytest --update-golden"
    assert [{k: v for k, v in e.items() if k != "document"} for e in expected] == results


@pytest.fixture(scope="module")
def ingest(es: Any) -> Any:
    missing = missing_processors(es)
    if missing:
        pytest.skip(
            "the Elasticsearch under test has no ingest processor "
            f"{', '.join(missing)} (the minimal integ-test distribution ships no ingest-common/painless "
            "modules): the pipeline-level golden test needs a default distribution (set ES_URL)"
        )
    es.ingest.put_pipeline(id=SCORING_PIPELINE_ID, body=scoring_pipeline())
    return es


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pipeline_golden(case: GoldenCase, ingest: Any, update_golden: bool) -> None:
    docs = [strip_volatile(d) for d in simulate(ingest, SCORING_PIPELINE_ID, case.input_docs())]
    for i, doc in enumerate(docs):
        tags = doc.get("tags", [])
        assert TAG_PIPELINE_ERROR not in tags, (case.records[i][:200], doc.get("error"))
        assert (TAG_UNPARSED in tags) == (i in _expect_unparsed(case)), case.records[i][:200]
        assert doc["event"]["original"] == case.records[i]
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


def test_logstash_parsed_events_pass_through_unchanged(ingest: Any) -> None:
    parsed = {
        "@timestamp": "2024-05-02T10:11:12.345Z",
        "message": "POST /score 200 305.413ms 1121",
        "event": {
            "original": "2024-05-02 10:11:12,345 I [51] azmlinfsrv - POST /score 200 305.413ms 1121",
            "duration": 305413000,
            "kind": "event",
        },
        "log": {"level": "info", "logger": "azmlinfsrv"},
        "mlops": {"scoring": {"parser": "logstash"}},
        "tags": ["anything"],
    }
    (out,) = simulate(ingest, SCORING_PIPELINE_ID, [parsed])
    assert "ingested" in out["event"]
    assert strip_volatile(out) == parsed
