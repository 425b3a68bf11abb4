"""A run too long to ship between two crashes: a backfill of one 1M-point run, `shipper sync`
SIGKILLed every --every seconds until a pass completes. It must complete, exactly.

    .venv/bin/python bench/giant_kills.py [--keys 2 --steps 500000] [--every 20] [--max-passes 60]

Every killed pass leaves its progress record (`progress:<run>` in mlops-shipper-state, written
after the data it covers), and the next pass goes on after it. Runs against its OWN throwaway
Elasticsearch (<state-dir>/giant-es, stopped and deleted at the end unless --keep-es); MLflow is the
benchmarks' private one, the run the same as bench/memory.py's long shape (1 run x 2 keys x 500,000
steps). Reported: kills survived, passes, the final count against MLflow's points, duplicates (count
over distinct expected ids), ids missing and unexpected, and points shipped per pass.
"""

from __future__ import annotations

import time
from typing import Any

import _common as c
from faults import verify


def progress_points(es: Any) -> int:
    """Points the stored progress records say are shipped (0 when none)."""
    es.indices.refresh(index="mlops-shipper-state", ignore_unavailable=True)
    found = es.search(
        index="mlops-shipper-state", query={"term": {"kind": "progress"}}, size=100, ignore_unavailable=True
    )
    total = 0
    for hit in found["hits"]["hits"]:
        state = hit["_source"]["state"]
        total += sum(k["count"] for k in state["done"].values())
        total += sum(k["count"] for k in state["partial"].values())
    return total


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--keys", type=int, default=2)
    p.add_argument("--steps", type=int, default=500_000)
    p.add_argument("--every", type=float, default=20.0, help="seconds between a pass's start and its kill")
    p.add_argument("--max-passes", type=int, default=60)
    p.add_argument("--keep-es", action="store_true", help="leave the throwaway Elasticsearch running")
    args = p.parse_args()
    shape = c.Shape(1, args.keys, args.steps)

    if not args.dev_install:
        c.use_runtime_install(args.runtime_venv or args.state_dir / "runtime-venv")
    mlflow_uri = args.mlflow_uri or c.stack_up(args.state_dir / "stack", only="mlflow")["MLFLOW_TRACKING_URI"]
    es_state = args.state_dir / "giant-es"
    es_url = args.es_url or c.stack_up(es_state, only="es")["ES_URL"]
    st = c.Stack(es_url, mlflow_uri)
    es = c.es_client(es_url)
    info = c.machine(es_url)
    passes: list[dict[str, Any]] = []
    try:
        gen = c.ensure_experiment(mlflow_uri, shape.name("bench-memory"), shape)
        c.say("computing every expected _id from MLflow")
        expected = c.expected_ids(mlflow_uri, gen.experiment_id)
        assert len(expected) == gen.points, (len(expected), gen.points)
        c.reset_indices(es)
        c.setup(st)
        env = c.shipper_env(st, gen.name)
        started = time.monotonic()
        completed = False
        while len(passes) < args.max_passes and not completed:
            child = c.Child(["sync", "--json"], env)
            deadline = time.monotonic() + args.every
            while time.monotonic() < deadline and child.alive():
                time.sleep(0.05)
            killed = child.alive()
            if killed:
                child.kill()
            result = child.wait(killed=killed)
            if not killed and result.returncode != 0:
                raise SystemExit(f"sync failed between kills: {result.stderr_tail}")
            completed = not killed
            stored = c.count_metrics(es)
            record = progress_points(es)
            passes.append(
                {
                    "pass": len(passes) + 1,
                    "killed": killed,
                    "seconds": round(result.wall_seconds, 1),
                    "stored_points": stored,
                    "progress_record_points": record,
                    "points_written": (result.summary or {}).get("points_written"),
                }
            )
            c.say(
                f"  pass {len(passes)}: {'SIGKILL' if killed else 'completed'}"
                f" after {result.wall_seconds:.1f}s; {stored:,} points stored, progress record at {record:,}"
            )
        elapsed = time.monotonic() - started
        check = verify(es, expected, gen.runs)
    finally:
        if not args.keep_es and not args.es_url:
            c.stack_down(es_state, only="es", purge=True)

    kills = sum(p["killed"] for p in passes)
    ok = completed and check["ok"]
    print(
        f"\ngiant run: {gen.points:,} points in 1 run ({shape.keys} keys x {shape.steps:,} steps); "
        f"`shipper sync` SIGKILLed every {args.every:.0f}s; own Elasticsearch; {elapsed:.0f}s in all"
    )
    print(
        c.table(
            [
                [
                    p["pass"],
                    "SIGKILL" if p["killed"] else "completed",
                    p["seconds"],
                    p["stored_points"],
                    p["progress_record_points"],
                ]
                for p in passes
            ],
            ["pass", "end", "seconds", "points stored", "progress record"],
        )
    )
    print(
        f"\nkills survived {kills}, passes {len(passes)},"
        f" final count {check['count']:,} of {check['expected']:,}, duplicated {check['duplicated']},"
        f" lost {check['lost']}, other ids {check['unexpected_ids']}:"
        f" {c.verdict(ok)}"
    )
    c.save(
        "giant_kills",
        {
            "machine": info,
            "shape": shape.__dict__,
            "every_seconds": args.every,
            "kills": kills,
            "passes": passes,
            "completed": completed,
            "seconds": round(elapsed, 1),
            "verify": check,
            "ok": ok,
        },
        args,
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
