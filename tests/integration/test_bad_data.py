"""Bad data and a hostile cluster, on the real stack: each test is one row of docs/reliability.md.

MLflow data that is legal but extreme (3,001 metric keys in one run, the longest tags and params MLflow
accepts, points from a skewed clock, a model version whose run was deleted), and an Elasticsearch that
refuses writes (a 429 storm from a proxy in front of it, the flood-stage disk watermark's block, an
index whose mapping conflicts with the shipper's documents, templates deleted under a shipper that keeps
running). Every row checks the same two things: no good document is lost or duplicated, and whatever
cannot be written reaches the dead-letter index with its original, or the pass fails without moving a
checkpoint and says so.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from prometheus_client import REGISTRY

from shipper.cli import main_group
from shipper.core.names import DEAD_LETTER_INDEX, MODELS_INDEX, RUNS_INDEX
from tests.support.refusing_proxy import BulkRefusingProxy

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main_group, list(args), catch_exceptions=False)


def sync_json(*args: str) -> dict[str, Any]:
    result = invoke("sync", "--json", *args)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output.strip().splitlines()[-1]))


def count(es: Any, index: str, query: dict[str, Any] | None = None) -> int:
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    body = {"query": query} if query else {}
    return int(es.count(index=index, allow_no_indices=True, ignore_unavailable=True, **body)["count"])


def run_points(es: Any, run_id: str) -> int:
    return count(es, "mlops-metrics-*", {"term": {"mlflow.run.id": run_id}})


def distinct_ids(es: Any, run_id: str) -> int:
    """Documents of the run counted by _id: equal to run_points() when nothing is duplicated."""
    es.indices.refresh(index="mlops-metrics-*", allow_no_indices=True)
    found = es.search(
        index="mlops-metrics-*",
        query={"term": {"mlflow.run.id": run_id}},
        size=10_000,
        _source=False,
        allow_no_indices=True,
    )
    return len({(h["_index"], h["_id"]) for h in found["hits"]["hits"]})


@pytest.fixture
def client(mlflow_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(mlflow_uri)


@pytest.fixture
def experiment(client: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A fresh experiment that the shipper is restricted to, with the product's templates installed."""
    name = f"bad-data-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", name)
    assert invoke("setup").exit_code == 0
    return name, experiment_id


def log_points(client: Any, experiment_id: str, keys: int, steps: int, start_ms: int | None = None) -> str:
    from mlflow.entities import Metric

    start = start_ms if start_ms is not None else int(time.time() * 1000) - 3_600_000
    run_id = client.create_run(experiment_id, start_time=start).info.run_id
    batch = [Metric(f"m{k}", float(s), start + s * 1000, s) for k in range(keys) for s in range(steps)]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i : i + 1000])
    client.set_terminated(run_id, "FINISHED", end_time=start + steps * 1000)
    return str(run_id)


# -- a proxy in front of the real Elasticsearch ---------------------------------------------------


@pytest.fixture
def throttling(es_url: str) -> Iterator[BulkRefusingProxy]:
    """The first 4 `_bulk` requests answered as an overloaded Elasticsearch does: HTTP 429,
    es_rejected_execution_exception."""
    calls = itertools.count()
    rejected = {"error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}
    proxy = BulkRefusingProxy(
        es_url,
        refuses=lambda body: next(calls) < 4,
        status=429,
        answer=json.dumps({**rejected, "status": 429}).encode(),
    )
    yield proxy
    proxy.close()


# -- rows -----------------------------------------------------------------------------------------


def test_a_429_storm_is_waited_out_and_every_point_lands_once(
    client: Any,
    experiment: tuple[str, str],
    es: Any,
    throttling: BulkRefusingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = log_points(client, experiment[1], keys=2, steps=50)
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", throttling.url)
    monkeypatch.setenv("SHIPPER_BULK_MAX_RETRY_SECONDS", "120")
    retries_before = REGISTRY.get_sample_value("shipper_bulk_retries_total") or 0.0
    summary = sync_json()
    assert throttling.bulk_refused == 4
    assert (REGISTRY.get_sample_value("shipper_bulk_retries_total") or 0.0) >= retries_before + 4
    assert summary["points_written"] == 100
    assert run_points(es, run_id) == 100 == distinct_ids(es, run_id)
    assert count(es, DEAD_LETTER_INDEX) == 0


def test_flood_stage_block_fails_the_pass_without_checkpointing_then_ships_everything_once(
    client: Any, experiment: tuple[str, str], es: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = int(time.time() * 1000) - 3_600_000
    run_id = log_points(client, experiment[1], keys=1, steps=10, start_ms=start)
    assert sync_json()["points_written"] == 10
    # Seconds after the first points, so in their monthly index, the one blocked below (points
    # stamped "now" land in a new month's index, unblocked, when an hour ago was last month).
    for step in range(10, 15):
        client.log_metric(run_id, "m0", float(step), timestamp=start + step * 1000, step=step)
    # What Elasticsearch does by itself when a node's disk passes the flood-stage watermark.
    # Elasticsearch also lifts that block by itself once its disk monitor (every 30 s) finds the
    # disk below the high watermark, as this test machine's always is: a lift during the pass's
    # retries let it succeed. So the block is put back every 0.1 s while the pass runs.
    block = {"index.blocks.read_only_allow_delete": True}
    es.indices.put_settings(index="mlops-metrics-*", settings=block)
    lifted = threading.Event()

    def keep_blocked() -> None:
        while not lifted.wait(0.1):
            es.indices.put_settings(index="mlops-metrics-*", settings=block)

    keeper = threading.Thread(target=keep_blocked, daemon=True)
    keeper.start()
    try:
        monkeypatch.setenv("SHIPPER_BULK_MAX_RETRY_SECONDS", "2")
        result = invoke("sync")
    finally:
        lifted.set()
        keeper.join()
        es.indices.put_settings(
            index="mlops-metrics-*", settings={"index.blocks.read_only_allow_delete": None}
        )
    assert result.exit_code == 5, result.output
    assert "nothing was checkpointed" in result.output
    assert run_points(es, run_id) == 10
    monkeypatch.delenv("SHIPPER_BULK_MAX_RETRY_SECONDS")
    assert sync_json()["points_written"] == 5
    assert run_points(es, run_id) == 15 == distinct_ids(es, run_id)
    assert count(es, DEAD_LETTER_INDEX) == 0


def test_a_mapping_conflict_dead_letters_the_documents_with_their_originals_and_keeps_the_rest(
    client: Any, experiment: tuple[str, str], es: Any
) -> None:
    # Someone created January 1999's partition by hand with `mlflow.run` as a keyword, where the
    # shipper's documents have an object (ignore_malformed does not cover an object for a value).
    es.indices.create(
        index="mlops-metrics-1999.01",
        mappings={"properties": {"mlflow": {"properties": {"run": {"type": "keyword"}}}}},
    )
    old = log_points(client, experiment[1], keys=1, steps=3, start_ms=915_235_200_000)  # 1999-01-02
    new = log_points(client, experiment[1], keys=1, steps=4)
    summary = sync_json()
    assert summary["writes"]["dead_lettered"] == 3, summary
    assert run_points(es, new) == 4
    assert run_points(es, old) == 0
    es.indices.refresh(index=DEAD_LETTER_INDEX)
    letters = es.search(index=DEAD_LETTER_INDEX, query={"match_all": {}}, size=10)["hits"]["hits"]
    assert len(letters) == 3
    for letter in letters:
        source = letter["_source"]
        assert source["error"]["type"] == "document_parsing_exception"
        assert old in source["mlops"]["dead_letter"]["original"]
    # Replayed, the same three dead letters, not three more.
    sync_json("--full")
    assert count(es, DEAD_LETTER_INDEX) == 3
    assert run_points(es, new) == 4 == distinct_ids(es, new)


def test_templates_deleted_under_a_running_shipper_lose_nothing_and_setup_restores_them(
    client: Any, experiment: tuple[str, str], es: Any
) -> None:
    first = log_points(client, experiment[1], keys=1, steps=5)
    assert sync_json()["points_written"] == 5
    templates = [t["name"] for t in es.indices.get_index_template(name="mlops-*")["index_templates"]]
    assert templates
    es.indices.delete_index_template(name=",".join(templates))
    # Points of a month with no partition yet: its index is created without the product's template.
    later = log_points(
        client, experiment[1], keys=1, steps=5, start_ms=int(time.time() * 1000) - 400 * DAY_MS
    )
    assert sync_json()["points_written"] == 5
    assert run_points(es, first) == 5 and run_points(es, later) == 5
    dry = invoke("setup", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert any(name in dry.output for name in templates), dry.output
    assert invoke("setup").exit_code == 0
    again = [t["name"] for t in es.indices.get_index_template(name="mlops-*")["index_templates"]]
    assert sorted(again) == sorted(templates)


def test_a_model_version_whose_run_was_deleted_is_still_shipped(
    client: Any, experiment: tuple[str, str], es: Any
) -> None:
    run_id = log_points(client, experiment[1], keys=1, steps=2)
    model = f"orphan-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    client.delete_run(run_id)
    result = invoke("sync", "--json")
    assert result.exit_code == 0, result.output
    es.indices.refresh(index=MODELS_INDEX)
    docs = es.search(index=MODELS_INDEX, query={"term": {"ml.model.name": model}})["hits"]["hits"]
    assert len(docs) == 1, docs
    assert docs[0]["_source"]["mlflow"]["run"]["id"] == run_id
    assert count(es, DEAD_LETTER_INDEX) == 0


def test_3001_distinct_metric_keys_in_one_run_all_land_without_a_mapping_explosion(
    client: Any, experiment: tuple[str, str], es: Any
) -> None:
    run_id = log_points(client, experiment[1], keys=3001, steps=1)
    assert sync_json()["points_written"] == 3001
    assert run_points(es, run_id) == 3001 == distinct_ids(es, run_id)
    # Keys are values of one keyword field, not field names: the mapping does not grow with them.
    mappings = es.indices.get_mapping(index="mlops-metrics-*")
    for index in mappings.values():
        assert "m3000" not in json.dumps(index["mappings"])
    es.indices.refresh(index=RUNS_INDEX)
    assert count(es, DEAD_LETTER_INDEX) == 0


def test_ten_thousand_character_tags_and_params_ship_whole(
    client: Any, experiment: tuple[str, str], es: Any
) -> None:
    """MLflow's client keeps the first 6,000 characters of a param and 8,000 of a tag (it truncates
    longer ones with a warning); what MLflow holds is shipped whole: kept in _source, indexed up to
    the keyword's ignore_above. (10,000 characters through the webhook: tests/integration/test_webhook.py.)"""
    run_id = client.create_run(experiment[1]).info.run_id
    client.log_param(run_id, "ten_thousand", "p" * 10_000)
    client.set_tag(run_id, "ten_thousand", "t" * 10_000)
    client.set_tag(run_id, "unicode", "größer-模型-🚀 \u202e")
    client.log_metric(run_id, "m", 1.0)
    client.set_terminated(run_id)
    sync_json()
    es.indices.refresh(index=RUNS_INDEX)
    doc = es.get(index=RUNS_INDEX, id=run_id)["_source"]
    held = client.get_run(run_id).data
    assert doc["mlflow"]["params"]["ten_thousand"] == held.params["ten_thousand"] == "p" * 6000
    assert doc["mlflow"]["tags"]["ten_thousand"] == held.tags["ten_thousand"] == "t" * 8000
    assert doc["mlflow"]["tags"]["unicode"] == "größer-模型-🚀 \u202e"
    assert count(es, DEAD_LETTER_INDEX) == 0


def test_points_from_a_skewed_clock_land_in_their_own_months(
    client: Any, experiment: tuple[str, str], es: Any
) -> None:
    from mlflow.entities import Metric

    run_id = client.create_run(experiment[1]).info.run_id
    year_2100 = 4_102_444_800_000  # 2100-01-01
    points = [Metric("skew", 1.0, year_2100, 0), Metric("skew", 2.0, 86_400_000, 1)]  # and 1970-01-02
    client.log_batch(run_id, metrics=points)
    client.set_terminated(run_id)
    assert sync_json()["points_written"] == 2
    assert count(es, "mlops-metrics-2100.01", {"term": {"mlflow.run.id": run_id}}) == 1
    assert count(es, "mlops-metrics-1970.01", {"term": {"mlflow.run.id": run_id}}) == 1
    assert count(es, DEAD_LETTER_INDEX) == 0
