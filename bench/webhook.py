#!/usr/bin/env python3
"""Webhook throughput and acknowledgement latency: Event Grid batches of 100 over real HTTP into
the real Elasticsearch, writes included (an answer is only given once its batch is written).

    .venv/bin/python bench/webhook.py [--events 50000] [--batch 100] [--concurrency 4]

It starts `shipper serve` as its own process (the real command, one uvicorn worker), sends
Event Grid schema batches from `--concurrency` keep-alive connections (Event Grid delivers in
parallel too), and reports events/s over the whole run and the p50/p99/max time from sending a
batch to its 200. Afterwards it counts the documents in Elasticsearch: every event must be there
exactly once. Enrichment (Azure), notifications and the MLflow sync trigger are off: they run after
the answer and are not part of acknowledgement.

Targets (DESIGN.md): >= 1,000 events/s in batches of 100, p99 acknowledgement <= 250 ms.

Elasticsearch: ES_URL if set, else `scripts/stack up`. Documents are written with unique run ids
and one experiment name per run of the benchmark; nothing is deleted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import wait_ready

REPO = Path(__file__).resolve().parent.parent
WS = (
    "/subscriptions/9f2c4e1a-7b3d-4c55-8e0f-2a6b1d3c4e5f/resourceGroups/bench/providers/"
    "Microsoft.MachineLearningServices/workspaces/bench-ws"
)
STATUSES = ["Queued", "Running", "Finalizing", "Completed"]


def es_url() -> str:
    if os.environ.get("ES_URL"):
        return os.environ["ES_URL"]
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stack"), "up", "--only", "es"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SHIPPER_STACK_PYTHON": sys.executable},
    ).stdout
    return next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("ES_URL="))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def batches(total: int, size: int, experiment: str) -> list[bytes]:
    """Event Grid schema batches: each run goes through four statuses, plus a model event in ten."""
    start = datetime.now(UTC) - timedelta(minutes=30)
    events: list[dict[str, Any]] = []
    n = 0
    while len(events) < total:
        run_id = f"{experiment}-run-{n}"
        for step, status in enumerate(STATUSES):
            events.append(
                {
                    "id": str(uuid.uuid4()),
                    "topic": WS,
                    "subject": f"experiments/bench/runs/{run_id}",
                    "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
                    "eventTime": (start + timedelta(milliseconds=n * 10 + step)).isoformat(),
                    "data": {
                        "experimentId": "bench",
                        "experimentName": experiment,
                        "runId": run_id,
                        "runType": "azureml.scriptrun",
                        "runTags": {"team": "bench", "attempt": str(n % 7)},
                        "runProperties": {"azureml.runsource": "azureml.scriptrun"},
                        "runStatus": status,
                    },
                    "dataVersion": "",
                    "metadataVersion": "1",
                }
            )
        if n % 10 == 0:
            events.append(
                {
                    "id": str(uuid.uuid4()),
                    "topic": WS,
                    "subject": f"models/{experiment}-model:{n}",
                    "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
                    "eventTime": (start + timedelta(milliseconds=n * 10 + 5)).isoformat(),
                    "data": {"ModelName": f"{experiment}-model", "ModelVersion": n, "ModelTags": {}},
                    "dataVersion": "",
                    "metadataVersion": "1",
                }
            )
        n += 1
    events = events[:total]
    return [json.dumps(events[i : i + size]).encode() for i in range(0, len(events), size)]


def start_server(port: int, es: str, secret: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SHIPPER_ELASTICSEARCH_URL": es,
        "SHIPPER_WEBHOOK_SECRET": secret,
        "SHIPPER_AZUREML_ENRICHMENT": "false",
        "SHIPPER_WEBHOOK_SYNC_ON_TERMINAL": "false",
        "SHIPPER_LOG_LEVEL": "WARNING",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    shipper = [sys.executable, "-m", "shipper"]
    proc = subprocess.Popen([*shipper, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env)
    if wait_ready(port, lambda: proc.poll() is None, 30):
        return proc
    if proc.poll() is not None:
        raise SystemExit(f"shipper serve exited with {proc.returncode}")
    proc.kill()
    raise SystemExit("shipper serve did not become ready within 30 s")


def send_all(
    port: int, secret: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    position = iter(range(len(bodies)))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                conn.close()
                return
            started = time.perf_counter()
            conn.request(
                "POST",
                f"/events?code={secret}",
                bodies[index],
                {"Content-Type": "application/json", "aeg-event-type": "Notification"},
            )
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses.append(response.status)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses, time.perf_counter() - wall


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def count_documents(es: str, experiment: str) -> tuple[int, int]:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es, request_timeout=60)
    client.indices.refresh(index=["mlops-events-*", "mlops-runs"], allow_no_indices=True)
    events = client.count(
        index="mlops-events-*",
        query={
            "bool": {
                "should": [
                    {"term": {"azureml.experiment.name": experiment}},
                    {"term": {"ml.model.name": f"{experiment}-model"}},
                ]
            }
        },
    )["count"]
    runs = client.count(index="mlops-runs", query={"term": {"azureml.experiment.name": experiment}})["count"]
    client.close()
    return int(events), int(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=50_000, help="events to send (default 50,000)")
    p.add_argument("--batch", type=int, default=100, help="events per delivery (default 100)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel deliveries (default 4)")
    p.add_argument("--warmup", type=int, default=20, help="batches sent first and not measured")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args()

    es = es_url()
    experiment = f"bench-{uuid.uuid4().hex[:8]}"
    secret = uuid.uuid4().hex
    port = free_port()
    warm = batches(args.warmup * args.batch, args.batch, experiment + "-warmup")
    bodies = batches(args.events, args.batch, experiment)
    server = start_server(port, es, secret)
    try:
        send_all(port, secret, warm, args.concurrency)
        latencies, statuses, wall = send_all(port, secret, bodies, args.concurrency)
    finally:
        server.terminate()
        server.wait(30)
    events_found, runs_found = count_documents(es, experiment)
    ok = statuses.count(200)
    expected_runs = len({e["data"]["runId"] for b in bodies for e in json.loads(b) if "runId" in e["data"]})
    result = {
        "events": args.events,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "deliveries": len(bodies),
        "answered_200": ok,
        "seconds": round(wall, 3),
        "events_per_second": round(args.events / wall, 1),
        "ack_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "ack_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "ack_ms_max": round(max(latencies) * 1000, 1),
        "documents_in_elasticsearch": events_found,
        "run_documents": runs_found,
        "run_documents_expected": expected_runs,
        "command": shlex.join([os.path.relpath(sys.executable, REPO), "bench/webhook.py", *sys.argv[1:]]),
        "elasticsearch": es,
        "cpus": os.cpu_count(),
    }
    print(f"command:               {result['command']}")
    print(f"deliveries:            {len(bodies)} x {args.batch} events, {args.concurrency} in parallel")
    print(f"answered 200:          {ok} of {len(bodies)}")
    print(f"throughput:            {result['events_per_second']:,} events/s   (target >= 1,000)")
    print(
        f"acknowledgement:       p50 {result['ack_ms_p50']} ms, p99 {result['ack_ms_p99']} ms "
        f"(target <= 250), max {result['ack_ms_max']} ms"
    )
    print(
        f"in Elasticsearch:      {events_found} event documents of {args.events} sent, "
        f"{runs_found} run documents of {expected_runs}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if ok != len(bodies) or events_found != args.events or runs_found != expected_runs:
        raise SystemExit("not every event was written exactly once")


if __name__ == "__main__":
    main()
