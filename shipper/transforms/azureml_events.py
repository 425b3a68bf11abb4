"""Azure ML events -> Elasticsearch documents. Pure functions: no I/O, no clock (the receipt time
is passed in).

Each event becomes one document in `mlops-events-YYYY.MM` of its own event time, with `_id` = the
event id, so a redelivery overwrites instead of duplicating. A run event (RunStatusChanged,
RunCompleted) also updates the run's entity document in `mlops-runs` (`_id` = the run id, which is
the MLflow run id too) through `upsert_entities`: owner `azureml`, top-level field `azureml` only.

Ordering of run views: the entity stamp is the event time in milliseconds times 16, plus the
status's place in the run lifecycle (so of two events in the same millisecond, Completed beats
Running).
The newest event wins whatever the arrival order. A status dated after its own receipt (a sender's
clock ahead) counts as of its receipt, so it cannot hold a run's state against the statuses that
follow it.

A run id longer than an `_id` may be (512 bytes) is hashed for the run document's `_id`, as event
ids are; the run id itself stays in `azureml.run.id`.

Key casing: Azure ML writes model and drift events in PascalCase (`ModelName`) and run events in
camelCase (`runId`); the top-level keys of `data` are read case-insensitively as snake_case. Keys
inside tags and properties are the user's and are kept as they are; their values are kept as
strings (non-strings as JSON), so one tag can never conflict with itself in the mapping.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shipper.core.entities import EntityWrite
from shipper.core.events import (
    DATASET_DRIFT_DETECTED,
    MODEL_DEPLOYED,
    MODEL_REGISTERED,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    Event,
    Workspace,
    json_text,
    parse_time,
)
from shipper.core.names import RUNS_INDEX, events_index
from shipper.core.versions import version_number

OWNER = "azureml"
MAX_ID_BYTES = 512

# Azure ML job statuses, in lifecycle order (the rank breaks ties between events of one time).
_LIFECYCLE = (
    "NotStarted",
    "Starting",
    "Provisioning",
    "Preparing",
    "Queued",
    "Running",
    "NotResponding",
    "Paused",
    "CancelRequested",
    "Finalizing",
)
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
_CANONICAL = {s.lower(): s for s in (*_LIFECYCLE, *TERMINAL, "Unknown")} | {"cancelled": "Canceled"}
_TERMINAL_RANK = 15

PIPELINE_PARENT_KEYS = ("azureml.pipelinerunid", "azureml.pipeline")
PIPELINE_RUN_TYPES = frozenset({"azureml.pipelinerun", "pipelinerun", "pipeline"})
STEP_RUN_TYPES = frozenset({"azureml.steprun", "steprun"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SNAKE_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


# -- small helpers -------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=4096)
def snake(key: str) -> str:
    """`ModelName`, `modelName`, `model_name`, `RunID` -> `model_name`, ..., `run_id`."""
    return _SNAKE_RE.sub("_", key.strip()).replace("-", "_").replace(" ", "_").lower()


def normalise_data(data: Any) -> dict[str, Any]:
    """The top-level keys of an event's `data`, snake_cased. Not an object: empty."""
    if not isinstance(data, dict):
        return {}
    normalised: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(key, str):
            normalised.setdefault(snake(key), value)
    return normalised


def text(value: Any) -> str | None:
    """A scalar as a string (numbers as written in JSON); None and empty stay None; objects and
    arrays as JSON."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # an integer beyond 64 bits inside, nesting beyond 254 levels
        return json_text(value)


def _usable_key(key: Any) -> bool:
    """A user key that Elasticsearch can take as one field name inside a `subobjects: false`
    object (the raw event keeps every key anyway)."""
    return (
        isinstance(key, str)
        and key.strip() == key
        and bool(key.strip("."))
        and not key.startswith(".")
        and not key.endswith(".")
        and ".." not in key
    )


def free_form(values: Any) -> dict[str, str] | None:
    """User-defined tags or properties: every value a string, so the mapping never conflicts."""
    if not isinstance(values, dict) or not values:
        return None
    result: dict[str, str] = {}
    for key, value in values.items():
        if not _usable_key(key):
            continue
        as_text = text(value)
        result[key] = as_text if as_text is not None else ""
    return result or None


def canonical_status(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return _CANONICAL.get(value.strip().lower(), value.strip())


def status_rank(status: str | None) -> int:
    if status in TERMINAL:
        return _TERMINAL_RANK
    if status in _LIFECYCLE:
        return _LIFECYCLE.index(status) + 1
    return 0


def stamp(moment: datetime, status: str | None = None) -> int:
    """The entity version of a run view: milliseconds since the epoch x 16 + lifecycle rank (it
    stays below 2**53, so any JSON reader keeps it exact)."""
    millis = (moment - _EPOCH) // timedelta(milliseconds=1)
    return millis * 16 + status_rank(status)


def document_id(event_id: str) -> str:
    """The event (or run) id as the `_id`; one longer than Elasticsearch allows is hashed (stably)."""
    if len(event_id.encode()) <= MAX_ID_BYTES:
        return event_id
    digest = hashlib.blake2b(event_id.encode(), digest_size=24).digest()
    return "h:" + base64.urlsafe_b64encode(digest).decode()


def _compact(value: Any) -> Any:
    """Drop None values and empty objects, recursively."""
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = _compact(item)
            if not item:
                continue
        elif item is None:
            continue
        out[key] = item
    return out


def _one_or_many(values: list[str]) -> str | list[str] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def model_refs(model_ids: Any) -> list[tuple[str, str | None]]:
    """ModelDeployed's `ModelIds`, `name:version,name:version` -> [(name, version)]."""
    if not isinstance(model_ids, str):
        return []
    refs: list[tuple[str, str | None]] = []
    for part in model_ids.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, version = part.rpartition(":")
        refs.append((name, version or None) if sep and name else (part, None))
    return refs


def _workspace_fields(workspace: Workspace | None) -> dict[str, Any]:
    if workspace is None:
        return {}
    return {
        "workspace": {"name": workspace.name, "id": workspace.id},
        "subscription_id": workspace.subscription_id,
        "resource_group": workspace.resource_group,
    }


def _subject_parts(subject: str | None) -> dict[str, str]:
    """`experiments/<id>/runs/<run>`, `models/<name>:<version>`, `endpoints/<name>` ->
    {"experiments": id, "runs": run, ...}."""
    parts = (subject or "").strip("/").split("/")
    return {parts[i].lower(): parts[i + 1] for i in range(0, len(parts) - 1, 2) if parts[i + 1]}


def _lookup(values: dict[str, str] | None, keys: tuple[str, ...]) -> str | None:
    if not values:
        return None
    lowered = {k.lower(): v for k, v in values.items()}
    for key in keys:
        if lowered.get(key):
            return lowered[key]
    return None


# -- run events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunEvent:
    """What one run event says about its run."""

    run_id: str
    status: str | None
    type: str | None
    experiment_name: str | None
    experiment_id: str | None
    pipeline_run_id: str | None
    pipeline_role: str | None  # "pipeline", "step" or None
    tags: dict[str, str] | None
    properties: dict[str, str] | None
    workspace: Workspace | None
    event_id: str
    action: str
    time: datetime
    # When the webhook received the event; a later event time counts as this one for ordering.
    received: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def stamp(self) -> int:
        moment = self.time if self.received is None else min(self.time, self.received)
        return stamp(moment, self.status)


def event_time(event: Event, received: datetime) -> datetime:
    return event.time if event.time is not None else received


def run_event(event: Event, received: datetime) -> RunEvent | None:
    """The run an event is about, for RunStatusChanged and RunCompleted; else None."""
    if event.type not in (RUN_STATUS_CHANGED, RUN_COMPLETED):
        return None
    data = normalise_data(event.data)
    subject = _subject_parts(event.subject)
    run_id = text(data.get("run_id")) or subject.get("runs")
    if not run_id:
        return None
    status = canonical_status(data.get("run_status"))
    if status is None and event.type == RUN_COMPLETED:
        status = "Completed"
    tags = free_form(data.get("run_tags"))
    properties = free_form(data.get("run_properties"))
    run_type = text(data.get("run_type")) or _lookup(properties, ("azureml.runsource",))
    parent = _lookup(properties, PIPELINE_PARENT_KEYS) or _lookup(tags, PIPELINE_PARENT_KEYS)
    role: str | None = None
    pipeline_run_id: str | None = None
    if parent and parent != run_id:
        role, pipeline_run_id = "step", parent
    elif (run_type or "").lower() in PIPELINE_RUN_TYPES:
        role, pipeline_run_id = "pipeline", run_id
    elif (run_type or "").lower() in STEP_RUN_TYPES:
        role = "step"
    return RunEvent(
        run_id=run_id,
        status=status,
        type=run_type,
        experiment_name=text(data.get("experiment_name")),
        experiment_id=text(data.get("experiment_id")) or subject.get("experiments"),
        pipeline_run_id=pipeline_run_id,
        pipeline_role=role,
        tags=tags,
        properties=properties,
        workspace=event.workspace,
        event_id=event.id,
        action=event.short_type,
        time=event_time(event, received),
        received=received,
    )


def _run_fields(run: RunEvent) -> dict[str, Any]:
    return {
        "run": {
            "id": run.run_id,
            "status": run.status,
            "type": run.type,
            "tags": run.tags,
            "properties": run.properties,
        },
        "experiment": {"name": run.experiment_name, "id": run.experiment_id},
        "pipeline": {"run_id": run.pipeline_run_id, "role": run.pipeline_role},
    }


def run_view(run: RunEvent) -> dict[str, Any]:
    """The `azureml` object of the run's entity document as this event sees it (no job details)."""
    view = _run_fields(run) | _workspace_fields(run.workspace)
    view["run"]["status_time"] = iso(run.time)
    view["last_event"] = {"id": run.event_id, "action": run.action, "time": iso(run.time)}
    view["source"] = "event"
    return dict(_compact(view))


def run_entity(run_id: str, entity_stamp: int, view: dict[str, Any]) -> EntityWrite:
    return EntityWrite(
        index=RUNS_INDEX, id=document_id(run_id), owner=OWNER, stamp=entity_stamp, doc={"azureml": view}
    )


# -- event documents -----------------------------------------------------------------------------


def _model_registered(data: dict[str, Any], subject: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    name = text(data.get("model_name"))
    version = text(data.get("model_version"))
    if name is None and "models" in subject:
        name, _, version_part = subject["models"].rpartition(":")
        version = version or version_part or None
    model = {
        "name": name,
        "version": version,
        "version_number": version_number(version),
        "ref": f"{name}:{version}" if name and version else None,
        "tags": free_form(data.get("model_tags")),
    }
    return model, {"model": {"properties": free_form(data.get("model_properties"))}}


def _model_deployed(data: dict[str, Any], subject: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    refs = model_refs(data.get("model_ids"))
    names = [name for name, _ in refs]
    versions = [version for _, version in refs if version is not None]
    numbers = [n for n in (version_number(v) for v in versions) if n is not None]
    model = {
        "name": _one_or_many(list(dict.fromkeys(names))),
        "version": _one_or_many(versions),
        "version_number": numbers[0] if len(numbers) == 1 else (numbers or None),
        "ref": _one_or_many([f"{n}:{v}" for n, v in refs if v is not None]),
    }
    deployment = {
        "name": text(data.get("service_name")) or subject.get("endpoints"),
        "compute_type": text(data.get("service_compute_type")),
        "model_ids": text(data.get("model_ids")),
        "tags": free_form(data.get("service_tags")),
        "properties": free_form(data.get("service_properties")),
    }
    return model, {"deployment": deployment}


def _drift(data: dict[str, Any]) -> dict[str, Any]:
    def when(key: str) -> str | None:
        try:
            return iso(parse_time(data.get(key)))
        except ValueError:
            return None

    coefficient = data.get("drift_coefficient")
    if (
        not isinstance(coefficient, int | float)
        or isinstance(coefficient, bool)
        or not math.isfinite(coefficient)
    ):
        coefficient = None
    return {
        "run": {"id": text(data.get("run_id"))},
        "drift": {
            "id": text(data.get("data_drift_id")),
            "name": text(data.get("data_drift_name")),
            "base_dataset_id": text(data.get("base_dataset_id")),
            "target_dataset_id": text(data.get("target_dataset_id")),
            "coefficient": coefficient,
            "start_time": when("start_time"),
            "end_time": when("end_time"),
        },
    }


_OUTCOME = {"Completed": "success", "Failed": "failure", "Canceled": "failure"}


_UNSET: Any = object()


def event_document(event: Event, received: datetime, run: RunEvent | None = _UNSET) -> dict[str, Any]:
    """The `mlops-events-*` document of one event (any type; unknown types are kept). `run` is
    `run_event(event, received)` when the caller has it already."""
    moment = event_time(event, received)
    data = normalise_data(event.data)
    subject = _subject_parts(event.subject)
    workspace = event.workspace
    azureml: dict[str, Any] = {
        "event_type": event.type,
        "schema": event.schema,
        "topic": event.source or None,
        "subject": event.subject or None,
        "time_source": "event" if event.time is not None else "received",
    } | _workspace_fields(workspace)
    doc: dict[str, Any] = {"@timestamp": iso(moment)}
    outcome: str | None = None
    if run is _UNSET:
        run = run_event(event, received)
    if run is not None:
        azureml |= _run_fields(run)
        outcome = _OUTCOME.get(run.status or "", "unknown")
    elif event.type == MODEL_REGISTERED:
        model, extra = _model_registered(data, subject)
        doc["ml"] = {"model": model}
        azureml |= extra
    elif event.type == MODEL_DEPLOYED:
        model, extra = _model_deployed(data, subject)
        doc["ml"] = {"model": model}
        azureml |= extra
    elif event.type == DATASET_DRIFT_DETECTED:
        azureml |= _drift(data)
    doc["event"] = {
        "id": event.id,
        "action": event.short_type,
        "kind": "event",
        "dataset": "azureml.events",
        "module": "azureml",
        "provider": event.type.rsplit(".", 1)[0] if "." in event.type else None,
        "outcome": outcome,
        "created": iso(moment),
        "ingested": iso(received),
    }
    doc["azureml"] = azureml
    if workspace is not None:
        doc["cloud"] = {
            "provider": "azure",
            "account": {"id": workspace.subscription_id},
            "service": {"name": "Machine Learning"},
        }
    compacted: dict[str, Any] = _compact(doc)
    # The event exactly as delivered: stored, not indexed.
    compacted["mlops"] = {"raw": event.raw}
    return compacted


def event_action(event: Event, received: datetime, run: RunEvent | None = _UNSET) -> dict[str, Any]:
    """The bulk action writing the event's document into the partition of its own time."""
    moment = event_time(event, received)
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    return {
        "_op_type": "index",
        "_index": events_index(ms),
        "_id": document_id(event.id),
        "_source": event_document(event, received, run),
    }


# -- notifications -------------------------------------------------------------------------------


def notification_kind(event: Event, run: RunEvent | None) -> str | None:
    """started / completed / failed / canceled / model_registered, or None."""
    if event.type == MODEL_REGISTERED:
        return "model_registered"
    if run is None:
        return None
    return {
        "Running": "started",
        "Completed": "completed",
        "Failed": "failed",
        "Canceled": "canceled",
    }.get(run.status or "")
