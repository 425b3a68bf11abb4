"""Every fault the shipper must survive, under load, checked exactly: 0 lost, 0 duplicated.

    .venv/bin/python bench/faults.py [--runs 20 --keys 5 --steps 2000] [--kills 20] [--outage-seconds 60]
                                     [--outage sigstop,restart] [--webhook-rate 500] [--seed 1]
                                     [--phases kill,outage,duplicate,service,webhook,shards]

Runs against its OWN throwaway Elasticsearch (started with scripts/stack in a separate state dir,
<state-dir>/faults-es; stopped and deleted at the end unless --keep-es), so stopping it hurts
nobody. MLflow is the benchmarks' private one. Phases, each on fresh indices:

kill      `shipper sync --json` is started, SIGKILLed after a random 2-6 s, restarted, ... --kills
          times; then one pass is let finish. (If a backfill completes between kills, the phase is
          verified and a new round starts on fresh indices until --kills kills were made.)
outage    a backfill is started; once points are being written, Elasticsearch is made unavailable
          for --outage-seconds: `sigstop` freezes it (SIGSTOP/SIGCONT of its process group:
          connections hang), `restart` stops it and starts it again (connections refused). The same
          pass must finish on its own.
duplicate two `shipper sync --json` at once, and a `sync --full` replay started 1.5 s later; then
          one more ordinary pass.
service   `shipper run --interval 3` (the service) ships a small new experiment; Elasticsearch is
          stopped for --outage-seconds between passes while 100 more points are logged to MLflow;
          the service must still be running when Elasticsearch is back and ship them.
webhook   `shipper serve` takes Event Grid batches of 100 at --webhook-rate events/s from 16
          connections (bench/_delivery.py: 10% of the batches delivered twice, each run's statuses
          shuffled across batches, every answer other than 200 retried as Event Grid does). Once
          without a fault, then once per --outage mode with Elasticsearch away for --outage-seconds
          after a quarter of the load. /healthz is probed every 0.5 s throughout.
shards    two pollers at once, SHIPPER_SHARD=0/2 and 1/2, over four experiments; then both again.

After each sync phase: the number of metric documents equals the number of points in MLflow, every
expected `_id` (shipper.transforms.mlflow_docs.metric_point_id, in the index of its month) exists and
no other, one run document per run, and the dead-letter index is empty. After each webhook phase:
every event id stored once, no other, each run's document at the status of its latest event (not
of the last one delivered), no dead letters.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import _common as c


def verify(es: Any, expected: set[tuple[str, str]], runs: int) -> dict[str, Any]:
    stored, scanned = c.stored_ids(es)
    count = c.count_metrics(es)
    es.indices.refresh(index="mlops-*", expand_wildcards="all")
    run_docs = int(es.count(index="mlops-runs", ignore_unavailable=True, allow_no_indices=True)["count"])
    dead = int(es.count(index="mlops-dead-letter", ignore_unavailable=True, allow_no_indices=True)["count"])
    lost = len(expected - stored)
    extra = len(stored - expected)
    result = {
        "expected": len(expected),
        "count": count,
        "lost": lost,
        "duplicated": (count - len(expected)) if count > len(expected) else 0,
        "unexpected_ids": extra,
        "run_docs": run_docs,
        "runs": runs,
        "dead_letters": dead,
    }
    result["ok"] = (
        lost == 0 and extra == 0 and count == len(expected) == scanned and run_docs == runs and dead == 0
    )
    return result


def fresh(es: Any, st: c.Stack) -> None:
    c.reset_indices(es)
    c.setup(st)


def kill_phase(
    es: Any, st: c.Stack, gen: c.Generated, expected: set, kills: int, rng: random.Random
) -> dict[str, Any]:
    env = c.shipper_env(st, gen.name)
    rounds: list[dict[str, Any]] = []
    made = 0
    while made < kills:
        fresh(es, st)
        events: list[dict[str, Any]] = []
        completed_early = False
        while made < kills:
            child = c.Child(["sync", "--json"], env)
            delay = rng.uniform(2.0, 6.0)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and child.alive():
                time.sleep(0.02)
            if not child.alive():
                result = child.wait()
                if result.returncode != 0:
                    raise SystemExit(f"sync failed between kills: {result.stderr_tail}")
                completed_early = True
                break
            child.kill()
            child.wait(killed=True)
            made += 1
            stored = c.count_metrics(es)
            events.append({"after_s": round(delay, 2), "stored_points": stored})
            c.say(f"  kill -9 #{made} after {delay:.1f}s; {stored:,} points stored so far")
        final = c.run_shipper(["sync", "--json"], env)
        check = verify(es, expected, gen.runs)
        rounds.append(
            {
                "kills": len(events),
                "events": events,
                "completed_between_kills": completed_early,
                "final_pass_points": (final.summary or {}).get("points_written"),
                "verify": check,
            }
        )
        c.say(f"  round verified: {check}")
    return {"kills": made, "rounds": rounds, "ok": all(r["verify"]["ok"] for r in rounds)}


def take_away(es_state: Path, st: c.Stack, mode: str, seconds: float) -> None:
    """Elasticsearch unavailable for `seconds`: `sigstop` freezes its process group (connections
    hang), `restart` stops it and starts it again on the same port (connections refused)."""
    began = time.monotonic()
    if mode == "sigstop":
        pgid = int((es_state / "es.pid").read_text().strip())
        os.killpg(pgid, signal.SIGSTOP)
        time.sleep(seconds)
        os.killpg(pgid, signal.SIGCONT)
        return
    c.stack_down(es_state, only="es")
    time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    url = c.stack_up(es_state, only="es")["ES_URL"]
    if url != st.es_url:
        raise SystemExit(f"Elasticsearch came back at {url}, not {st.es_url}")


def outage_phase(
    es: Any, st: c.Stack, gen: c.Generated, expected: set, mode: str, seconds: float, es_state: Path
) -> dict[str, Any]:
    fresh(es, st)
    child = c.Child(["sync", "--json"], c.shipper_env(st, gen.name))
    # Wait until points are being written, then take Elasticsearch away.
    while child.alive() and c.count_metrics(es) < min(20_000, gen.points // 4):
        time.sleep(0.2)
    if not child.alive():
        raise SystemExit("the backfill finished before the outage could start; use a bigger --steps")
    at = c.count_metrics(es)
    c.say(f"  outage ({mode}) for {seconds:.0f}s with {at:,} points stored")
    began = time.monotonic()
    take_away(es_state, st, mode, seconds)
    down_for = time.monotonic() - began
    c.say(f"  Elasticsearch back after {down_for:.0f}s; waiting for the same pass to finish")
    result = child.wait()
    check = verify(es, expected, gen.runs)
    out = {
        "mode": mode,
        "outage_seconds": down_for,
        "points_stored_at_outage": at,
        "pass_returncode": result.returncode,
        "pass_wall_seconds": result.wall_seconds,
        "retries": ((result.summary or {}).get("writes") or {}).get("retries"),
        "verify": check,
        "stderr_tail": result.stderr_tail[-600:] if result.returncode else "",
    }
    out["ok"] = result.returncode == 0 and check["ok"]
    c.say(f"  {mode}: exit {result.returncode}, {check}")
    if result.returncode:
        c.say(f"  the pass failed; its stderr ends with:\n{result.stderr_tail[-1500:]}")
    return out


def duplicate_phase(es: Any, st: c.Stack, gen: c.Generated, expected: set) -> dict[str, Any]:
    fresh(es, st)
    env = c.shipper_env(st, gen.name)
    a = c.Child(["sync", "--json"], env)
    b = c.Child(["sync", "--json"], env)
    time.sleep(1.5)
    replay = c.Child(["sync", "--full", "--json"], env)
    results = [x.wait() for x in (a, b, replay)]
    after = c.run_shipper(["sync", "--json"], env)
    check = verify(es, expected, gen.runs)
    es.indices.refresh(index="mlops-runs")
    statuses = es.search(index="mlops-runs", size=0, aggs={"s": {"terms": {"field": "mlflow.run.status"}}})
    buckets = {b["key"]: b["doc_count"] for b in statuses["aggregations"]["s"]["buckets"]}
    out = {
        "returncodes": [r.returncode for r in results],
        "points_written_by_each": [(r.summary or {}).get("points_written") for r in results],
        "entity_noops": [((r.summary or {}).get("writes") or {}).get("noop") for r in results],
        "following_pass_points": (after.summary or {}).get("points_written"),
        "run_status_counts": buckets,
        "verify": check,
    }
    out["ok"] = all(r.returncode == 0 for r in results) and check["ok"] and buckets == {"FINISHED": gen.runs}
    c.say(f"  duplicate/reordered: {out}")
    return out


def service_phase(es: Any, st: c.Stack, seconds: float, es_state: Path) -> dict[str, Any]:
    """`shipper run` (the service) across an outage between its passes, with points logged meanwhile."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    fresh(es, st)
    shape = c.Shape(2, 2, 100)
    name = f"bench-faults-service-{int(time.time())}"  # changed below, so never reused
    gen = c.ensure_experiment(st.mlflow_uri, name, shape)
    child = c.Child(["run", "--interval", "3"], c.shipper_env(st, gen.name))
    deadline = time.monotonic() + 120
    while child.alive() and c.count_metrics(es) < gen.points and time.monotonic() < deadline:
        time.sleep(0.5)
    first_ok = c.count_metrics(es) == gen.points
    c.say(
        f"  service shipped the first {gen.points} points: {first_ok}; Elasticsearch down for {seconds:.0f}s"
    )
    began = time.monotonic()
    c.stack_down(es_state, only="es")
    client = MlflowClient(st.mlflow_uri)
    run = client.search_runs([gen.experiment_id], max_results=1)[0]
    key = sorted(run.data.metrics)[0]
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(key, 0.5, now + i, 100 + i) for i in range(100)])
    time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    url = c.stack_up(es_state, only="es")["ES_URL"]
    if url != st.es_url:
        raise SystemExit(f"Elasticsearch came back at {url}, not {st.es_url}")
    down_for = time.monotonic() - began
    expected = c.expected_ids(st.mlflow_uri, gen.experiment_id)
    deadline = time.monotonic() + 90
    while child.alive() and c.count_metrics(es) < len(expected) and time.monotonic() < deadline:
        time.sleep(1)
    alive = child.alive()
    if alive:
        child.proc.send_signal(signal.SIGTERM)
    result = child.wait()
    check = verify(es, expected, shape.runs)
    out = {
        "outage_seconds": down_for,
        "service_alive_after_outage": alive,
        "service_returncode": result.returncode,
        "logged_during_outage": 100,
        "verify": check,
        "stderr_tail": "" if alive else result.stderr_tail[-1500:],
    }
    out["ok"] = first_ok and alive and check["ok"]
    c.say(f"  service: alive after the outage {alive}, exit {result.returncode}, {check}")
    if not alive:
        c.say(f"  the service died; its stderr ends with:\n{result.stderr_tail[-1500:]}")
    return out


def _serve(env: dict[str, str], port: int) -> c.Child:
    child = c.Child(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    if not c.wait_ready(port, child.alive, 60):
        child.kill()
        raise SystemExit(f"shipper serve did not become ready: {child.wait(killed=True).stderr_tail}")
    return child


def verify_events(
    es: Any, experiment: str, event_ids: set[str], last_status: dict[str, int]
) -> dict[str, Any]:
    """Every event stored once under its id, one run document per run at the status of its latest
    event (whatever order the events came in), no dead letters."""
    from elasticsearch import helpers

    es.indices.refresh(index="mlops-*", expand_wildcards="all")
    runs_query = {"term": {"azureml.experiment.name": experiment}}
    query = {"bool": {"should": [runs_query, {"term": {"ml.model.name": f"{experiment}-model"}}]}}
    stored: list[str] = [
        hit["_id"]
        for hit in helpers.scan(es, index="mlops-events-*", query={"query": query}, _source=False, size=5000)
    ]
    count = int(es.count(index="mlops-events-*", query=query)["count"])
    answer = es.search(
        index="mlops-runs", size=0, query=runs_query, aggs={"s": {"terms": {"field": "azureml.run.status"}}}
    )
    statuses = {b["key"]: b["doc_count"] for b in answer["aggregations"]["s"]["buckets"]}
    dead = int(es.count(index="mlops-dead-letter", ignore_unavailable=True, allow_no_indices=True)["count"])
    stored_set = set(stored)
    result = {
        "expected": len(event_ids),
        "count": count,
        "lost": len(event_ids - stored_set),
        "duplicated": len(stored) - len(stored_set) + max(0, count - len(stored)),
        "unexpected_ids": len(stored_set - event_ids),
        "run_statuses": statuses,
        "run_statuses_expected": last_status,
        "dead_letters": dead,
    }
    result["ok"] = (
        result["lost"] == 0
        and result["duplicated"] == 0
        and result["unexpected_ids"] == 0
        and count == len(event_ids)
        and statuses == last_status
        and dead == 0
    )
    return result


def webhook_phase(
    es: Any,
    st: c.Stack,
    es_state: Path,
    *,
    events: int,
    rate: float,
    outage: str | None,
    seconds: float,
    rng: random.Random,
) -> dict[str, Any]:
    """`shipper serve` under a steady load of Event Grid batches (10% delivered twice, each run's
    statuses shuffled across batches), with Elasticsearch away for `seconds` in the middle
    (`outage`: sigstop or restart; None: no outage). The sender retries as Event Grid does."""
    import json
    import threading
    import uuid

    import _delivery as d
    import webhook

    fresh(es, st)
    experiment = f"bench-faults-webhook-{uuid.uuid4().hex[:8]}"
    flat = json.loads(webhook.batches(events, events, experiment)[0])
    event_ids = {e["id"] for e in flat}
    latest: dict[str, tuple[datetime, str]] = {}  # run -> (event time, status) of its latest event
    for e in flat:
        if "runId" in e["data"]:
            at = datetime.fromisoformat(e["eventTime"])
            seen = latest.get(e["data"]["runId"])
            if seen is None or at > seen[0]:
                latest[e["data"]["runId"]] = (at, e["data"]["runStatus"])
    last_status = dict(sorted(Counter(status for _, status in latest.values()).items()))
    bodies = d.reordered_batches(flat, 100, 1_000, rng)
    secret = uuid.uuid4().hex
    port = c.free_port()
    env = c.shipper_env(
        st,
        SHIPPER_WEBHOOK_SECRET=secret,
        SHIPPER_AZUREML_ENRICHMENT="false",
        SHIPPER_WEBHOOK_SYNC_ON_TERMINAL="false",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    server = _serve(env, port)
    prober = d.Prober(port)
    window: dict[str, float] = {}

    def saboteur() -> None:
        time.sleep(min(15.0, len(bodies) * 100 / rate / 4))  # after a quarter of the load, at most 15 s
        window["start"] = time.monotonic() - began
        take_away(es_state, st, outage or "restart", seconds)
        window["end"] = time.monotonic() - began

    began = time.monotonic()
    thread = threading.Thread(target=saboteur, daemon=True) if outage else None
    if thread:
        thread.start()
    outcome = d.deliver(port, secret, bodies, batches_per_second=rate / 100, duplicate_share=0.1, rng=rng)
    if thread:
        thread.join()
    probes = prober.stop()
    alive = server.alive()
    server.proc.send_signal(signal.SIGTERM)
    served = server.wait()
    check = verify_events(es, experiment, event_ids, last_status)
    w_start, w_end = window.get("start", outcome.wall_seconds), window.get("end", outcome.wall_seconds)
    before = outcome.latencies(0.0, w_start)
    after = outcome.latencies(w_end, outcome.wall_seconds + 1)
    during = [p for p in probes if w_start <= p.at < w_end]
    out: dict[str, Any] = {
        "outage": outage or "none",
        "outage_seconds": round(w_end - w_start, 1) if outage else 0.0,
        "events": len(event_ids),
        "batches": outcome.batches,
        "copies_delivered": outcome.copies,
        "duplicate_copies": outcome.copies - outcome.batches,
        "offered_events_per_s": rate,
        "held_events_per_s": round(outcome.events / outcome.wall_seconds, 1),
        "attempts": len(outcome.attempts),
        "answers": outcome.statuses(),
        "acked": outcome.acked,
        "never_acked": outcome.unacked,
        "ack_p99_ms_before": _ms(d.percentile(before, 0.99)),
        "ack_p99_ms_after": _ms(d.percentile(after, 0.99)),
        "slowest_answer_s": round(max((a.seconds for a in outcome.attempts), default=0.0), 1),
        "max_first_offer_to_ack_s": round(max((a - f for f, a in outcome.acks), default=0.0), 1),
        # until every copy first offered before Elasticsearch came back was acknowledged
        "backlog_cleared_s_after_outage": round(
            max((a for f, a in outcome.acks if f < w_end), default=w_end) - w_end, 1
        )
        if outage
        else None,
        "healthz_during_outage": {
            "probes": len(during),
            "answered_200": sum(1 for p in during if p.status == 200),
            "p99_ms": _ms(d.percentile([p.seconds for p in during], 0.99)),
        },
        "service_alive": alive,
        "service_returncode": served.returncode,
        "wall_seconds": round(outcome.wall_seconds, 1),
        "verify": check,
    }
    out["ok"] = alive and outcome.unacked == 0 and check["ok"]
    c.say(f"  webhook ({out['outage']}): {out}")
    if not alive:
        c.say(f"  the service died; its stderr ends with:\n{served.stderr_tail[-1500:]}")
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def shard_phase(es: Any, st: c.Stack) -> dict[str, Any]:
    """Two pollers, SHIPPER_SHARD=0/2 and 1/2, at once over four experiments; then both again."""
    from shipper.config import shard_of_experiment

    fresh(es, st)
    shape = c.Shape(5, 4, 1000)
    gens: list[c.Generated] = []
    n = 0
    while len(gens) < 4 or len({shard_of_experiment(g.experiment_id, 2) for g in gens}) < 2:
        gens.append(c.ensure_experiment(st.mlflow_uri, shape.name(f"bench-faults-shard{n}"), shape))
        n += 1
    names = ",".join(g.name for g in gens)
    expected: set[tuple[str, str]] = set()
    for g in gens:
        expected |= c.expected_ids(st.mlflow_uri, g.experiment_id)
    runs = sum(g.runs for g in gens)
    owners = {g.name: shard_of_experiment(g.experiment_id, 2) for g in gens}
    rounds: list[dict[str, list[Any]]] = []
    for _ in range(2):
        children = [
            c.Child(["sync", "--json"], c.shipper_env(st, names, SHIPPER_SHARD=f"{i}/2")) for i in (0, 1)
        ]
        results = [x.wait() for x in children]
        rounds.append(
            {
                "returncodes": [r.returncode for r in results],
                "points_written": [(r.summary or {}).get("points_written") for r in results],
            }
        )
    check = verify(es, expected, runs)
    first = rounds[0]["points_written"]
    second = rounds[1]["points_written"]
    out: dict[str, Any] = {
        "experiments": owners,
        "points": len(expected),
        "rounds": rounds,
        "verify": check,
    }
    out["ok"] = (
        all(rc == 0 for r in rounds for rc in r["returncodes"])
        and None not in first
        and sum(first) == len(expected)  # no point sent by both shards
        and second == [0, 0]
        and check["ok"]
    )
    c.say(f"  shards: {out}")
    return out


PHASES = ("kill", "outage", "duplicate", "service", "webhook", "shards")


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--keys", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--outage-seconds", type=float, default=60.0)
    p.add_argument("--outage", default="sigstop,restart", help="comma-separated: sigstop, restart")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-es", action="store_true", help="leave the throwaway Elasticsearch running")
    p.add_argument(
        "--webhook-rate", type=float, default=500.0, help="events/s offered to `shipper serve` (default 500)"
    )
    p.add_argument(
        "--webhook-events",
        type=int,
        default=0,
        help="events per webhook outage phase (default: 30 s of load beyond the outage)",
    )
    p.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated, of {', '.join(PHASES)} (default: all)",
    )
    args = p.parse_args()
    phases = {x.strip() for x in args.phases.split(",") if x.strip()}
    if phases - set(PHASES):
        p.error(f"unknown phases {sorted(phases - set(PHASES))}; choose from {', '.join(PHASES)}")
    modes = [m.strip() for m in args.outage.split(",") if m.strip()]
    shape = c.Shape(args.runs, args.keys, args.steps)
    rng = random.Random(args.seed)

    mlflow_uri = args.mlflow_uri or c.stack_up(args.state_dir / "stack", only="mlflow")["MLFLOW_TRACKING_URI"]
    es_state = args.state_dir / "faults-es"
    es_url = c.stack_up(es_state, only="es")["ES_URL"]
    st = c.Stack(es_url, mlflow_uri)
    es = c.es_client(es_url)
    info = c.machine(es_url)
    started = time.monotonic()
    kills: dict[str, Any] | None = None
    outages: list[dict[str, Any]] = []
    dup: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    hooks: list[dict[str, Any]] = []
    shards: dict[str, Any] | None = None
    try:
        gen = c.ensure_experiment(mlflow_uri, shape.name("bench-backfill"), shape)
        if phases & {"kill", "outage", "duplicate"}:
            c.say("computing every expected _id from MLflow")
            expected = c.expected_ids(mlflow_uri, gen.experiment_id)
            assert len(expected) == gen.points, (len(expected), gen.points)
        if "kill" in phases:
            c.say(f"phase 1: {args.kills} x kill -9")
            kills = kill_phase(es, st, gen, expected, args.kills, rng)
        for mode in modes if "outage" in phases else []:
            c.say(f"phase 2: {args.outage_seconds:.0f}s outage by {mode}")
            outages.append(outage_phase(es, st, gen, expected, mode, args.outage_seconds, es_state))
        if "duplicate" in phases:
            c.say("phase 3: duplicate and reordered passes")
            dup = duplicate_phase(es, st, gen, expected)
        if "service" in phases:
            c.say(f"phase 4: `shipper run` across a {args.outage_seconds:.0f}s outage between passes")
            service = service_phase(es, st, args.outage_seconds, es_state)
        if "webhook" in phases:
            rate = args.webhook_rate
            c.say(f"phase 5: `shipper serve` at {rate:.0f} events/s, duplicated and reordered deliveries")
            hooks.append(
                webhook_phase(
                    es, st, es_state, events=int(rate * 20), rate=rate, outage=None, seconds=0, rng=rng
                )
            )
            events = args.webhook_events or int(rate * (args.outage_seconds + 30))
            for mode in modes:
                c.say(
                    f"phase 5: `shipper serve` at {rate:.0f} events/s, "
                    f"{args.outage_seconds:.0f}s outage ({mode})"
                )
                hooks.append(
                    webhook_phase(
                        es,
                        st,
                        es_state,
                        events=events,
                        rate=rate,
                        outage=mode,
                        seconds=args.outage_seconds,
                        rng=rng,
                    )
                )
        if "shards" in phases:
            c.say("phase 6: two concurrent shards (SHIPPER_SHARD=0/2 and 1/2)")
            shards = shard_phase(es, st)
    finally:
        c.kill_children()
        if not args.keep_es:
            c.stack_down(es_state, only="es", purge=True)

    print(
        f"\nfaults: {gen.points:,} points ({shape.runs} runs x {shape.keys} keys x {shape.steps} steps); "
        f"own Elasticsearch; {time.monotonic() - started:.0f}s in all"
    )

    def _verify_row(label: str, v: dict[str, Any], ok: bool) -> list[Any]:
        keys = ("expected", "count", "lost", "duplicated", "unexpected_ids", "dead_letters")
        return [label, *(v[k] for k in keys), c.verdict(ok)]

    rows = []
    for i, r in enumerate(kills["rounds"] if kills else []):
        v = r["verify"]
        rows.append(_verify_row(f"kill -9 x{r['kills']} (round {i + 1})", v, v["ok"]))
    for o in outages:
        v = o["verify"]
        rows.append(
            _verify_row(
                f"{o['outage_seconds']:.0f}s outage ({o['mode']}), exit {o['pass_returncode']}, "
                f"{o['retries']} retries",
                v,
                o["ok"],
            )
        )
    if dup is not None:
        rows.append(_verify_row("2 concurrent + 1 late --full replay", dup["verify"], dup["ok"]))
    if service is not None:
        v = service["verify"]
        rows.append(
            _verify_row(
                f"`shipper run`, {service['outage_seconds']:.0f}s outage between passes, "
                + ("service survived" if service["service_alive_after_outage"] else "SERVICE DIED"),
                v,
                service["ok"],
            )
        )
    if shards is not None:
        v = shards["verify"]
        rows.append(
            _verify_row(
                f"2 concurrent shards, points written {shards['rounds'][0]['points_written']} "
                f"then {shards['rounds'][1]['points_written']}",
                v,
                shards["ok"],
            )
        )
    for h in hooks:
        v = h["verify"]
        label = f"webhook at {h['offered_events_per_s']:.0f} ev/s"
        if h["outage"] != "none":
            label += f", {h['outage_seconds']:.0f}s outage ({h['outage']})"
        label += f", {h['duplicate_copies']} batches twice, reordered"
        rows.append(_verify_row(label, v, h["ok"]))
    print(
        c.table(
            rows,
            ["fault", "expected", "stored", "lost", "duplicated", "other ids", "dead letters", "verdict"],
        )
    )
    if hooks:
        print()
        print(
            c.table(
                [
                    [
                        h["outage"],
                        h["offered_events_per_s"],
                        h["held_events_per_s"],
                        h["answers"],
                        h["ack_p99_ms_before"],
                        h["ack_p99_ms_after"],
                        h["slowest_answer_s"],
                        h["max_first_offer_to_ack_s"],
                        h["backlog_cleared_s_after_outage"],
                        f"{h['healthz_during_outage']['answered_200']}/{h['healthz_during_outage']['probes']}",
                        h["verify"]["run_statuses"],
                    ]
                    for h in hooks
                ],
                [
                    "outage",
                    "offered ev/s",
                    "acked ev/s",
                    "answers",
                    "p99 ms before",
                    "p99 ms after",
                    "slowest answer s",
                    "longest wait s",
                    "backlog cleared s",
                    "/healthz 200 in outage",
                    "run statuses",
                ],
            )
        )
    all_ok = kills is None or (kills["ok"] and kills["kills"] >= args.kills)
    all_ok = all_ok and all(o["ok"] for o in outages) and (dup is None or dup["ok"])
    all_ok = all_ok and (service is None or service["ok"])
    all_ok = all_ok and (shards is None or shards["ok"]) and all(h["ok"] for h in hooks)
    print(f"\n0 lost, 0 duplicated under all faults: {c.verdict(all_ok)}")
    c.save(
        "faults",
        {
            "machine": info,
            "shape": shape.__dict__,
            "points": gen.points,
            "kill": kills,
            "outages": outages,
            "duplicates": dup,
            "service": service,
            "webhook": hooks,
            "shards": shards,
            "ok": all_ok,
        },
        args,
    )


if __name__ == "__main__":
    main()
