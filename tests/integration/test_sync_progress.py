"""A history too long to ship between two crashes, against the real MLflow and Elasticsearch: the
`shipper sync` process is killed (SIGKILL) as soon as its first progress record lands, and the next
pass reads only the rest of the history and leaves exactly the logged points, no more. The engine's
cases one by one (a changed history, --full, the exact records) are in test_sync_checkpoints.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from shipper.sources.interface import HISTORY_PAGE

pytestmark = pytest.mark.integration

STATE = "mlops-shipper-state"
POINTS = 200_000  # 8 pages of HISTORY_PAGE


def shipper(*args: str) -> str:
    result = CliRunner().invoke(main_group, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(result.output)


def metric_count(es: Any, name: str) -> int:
    es.indices.refresh(index="mlops-metrics-*", allow_no_indices=True, ignore_unavailable=True)
    query = {"term": {"mlflow.experiment.name": name}}
    return int(es.count(index="mlops-metrics-*", query=query, allow_no_indices=True)["count"])


def giant_run(mlflow_uri: str) -> tuple[str, str]:
    """One finished run whose `loss` has POINTS points; (experiment name, run id)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(mlflow_uri)
    name = f"giant-{uuid.uuid4().hex[:8]}"
    run_id = client.create_run(client.create_experiment(name), run_name="giant").info.run_id
    base = int(time.time() * 1000) - 86_400_000
    # Key names unique to the run: MLflow's sqlite store scans every row of a key for a history.
    key = f"loss-{name}"

    def log(start: int) -> None:
        client.log_batch(
            run_id, metrics=[Metric(key, s / POINTS, base + s, s) for s in range(start, start + 1000)]
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(log, range(0, POINTS, 1000)))
    client.set_terminated(run_id, "FINISHED")
    return name, run_id


def test_a_sync_killed_after_its_first_progress_record_resumes_with_the_rest(
    env: dict[str, str], es: Any, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert POINTS > 2 * HISTORY_PAGE
    name, run_id = giant_run(mlflow_uri)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", name)
    shipper("setup")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "sync"],
        env={**os.environ, "SHIPPER_BULK_MAX_ACTIONS": "5000"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    progress_id = f"progress:{run_id}"
    lands = False
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not lands:
            # 503: the state index the child just created has no shard ready yet
            found = es.options(ignore_status=(404, 503)).get(index=STATE, id=progress_id)
            lands = bool(found.get("found"))
            time.sleep(0.05)
        alive = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert lands and alive, f"the sync ended before its first progress record: {err.decode()[-2000:]}"

    # What the killed process left: a progress record for loss, and at least the points it covers.
    stored = es.get(index=STATE, id=progress_id)["_source"]["state"]
    (part,) = stored["partial"].values()
    assert part["count"] % HISTORY_PAGE == 0 and 0 < part["count"] < POINTS
    shipped_before = metric_count(es, name)
    assert part["count"] <= shipped_before < POINTS
    assert not es.options(ignore_status=404).get(index=STATE, id=f"run:{run_id}").get("found")

    summary = json.loads(shipper("sync", "--json").strip().splitlines()[-1])

    # The second pass sends only the pages after the record: had it read the history from its
    # start, it would have sent all POINTS again (the run has no checkpoint, so no mark filters).
    assert summary["points_written"] == POINTS - part["count"]
    assert summary["history_reads"] == 1
    assert metric_count(es, name) == POINTS  # exactly the points: none missing, none twice
    assert not es.options(ignore_status=404).get(index=STATE, id=progress_id).get("found")
    checkpoint = es.get(index=STATE, id=f"run:{run_id}")["_source"]["state"]
    assert [key["count"] for key in checkpoint["keys"].values()] == [POINTS]

    again = json.loads(shipper("sync", "--json").strip().splitlines()[-1])
    assert (again["history_reads"], again["points_written"], again["writes"]["written"]) == (0, 0, 0)
