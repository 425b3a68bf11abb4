"""Sync checkpoints, kept in Elasticsearch (`mlops-shipper-state`).

One document per run (`run:<id>`) says what of that run is already in Elasticsearch: a fingerprint
of everything the run document is made of, and for each metric key how many points were shipped and
the newest one. One document (`models`, or `models-shard-<i>-of-<n>` for each shard of a sharded
poller) holds the fingerprints of the model documents that poller wrote. A checkpoint
is written only after the data it describes was written, so a crash at any moment leads to a
repeat (overwrites with the same `_id`s), never to a gap.

A run whose histories take long to ship also has a progress document (`progress:<id>`) while it is
being shipped: the keys already done and, for the key being read, where to resume its history (the
server's page token) and what was shipped before it. It is written after the data it covers, only
trusted by a pass that starts from the same run checkpoint, and deleted with the run checkpoint that
supersedes it, so a backfill killed more often than one history takes still moves forward.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError, helpers

from shipper.config import Shard
from shipper.core.names import STATE_INDEX

MODELS_STATE_ID = "models"


def models_state_id(shard: Shard | None) -> str:
    """The models checkpoint's id: one per shard, so that shards never overwrite each other's."""
    return MODELS_STATE_ID if shard is None else f"{MODELS_STATE_ID}-shard-{shard.index}-of-{shard.count}"


@dataclass
class KeyCheckpoint:
    count: int
    last_timestamp: int
    last_step: int
    latest: str  # fingerprint of the latest point as the server reported it with the run


@dataclass
class RunCheckpoint:
    run_id: str
    experiment_id: str
    fingerprint: str
    status: str
    link: str
    keys: dict[str, KeyCheckpoint] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunCheckpoint:
        keys = {k: KeyCheckpoint(**v) for k, v in state.get("keys", {}).items()}
        return cls(
            run_id=state["run_id"],
            experiment_id=state["experiment_id"],
            fingerprint=state["fingerprint"],
            status=state.get("status", ""),
            link=state.get("link", ""),
            keys=keys,
        )


@dataclass
class KeyProgress:
    """How far the read of one metric history went: the pages before `token` are shipped."""

    token: str  # the server's page token for the rest of the history
    count: int  # points in the pages before it
    sent: int  # of them, the points shipped (newer than the run checkpoint's mark)
    last: list[Any]  # [timestamp, step, value] of the last point before it (the resume check)
    newest: list[int] | None  # [timestamp, step] of the newest point before it


@dataclass
class RunProgress:
    """A run partly shipped. `base` is the fingerprint of the run checkpoint the pass started
    from ("" for none) and `link` its link fingerprint: progress made from another starting point
    (another mark, other `ml.model.*` fields) is not trusted."""

    run_id: str
    base: str
    link: str
    done: dict[str, KeyCheckpoint] = field(default_factory=dict)
    partial: dict[str, KeyProgress] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunProgress:
        return cls(
            run_id=state["run_id"],
            base=state["base"],
            link=state["link"],
            done={k: KeyCheckpoint(**v) for k, v in state.get("done", {}).items()},
            partial={k: KeyProgress(**v) for k, v in state.get("partial", {}).items()},
        )


@dataclass
class ModelsCheckpoint:
    documents: dict[str, str] = field(default_factory=dict)  # _id -> fingerprint
    # _id -> experiment id, for logged models: they are listed per experiment, so a pass that
    # selects other experiments must not take them for deleted.
    experiments: dict[str, str] = field(default_factory=dict)
    # logged model id -> [points shipped, newest point's timestamp, its step, fingerprint of what
    # its points carry besides the metric (registry link, run names)]: MLflow 3 logged-model metrics
    # are shipped incrementally, as run histories are.
    logged_metrics: dict[str, list[Any]] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _state_write(doc_id: str, kind: str, state: Any) -> dict[str, Any]:
    """A bulk action storing one state record (a dataclass) under its id."""
    return {
        "_op_type": "index",
        "_index": STATE_INDEX,
        "_id": doc_id,
        "_source": {"kind": kind, "updated_at": _now(), "state": asdict(state)},
    }


def run_state_action(checkpoint: RunCheckpoint) -> dict[str, Any]:
    return _state_write(f"run:{checkpoint.run_id}", "run", checkpoint)


def progress_action(progress: RunProgress) -> dict[str, Any]:
    return _state_write(f"progress:{progress.run_id}", "progress", progress)


def progress_delete_action(run_id: str) -> dict[str, Any]:
    return {"_op_type": "delete", "_index": STATE_INDEX, "_id": f"progress:{run_id}"}


def models_state_action(checkpoint: ModelsCheckpoint, shard: Shard | None = None) -> dict[str, Any]:
    return _state_write(models_state_id(shard), "models", checkpoint)


def load_run_checkpoints(client: Elasticsearch) -> dict[str, RunCheckpoint]:
    return load_run_state(client)[0]


def load_run_state(client: Elasticsearch) -> tuple[dict[str, RunCheckpoint], dict[str, RunProgress]]:
    """The run checkpoints and the progress documents of partly shipped runs, in one scan."""
    if not client.indices.exists(index=STATE_INDEX):
        return {}, {}
    # Checkpoints written a moment ago (a pass that just ended) must be visible to this search.
    client.indices.refresh(index=STATE_INDEX)
    found: dict[str, RunCheckpoint] = {}
    progress: dict[str, RunProgress] = {}
    hits: Iterable[dict[str, Any]] = helpers.scan(
        client, index=STATE_INDEX, query={"query": {"terms": {"kind": ["run", "progress"]}}}, size=2000
    )
    for hit in hits:
        source = hit["_source"]
        if source["kind"] == "progress":
            partly = RunProgress.from_state(source["state"])
            progress[partly.run_id] = partly
        else:
            checkpoint = RunCheckpoint.from_state(source["state"])
            found[checkpoint.run_id] = checkpoint
    return found, progress


def load_models_checkpoint(client: Elasticsearch, shard: Shard | None = None) -> ModelsCheckpoint:
    try:
        doc = client.get(index=STATE_INDEX, id=models_state_id(shard))
    except NotFoundError:
        return ModelsCheckpoint()
    return ModelsCheckpoint(**doc["_source"]["state"])
