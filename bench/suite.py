"""Every benchmark in one run, on one machine, ending with one JSON line of the headline figures.

    bench/run [--quick] [--no-postgres] [--pg-workers 4]

It starts the private stack once (`scripts/stack`, sqlite MLflow with one worker; see bench/README.md),
then runs the existing scripts against it as child processes, each writing its JSON into a temporary
directory that this script reads back (so a suite run never overwrites the committed
`bench/results/<name>.json` of a full single-script run):

  backfill.py          shipper vs raw `_bulk`, mlflow-export-import, a naive exporter; CPU per 10k
  (this script)        MLflow's read ceiling: every history of the same experiment over the REST API,
                       1, 2, 4 and 8 readers in flight, the best taken; measured right after the backfill
  postgres             the same backfill and ceiling against `mlflow server` on a real PostgreSQL
                       (Debian's server binaries, a throwaway cluster started here) with --pg-workers
  noop_resync.py       a pass in which nothing changed
  startup.py           a no-op `shipper sync` process, start to exit
  webhook.py           `shipper serve`: events/s and p99 acknowledgement
  memory.py            peak RSS of a 1,000,000-point backfill (--quick: the backfill's own peak RSS)
  scoring_pipeline.py  the grok pipeline's ingest rate over the rate without it (7.10.2 ingest node)

ratio_to_mlflow_ceiling is the shipper's backfill points/s (its pass, start-up excluded) over the
fastest the same MLflow server served the same histories in the same run; with PostgreSQL measured
too, the JSON line carries the lower of the two ratios and the table shows both.
Anything that cannot run prints why, and its JSON value is null.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _common as c

KEYS = [
    "ratio_to_mlflow_ceiling",
    "ratio_to_raw_bulk",
    "vs_export_import",
    "vs_naive",
    "cpu_s_per_10k",
    "noop_resync_s",
    "process_start_s",
    "webhook_eps",
    "webhook_p99_ms",
    "peak_rss_mb",
    "grok_ratio",
]

# (quick, full) sizes of every part
SIZES = {
    "backfill": (
        {"runs": 10, "keys": 5, "steps": 1000, "naive": 2000},
        {"runs": 20, "keys": 5, "steps": 2000, "naive": 5000},
    ),
    "noop": ({"runs": 200}, {"runs": 1000}),
    "startup": ({"repeat": 2}, {"repeat": 5}),
    "webhook": ({"events": 5_000}, {"events": 50_000}),
    "grok": ({"lines": 5_000, "trials": 1}, {"lines": 50_000, "trials": 3}),
    "ceiling_readers": ([1, 2, 4, 8], [1, 2, 4, 8]),
}


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-suite-"))
        self.results_dir = self.tmp / "results"
        self.results_dir.mkdir()
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        self.data: dict[str, Any] = {}

    def size(self, part: str) -> Any:
        return SIZES[part][0 if self.quick else 1]

    def child(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, timeout: float = 1800
    ) -> bool:
        """Run a bench script; its stdout and stderr go to ours. False (and a note) if it failed."""
        env = dict(env or os.environ, BENCH_RESULTS_DIR=str(self.results_dir))
        if self.args.shipper_src and name not in ("webhook", "scoring_pipeline"):
            # (those two take no such option; PYTHONPATH, set by --shipper-src, reaches them too)
            argv = [*argv, "--shipper-src", str(self.args.shipper_src)]
        c.say(f"{name}: {' '.join(argv)}")
        started = time.monotonic()
        try:
            r = subprocess.run([c.PYTHON, *argv], cwd=c.REPO, env=env, timeout=timeout, check=False)
            ok = r.returncode == 0
            why = f"exit {r.returncode}"
        except subprocess.TimeoutExpired:
            ok, why = False, f"timed out after {timeout:.0f} s"
        self.timings[name] = time.monotonic() - started
        if not ok:
            self.notes.append(f"{name}: {' '.join(argv)} failed ({why}); its figures are null")
        return ok

    def result(self, name: str) -> dict[str, Any] | None:
        path = self.results_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    # -- parts -------------------------------------------------------------------------------------

    def backfill(
        self, st: c.Stack, label: str, extra: list[str], db: tuple[str, str] | None = None
    ) -> dict[str, Any] | None:
        s = self.size("backfill")
        argv = [
            "bench/backfill.py",
            "--es-url",
            st.es_url,
            "--mlflow-uri",
            st.mlflow_uri,
            "--runs",
            str(s["runs"]),
            "--keys",
            str(s["keys"]),
            "--steps",
            str(s["steps"]),
            "--repeat",
            "1" if self.quick else "3",
            "--naive-sample",
            str(s["naive"]),
            *extra,
        ]
        if not self.child(f"backfill ({label})", argv):
            return None
        data = self.result("backfill")
        (self.results_dir / "backfill.json").rename(self.results_dir / f"backfill-{label}.json")
        if data is None:
            return None
        shape = c.Shape(s["runs"], s["keys"], s["steps"])
        data["ceiling_readers"] = self.ceiling(st.mlflow_uri, shape.name("bench-backfill"))
        if db is not None:
            data["direct_db"] = self.direct_db(
                st.mlflow_uri, shape.name("bench-backfill"), db, data["points"]
            )
        return data

    def ceiling(self, mlflow_uri: str, experiment: str) -> dict[int, float]:
        """points/s of every history of `experiment` over REST, for each number of readers in flight."""
        import orjson
        import requests
        from mlflow import MlflowClient

        exp = MlflowClient(mlflow_uri).get_experiment_by_name(experiment)
        runs = c.experiment_runs(mlflow_uri, exp.experiment_id)
        pairs = [(r.id, k) for r in runs for k in sorted(r.latest_metrics)]
        rates: dict[int, float] = {}
        for readers in self.size("ceiling_readers"):
            http = requests.Session()
            http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=readers))

            def one(pair: tuple[str, str], http: requests.Session = http) -> int:
                resp = http.get(
                    f"{mlflow_uri}/api/2.0/mlflow/metrics/get-history",
                    params={"run_id": pair[0], "metric_key": pair[1]},
                    timeout=300,
                )
                resp.raise_for_status()
                return len(orjson.loads(resp.content).get("metrics", []))

            started = time.monotonic()
            with ThreadPoolExecutor(readers) as pool:
                n = sum(pool.map(one, pairs))
            rates[readers] = n / (time.monotonic() - started)
            http.close()
            c.say(f"  MLflow read ceiling, {readers} reader(s): {rates[readers]:,.0f} points/s")
        return rates

    def direct_db(self, mlflow_uri: str, experiment: str, db: tuple[str, str], points: int) -> dict[str, Any]:
        """Every point of the experiment read straight from MLflow's `metrics` table (one query per
        run), bypassing the server: would a reader coupled to MLflow's schema beat the REST ceiling?"""
        import sqlite3

        from mlflow import MlflowClient

        exp = MlflowClient(mlflow_uri).get_experiment_by_name(experiment)
        run_ids = [r.id for r in c.experiment_runs(mlflow_uri, exp.experiment_id)]
        kind, target = db
        if kind == "sqlite":
            conn: Any = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
            mark = "?"
        else:
            import psycopg2

            conn = psycopg2.connect(target)
            mark = "%s"
        query = f"SELECT key, value, timestamp, step FROM metrics WHERE run_uuid = {mark}"
        started = time.monotonic()
        n = 0
        cur = conn.cursor()
        for run_id in run_ids:
            cur.execute(query, (run_id,))
            n += len(cur.fetchall())
        seconds = time.monotonic() - started
        conn.close()
        c.say(f"  MLflow's {kind} tables read directly: {n / seconds:,.0f} points/s ({n:,} of {points:,})")
        return {"kind": kind, "points": n, "exact": n == points, "points_per_second": n / seconds}

    def postgres(self, es_url: str) -> tuple[dict[str, Any] | None, str | None]:
        """The backfill against MLflow on PostgreSQL with several workers: (backfill data, why not)."""
        import _postgres as pg

        try:
            server = pg.MlflowOnPostgres(self.args.state_dir / "postgres", workers=self.args.pg_workers)
        except pg.Unavailable as exc:
            return None, str(exc)
        try:
            server.start()
        except (pg.Unavailable, OSError, subprocess.SubprocessError) as exc:
            server.stop()
            return None, str(exc)
        try:
            self.data["postgres_server"] = server.describe()
            st = c.Stack(es_url, server.url)
            db = ("postgres", server.dsn)
            return self.backfill(st, f"postgres-{self.args.pg_workers}w", ["--skip-mei"], db), None
        finally:
            server.stop()

    # -- the run ------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        urls = c.stack_up(self.args.state_dir / "stack", None)
        st = c.Stack(urls["ES_URL"], urls["MLFLOW_TRACKING_URI"])
        self.data["machine"] = c.machine(st.es_url)
        common = ["--es-url", st.es_url, "--mlflow-uri", st.mlflow_uri]

        mei = ["--install-mei"] if not self.args.skip_mei else ["--skip-mei"]
        sqlite_db = ("sqlite", str(self.args.state_dir / "stack" / "mlflow" / "mlflow.db"))
        sqlite = self.backfill(st, "sqlite-1w", mei, sqlite_db)
        pgdata, pg_why = (
            (None, "skipped (--no-postgres)") if self.args.no_postgres else self.postgres(st.es_url)
        )
        if pg_why:
            self.notes.append(f"MLflow on PostgreSQL not measured: {pg_why}")

        noop = None
        if self.child(
            "noop_resync",
            ["bench/noop_resync.py", *common, "--runs", str(self.size("noop")["runs"]), "--repeat", "3"],
        ):
            noop = self.result("noop_resync")
        startup = None
        if self.child(
            "startup",
            [
                "bench/startup.py",
                *common,
                "--repeat",
                str(self.size("startup")["repeat"]),
                "--unreachable-repeat",
                "0",
            ],
        ):
            startup = self.result("startup")
        webhook = None
        hook_json = self.results_dir / "webhook.json"
        if self.child(
            "webhook",
            ["bench/webhook.py", "--events", str(self.size("webhook")["events"]), "--json", str(hook_json)],
            env=dict(os.environ, ES_URL=st.es_url),
        ):
            webhook = json.loads(hook_json.read_text())
        memory = None
        if not self.quick and self.child(
            "memory", ["bench/memory.py", *common, "--points", "1000000", "--long", "none"]
        ):
            memory = self.result("memory")
        grok = self.grok()

        figures = self.figures(sqlite, pgdata, noop, startup, webhook, memory, grok)
        self.timings["total"] = time.monotonic() - started
        return figures

    def grok(self) -> dict[str, Any] | None:
        try:
            urls = c.stack_up(self.args.state_dir / "stack", "ingest")
        except subprocess.CalledProcessError as exc:
            self.notes.append(
                f"grok_ratio not measured: `scripts/stack up --only ingest` failed ({exc.returncode})"
            )
            return None
        out = self.results_dir / "scoring_pipeline.json"
        g = self.size("grok")
        ok = self.child(
            "scoring_pipeline",
            [
                "bench/scoring_pipeline.py",
                "--es-ingest-url",
                urls["ES_INGEST_URL"],
                "--lines",
                str(g["lines"]),
                "--trials",
                str(g["trials"]),
                "--out",
                str(out),
            ],
        )
        if not self.args.keep_ingest:
            c.stack_down(self.args.state_dir / "stack", "ingest")  # 7.10.2's JVM: memory others need
        return json.loads(out.read_text()) if ok and out.exists() else None

    # -- figures -----------------------------------------------------------------------------------

    def figures(
        self, sqlite: Any, pgdata: Any, noop: Any, startup: Any, webhook: Any, memory: Any, grok: Any
    ) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(KEYS)
        rows: list[list[Any]] = []
        nan = float("nan")

        def shipper_rate(d: dict[str, Any]) -> float:
            return max(t["rates"]["shipper_pass"] for t in d["trials"])

        def ceiling_rate(d: dict[str, Any]) -> tuple[float, str]:
            own = d["ceiling_readers"]
            best_n = max(own, key=lambda n: own[n])
            theirs = max(t["rates"]["mlflow_read_ceiling"] for t in d["trials"])
            if theirs > own[best_n]:
                return theirs, "backfill.py's 1/4 readers"
            return own[best_n], f"{best_n} readers"

        ratios = []
        for label, d in (
            ("sqlite, 1 worker", sqlite),
            (f"PostgreSQL, {self.args.pg_workers} workers", pgdata),
        ):
            if d is None:
                rows.append([f"MLflow read ceiling ({label})", nan, nan, "not measured"])
                continue
            ceiling, how = ceiling_rate(d)
            rate = shipper_rate(d)
            ratios.append(rate / ceiling)
            readers = ", ".join(f"{n}: {v:,.0f}" for n, v in d["ceiling_readers"].items())
            rows.append(
                [f"MLflow read ceiling ({label})", ceiling, nan, f"best: {how}; per readers {readers}"]
            )
            rows.append(
                [f"shipper backfill ({label})", rate, rate / ceiling, f"{d['points']:,} points, pass wall"]
            )
        if ratios:
            out["ratio_to_mlflow_ceiling"] = round(min(ratios), 3)
        if sqlite is not None:
            med = sqlite["median_ratios"]
            out["ratio_to_raw_bulk"] = _r(med.get("shipper/R"))
            out["vs_export_import"] = _r(med.get("shipper/export-import"))
            out["vs_naive"] = _r(med.get("shipper/naive"))
            out["cpu_s_per_10k"] = _r(sqlite["median_cpu_core_seconds_per_10k"]["pass"])
            best = max(sqlite["trials"], key=lambda t: t["rates"]["shipper_pass"])
            rows.append(
                ["raw _bulk R (sqlite run)", best["rates"]["R"], out["ratio_to_raw_bulk"], "shipper / R"]
            )
            mei = best.get("mei") or {}
            rows.append(
                [
                    "mlflow-export-import",
                    best["rates"].get("export_import") or nan,
                    out["vs_export_import"],
                    "whole processes" if mei.get("ok") else f"not run: {str(mei.get('why'))[:80]}",
                ]
            )
            rows.append(["naive per-point exporter", best["rates"]["naive"], out["vs_naive"], "extrapolated"])
            rows.append(
                [
                    "shipper CPU, core-s / 10k points",
                    out["cpu_s_per_10k"],
                    nan,
                    f"pass; whole process {sqlite['median_cpu_core_seconds_per_10k']['process']:.3f}",
                ]
            )
        if noop is not None:
            best_noop = min(noop["noop_passes"], key=lambda p: p["pass_seconds"])
            out["noop_resync_s"] = _r(best_noop["pass_seconds"])
            rows.append(
                [
                    f"no-op re-sync, {noop['shape']['runs']:,} runs (s)",
                    out["noop_resync_s"],
                    nan,
                    f"pass; process {best_noop['process_seconds']:.2f} s; history reads "
                    f"{best_noop['history_requests']}, ES writes {best_noop['es_writes']}",
                ]
            )
        if startup is not None:
            out["process_start_s"] = _r(startup["results"]["sync (no-op)"]["wall"]["median"])
            rows.append(
                ["no-op `shipper sync` process (s)", out["process_start_s"], nan, "median, start to exit"]
            )
        if webhook is not None:
            out["webhook_eps"] = webhook["events_per_second"]
            out["webhook_p99_ms"] = webhook["ack_ms_p99"]
            rows.append(
                [
                    "webhook events/s",
                    out["webhook_eps"],
                    nan,
                    f"{webhook['events']:,} events, batches of {webhook['batch']}",
                ]
            )
            rows.append(["webhook p99 acknowledgement (ms)", out["webhook_p99_ms"], nan, ""])
        if memory is not None:
            m = memory["results"][0]
            out["peak_rss_mb"] = round(m["peak_mb"], 1)
            rows.append(["peak RSS (MB)", out["peak_rss_mb"], nan, f"{m['points']:,}-point backfill"])
        elif sqlite is not None:
            peak = max(t["shipper"]["maxrss_mb"] for t in sqlite["trials"])
            out["peak_rss_mb"] = round(peak, 1)
            rows.append(
                [
                    "peak RSS (MB)",
                    out["peak_rss_mb"],
                    nan,
                    f"--quick: the {sqlite['points']:,}-point backfill, not 1M",
                ]
            )
        if grok is not None:
            out["grok_ratio"] = grok["ratio_median"]
            rows.append(
                [
                    "grok pipeline / no pipeline",
                    out["grok_ratio"],
                    nan,
                    f"{grok['lines_per_trial']:,} lines x {len(grok['ratio_per_trial'])} trial(s), "
                    f"failures {grok['failures_on_valid_lines']}",
                ]
            )
        self.rows = rows
        self.data.update(
            {
                "backfill_sqlite": sqlite,
                "backfill_postgres": pgdata,
                "noop": noop,
                "startup": startup,
                "webhook": webhook,
                "memory": memory,
                "grok": grok,
            }
        )
        return out


def _r(value: Any) -> Any:
    return None if value is None or value != value else round(float(value), 3)


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--quick", action="store_true", help="small sizes, one trial; under 10 minutes")
    p.add_argument("--no-postgres", action="store_true", help="skip MLflow on PostgreSQL")
    p.add_argument(
        "--pg-workers", type=int, default=4, help="`mlflow server --workers` on PostgreSQL (default 4)"
    )
    p.add_argument("--skip-mei", action="store_true", help="do not run mlflow-export-import")
    p.add_argument(
        "--keep-ingest", action="store_true", help="leave the 7.10.2 ingest node running afterwards"
    )
    args = p.parse_args()
    if args.es_url or args.mlflow_uri:
        p.error("bench/run starts its own private stack; --es-url/--mlflow-uri are for the single scripts")
    suite = Suite(args)
    try:
        figures = suite.run()
    finally:
        data = dict(suite.data)
    print(
        f"\nbench/run{' --quick' if args.quick else ''}: {data['machine']['cores']} cores, load at start "
        f"{data['machine']['load_avg_at_start']}, took {suite.timings['total']:.0f} s"
    )
    print(c.table(suite.rows, ["what", "points/s or value", "ratio", "note"]))
    for note in suite.notes:
        print(f"note: {note}")
    print("seconds per part: " + ", ".join(f"{k} {v:.0f}" for k, v in suite.timings.items()))
    c.save(
        "suite-quick" if args.quick else "suite",
        {**data, "figures": figures, "notes": suite.notes, "seconds": suite.timings},
        args,
    )
    shutil.rmtree(suite.tmp, ignore_errors=True)
    print(json.dumps(figures, sort_keys=False))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
