"""No-op re-sync: 1,000 runs synced once, then passes in which nothing changed in MLflow.

    .venv/bin/python bench/noop_resync.py [--runs 1000 --keys 3 --steps 10] [--repeat 3]

A first `shipper sync --json` ships the generated experiment into fresh indices. Then `--repeat`
more passes are timed, each a fresh `shipper sync --json` process. For each: the pass's own wall time
(what `shipper run` pays every interval) and the whole process's; metric-history reads (from
`source.requests["get_metric_history"]`, and the summary's `history_reads`); writes, counted by
Elasticsearch itself (indexing + delete totals of every `mlops-*` index before and after, so a
checkpoint rewrite would count too) and by the summary.
"""

from __future__ import annotations

from typing import Any

import _common as c

TARGET_SECONDS = 2.0


def es_writes(es: Any) -> int:
    stats = es.indices.stats(index="mlops-*", metric="indexing", expand_wildcards="all")
    total = stats["_all"]["primaries"].get("indexing", {})
    return int(total.get("index_total", 0)) + int(total.get("delete_total", 0))


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--keys", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3, help="timed no-op passes")
    args = p.parse_args()
    shape = c.Shape(args.runs, args.keys, args.steps)

    st = c.stack(args)
    es = c.es_client(st.es_url)
    info = c.machine(st.es_url)
    gen = c.ensure_experiment(st.mlflow_uri, shape.name("bench-noop"), shape, workers=8)
    c.reset_indices(es)
    c.setup(st)
    env = c.shipper_env(st, gen.name)

    c.say(f"first pass: {gen.runs:,} runs, {gen.points:,} points")
    first = c.run_shipper(["sync", "--json"], env)
    assert first.summary and first.summary["runs_written"] == gen.runs, first.summary
    stored = c.count_metrics(es)
    assert stored == gen.points, (stored, gen.points)

    passes = []
    for n in range(args.repeat):
        before = es_writes(es)
        result = c.run_shipper(["sync", "--json"], env)
        es.indices.refresh(index="mlops-*", expand_wildcards="all")
        after = es_writes(es)
        rep = result.report or {}
        summary = result.summary or {}
        passes.append(
            {
                "pass_seconds": rep.get("pass_wall_seconds"),
                "process_seconds": result.wall_seconds,
                "pass_cpu_seconds": rep.get("pass_cpu_seconds"),
                "history_requests": rep.get("requests", {}).get("get_metric_history", 0),
                "history_reads": summary.get("history_reads"),
                "summary_written": summary.get("writes", {}).get("written"),
                "es_writes": after - before,
                "runs_unchanged": summary.get("runs_unchanged"),
                "requests": rep.get("requests", {}),
            }
        )
        c.say(f"no-op pass {n + 1}: {passes[-1]['pass_seconds']:.2f}s, {passes[-1]['es_writes']} writes")

    best = min(passes, key=lambda x: x["pass_seconds"])
    worst_reads = max(x["history_requests"] for x in passes)
    worst_writes = max(max(x["es_writes"], x["summary_written"] or 0) for x in passes)
    print(
        f"\nno-op re-sync: {gen.runs:,} runs ({shape.keys} keys x {shape.steps} steps each), "
        f"{args.repeat} passes after the first; {info['cores']} cores"
    )
    rows = [
        [
            f"pass {i + 1}",
            x["pass_seconds"],
            x["process_seconds"],
            x["pass_cpu_seconds"],
            x["history_requests"],
            x["history_reads"],
            x["es_writes"],
            x["summary_written"],
            x["runs_unchanged"],
        ]
        for i, x in enumerate(passes)
    ]
    rows.insert(
        0,
        [
            "first pass (ships all)",
            (first.report or {}).get("pass_wall_seconds"),
            first.wall_seconds,
            (first.report or {}).get("pass_cpu_seconds"),
            (first.report or {}).get("requests", {}).get("get_metric_history", 0),
            first.summary.get("history_reads"),
            float("nan"),
            first.summary.get("writes", {}).get("written"),
            first.summary.get("runs_unchanged"),
        ],
    )
    print(
        c.table(
            rows,
            [
                "pass",
                "pass s",
                "process s",
                "pass CPU s",
                "history requests",
                "history_reads",
                "ES writes",
                "summary writes",
                "runs unchanged",
            ],
        )
    )
    print(f"MLflow requests of a no-op pass: {best['requests']}")
    print()
    print(
        c.table(
            [
                [
                    "no-op pass wall (best)",
                    best["pass_seconds"],
                    f"<= {TARGET_SECONDS}",
                    c.verdict(best["pass_seconds"] <= TARGET_SECONDS),
                ],
                [
                    "no-op process wall incl. start-up (best)",
                    min(x["process_seconds"] for x in passes),
                    f"<= {TARGET_SECONDS}",
                    c.verdict(min(x["process_seconds"] for x in passes) <= TARGET_SECONDS),
                ],
                ["metric-history reads (max)", worst_reads, "0", c.verdict(worst_reads == 0)],
                ["writes (max)", worst_writes, "0", c.verdict(worst_writes == 0)],
            ],
            ["what", "measured", "target", "verdict"],
        )
    )
    c.save(
        "noop_resync",
        {
            "machine": info,
            "shape": shape.__dict__,
            "points": gen.points,
            "generation": {"seconds": gen.generated_seconds},
            "first_pass": {"process_wall": first.wall_seconds, **(first.report or {})},
            "noop_passes": passes,
        },
        args,
    )


if __name__ == "__main__":
    main()
