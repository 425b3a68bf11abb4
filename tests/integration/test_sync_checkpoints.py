"""The sync engine's checkpoint logic, pinned with hand-written expectations.

MLflow is an in-memory `TrackingSource` (tests/support/memory_source.py) that each test writes by
hand, so every case (a new point, a finished run, a deleted and restored run, a point logged out of
order, a failed write) is exact and quick to state. The checkpoints, the documents and the write
failures are the real Elasticsearch's: checkpoints live there, and a write that fails is one that
the real cluster (behind a proxy that refuses `_bulk`) did not take. The same engine against the
real MLflow server is tests/integration/test_mlflow_sync.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner
from elasticsearch import NotFoundError

from shipper.cli import main_group
from shipper.config import Settings
from shipper.errors import WriteError
from shipper.sink.client import build_client, build_writer, probe
from shipper.sources.records import ModelVersion
from shipper.sync.engine import PassSummary, SyncEngine
from shipper.sync.state import KeyCheckpoint, RunCheckpoint
from tests.support.memory_source import MemorySource
from tests.support.refusing_proxy import BulkRefusingProxy

pytestmark = pytest.mark.integration

T = 1_700_000_000_000  # 2023-11-14T22:13:20Z: every point lands in mlops-metrics-2023.11
STATE = "mlops-shipper-state"


@pytest.fixture(scope="module")
def installed(es_url: str) -> None:
    """The product's templates, once: deleting indices between tests leaves them in place."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
        result = CliRunner().invoke(main_group, ["setup"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture
def clean(installed: None, es: Any) -> None:
    names = list(es.indices.get(index="mlops-*", expand_wildcards="all", allow_no_indices=True))
    if names:
        es.indices.delete(index=names)


@pytest.fixture
def source() -> MemorySource:
    """Experiment 1 with run a (loss and acc, three steps each) and run b (loss, two steps)."""
    mlflow = MemorySource()
    mlflow.add_experiment("1", "checkpoints")
    mlflow.add_run("a", "1", start_time=T)
    mlflow.add_run("b", "1", start_time=T + 10)
    for step in range(3):
        mlflow.log("a", "loss", 1.0 - step / 10, step, T + step * 1000)
        mlflow.log("a", "acc", step / 10, step, T + step * 1000)
    for step in range(2):
        mlflow.log("b", "loss", 2.0 + step, step, T + 10 + step * 1000)
    return mlflow


def engine(source: MemorySource, es_url: str, **settings: Any) -> SyncEngine:
    config = Settings(elasticsearch_url=es_url, **settings)
    client = build_client(config)
    writer = build_writer(client, config, ilm=probe(client).ilm)
    return SyncEngine(source, client, writer, config, clock=lambda: T / 1000 + 3600)


def run_pass(source: MemorySource, es_url: str, full: bool = False) -> PassSummary:
    source.history_reads.clear()
    return engine(source, es_url).run_pass(full=full)


def checkpoint(es: Any, run_id: str) -> RunCheckpoint:
    es.indices.refresh(index=STATE)
    return RunCheckpoint.from_state(es.get(index=STATE, id=f"run:{run_id}")["_source"]["state"])


def points(es: Any, run_id: str | None = None) -> list[tuple[str, str, int, int, float]]:
    """Every metric document as (run, key, step, timestamp, value), sorted."""
    es.indices.refresh(index="mlops-metrics-*")
    query = {"term": {"mlflow.run.id": run_id}} if run_id else {"match_all": {}}
    hits = es.search(index="mlops-metrics-*", query=query, size=1000)["hits"]["hits"]
    found = []
    for hit in hits:
        run, metric = hit["_source"]["mlflow"]["run"], hit["_source"]["mlflow"]["metric"]
        at = datetime.fromisoformat(hit["_source"]["@timestamp"].replace("Z", "+00:00")).timestamp()
        found.append((run["id"], metric["key"], metric["step"], round(at * 1000), metric["value"]))
    return sorted(found)


def run_doc(es: Any, run_id: str) -> dict[str, Any]:
    es.indices.refresh(index="mlops-runs")
    return dict(es.get(index="mlops-runs", id=run_id)["_source"])


FIRST_POINTS = [
    ("a", "acc", 0, T, 0.0),
    ("a", "acc", 1, T + 1000, 0.1),
    ("a", "acc", 2, T + 2000, 0.2),
    ("a", "loss", 0, T, 1.0),
    ("a", "loss", 1, T + 1000, 0.9),
    ("a", "loss", 2, T + 2000, 0.8),
    ("b", "loss", 0, T + 10, 2.0),
    ("b", "loss", 1, T + 1010, 3.0),
]


def test_first_pass_ships_everything_and_records_checkpoints(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    summary = run_pass(source, es_url)

    assert (summary.runs_seen, summary.runs_written, summary.runs_unchanged) == (2, 2, 0)
    assert (summary.points_written, summary.history_reads) == (8, 3)
    assert sorted(source.history_reads) == [("a", "acc"), ("a", "loss"), ("b", "loss")]
    assert points(es) == FIRST_POINTS
    a = checkpoint(es, "a")
    assert (a.run_id, a.experiment_id, a.status) == ("a", "1", "RUNNING")
    assert a.keys == {
        "acc": KeyCheckpoint(count=3, last_timestamp=T + 2000, last_step=2, latest=f"{T + 2000}:2:0.2"),
        "loss": KeyCheckpoint(count=3, last_timestamp=T + 2000, last_step=2, latest=f"{T + 2000}:2:0.8"),
    }
    assert checkpoint(es, "b").keys == {
        "loss": KeyCheckpoint(count=2, last_timestamp=T + 1010, last_step=1, latest=f"{T + 1010}:1:3.0"),
    }


def test_second_pass_reads_no_history_and_writes_nothing(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    run_pass(source, es_url)
    before = checkpoint(es, "a")

    summary = run_pass(source, es_url)

    assert (summary.runs_seen, summary.runs_unchanged, summary.runs_written) == (2, 2, 0)
    assert (summary.points_written, summary.history_reads, summary.writes.written) == (0, 0, 0)
    assert source.history_reads == []
    assert checkpoint(es, "a") == before
    assert points(es) == FIRST_POINTS


def test_a_new_point_after_the_checkpoint_is_shipped_exactly_once(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    run_pass(source, es_url)
    source.log("a", "loss", 0.7, 3, T + 3000)

    summary = run_pass(source, es_url)

    assert (summary.runs_written, summary.runs_unchanged) == (1, 1)
    assert (summary.points_written, summary.history_reads) == (1, 1)
    assert source.history_reads == [("a", "loss")]  # acc's latest point did not change: not read
    assert points(es) == sorted([*FIRST_POINTS, ("a", "loss", 3, T + 3000, 0.7)])
    assert checkpoint(es, "a").keys["loss"] == KeyCheckpoint(4, T + 3000, 3, f"{T + 3000}:3:0.7")

    again = run_pass(source, es_url)
    assert (again.points_written, again.history_reads, again.runs_written) == (0, 0, 0)
    assert len(points(es)) == 9


def test_a_failed_write_does_not_move_the_checkpoint(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    run_pass(source, es_url)
    before = checkpoint(es, "a")
    source.log("a", "loss", 0.7, 3, T + 3000)

    # Only the data is refused: a checkpoint written before (or without) its data would get through.
    proxy = BulkRefusingProxy(es_url, refuses=lambda body: f'"_index":"{STATE}"'.encode() not in body)
    try:
        failing = engine(source, proxy.url, bulk_max_retry_seconds=1.0)
        with pytest.raises(WriteError):
            failing.run_pass()
    finally:
        proxy.close()
    assert proxy.bulk_refused > 0
    assert source.history_reads[-1] == ("a", "loss"), "the pass got as far as reading the new point"
    assert checkpoint(es, "a") == before
    assert points(es) == FIRST_POINTS

    summary = run_pass(source, es_url)  # Elasticsearch takes writes again
    assert summary.points_written == 1
    assert points(es) == sorted([*FIRST_POINTS, ("a", "loss", 3, T + 3000, 0.7)])
    assert checkpoint(es, "a").keys["loss"] == KeyCheckpoint(4, T + 3000, 3, f"{T + 3000}:3:0.7")


def test_a_finished_run_has_its_histories_read_once_and_nothing_resent(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    run_pass(source, es_url)
    source.change_run("a", status="FINISHED", end_time=T + 5000)

    summary = run_pass(source, es_url)

    assert (summary.runs_written, summary.points_written) == (1, 0)
    assert sorted(source.history_reads) == [("a", "acc"), ("a", "loss")]
    assert checkpoint(es, "a").status == "FINISHED"
    assert run_doc(es, "a")["mlflow"]["run"]["status"] == "FINISHED"
    assert run_pass(source, es_url).history_reads == 0


def test_a_point_logged_out_of_order_is_caught_when_the_run_ends(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    run_pass(source, es_url)
    # Step 1 again, logged late with an older time: loss's latest point (step 2) does not change,
    # so nothing is read for it while the run runs.
    source.log("a", "loss", 0.85, 1, T + 1500)
    assert run_pass(source, es_url).history_reads == 0
    source.change_run("a", status="FINISHED", end_time=T + 5000)

    summary = run_pass(source, es_url)

    # acc: read, nothing new. loss: read, 4 points where the checkpoint counts 3 and none newer than
    # its mark, so the whole history is sent again (overwrites) and the late point lands.
    assert source.history_reads == [("a", "acc"), ("a", "loss"), ("a", "loss")]
    assert (summary.history_reads, summary.points_written) == (3, 4)
    assert points(es) == sorted([*FIRST_POINTS, ("a", "loss", 1, T + 1500, 0.85)])
    assert checkpoint(es, "a").keys["loss"] == KeyCheckpoint(4, T + 2000, 2, f"{T + 2000}:2:0.8")


def test_deleted_and_restored_runs_rewrite_the_run_document_only(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    run_pass(source, es_url)

    source.change_run("b", lifecycle_stage="deleted")
    deleted = run_pass(source, es_url)
    assert (deleted.runs_written, deleted.runs_unchanged) == (1, 1)
    assert (deleted.points_written, deleted.history_reads) == (0, 0)
    assert run_doc(es, "b")["mlflow"]["run"]["lifecycle_stage"] == "deleted"
    assert points(es, "b") == FIRST_POINTS[6:]  # a deleted run's points stay

    source.change_run("b", lifecycle_stage="active")
    restored = run_pass(source, es_url)
    assert (restored.runs_written, restored.points_written, restored.history_reads) == (1, 0, 0)
    assert run_doc(es, "b")["mlflow"]["run"]["lifecycle_stage"] == "active"
    assert points(es) == FIRST_POINTS


def test_full_pass_ignores_checkpoints_and_duplicates_nothing(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    run_pass(source, es_url)

    summary = run_pass(source, es_url, full=True)

    assert (summary.runs_written, summary.points_written, summary.history_reads) == (2, 8, 3)
    assert points(es) == FIRST_POINTS


def test_a_newly_registered_version_relinks_its_run_and_the_models_checkpoint_follows(
    clean: None, es: Any, es_url: str, source: MemorySource
) -> None:
    run_pass(source, es_url)
    source.versions.append(ModelVersion("churn", "1", T + 4000, T + 4000, run_id="a"))

    linked = run_pass(source, es_url)

    # Run a is sent whole again so that its earlier points carry ml.model.*; b is untouched.
    assert (linked.relinked_runs, linked.runs_written, linked.points_written) == (1, 1, 6)
    assert linked.models_written == 1
    es.indices.refresh(index="mlops-metrics-*")
    tagged = es.count(index="mlops-metrics-*", query={"term": {"ml.model.name": "churn"}})["count"]
    assert tagged == 6
    assert points(es) == FIRST_POINTS
    assert run_pass(source, es_url).models_written == 0

    source.versions.clear()
    gone = run_pass(source, es_url)
    assert gone.models_deleted == 1
    es.indices.refresh(index="mlops-models")
    assert es.count(index="mlops-models")["count"] == 0


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    """Each pass shuts its reader and writer threads down, failed passes included."""
    import threading

    before = {t.name for t in threading.enumerate()}
    yield
    left = {t.name for t in threading.enumerate()} - before
    assert not {name for name in left if name.startswith("shipper-")}, left


# -- per-key progress: a history too long to ship between two crashes still gets shipped ----------


@pytest.fixture
def giant() -> MemorySource:
    """Run g: acc (25 points) and loss (95 points), read in pages of 10."""
    mlflow = MemorySource()
    mlflow.bulk_histories = False
    mlflow.page = 10
    mlflow.add_experiment("1", "checkpoints")
    mlflow.add_run("g", "1", start_time=T, status="FINISHED")
    for step in range(25):
        mlflow.log("g", "acc", step / 100, step, T + step * 10)
    for step in range(95):
        mlflow.log("g", "loss", 1.0 - step / 100, step, T + step * 10)
    return mlflow


def progress_doc(es: Any, run_id: str) -> dict[str, Any] | None:
    es.indices.refresh(index=STATE)
    found = es.options(ignore_status=404).get(index=STATE, id=f"progress:{run_id}")
    return dict(found["_source"]["state"]) if found.get("found") else None


def all_points(es: Any) -> list[tuple[str, str, int, int, float]]:
    es.indices.refresh(index="mlops-metrics-*")
    assert es.count(index="mlops-metrics-*")["count"] <= 1000
    return points(es)


def crash(source: MemorySource, es_url: str, after_pages: int) -> None:
    source.crash_after_pages = after_pages
    with pytest.raises(RuntimeError, match="simulated crash"):
        engine(source, es_url, bulk_max_actions=10).run_pass()
    source.crash_after_pages = None


def test_a_pass_killed_inside_a_long_history_resumes_after_what_it_shipped(
    clean: None, es: Any, es_url: str, giant: MemorySource
) -> None:
    # acc: 3 pages; loss: 3 pages, then the 4th page read fails (the process dies).
    crash(giant, es_url, after_pages=6)
    stored = progress_doc(es, "g")
    assert stored is not None
    assert stored["done"] == {"acc": asdict(KeyCheckpoint(25, T + 240, 24, f"{T + 240}:24:0.24"))}
    # Each flush carries the progress queued before its data: the page 3 flush, that of page 2.
    assert stored["partial"]["loss"] == {
        "token": "20",
        "count": 20,
        "sent": 20,
        "last": [T + 190, 19, repr(0.81)],
        "newest": [T + 190, 19],
    }
    with pytest.raises(NotFoundError):
        es.get(index=STATE, id="run:g")  # the run's checkpoint waits for all its keys
    assert len(all_points(es)) >= 25 + 20  # at least what the progress record says

    giant.history_reads.clear()
    giant.tokens.clear()
    summary = engine(giant, es_url, bulk_max_actions=10).run_pass()

    assert giant.history_reads == [("g", "loss")]  # acc is done; loss goes on from the record
    assert giant.tokens == ["20"]
    assert (summary.points_written, summary.runs_written) == (75, 1)
    expected = sorted(
        [("g", "acc", s, T + s * 10, s / 100) for s in range(25)]
        + [("g", "loss", s, T + s * 10, 1.0 - s / 100) for s in range(95)]
    )
    assert all_points(es) == expected  # exactly: no point missing, none twice
    assert checkpoint(es, "g").keys == {
        "acc": KeyCheckpoint(25, T + 240, 24, f"{T + 240}:24:0.24"),
        "loss": KeyCheckpoint(95, T + 940, 94, f"{T + 940}:94:{1.0 - 94 / 100!r}"),
    }
    assert progress_doc(es, "g") is None  # deleted with the run checkpoint that supersedes it

    again = engine(giant, es_url, bulk_max_actions=10).run_pass()
    assert (again.history_reads, again.points_written, again.writes.written) == (0, 0, 0)


def test_a_history_changed_before_the_resume_point_is_read_again_whole(
    clean: None, es: Any, es_url: str, giant: MemorySource
) -> None:
    crash(giant, es_url, after_pages=6)
    assert progress_doc(es, "g") is not None
    # Logged late with an older time: it lands at position 5 of loss, before the resume point, and
    # shifts every page after it; loss's latest point does not change.
    giant.insert("g", "loss", 5, 0.555, 5, T + 45)
    giant.tokens.clear()

    summary = engine(giant, es_url, bulk_max_actions=10).run_pass()

    # The resumed page starts with a point already shipped: loss is read again from its start.
    assert giant.tokens == ["20", None]
    assert summary.points_written == 96
    assert len(all_points(es)) == 25 + 96
    assert ("g", "loss", 5, T + 45, 0.555) in all_points(es)
    assert checkpoint(es, "g").keys["loss"].count == 96
    assert progress_doc(es, "g") is None


def test_progress_from_another_starting_point_is_not_trusted(
    clean: None, es: Any, es_url: str, giant: MemorySource
) -> None:
    crash(giant, es_url, after_pages=6)
    giant.tokens.clear()

    # --full resends everything, whatever progress is stored.
    summary = engine(giant, es_url, bulk_max_actions=10).run_pass(full=True)

    assert giant.tokens == [None, None]
    assert summary.points_written == 120
    assert len(all_points(es)) == 120
    assert progress_doc(es, "g") is None


def test_a_page_token_the_server_no_longer_takes_means_a_whole_read(
    clean: None, es: Any, es_url: str, giant: MemorySource
) -> None:
    crash(giant, es_url, after_pages=6)
    stored = progress_doc(es, "g")
    assert stored is not None
    stored["partial"]["loss"]["token"] = "not-an-offset"  # the memory source refuses it
    es.index(index=STATE, id="progress:g", document={"kind": "progress", "state": stored}, refresh=True)
    giant.tokens.clear()

    summary = engine(giant, es_url, bulk_max_actions=10).run_pass()

    assert giant.tokens == ["not-an-offset", None]
    assert summary.points_written == 95
    assert len(all_points(es)) == 120
    assert checkpoint(es, "g").keys["loss"].count == 95
