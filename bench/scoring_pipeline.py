"""Scoring-log ingest rate with the `logs-mlops.scoring` pipeline versus without it, on a real cluster.

    python bench/scoring_pipeline.py [--es-url URL] [--lines 50000] [--batch 1000]

Bulk-indexes the same golden lines (tests/golden/scoring, repeated) into two data streams: one whose
template has the pipeline as default pipeline, one without; prints lines/s of each and the ratio
(target >= 0.5). Needs a cluster with the ingest processors (the minimal integ-test distribution has
none: the script says so and exits 2). ES_URL or `scripts/stack up` gives the URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from elasticsearch import Elasticsearch, helpers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from shipper.assets.scoring.pipeline import SCORING_PIPELINE_ID, scoring_mappings, scoring_pipeline
from tests.support.scoring import golden_cases, missing_processors


def run(es: Elasticsearch, name: str, docs: list[dict[str, object]], batch: int) -> float:
    started = time.perf_counter()
    for ok, item in helpers.streaming_bulk(
        es,
        ({"_op_type": "create", "_index": name, "_source": d} for d in docs),
        chunk_size=batch,
        raise_on_error=False,
    ):
        if not ok:
            raise SystemExit(f"bulk item failed: {item}")
    es.indices.refresh(index=name)
    return len(docs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--es-url", default=os.environ.get("ES_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    es = Elasticsearch(args.es_url, request_timeout=120)
    missing = missing_processors(es)
    if missing:
        print(f"cannot run: {args.es_url} has no ingest processor {', '.join(missing)}", file=sys.stderr)
        raise SystemExit(2)
    base = [doc for case in golden_cases() for doc in case.input_docs()]
    docs = [base[i % len(base)] for i in range(args.lines)]
    es.ingest.put_pipeline(id=SCORING_PIPELINE_ID, body=scoring_pipeline())
    rates = {}
    for label, settings in (("without", {}), ("with", {"index.default_pipeline": SCORING_PIPELINE_ID})):
        name = f"logs-mlops.scoringbench{label}-default"
        es.options(ignore_status=404).indices.delete_data_stream(name=name)
        es.indices.put_index_template(
            name=f"bench-{label}",
            index_patterns=[name],
            data_stream={},
            priority=500,
            template={"settings": {"number_of_replicas": 0, **settings}, "mappings": scoring_mappings()},
        )
        rates[label] = run(es, name, docs, args.batch)
    print(f"command: python bench/scoring_pipeline.py --lines {args.lines} --batch {args.batch}")
    print(f"without pipeline: {rates['without']:.0f} lines/s")
    print(f"with pipeline:    {rates['with']:.0f} lines/s")
    print(f"ratio: {rates['with'] / rates['without']:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
