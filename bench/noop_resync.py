"""No-op re-sync: 1,000 runs synced once, then passes in which nothing changed in MLflow.

    .venv/bin/python bench/noop_resync.py [--runs 1000 --keys 3 --steps 10] [--repeat 3]
        [--evaluated N]

A first `shipper sync --json` ships the generated experiment into fresh indices. Then `--repeat`
more passes are timed, each a fresh `shipper sync --json` process. For each: the pass's own wall time
(what `shipper run` pays every interval) and the whole process's; metric-history reads (from
`source.requests["get_metric_history"]`, and the summary's `history_reads`); writes, counted by
Elasticsearch itself (indexing + delete totals of every `mlops-*` index before and after, so a
checkpoint rewrite would count too) and by the summary.

`--evaluated N` adds MLflow 3's evaluation context to the first N runs (once; the experiment is
tagged): two dataset inputs, a logged model evaluated on both datasets (2 keys x 2 datasets,
logged against the model and the dataset) and a registered version made from that logged model.
This measures what reading logged-model metrics and run inputs costs a no-op pass; results go to
`noop_resync_evaluated.json`.
"""

from __future__ import annotations

from typing import Any

import _common as c

TARGET_SECONDS = 2.0
EVALUATED_TAG = "bench.evaluated"
EVAL_KEYS = 2
EVAL_DATASETS = ("eval-a", "eval-b")


def ensure_evaluations(mlflow_uri: str, experiment_id: str, tag: str, n: int, workers: int = 8) -> int:
    """The evaluation context on the first `n` runs of the experiment (see the module docstring);
    returns how many metric points it adds to run histories (as many go to logged models)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag

    client = MlflowClient(mlflow_uri)
    added = n * EVAL_KEYS * len(EVAL_DATASETS)
    if client.get_experiment(experiment_id).tags.get(EVALUATED_TAG) == str(n):
        return added
    runs = sorted(c.experiment_runs(mlflow_uri, experiment_id), key=lambda r: r.name)[:n]
    digests = {name: f"{i:08x}" for i, name in enumerate(EVAL_DATASETS, start=1)}
    c.say(f"adding evaluations to {len(runs)} runs: inputs, logged models, {added:,} points each way")

    def one(run: Any) -> str:
        rid, start = run.id, run.start_time or 0
        client.log_inputs(
            rid,
            datasets=[
                DatasetInput(
                    Dataset(name, digests[name], "code", "{}"), [InputTag("mlflow.data.context", "eval")]
                )
                for name in EVAL_DATASETS
            ],
        )
        model_id = client.create_logged_model(experiment_id, name="clf", source_run_id=rid).model_id
        for k in range(EVAL_KEYS):
            for j, name in enumerate(EVAL_DATASETS):
                client.log_metric(
                    rid,
                    f"{tag}/eval_{k}",
                    0.5 + 0.01 * k + 0.001 * j,
                    timestamp=start + 100_000 + k * 10 + j,
                    step=0,
                    model_id=model_id,
                    dataset_name=name,
                    dataset_digest=digests[name],
                )
        return model_id

    if client.get_experiment(experiment_id).tags.get(EVALUATED_TAG + ".logged") != str(n):
        # The first alone: MLflow creates each dataset once per experiment, and two runs creating
        # it at once collide on its unique key.
        if runs:
            one(runs[0])
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, runs[1:]))
        client.set_experiment_tag(experiment_id, EVALUATED_TAG + ".logged", str(n))
    model_of = {
        m.source_run_id: m.model_id for m in _all_logged_models(client, experiment_id) if m.source_run_id
    }
    model = f"{tag}-model"
    if client.search_registered_models(filter_string=f"name = '{model}'"):
        client.delete_registered_model(model)
    client.create_registered_model(model)
    for run in runs:  # versions in order, one at a time
        model_id = model_of[run.id]
        client.create_model_version(model, f"models:/{model_id}", run_id=run.id, model_id=model_id)
    client.set_experiment_tag(experiment_id, EVALUATED_TAG, str(n))
    return added


def es_writes(es: Any) -> int:
    stats = es.indices.stats(index="mlops-*", metric="indexing", expand_wildcards="all")
    total = stats["_all"]["primaries"].get("indexing", {})
    return int(total.get("index_total", 0)) + int(total.get("delete_total", 0))


def _all_logged_models(client: Any, experiment_id: str) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_logged_models(experiment_ids=[experiment_id], max_results=100, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--keys", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3, help="timed no-op passes")
    p.add_argument(
        "--evaluated", type=int, default=0, help="runs given MLflow 3 evaluations (logged models, datasets)"
    )
    args = p.parse_args()
    shape = c.Shape(args.runs, args.keys, args.steps)

    st = c.stack(args)
    es = c.es_client(st.es_url)
    info = c.machine(st.es_url)
    # Evaluations go to an experiment of their own, so that the plain one stays plain.
    prefix = f"bench-noop-eval{args.evaluated}" if args.evaluated else "bench-noop"
    gen = c.ensure_experiment(st.mlflow_uri, shape.name(prefix), shape, workers=8)
    evaluation_points = 0
    if args.evaluated:
        tag = gen.name.removeprefix("bench-")
        evaluation_points = ensure_evaluations(st.mlflow_uri, gen.experiment_id, tag, args.evaluated)
    c.reset_indices(es)
    c.setup(st)
    env = c.shipper_env(st, gen.name)

    c.say(f"first pass: {gen.runs:,} runs, {gen.points:,} points")
    first = c.run_shipper(["sync", "--json"], env)
    assert first.summary and first.summary["runs_written"] == gen.runs, first.summary
    stored = c.count_metrics(es)
    # evaluation points: once in the run's history, once as the logged model's (with its dataset),
    # unless the shipper measured (--shipper-src) predates logged-model points
    expected = gen.points + evaluation_points
    if "logged_model_points" in first.summary:
        expected += evaluation_points
    assert stored == expected, (stored, gen.points, evaluation_points)

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
        f"{args.evaluated:,} of them evaluated (logged models, datasets), "
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
        "noop_resync_evaluated" if args.evaluated else "noop_resync",
        {
            "machine": info,
            "shape": shape.__dict__,
            "evaluated_runs": args.evaluated,
            "evaluation_points": evaluation_points,
            "points": gen.points,
            "generation": {"seconds": gen.generated_seconds},
            "first_pass": {"process_wall": first.wall_seconds, **(first.report or {})},
            "noop_passes": passes,
        },
        args,
    )


if __name__ == "__main__":
    main()
