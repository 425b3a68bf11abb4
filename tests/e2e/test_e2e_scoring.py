"""Scoring logs through the real Filebeat -> Logstash -> Elasticsearch path, and through Filebeat ->
Elasticsearch with the ingest pipeline `shipper setup` installs.

- Golden records: each multi-line golden file of tests/golden/scoring/ is printed by a container
  carrying the file's model labels; both paths must index exactly its records (nothing lost,
  nothing duplicated) with the data-contract fields the golden tests expect, written by hand in
  tests/support/scoring_contract.py.
- The example service: examples/scoring's image (the Azure ML inference server running score.py),
  two model versions, driven by examples/scoring/traffic.py; no line unparsed, and both paths
  agree on every contract field of every line.
"""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
import requests

from shipper.assets.scoring.pipeline import TAG_PIPELINE_ERROR, TAG_UNPARSED
from tests.support.docker_stack import (
    NAMESPACE_DIRECT,
    NAMESPACE_LOGSTASH,
    REPO,
    Decision,
    E2EStack,
    scoring_documents,
    start_scoring_container,
)
from tests.support.scoring import GoldenCase, golden_cases
from tests.support.scoring_contract import CONTRACT, CONTRACT_FIELDS

NAMESPACES = (NAMESPACE_LOGSTASH, NAMESPACE_DIRECT)
# Filebeat's multiline joining applies to files that ask for it (not the single-line edge cases).
MULTILINE_CASES = [
    c
    for c in golden_cases()
    if json.loads(
        (c.log.with_name(c.log.name + "-config.json")).read_text(encoding="utf-8")
        if c.log.with_name(c.log.name + "-config.json").exists()
        else "{}"
    ).get("multiline", True)
]


def field(doc: Any, dotted: str) -> Any:
    """A field by its dotted name, whether the document nests it or keeps dots in keys."""
    if not isinstance(doc, dict):
        return None
    if dotted in doc:
        return doc[dotted]
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        if isinstance(doc.get(head), dict):
            found = field(doc[head], ".".join(parts[i:]))
            if found is not None:
                return found
    return None


def _labels(case: GoldenCase) -> dict[str, str]:
    """The Docker labels for a case: its container or pod labels, dots restored, or our own."""
    fields = case.fields
    raw = fields.get("container", {}).get("labels") or fields.get("kubernetes", {}).get("labels") or {}
    labels = {key.replace("_", "."): str(value) for key, value in raw.items()}
    return labels or {"ml.model.name": f"e2e-{case.log.stem}", "ml.model.version": "0"}


def _expected_model(labels: dict[str, str]) -> tuple[str | None, str | None]:
    name = labels.get("ml.model.name") or labels.get("azureml.model.name")
    version = labels.get("ml.model.version") or labels.get("azureml.model.version")
    return name, version


def _container_docs(e2e: E2EStack, namespace: str, container_id: str) -> list[dict[str, Any]]:
    return [d for d in scoring_documents(e2e, namespace) if field(d, "container.id") == container_id]


def _wait_for_docs(
    e2e: E2EStack, container_id: str, at_least: int, seconds: float = 240
) -> dict[str, list[dict[str, Any]]]:
    """The container's documents in each namespace, once each has `at_least` and stopped growing."""
    deadline = time.monotonic() + seconds
    previous: dict[str, int] = {}
    while True:
        docs = {ns: _container_docs(e2e, ns, container_id) for ns in NAMESPACES}
        counts = {ns: len(d) for ns, d in docs.items()}
        if all(n >= at_least for n in counts.values()) and counts == previous:
            return docs
        if time.monotonic() > deadline:
            return docs
        previous = counts
        time.sleep(5)


@pytest.mark.parametrize("case", MULTILINE_CASES, ids=[c.log.name for c in MULTILINE_CASES])
def test_golden_records_through_both_paths(
    case: GoldenCase, docker_backend: Decision, e2e: E2EStack, scoring_image: None
) -> None:
    labels = _labels(case)
    emitter = start_scoring_container(
        e2e,
        f"golden-{case.log.stem}",
        labels,
        command=["sh", "-c", "cat /golden/case.log && exec sleep 3600"],
        files={"/golden/case.log": case.log.read_bytes()},
    )
    container_id = emitter.get_wrapped_container().id
    docs = _wait_for_docs(e2e, container_id, len(case.records))
    contract = CONTRACT[case.log.name]
    name, version = _expected_model(labels)
    for namespace, found in docs.items():
        # nothing lost, nothing duplicated: each record (Filebeat joins multi-line ones) exactly once
        originals = Counter(field(d, "event.original") for d in found)
        assert originals == Counter(case.records), (namespace, originals - Counter(case.records))
        by_original = {field(d, "event.original"): d for d in found}
        for index, record in enumerate(case.records):
            doc = by_original[record]
            assert TAG_PIPELINE_ERROR not in (field(doc, "tags") or []), (namespace, record[:200], doc)
            if not record.startswith("{"):  # a JSON line's own model fields win over the labels
                assert (field(doc, "ml.model.name"), field(doc, "ml.model.version")) == (name, version)
            want = dict(contract.get(index, {}))
            if want.get("@timestamp") == case.fields.get("@timestamp"):
                # a line without a time of its own: the golden file's stand-in for Filebeat's time
                want.pop("@timestamp")
            got = {key: field(doc, key) for key in want}
            if "@timestamp" in want:
                got["@timestamp"] = _timestamp(got["@timestamp"])
                want["@timestamp"] = _timestamp(want["@timestamp"])
            assert got == want, (namespace, case.log.name, index, record[:160])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timestamp(value: Any) -> Any:
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _contract(doc: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        _timestamp(field(doc, key)) if key == "@timestamp" else field(doc, key) for key in CONTRACT_FIELDS
    )


def test_example_service_logs_through_both_paths(
    docker_backend: Decision, e2e: E2EStack, scoring_image: None
) -> None:
    services = {}
    for version in ("1", "2"):
        labels = {"ml.model.name": "demo-churn-model", "ml.model.version": version}
        container = start_scoring_container(
            e2e,
            f"scoring-v{version}",
            labels,
            env={"MODEL_NAME": "demo-churn-model", "MODEL_VERSION": version},
        )
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(5001)}"
        deadline = time.monotonic() + 180
        while True:
            try:
                requests.get(url + "/", timeout=3)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, f"scoring-v{version} never answered at {url}"
                time.sleep(2)
        services[version] = (container.get_wrapped_container().id, url)
    traffic = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "scoring" / "traffic.py"),
            "--requests",
            "80",
            "--seconds",
            "120",
        ]
        + [arg for _, url in services.values() for arg in ("--url", url)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert '"200"' in traffic.stdout and '"500"' in traffic.stdout, traffic.stdout
    for version, (container_id, _) in services.items():
        docs = _wait_for_docs(e2e, container_id, at_least=40)
        contracts = {}
        for namespace, found in docs.items():
            assert found, f"no document from scoring-v{version} in logs-mlops.scoring-{namespace}"
            for doc in found:
                tags = field(doc, "tags") or []
                assert TAG_UNPARSED not in tags and TAG_PIPELINE_ERROR not in tags, (namespace, doc)
                assert field(doc, "ml.model.name") == "demo-churn-model"
                assert field(doc, "ml.model.version") == version
                if field(doc, "url.path") == "/score":
                    assert field(doc, "http.request.method") == "POST", doc
                    assert field(doc, "http.response.status_code") in (200, 500), doc
                    assert isinstance(field(doc, "event.duration"), int), doc
            statuses = {field(d, "http.response.status_code") for d in found}
            assert {200, 500} <= statuses, (namespace, statuses)
            assert any(field(d, "mlops.scoring.metric.name") for d in found), namespace
            contracts[namespace] = Counter(_contract(d) for d in found)
        # Logstash and the ingest pipeline agree on every contract field of every line.
        assert contracts[NAMESPACE_LOGSTASH] == contracts[NAMESPACE_DIRECT]
