"""Backfill throughput, MLflow -> Elasticsearch, against four references in the same run.

    .venv/bin/python bench/backfill.py [--runs 20 --keys 5 --steps 2000 | --points N] [--repeat 3]

Each trial measures everything once, back to back; ratios are taken within a trial and the median
over trials is compared with the targets.

R         the raw `_bulk` ceiling: the very documents the shipper writes (made by its own transforms
          from the same MLflow data), serialised to NDJSON beforehand, sent one `_bulk` request of
          5,000 after another (the shipper's default batch) into fresh indices. No MLflow reads.
shipper   `shipper sync --full --json` as a subprocess into fresh indices (checkpoints deleted too).
          shipper/R and shipper/naive use the pass's own wall time (MLflow reads included, process
          start-up not); shipper/export-import compares whole processes, start-up included on both.
naive     a per-point exporter: read each key's history, then one `index` request per point;
          measured on a sample (--naive-sample points) and extrapolated as a rate.
export    mlflow-export-import's `export-experiment` of the same experiment to a temp dir, from a
          throwaway venv (--mei-venv, default /tmp/mei; `--install-mei` creates it with pip).
Breakdown rows: the shipper's transform + BulkWriter alone (no MLflow reads); MLflow reads through
MlflowClient (the shipper's read path); MLflow's read ceiling (REST get-history parsed with orjson).

Shipper CPU is the shipper process's own user+system time (os.wait4 on the child; getrusage inside
it for the pass alone), never Elasticsearch's or MLflow's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
import orjson

TARGET_R, TARGET_EXPORT, TARGET_NAIVE, TARGET_CPU = 0.7, 2.0, 10.0, 0.2


def prepare_documents(st: c.Stack, gen: c.Generated) -> tuple[list[bytes], list[tuple[Any, Any]], float]:
    """The shipper's documents for every point as NDJSON bodies of 5,000, the (run, point) pairs,
    and the time MLflow reads took through the MLflow client (the shipper's own read path)."""
    from shipper.sources.mlflow_tracking import MlflowSource
    from shipper.sources.records import Experiment
    from shipper.transforms.mlflow_docs import ModelLink, metric_point_action

    source = MlflowSource(st.mlflow_uri)
    experiment = Experiment(gen.experiment_id, gen.name)
    link = ModelLink()
    read_seconds = 0.0
    bodies: list[bytes] = []
    lines: list[bytes] = []
    pairs: list[tuple[Any, Any]] = []
    t = time.monotonic()
    runs = list(source.runs([gen.experiment_id]))
    read_seconds += time.monotonic() - t
    for run in runs:
        for key in sorted(run.latest_metrics):
            t = time.monotonic()
            history = source.metric_history(run.id, key)
            read_seconds += time.monotonic() - t
            for point in history:
                pairs.append((run, point))
                action = metric_point_action(run, experiment, point, link)
                meta = {action["_op_type"]: {"_index": action["_index"], "_id": action["_id"]}}
                lines.append(orjson.dumps(meta))
                lines.append(orjson.dumps(action["_source"]))
                if len(lines) == 10_000:
                    bodies.append(b"\n".join(lines) + b"\n")
                    lines = []
    if lines:
        bodies.append(b"\n".join(lines) + b"\n")
    return bodies, pairs, read_seconds


def raw_bulk(es: Any, bodies: list[bytes]) -> tuple[float, float]:
    """(wall, this process's CPU) for sending the pre-serialised bodies."""
    c.reset_indices(es)
    cpu0, started = time.process_time(), time.monotonic()
    for body in bodies:
        response = es.bulk(operations=body)
        if response["errors"]:
            bad = next(i for i in response["items"] if next(iter(i.values())).get("error"))
            raise SystemExit(f"raw bulk rejected a document: {bad}")
    return time.monotonic() - started, time.process_time() - cpu0


def write_path(es_url: str, gen: c.Generated, pairs: list[tuple[Any, Any]]) -> tuple[float, float]:
    """The shipper's write side alone, no MLflow reads: its transform and its BulkWriter, in batches
    of 5,000 as the engine flushes them. (wall, this process's CPU)."""
    from shipper.config import Settings
    from shipper.sink.client import build_client, build_writer
    from shipper.sources.records import Experiment
    from shipper.transforms.mlflow_docs import ModelLink, metric_point_action

    settings = Settings(elasticsearch_url=es_url)
    client = build_client(settings)
    c.reset_indices(client)
    writer = build_writer(client, settings)
    experiment, link = Experiment(gen.experiment_id, gen.name), ModelLink()
    cpu0, started = time.process_time(), time.monotonic()
    for start in range(0, len(pairs), 5000):
        result = writer.write(
            [metric_point_action(r, experiment, p, link) for r, p in pairs[start : start + 5000]]
        )
        if result.dead_lettered:
            raise SystemExit("the shipper's writer dead-lettered documents")
    return time.monotonic() - started, time.process_time() - cpu0


def mlflow_read_ceiling(st: c.Stack, gen: c.Generated, workers: int) -> tuple[int, float]:
    """MLflow's own limit: every history over the REST API (`metrics/get-history`), parsed with orjson
    instead of the MLflow client's protobuf JSON parser; `workers` requests in flight."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    runs = c.experiment_runs(st.mlflow_uri, gen.experiment_id)
    pairs = [(r.id, k) for r in runs for k in sorted(r.latest_metrics)]
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=workers))

    def one(pair: tuple[str, str]) -> int:
        resp = session.get(
            f"{st.mlflow_uri}/api/2.0/mlflow/metrics/get-history",
            params={"run_id": pair[0], "metric_key": pair[1]},
        )
        resp.raise_for_status()
        return len(orjson.loads(resp.content).get("metrics", []))

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        n = sum(pool.map(one, pairs))
    return n, time.monotonic() - started


def shipper_backfill(es: Any, st: c.Stack, gen: c.Generated) -> c.ChildResult:
    c.reset_indices(es)
    result = c.run_shipper(["sync", "--full", "--json"], c.shipper_env(st, gen.name))
    written = result.summary["points_written"] if result.summary else -1
    stored = c.count_metrics(es)
    if written != gen.points or stored != gen.points:
        raise SystemExit(f"shipper wrote {written} points, {stored} stored; expected {gen.points}")
    return result


def naive(es: Any, st: c.Stack, gen: c.Generated, sample: int) -> tuple[int, float]:
    """One `index` request per point (after reading each key's history), for `sample` points."""
    from shipper.sources.mlflow_tracking import MlflowSource
    from shipper.sources.records import Experiment
    from shipper.transforms.mlflow_docs import ModelLink, metric_point_action

    c.reset_indices(es)
    source = MlflowSource(st.mlflow_uri)
    experiment = Experiment(gen.experiment_id, gen.name)
    done = 0
    started = time.monotonic()
    for run in source.runs([gen.experiment_id]):
        for key in sorted(run.latest_metrics):
            for point in source.metric_history(run.id, key):
                action = metric_point_action(run, experiment, point, ModelLink())
                es.index(index=action["_index"], id=action["_id"], document=action["_source"])
                done += 1
                if done >= sample:
                    return done, time.monotonic() - started
    return done, time.monotonic() - started


def install_mei(venv: Path) -> str | None:
    """Create the throwaway venv; return why it failed, or None."""
    try:
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = str(venv / "bin" / "pip")
        r = subprocess.run([pip, "install", "mlflow-export-import"], capture_output=True, text=True)
        if r.returncode != 0:
            return f"pip install mlflow-export-import failed: {r.stderr[-500:]}"
        # Its 1.2.0 release imports `tabulate` without declaring it.
        subprocess.run([pip, "install", "tabulate"], capture_output=True, check=False)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot create {venv}: {exc}"
    return None


def export_import(venv: Path, st: c.Stack, gen: c.Generated) -> dict[str, Any]:
    exe = venv / "bin" / "export-experiment"
    if not exe.exists():
        return {"ok": False, "why": f"{exe} does not exist (run with --install-mei, or pip install it there)"}
    version = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('mlflow-export-import'))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    out = Path(tempfile.mkdtemp(prefix="bench-mei-"))
    env = dict(os.environ, MLFLOW_TRACKING_URI=st.mlflow_uri)
    try:
        started = time.monotonic()
        r = subprocess.run(
            [str(exe), "--experiment", gen.name, "--output-dir", str(out / "export")],
            env=env,
            cwd=out,
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - started
        if r.returncode != 0:
            return {"ok": False, "why": f"export-experiment exited {r.returncode}: {r.stderr[-800:]}"}
        exported = 0
        for run_json in (out / "export").rglob("run.json"):
            data = orjson.loads(run_json.read_bytes())
            metrics = (data.get("mlflow") or data).get("metrics") or {}
            exported += sum(len(v) for v in metrics.values() if isinstance(v, list))
        return {"ok": True, "version": version, "seconds": wall, "points_exported": exported}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def ab_pass(
    es: Any, st: c.Stack, gen: c.Generated, src: Path, chain: dict[str, list[int]], extra: dict[str, str]
) -> dict[str, Any]:
    """One `shipper sync --full` of the experiment by the shipper package in `src`, into fresh
    indices, with the CPU the MLflow server and Elasticsearch spent during the pass."""
    import json

    c.reset_indices(es)
    env = c.shipper_env(st, gen.name, BENCH_CHAIN_PIDS=json.dumps(chain), **extra)
    result = c.run_shipper(["sync", "--full", "--json"], env, poll_rss=0.2, src=src)
    stored = c.count_metrics(es)
    written = result.summary["points_written"] if result.summary else -1
    if written != gen.points or stored != gen.points:
        raise SystemExit(f"{src}: wrote {written} points, {stored} stored; expected {gen.points}")
    rep = result.report or {}
    per10k = 10_000 / gen.points
    chain_cpu = dict(rep.get("chain_cpu_seconds") or {})
    chain_cpu["shipper"] = rep["pass_cpu_seconds"]
    return {
        "rate": gen.points / rep["pass_wall_seconds"],
        "pass_wall_seconds": rep["pass_wall_seconds"],
        "core_s_per_10k": {k: v * per10k for k, v in chain_cpu.items()},
        "chain_core_s_per_10k": sum(chain_cpu.values()) * per10k,
        "process_cpu_seconds": result.cpu_seconds,
        "peak_rss_mb": result.maxrss_mb,
        "ru_maxrss_mb_inherited": result.ru_maxrss_mb,
        "requests": rep.get("requests"),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def ab_main(args: Any, st: c.Stack, es: Any, gen: c.Generated, info: dict[str, Any]) -> None:
    """--ab BASELINE: the baseline's shipper package against this one's, in pairs, the order
    alternating (A B, B A, ...), against one MLflow server with --mlflow-workers workers."""
    server = c.MlflowServer(args.state_dir, args.mlflow_workers) if args.mlflow_workers else None
    if server is not None:
        st = c.Stack(st.es_url, server.uri)
    chain = {"mlflow": server.pids() if server else [], "elasticsearch": c.es_pids(args.state_dir / "")}
    sources = {"A": Path(args.ab).resolve(), "B": c.SRC}
    extra = {"SHIPPER_MLFLOW_READS_IN_FLIGHT": str(args.reads_in_flight)} if args.reads_in_flight else {}
    pairs: list[dict[str, Any]] = []
    try:
        for n in range(args.repeat):
            pair: dict[str, Any] = {}
            for label in ("A", "B") if n % 2 == 0 else ("B", "A"):
                c.say(f"pair {n + 1}/{args.repeat}: {label} ({sources[label]})")
                pair[label] = ab_pass(es, st, gen, sources[label], chain, extra)
                got = pair[label]
                c.say(
                    f"  {got['rate']:,.0f} points/s, chain {got['chain_core_s_per_10k']:.3f} core-s/10k "
                    + ", ".join(f"{k} {v:.3f}" for k, v in got["core_s_per_10k"].items())
                    + f", peak {got['peak_rss_mb']:.0f} MB"
                )
            pair["rate_ratio"] = pair["B"]["rate"] / pair["A"]["rate"]
            pair["chain_cpu_ratio"] = pair["B"]["chain_core_s_per_10k"] / pair["A"]["chain_core_s_per_10k"]
            pairs.append(pair)
    finally:
        if server is not None:
            server.stop()
        c.reset_indices(es)

    def med(get: Any) -> float:
        return median([get(p) for p in pairs])

    groups = ["mlflow", "elasticsearch", "shipper"]
    rows = []
    for label in ("A", "B"):
        rows.append(
            [
                f"{label}: {sources[label]}",
                med(lambda p, label=label: p[label]["rate"]),
                *(med(lambda p, label=label, g=g: p[label]["core_s_per_10k"].get(g, 0.0)) for g in groups),
                med(lambda p, label=label: p[label]["chain_core_s_per_10k"]),
                med(lambda p, label=label: p[label]["peak_rss_mb"]),
            ]
        )
    workers = f"{args.mlflow_workers}-worker" if args.mlflow_workers else "the stack's 1-worker"
    print(f"\n{gen.points:,} points, {workers} MLflow server, {args.repeat} pairs, medians")
    print(
        c.table(
            rows,
            [
                "shipper",
                "points/s",
                "MLflow core-s/10k",
                "ES core-s/10k",
                "shipper core-s/10k",
                "chain core-s/10k",
                "peak MB",
            ],
        )
    )
    print(
        "\nB/A rate ratio per pair: "
        + ", ".join(f"{p['rate_ratio']:.2f}" for p in pairs)
        + f"; median {med(lambda p: p['rate_ratio']):.2f}. Chain CPU ratio B/A: median "
        + f"{med(lambda p: p['chain_cpu_ratio']):.2f}"
    )
    c.save(
        "backfill_ab",
        {
            "machine": info,
            "points": gen.points,
            "mlflow_workers": args.mlflow_workers or 1,
            "runtime_python": c.RUNTIME_PYTHON,
            "sources": {k: str(v) for k, v in sources.items()},
            "pairs": pairs,
            "median_rate_ratio": med(lambda p: p["rate_ratio"]),
            "median_chain_cpu_ratio": med(lambda p: p["chain_cpu_ratio"]),
        },
        args,
    )


def _proc_cpu(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def read_sweep(uri: str, pids: list[int], gen: c.Generated, bulk: bool, in_flight: int) -> dict[str, Any]:
    """Every history of the experiment read through MlflowSource (no writes), `in_flight` requests
    at a time: one get-history per (run, key), or get-history-bulk-interval per key for groups of
    runs as the engine makes them; the MLflow server's CPU meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from shipper.sources.mlflow_tracking import MlflowSource

    source = MlflowSource(uri)
    runs = list(source.runs([gen.experiment_id]))
    keys = sorted({k for r in runs for k in r.latest_metrics})
    if bulk:
        per = max(1, 25_000 // max(1, max(p.step + 1 for r in runs for p in r.latest_metrics.values())))
        jobs = [(k, [r.id for r in runs[i : i + per]]) for k in keys for i in range(0, len(runs), per)]

        def one(job: tuple[str, list[str]]) -> int:
            return sum(len(page) for pages in source.metric_histories(*job).values() for page in pages)
    else:
        jobs = [(k, [r.id]) for r in runs for k in sorted(r.latest_metrics)]

        def one(job: tuple[str, list[str]]) -> int:
            return len(source.metric_history(job[1][0], job[0]))

    cpu0, wall0 = _proc_cpu(pids), time.monotonic()
    with ThreadPoolExecutor(in_flight) as pool:
        points = sum(pool.map(one, jobs))
    wall, cpu = time.monotonic() - wall0, _proc_cpu(pids) - cpu0
    if points != gen.points:
        raise SystemExit(f"read {points} points, expected {gen.points}")
    return {
        "bulk": bulk,
        "in_flight": in_flight,
        "rate": points / wall,
        "mlflow_core_s_per_10k": cpu / points * 10_000,
        "requests": dict(source.requests),
    }


def reads_main(args: Any, st: c.Stack, gen: c.Generated, info: dict[str, Any]) -> None:
    """--reads: MLflow's read side alone, by endpoint, server workers and requests in flight."""
    results = []
    for workers in (1, 2):
        server = c.MlflowServer(args.state_dir, workers)
        try:
            for trial in range(args.repeat):
                for bulk in (False, True) if trial % 2 == 0 else (True, False):
                    for in_flight in (1, 2, 4):
                        got = read_sweep(server.uri, server.pids(), gen, bulk, in_flight)
                        got["workers"] = workers
                        results.append(got)
                        what = "bulk" if bulk else "get-history"
                        c.say(
                            f"  {workers} worker(s), {what}, {in_flight} in flight: {got['rate']:,.0f} "
                            f"points/s, MLflow {got['mlflow_core_s_per_10k']:.3f} core-s/10k"
                        )
        finally:
            server.stop()
    rows = []
    for workers in (1, 2):
        for bulk in (False, True):
            for in_flight in (1, 2, 4):
                same = [
                    r
                    for r in results
                    if (r["workers"], r["bulk"], r["in_flight"]) == (workers, bulk, in_flight)
                ]
                what = "bulk-interval" if bulk else "get-history"
                rows.append(
                    [
                        f"{workers} worker(s), {what}, {in_flight} in flight",
                        median([r["rate"] for r in same]),
                        median([r["mlflow_core_s_per_10k"] for r in same]),
                    ]
                )
    print(f"\n{gen.points:,} points read, {args.repeat} trials, medians")
    print(c.table(rows, ["read", "points/s", "MLflow core-s/10k"]))
    c.save("mlflow_reads", {"machine": info, "points": gen.points, "results": results}, args)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def trial(
    n: int, args: Any, es: Any, st: c.Stack, gen: c.Generated, bodies: list[bytes], pairs: list[Any]
) -> dict[str, Any]:
    """Every measurement once, back to back, so that each trial's ratios share the same conditions."""
    points = gen.points
    t: dict[str, Any] = {"load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    c.say(f"trial {n}/{args.repeat}: raw _bulk (R)")
    t["R_seconds"], t["R_client_cpu"] = raw_bulk(es, bodies)
    c.say(f"  R {points / t['R_seconds']:,.0f} points/s; the shipper's write path alone")
    t["write_path_seconds"], t["write_path_cpu"] = write_path(st.es_url, gen, pairs)
    c.say(f"  write path {points / t['write_path_seconds']:,.0f} points/s; shipper sync --full")
    s = shipper_backfill(es, st, gen)
    rep = s.report or {}
    t["shipper"] = {
        "process_wall": s.wall_seconds,
        "process_cpu": s.cpu_seconds,
        "maxrss_mb": s.maxrss_mb,
        **rep,
    }
    c.say(
        f"  shipper {points / rep['pass_wall_seconds']:,.0f} points/s; naive on {args.naive_sample:,} points"
    )
    t["naive_points"], t["naive_seconds"] = naive(es, st, gen, args.naive_sample)
    c.reset_indices(es)
    c.say(f"  naive {t['naive_points'] / t['naive_seconds']:,.0f} points/s; MLflow read ceiling")
    t["ceiling"] = {w: mlflow_read_ceiling(st, gen, w) for w in (1, 4)}
    if args.mei_status is None:
        c.say("  mlflow-export-import export-experiment")
        t["mei"] = export_import(args.mei_venv, st, gen)
    else:
        t["mei"] = args.mei_status
    r_rate = points / t["R_seconds"]
    s_rate = points / rep["pass_wall_seconds"]
    t["rates"] = {
        "R": r_rate,
        "shipper_pass": s_rate,
        "shipper_process": points / s.wall_seconds,
        "write_path": points / t["write_path_seconds"],
        "naive": t["naive_points"] / t["naive_seconds"],
        "mlflow_read_ceiling": max(n_ / sec for n_, sec in t["ceiling"].values()),
        "export_import": points / t["mei"]["seconds"] if t["mei"].get("ok") else None,
    }
    t["ratios"] = {
        "shipper/R": s_rate / r_rate,
        # Both whole processes, start-up included: export-experiment is timed as a command too.
        "shipper/export-import": (
            t["rates"]["shipper_process"] / t["rates"]["export_import"] if t["mei"].get("ok") else None
        ),
        "shipper/naive": s_rate / t["rates"]["naive"],
        "ceiling/R": t["rates"]["mlflow_read_ceiling"] / r_rate,
    }
    t["cpu_per_10k"] = {
        "process": s.cpu_seconds / points * 10_000,
        "pass": rep["pass_cpu_seconds"] / points * 10_000,
    }
    c.say(f"  ratios {', '.join(f'{k} {v:.2f}' for k, v in t['ratios'].items() if v is not None)}")
    return t


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--keys", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--points", type=int, help="total points; sets --steps = points / (runs x keys)")
    p.add_argument("--repeat", type=int, default=3, help="trials, each measuring everything once")
    p.add_argument("--naive-sample", type=int, default=5000)
    p.add_argument("--mei-venv", type=Path, default=Path("/tmp/mei"))
    p.add_argument("--install-mei", action="store_true", help="create --mei-venv with pip if it is missing")
    p.add_argument("--skip-mei", action="store_true")
    p.add_argument(
        "--ab",
        metavar="DIR",
        help="only the shipper: the shipper/ package in DIR (A, e.g. main exported with git archive) "
        "against this one (B), --repeat pairs in alternating order; rates, whole-chain CPU, peak RSS",
    )
    p.add_argument(
        "--mlflow-workers",
        type=int,
        default=0,
        help="with --ab: read from a `mlflow server --workers N` on the stack's store (0: the stack's)",
    )
    p.add_argument("--reads-in-flight", type=int, default=0, help="SHIPPER_MLFLOW_READS_IN_FLIGHT for B")
    p.add_argument(
        "--reads",
        action="store_true",
        help="only MLflow's read side: get-history vs get-history-bulk-interval, 1 and 2 server workers, "
        "1/2/4 requests in flight; points/s and the server's CPU",
    )
    args = p.parse_args()
    if args.points:
        args.steps = max(1, args.points // (args.runs * args.keys))
    shape = c.Shape(args.runs, args.keys, args.steps)

    st = c.stack(args)
    es = c.es_client(st.es_url)
    info = c.machine(st.es_url)
    gen = c.ensure_experiment(st.mlflow_uri, shape.name("bench-backfill"), shape)
    c.setup(st)
    points = gen.points
    if args.ab:
        ab_main(args, st, es, gen, info)
        return
    if args.reads:
        reads_main(args, st, gen, info)
        return

    args.mei_status = None
    if args.skip_mei:
        args.mei_status = {"ok": False, "why": "skipped (--skip-mei)"}
    elif args.install_mei and not (args.mei_venv / "bin" / "export-experiment").exists():
        why = install_mei(args.mei_venv)
        if why:
            args.mei_status = {"ok": False, "why": why}

    c.say("reading the experiment and building the shipper's documents for R")
    bodies, pairs, read_seconds = prepare_documents(st, gen)
    assert len(pairs) == points, (len(pairs), points)
    trials = [trial(n + 1, args, es, st, gen, bodies, pairs) for n in range(args.repeat)]
    c.reset_indices(es)

    def best(key: str) -> float:
        return max(t["rates"][key] or float("nan") for t in trials)

    def med(key: str) -> float:
        values = [t["ratios"][key] for t in trials if t["ratios"][key] is not None]
        return median(values) if values else float("nan")

    mei = trials[0]["mei"]
    nan = float("nan")
    fastest = min(trials, key=lambda t: t["shipper"]["pass_wall_seconds"])
    rfast = min(trials, key=lambda t: t["R_seconds"])
    wfast = min(trials, key=lambda t: t["write_path_seconds"])
    per10k = 10_000 / points
    print(
        f"\nbackfill: {points:,} points ({shape.runs} runs x {shape.keys} keys x {shape.steps} steps), "
        f"{args.repeat} trials; {info['cores']} cores, {info['memory_gb']} GB, "
        f"ES {info.get('elasticsearch')}, MLflow {info.get('mlflow')}"
    )
    rows = [
        ["R: raw _bulk, pre-serialised", rfast["R_seconds"], best("R"), rfast["R_client_cpu"] * per10k, ""],
        [
            "shipper sync --full (pass)",
            fastest["shipper"]["pass_wall_seconds"],
            best("shipper_pass"),
            fastest["shipper"]["pass_cpu_seconds"] * per10k,
            "",
        ],
        [
            "shipper sync --full (whole process)",
            fastest["shipper"]["process_wall"],
            best("shipper_process"),
            fastest["shipper"]["process_cpu"] * per10k,
            "start-up included",
        ],
        [
            f"naive per-point index ({args.naive_sample:,} sample)",
            nan,
            best("naive"),
            nan,
            "rate extrapolated",
        ],
        [
            "mlflow-export-import export-experiment",
            min(t["mei"].get("seconds", nan) for t in trials),
            best("export_import") if mei.get("ok") else nan,
            nan,
            f"version {mei.get('version')}" if mei.get("ok") else "NOT RUN: " + mei["why"][:120],
        ],
        [
            "breakdown: shipper transform + BulkWriter only",
            wfast["write_path_seconds"],
            best("write_path"),
            wfast["write_path_cpu"] * per10k,
            "no MLflow reads",
        ],
        [
            "breakdown: MLflow reads via MlflowClient",
            read_seconds,
            points / read_seconds,
            nan,
            "the shipper's read path, once",
        ],
        [
            "breakdown: MLflow read ceiling, REST + orjson",
            nan,
            best("mlflow_read_ceiling"),
            nan,
            "best of 1 and 4 requests in flight",
        ],
    ]
    print("best of the trials:")
    print(c.table(rows, ["what", "seconds", "points/s", "client core-s/10k", "note"]))
    print("\nper trial:")
    keys = ["shipper/R", "shipper/export-import", "shipper/naive", "ceiling/R"]
    print(
        c.table(
            [
                [f"trial {i + 1} (load {t['load_avg_at_start'][0]})"]
                + [t["ratios"][k] if t["ratios"][k] is not None else nan for k in keys]
                + [t["cpu_per_10k"]["pass"], t["cpu_per_10k"]["process"]]
                for i, t in enumerate(trials)
            ],
            ["trial", *keys, "CPU/10k pass", "CPU/10k process"],
        )
    )
    cpu_pass = median([t["cpu_per_10k"]["pass"] for t in trials])
    cpu_proc = median([t["cpu_per_10k"]["process"] for t in trials])
    print("\ntargets (median of the trials):")
    vrows = [
        ["shipper / R", med("shipper/R"), f">= {TARGET_R}", c.verdict(med("shipper/R") >= TARGET_R)],
        [
            "shipper / export-import",
            med("shipper/export-import"),
            f">= {TARGET_EXPORT}",
            c.verdict(None if not mei.get("ok") else med("shipper/export-import") >= TARGET_EXPORT),
        ],
        [
            "shipper / naive",
            med("shipper/naive"),
            f">= {TARGET_NAIVE}",
            c.verdict(med("shipper/naive") >= TARGET_NAIVE),
        ],
        [
            "shipper CPU, core-s / 10k points (pass)",
            cpu_pass,
            f"<= {TARGET_CPU}",
            c.verdict(cpu_pass <= TARGET_CPU),
        ],
        [
            "shipper CPU, core-s / 10k points (whole process)",
            cpu_proc,
            f"<= {TARGET_CPU}",
            c.verdict(cpu_proc <= TARGET_CPU),
        ],
    ]
    print(c.table(vrows, ["ratio", "measured", "target", "verdict"]))
    print(
        f"\nMLflow's own read ceiling is {med('ceiling/R'):.2f} x R here: no MLflow -> Elasticsearch "
        "exporter reading through the MLflow API can exceed that ratio on this machine, however it writes."
    )
    if not mei.get("ok"):
        print(f"mlflow-export-import: {mei['why']}")
    elif mei.get("points_exported") != points:
        print(f"note: export-import wrote {mei.get('points_exported')} metric points of {points}")
    c.save(
        "backfill",
        {
            "machine": info,
            "shape": shape.__dict__,
            "points": points,
            "generation": {"seconds": gen.generated_seconds, "points_per_second": gen.points_per_second},
            "mlflow_client_read_seconds": read_seconds,
            "trials": trials,
            "median_ratios": {k: med(k) for k in keys},
            "median_cpu_core_seconds_per_10k": {"pass": cpu_pass, "process": cpu_proc},
        },
        args,
    )


if __name__ == "__main__":
    main()
