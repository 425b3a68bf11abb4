"""Log a small, realistic demo experiment to the MLflow server at MLFLOW_TRACKING_URI.

Three training runs of a churn classifier with per-epoch curves, each registered as a version of
one model, the best one aliased `champion`. Once the model has versions, running it again adds
nothing and says so; `--again` logs another set of runs and versions (new run ids).
"""

from __future__ import annotations

import argparse
import math
import random
import time

import mlflow
from mlflow import MlflowClient

EXPERIMENT = "demo-churn-classifier"
MODEL = "demo-churn-model"


def main(argv: list[str] | None = None) -> None:
    global EXPERIMENT, MODEL
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--again", action="store_true", help="log another set of runs even if the demo is already there"
    )
    parser.add_argument("--experiment", default=EXPERIMENT, help=f"experiment name (default {EXPERIMENT})")
    parser.add_argument("--model", default=MODEL, help=f"registered model name (default {MODEL})")
    args = parser.parse_args(argv)
    EXPERIMENT, MODEL = args.experiment, args.model
    client = MlflowClient()
    if not args.again and client.search_registered_models(filter_string=f"name = '{MODEL}'"):
        versions = client.search_model_versions(filter_string=f"name = '{MODEL}'")
        if versions:
            print(
                f"the demo is already logged ({MODEL} has {len(versions)} versions); nothing added "
                "(examples/demo_experiment.py --again adds another 3 runs and versions)"
            )
            return
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    rng = random.Random(7)
    if not client.search_registered_models(filter_string=f"name = '{MODEL}'"):
        client.create_registered_model(MODEL, description="Predicts which customers will leave")
    best: tuple[float, str] = (-1.0, "")
    for lr in (0.1, 0.03, 0.01):
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"gbm-lr-{lr}") as run:
            mlflow.log_params({"learning_rate": lr, "max_depth": 6, "n_estimators": 200})
            mlflow.set_tags({"team": "growth", "dataset": "customers-2026-10"})
            start = int(time.time() * 1000)
            accuracy = 0.0
            for epoch in range(30):
                accuracy = 0.95 - 0.45 * math.exp(-epoch * lr * 3) + rng.uniform(-0.01, 0.01)
                mlflow.log_metrics(
                    {"accuracy": accuracy, "loss": 1 - accuracy, "auc": min(0.99, accuracy + 0.03)},
                    step=epoch,
                    timestamp=start + epoch * 1000,
                )
        version = client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        best = max(best, (accuracy, version.version))
    client.set_registered_model_alias(MODEL, "champion", best[1])
    print(f"logged 3 runs to experiment {EXPERIMENT!r}; champion is {MODEL} version {best[1]}")


if __name__ == "__main__":
    main()
