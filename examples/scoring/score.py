"""Azure ML entry script of the demo model: init() once, run() per request.

Works under the real Azure ML inference server (`azmlinfsrv --entry_script score.py`) and under the
stand-in `server.py`. MODEL_NAME / MODEL_VERSION choose the model; version "2" is a little better and a
little slower than version "1", so the two show apart in Kibana.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time

logger = logging.getLogger("score")
MODEL_NAME = os.environ.get("MODEL_NAME", "churn")
MODEL_VERSION = os.environ.get("MODEL_VERSION", "1")
_rng = random.Random(f"{MODEL_NAME}:{MODEL_VERSION}")


def init() -> None:
    print(f"Model loaded: {MODEL_NAME} version {MODEL_VERSION}")


def run(raw_data: str) -> dict[str, object]:
    data = json.loads(raw_data)
    if data.get("fail"):
        raise ValueError(f"bad input: {data['fail']}")
    rows = data.get("data", [[0.0]])
    if any(value is None for row in rows for value in row):
        logger.warning("input contains %d missing values", sum(v is None for r in rows for v in r))
    started = time.perf_counter()
    better = 0.03 if MODEL_VERSION == "2" else 0.0
    time.sleep(0.001 * (2 if MODEL_VERSION == "2" else 1))
    accuracy = min(1.0, 0.88 + better + _rng.uniform(-0.02, 0.02))
    print(f"Accuracy : {accuracy:.4f}")
    print(f"IoU={accuracy - 0.1:.4f}")
    print(f"Inference_time : {(time.perf_counter() - started) * 1000:.3f} ms")
    print(f"batch_size={len(rows)}, model={MODEL_NAME}, version={MODEL_VERSION}")
    return {"predictions": [round(accuracy, 3)] * len(rows), "model": MODEL_NAME, "version": MODEL_VERSION}
