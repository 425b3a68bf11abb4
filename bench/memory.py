"""Peak RSS of the shipper process during a 1,000,000-point backfill, in two shapes.

    .venv/bin/python bench/memory.py [--runs 50 --keys 4 --steps 5000 | --points N] [--long 1x2x500000]

wide  --runs x --keys x --steps (default 50 x 4 x 5,000 = 1M points: many short histories)
long  --long RUNSxKEYSxSTEPS (default 1 x 2 x 500,000 = 1M points: two long histories, as a long
      training run logging every step gives); `--long none` skips it

For each, the experiment is generated once (reused afterwards), then `shipper sync --full --json`
runs into fresh indices as a child process. Peak RSS is the kernel's high-water mark of that
process (ru_maxrss from os.wait4, i.e. VmHWM), cross-checked by polling /proc/<pid>/status VmRSS
every 0.1 s. Elasticsearch's and MLflow's memory are not counted.
"""

from __future__ import annotations

from typing import Any

import _common as c

TARGET_MB = 300.0


def measure(st: c.Stack, es: Any, label: str, shape: c.Shape) -> dict[str, Any]:
    gen = c.ensure_experiment(st.mlflow_uri, shape.name("bench-memory"), shape)
    c.reset_indices(es)
    c.setup(st)
    c.say(f"{label}: shipper sync --full of {gen.points:,} points")
    result = c.run_shipper(["sync", "--full", "--json"], c.shipper_env(st, gen.name), poll_rss=0.1)
    stored = c.count_metrics(es)
    written = (result.summary or {}).get("points_written")
    if stored != gen.points or written != gen.points:
        raise SystemExit(f"expected {gen.points} points; the pass wrote {written}, {stored} are stored")
    c.reset_indices(es)
    rep = result.report or {}
    # RSS once start-up (imports, clients) is done: the first sample after 5% of the run.
    settled = next((mb for t, mb in result.rss_samples if t >= 0.05 * result.wall_seconds), float("nan"))
    step = max(1, len(result.rss_samples) // 200)
    return {
        "label": label,
        "shape": shape.__dict__,
        "points": gen.points,
        "generation_seconds": gen.generated_seconds,
        "pass_wall_seconds": rep.get("pass_wall_seconds"),
        "process_wall_seconds": result.wall_seconds,
        "process_cpu_seconds": result.cpu_seconds,
        "maxrss_mb": result.maxrss_mb,
        "polled_peak_rss_mb": result.polled_peak_rss_mb,
        "peak_mb": max(result.maxrss_mb, result.polled_peak_rss_mb),
        "rss_after_startup_mb": settled,
        "stored": stored,
        "report": rep,
        "rss_samples_s_mb": result.rss_samples[::step],
    }


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--points", type=int, help="total points; sets --steps = points / (runs x keys)")
    p.add_argument("--long", default="1x2x500000", help="RUNSxKEYSxSTEPS of the long-history shape, or none")
    args = p.parse_args()
    if args.points:
        args.steps = max(1, args.points // (args.runs * args.keys))
    shapes = [("wide", c.Shape(args.runs, args.keys, args.steps))]
    if args.long.lower() != "none":
        runs, keys, steps = (int(x) for x in args.long.lower().split("x"))
        shapes.append(("long", c.Shape(runs, keys, steps)))

    st = c.stack(args)
    es = c.es_client(st.es_url)
    info = c.machine(st.es_url)
    results = [measure(st, es, label, shape) for label, shape in shapes]

    print(f"\nmemory: peak RSS of `shipper sync --full`; {info['cores']} cores, {info['memory_gb']} GB")
    rows = []
    for r in results:
        s = r["shape"]
        gen = "reused" if r["generation_seconds"] is None else f"{r['generation_seconds']:.0f} s"
        rows.append(
            [
                f"{r['label']}: {s['runs']} runs x {s['keys']} keys x {s['steps']:,} steps",
                r["points"],
                gen,
                round(r["pass_wall_seconds"], 1),
                round(r["points"] / r["pass_wall_seconds"]),
                round(r["rss_after_startup_mb"]),
                round(r["maxrss_mb"]),
                round(r["polled_peak_rss_mb"]),
                f"<= {TARGET_MB:.0f}",
                c.verdict(r["peak_mb"] <= TARGET_MB),
            ]
        )
    print(
        c.table(
            rows,
            [
                "shape",
                "points",
                "generation",
                "pass s",
                "points/s",
                "RSS after start-up MB",
                "peak RSS MB (VmHWM)",
                "peak MB (polled)",
                "target MB",
                "verdict",
            ],
        )
    )
    c.save("memory", {"machine": info, "results": results}, args)


if __name__ == "__main__":
    main()
