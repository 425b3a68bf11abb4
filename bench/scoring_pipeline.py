"""Scoring-log ingest rate with the scoring pipelines versus without them, on the ingest node.

    ES_INGEST_URL=http://127.0.0.1:9201 python bench/scoring_pipeline.py \
        [--lines 50000] [--batch 1000] [--trials 3] [--out FILE]

The engine is the Elasticsearch 7.10.2 node of `scripts/stack up --ingest` (Elasticsearch's own
ingest code: ingest-common, lang-painless, lang-mustache), the newest ingest engine that runs on
these machines; the 9.5.4 test cluster has no ingest processors. It speaks plain HTTP JSON (the 9.x
Python client refuses 7.x).

Installs the pipelines exactly as `shipper setup` writes them, then bulk-indexes the same golden lines
(tests/golden/scoring, repeated to --lines) into two indices with the scoring mappings: one whose
default pipeline is `logs-mlops.scoring`, one without. Trials alternate the two; the ratio is taken
within each trial and the median reported (target >= 0.5). Failures: bulk items rejected, plus
documents the pipeline tagged as a pipeline error or as unparsed although the golden files expect
them to parse (target 0). Prints one JSON result on stdout; --out writes it to a file.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from shipper.assets.scoring.pipeline import (
    SCORING_PIPELINE_ID,
    TAG_PIPELINE_ERROR,
    TAG_UNPARSED,
    scoring_mappings,
)
from tests.support.ingest_node import IngestNode, install_pipelines
from tests.support.scoring import golden_cases


def _expected_unparsed(log: Path) -> set[int]:
    config = log.with_name(log.name + "-config.json")
    if not config.exists():
        return set()
    return set(json.loads(config.read_text(encoding="utf-8")).get("expect_unparsed", []))


def golden_lines() -> list[tuple[dict[str, Any], bool]]:
    """(input document, whether the golden files say it parses) for every golden record."""
    out = []
    for case in golden_cases():
        unparsed = _expected_unparsed(case.log)
        out += [(doc, i not in unparsed) for i, doc in enumerate(case.input_docs())]
    return out


def mappings_for_7_10() -> dict[str, Any]:
    """The scoring mappings; `flattened` is an x-pack type in 7.10 (absent from its integ-test-zip),
    so those two objects are stored unindexed here."""
    text = json.dumps(scoring_mappings()).replace(
        '{"type": "flattened"}', '{"type": "object", "enabled": false}'
    )
    mappings: dict[str, Any] = json.loads(text)
    return mappings


class Bulk:
    """One persistent HTTP connection, like a real shipper keeps."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 9200, timeout=300)

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        self.conn.request("POST", path, body=body, headers={"Content-Type": "application/x-ndjson"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"bulk answered HTTP {response.status}: {data[:2000]!r}")
        result: dict[str, Any] = json.loads(data)
        return result


def run(node: IngestNode, bulk: Bulk, index: str, batches: list[bytes], lines: int) -> tuple[float, int]:
    """Lines/s for indexing every batch into `index` (refresh included), and the rejected items."""
    rejected = 0
    started = time.perf_counter()
    for body in batches:
        result = bulk.post(f"/{index}/_bulk", body)
        if result.get("errors"):
            rejected += sum(1 for item in result["items"] if "error" in next(iter(item.values())))
    node.request("POST", f"/{index}/_refresh")
    elapsed = time.perf_counter() - started
    return lines / elapsed, rejected


def processor_millis(node: IngestNode) -> dict[str, tuple[int, int]]:
    """Per pipeline processor of the scoring pipelines: (documents, milliseconds) so far, from
    the node's ingest stats."""
    stats = node.request("GET", "/_nodes/_local/stats/ingest")["nodes"]
    out: dict[str, tuple[int, int]] = {}
    for node_stats in stats.values():
        for pipeline, body in node_stats["ingest"]["pipelines"].items():
            if not pipeline.startswith(SCORING_PIPELINE_ID):
                continue
            for processor in body.get("processors", []):
                for key, value in processor.items():
                    name = f"{pipeline} {key.split(':', 1)[-1]}"
                    out[name] = (value["stats"]["count"], value["stats"]["time_in_millis"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--es-ingest-url", default=os.environ.get("ES_INGEST_URL", "http://127.0.0.1:9201"))
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args()

    node = IngestNode(args.es_ingest_url.rstrip("/"))
    version = node.version()
    install_pipelines(node)
    base = golden_lines()
    chosen = [base[i % len(base)] for i in range(args.lines)]
    valid_lines = sum(1 for _, parses in chosen if parses)
    batches = []
    for start in range(0, len(chosen), args.batch):
        batch = chosen[start : start + args.batch]
        batches.append(b"".join(b'{"create":{}}\n' + json.dumps(doc).encode() + b"\n" for doc, _ in batch))

    rates: dict[str, list[float]] = {"without": [], "with": []}
    rejected = {"without": 0, "with": 0}
    bulk = Bulk(node.url)
    failures_on_valid = 0
    before = processor_millis(node)
    for trial in range(args.trials):
        for label in ("without", "with") if trial % 2 == 0 else ("with", "without"):
            index = f"bench-scoring-{label}"
            node.request("DELETE", f"/{index}?ignore_unavailable=true")
            settings: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
            if label == "with":
                settings["default_pipeline"] = SCORING_PIPELINE_ID
            node.request(
                "PUT", f"/{index}", {"settings": {"index": settings}, "mappings": mappings_for_7_10()}
            )
            rate, bad = run(node, bulk, index, batches, len(chosen))
            rates[label].append(rate)
            rejected[label] += bad
            if label == "with":
                errors = node.request(
                    "POST", f"/{index}/_count", {"query": {"term": {"tags": TAG_PIPELINE_ERROR}}}
                )["count"]
                unparsed = node.request(
                    "POST", f"/{index}/_count", {"query": {"term": {"tags": TAG_UNPARSED}}}
                )["count"]
                # unparsed lines beyond the ones the golden files expect to stay unparsed
                failures_on_valid += errors + max(0, unparsed - (len(chosen) - valid_lines))
            print(f"trial {trial + 1} {label:>7} pipeline: {rate:,.0f} lines/s", file=sys.stderr)
    for label in rates:
        node.request("DELETE", f"/bench-scoring-{label}?ignore_unavailable=true")

    after = processor_millis(node)
    # where the pipeline time goes: the costliest processors, in microseconds per document they ran on
    costs = []
    for name, (count, millis) in after.items():
        count -= before.get(name, (0, 0))[0]
        millis -= before.get(name, (0, 0))[1]
        if count > 0:
            costs.append((millis, name, count))
    hottest = {name: round(1000 * millis / count) for millis, name, count in sorted(costs, reverse=True)[:8]}
    ratios = [w / wo for w, wo in zip(rates["with"], rates["without"], strict=True)]
    result = {
        "engine": f"Elasticsearch {version} (integ-test-zip + ingest-common, lang-painless, lang-mustache), "
        "512 MB heap, single node, Java 17",
        "command": (
            "python bench/scoring_pipeline.py "
            f"--lines {args.lines} --batch {args.batch} --trials {args.trials}"
        ),
        "lines_per_trial": len(chosen),
        "distinct_golden_lines": len(base),
        "lines_per_s_without": [round(r) for r in rates["without"]],
        "lines_per_s_with": [round(r) for r in rates["with"]],
        "ratio_per_trial": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "target_ratio": 0.5,
        "bulk_items_rejected": rejected,
        "failures_on_valid_lines": failures_on_valid,
        "costliest_processors_us_per_doc": hottest,
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, load average {os.getloadavg()[0]:.1f} at the end"
        ),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
