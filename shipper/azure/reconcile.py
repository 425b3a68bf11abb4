"""Reconcile: write the runs whose Event Grid events never arrived.

Event Grid is at-least-once only while the subscription exists and the endpoint is reachable
within 24 hours; a subscription created late, a filter too narrow, or a long outage leave runs
without events. A reconcile pass lists the workspace's recent jobs through azure-ai-ml
(`MLClient.jobs.list`, and the steps of each pipeline), compares each with its `mlops-runs`
document, and writes the runs that are missing there, whose `azureml.run.status` differs from the
job's, or whose enrichment is still pending or failed (queued enrichments do not survive a
restart), with `azureml.source: reconcile` and full `azureml.job.*` details.

Its entity stamp is the time of the observation: what the jobs API says now is newer than any
event generated before now, and an event generated later still wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch

from shipper import telemetry as metrics
from shipper.azure.jobs import JobsClient, describe, job_fields
from shipper.core.entities import EntityWrite
from shipper.core.events import Workspace, parse_time
from shipper.core.names import RUNS_INDEX
from shipper.sink.bulk import BulkResult, BulkWriter
from shipper.sink.entities import upsert_entities
from shipper.transforms.azureml_events import document_id, iso, run_entity, stamp

log = logging.getLogger(__name__)


@dataclass
class ReconcileSummary:
    workspaces: int = 0
    jobs_seen: int = 0
    up_to_date: int = 0
    written: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    writes: BulkResult = field(default_factory=BulkResult)

    def line(self) -> str:
        return (
            f"reconcile: {self.workspaces} workspaces, {self.jobs_seen} recent jobs, "
            f"{self.up_to_date} up to date, {len(self.written)} runs written"
            + (f", {len(self.errors)} errors" if self.errors else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "workspaces": self.workspaces,
            "jobs_seen": self.jobs_seen,
            "up_to_date": self.up_to_date,
            "written": self.written,
            "errors": self.errors,
        }


def _created(fields: dict[str, Any]) -> datetime | None:
    try:
        return parse_time(fields.get("created_at"))
    except ValueError:
        return None


def _up_to_date(stored: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Same status as the job, and no enrichment left pending or failed (a restart loses queued
    enrichments; reconcile fills them in)."""
    status = (stored.get("run") or {}).get("status")
    enrichment = (stored.get("enrichment") or {}).get("status")
    return status == fields.get("status") and enrichment not in ("pending", "failed")


def job_view(workspace: Workspace, fields: dict[str, Any], parent: str | None) -> dict[str, Any]:
    """The run document's `azureml` view built from a job instead of an event."""
    run: dict[str, Any] = {"id": fields["name"], "status": fields.get("status"), "type": fields.get("type")}
    if fields.get("tags"):
        run["tags"] = fields["tags"]
    view: dict[str, Any] = {
        "run": run,
        "experiment": {"name": fields["experiment_name"]} if fields.get("experiment_name") else None,
        "workspace": {"name": workspace.name, "id": workspace.id},
        "subscription_id": workspace.subscription_id,
        "resource_group": workspace.resource_group,
        "job": fields,
        "enrichment": {"status": "ok", "attempts": 1},
        "source": "reconcile",
    }
    if parent:
        view["pipeline"] = {"run_id": parent, "role": "step"}
    elif fields.get("type") == "pipeline":
        view["pipeline"] = {"run_id": fields["name"], "role": "pipeline"}
    return {k: v for k, v in view.items() if v is not None}


def reconcile(
    client: Elasticsearch,
    writer: BulkWriter,
    jobs: JobsClient,
    workspaces: Iterable[Workspace],
    lookback: timedelta = timedelta(hours=24),
    max_jobs: int = 1000,
    dry_run: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ReconcileSummary:
    summary = ReconcileSummary()
    now = clock()
    since = now - lookback
    for workspace in workspaces:
        summary.workspaces += 1
        try:
            found = _recent_jobs(jobs, workspace, since, max_jobs)
        except Exception as exc:
            message = f"{workspace.name}: listing jobs failed: {describe(exc)}"
            summary.errors.append(message)
            log.error("reconcile %s", message)
            continue
        summary.jobs_seen += len(found)
        if not found:
            continue
        ids = sorted({fields["name"] for fields, _ in found})
        docs = client.mget(
            index=RUNS_INDEX,
            ids=[document_id(i) for i in ids],
            source_includes=["azureml.run.status", "azureml.enrichment.status"],
        )["docs"]
        stored = {
            run_id: (d.get("_source") or {}).get("azureml") or {}
            for run_id, d in zip(ids, docs, strict=True)
            if d.get("found")
        }
        writes: list[EntityWrite] = []
        for fields, parent in found:
            run_id = fields["name"]
            current = stored.get(run_id)
            if current is not None and _up_to_date(current, fields):
                summary.up_to_date += 1
                continue
            view = job_view(workspace, fields, parent)
            view["reconciled_at"] = iso(now)
            writes.append(run_entity(run_id, stamp(now, fields.get("status")), view))
            summary.written.append(run_id)
        if writes and not dry_run:
            summary.writes.add(upsert_entities(client, writer, writes))
            metrics.RECONCILED.inc(len(writes))
    return summary


def _recent_jobs(
    jobs: JobsClient, workspace: Workspace, since: datetime, max_jobs: int
) -> list[tuple[dict[str, Any], str | None]]:
    """(fields, parent pipeline id) of jobs created since `since`, pipeline steps included."""
    found: list[tuple[dict[str, Any], str | None]] = []
    for job in jobs.list_jobs(workspace, max_jobs):
        fields = job_fields(job)
        created = _created(fields)
        if "name" not in fields or (created is not None and created < since):
            continue
        found.append((fields, None))
        if fields.get("type") == "pipeline":
            for child in jobs.list_children(workspace, fields["name"]):
                child_fields = job_fields(child)
                if "name" in child_fields:
                    child_fields.setdefault("parent_run_id", fields["name"])
                    # azure-ai-ml lists steps with the experiment's id where the name belongs.
                    child_fields.pop("experiment_name", None)
                    if fields.get("experiment_name"):
                        child_fields["experiment_name"] = fields["experiment_name"]
                    found.append((child_fields, fields["name"]))
    return found
