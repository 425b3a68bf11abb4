"""Azure ML job details through azure-ai-ml, behind a small interface of our own.

`JobsClient` is all the shipper needs from Azure: a job by name, recent jobs, a pipeline's child
jobs and an environment's image. `AzureMLJobs` implements it with `MLClient` and azure-identity's
`DefaultAzureCredential` (managed identity, workload identity, environment variables or `az login`),
one client per workspace named by the event's topic. The tests implement it offline from saved REST
responses through azure-ai-ml's own deserializer (tests/support/rest_jobs.py).

`job_fields` turns an azure-ai-ml job entity (`Job` or the `_BaseJob` that pipeline children are
listed as) into the `azureml.job.*` fields.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shipper.core.events import Workspace, parse_time
from shipper.transforms.azureml_events import canonical_status, free_form, iso, text

log = logging.getLogger(__name__)

Failure = Literal["not_found", "transient", "permanent", "pipeline_child"]

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class JobsClient(Protocol):
    """What the shipper asks of Azure ML. Implementations raise azure-core exceptions."""

    def get_job(self, workspace: Workspace, name: str) -> Any:
        """The job entity (azure-ai-ml `Job`) called `name`."""
        ...

    def list_jobs(self, workspace: Workspace, max_results: int) -> Iterable[Any]:
        """Recent top-level jobs, newest first where the service orders them so."""
        ...

    def list_children(self, workspace: Workspace, parent: str) -> Iterable[Any]:
        """The child (step) jobs of pipeline job `parent`."""
        ...

    def environment_image(self, workspace: Workspace, environment: str) -> str | None:
        """The container image of an environment reference such as `azureml:name:version`."""
        ...


def classify(exc: BaseException) -> Failure:
    """How a failed Azure call should be treated: retried (transient) or not."""
    name = type(exc).__name__
    if name == "PipelineChildJobError":
        return "pipeline_child"
    if name == "ResourceNotFoundError":
        return "not_found"
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        if status == 404:
            return "not_found"
        return "transient" if status in TRANSIENT_STATUS else "permanent"
    if name in ("ServiceRequestError", "ServiceResponseError", "ServiceRequestTimeoutError"):
        return "transient"
    if isinstance(exc, ConnectionError | TimeoutError):
        return "transient"
    return "permanent"


def describe(exc: BaseException) -> str:
    """One line about a failed call, without anything that could be a credential."""
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", None) or exc).splitlines()[0] if str(exc) else ""
    head = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
    return f"{head}: {message[:500]}" if message else head


class AzureMLJobs:
    """`JobsClient` over azure-ai-ml's `MLClient`; credentials from `DefaultAzureCredential`."""

    def __init__(self, credential: Any = None) -> None:
        self._credential = credential
        self._clients: dict[str, Any] = {}
        self._images: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()

    def _client(self, workspace: Workspace) -> Any:
        with self._lock:
            client = self._clients.get(workspace.id.lower())
            if client is None:
                from azure.ai.ml import MLClient

                if self._credential is None:
                    from azure.identity import DefaultAzureCredential

                    self._credential = DefaultAzureCredential()
                client = MLClient(
                    self._credential,
                    subscription_id=workspace.subscription_id,
                    resource_group_name=workspace.resource_group,
                    workspace_name=workspace.name,
                )
                self._clients[workspace.id.lower()] = client
            return client

    def get_job(self, workspace: Workspace, name: str) -> Any:
        return self._client(workspace).jobs.get(name)

    def list_jobs(self, workspace: Workspace, max_results: int) -> Iterable[Any]:
        jobs = self._client(workspace).jobs.list()
        for count, job in enumerate(jobs):
            if count >= max_results:
                return
            if job is not None:
                yield job

    def list_children(self, workspace: Workspace, parent: str) -> Iterable[Any]:
        return [j for j in self._client(workspace).jobs.list(parent_job_name=parent) if j is not None]

    def environment_image(self, workspace: Workspace, environment: str) -> str | None:
        key = (workspace.id.lower(), environment)
        if key in self._images:
            return self._images[key]
        name, version, label = parse_environment(environment)
        image: str | None = None
        if name:
            envs = self._client(workspace).environments
            found = envs.get(name, version=version) if version else envs.get(name, label=label or "latest")
            image = getattr(found, "image", None)
        self._images[key] = image
        return image


def parse_environment(reference: str) -> tuple[str | None, str | None, str | None]:
    """`azureml:name:version`, `azureml:name@label`, `name:version`, or a resource id
    `.../environments/<name>/versions/<version>` -> (name, version, label)."""
    ref = reference.strip()
    if "/environments/" in ref:
        tail = ref.split("/environments/", 1)[1].split("/")
        return tail[0] or None, tail[2] if len(tail) > 2 else None, None
    if ref.lower().startswith("azureml:"):
        ref = ref[len("azureml:") :]
    if "@" in ref:
        name, _, label = ref.partition("@")
        return name or None, None, label or None
    name, sep, version = ref.partition(":")
    return name or None, (version or None) if sep else None, None


def _value(value: Any) -> Any:
    """Enums (the REST models' JobStatus, ...) -> their value."""
    return getattr(value, "value", value)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return parse_time(value)
    except ValueError:
        return None


def _who(value: Any) -> str | None:
    """A creator: a plain name, or the run-history `User` model (`user_name`)."""
    if value is None or isinstance(value, str):
        return value or None
    for attribute in ("user_name", "userName", "name"):
        found = value.get(attribute) if isinstance(value, dict) else getattr(value, attribute, None)
        if isinstance(found, str) and found:
            return found
    return None


def _compute_name(compute: Any) -> str | None:
    value = text(_value(compute))
    if not value:
        return None
    if value.lower().startswith("azureml:"):
        value = value[len("azureml:") :]
    return value.rstrip("/").rsplit("/", 1)[-1]


def _environment(job: Any) -> tuple[str | None, str | None]:
    """(reference, image) of a job's environment, as far as the entity knows it."""
    env = getattr(job, "environment", None)
    if env is None:
        return None, None
    if isinstance(env, str):
        return env, None
    name, version = getattr(env, "name", None), getattr(env, "version", None)
    ref = f"azureml:{name}:{version}" if name and version else (f"azureml:{name}" if name else None)
    return ref, getattr(env, "image", None)


def job_fields(job: Any, image: str | None = None) -> dict[str, Any]:
    """An azure-ai-ml job entity -> `azureml.job.*` (None values dropped)."""
    properties: dict[str, Any] = dict(getattr(job, "properties", None) or {})
    lowered = {str(k).lower(): v for k, v in properties.items()}
    created = getattr(job, "creation_context", None)
    start = _time(lowered.get("starttimeutc"))
    end = _time(lowered.get("endtimeutc"))
    environment, env_image = _environment(job)
    parent = text(lowered.get("azureml.pipelinerunid")) or text(getattr(job, "parent_job_name", None))
    settings = getattr(job, "settings", None)
    default_compute = getattr(settings, "default_compute", None) if settings is not None else None
    steps = getattr(job, "jobs", None)
    fields: dict[str, Any] = {
        "name": text(getattr(job, "name", None)),
        "display_name": text(getattr(job, "display_name", None)),
        "type": text(_value(getattr(job, "type", None))),
        "status": canonical_status(text(_value(getattr(job, "status", None)))),
        "experiment_name": text(getattr(job, "experiment_name", None)),
        "description": text(getattr(job, "description", None)),
        "compute": _compute_name(getattr(job, "compute", None) or default_compute),
        "compute_id": text(_value(getattr(job, "compute", None) or default_compute)),
        "compute_type": text(lowered.get("_azureml.computetargettype")),
        "environment": environment,
        "image": image or env_image,
        "command": text(getattr(job, "command", None)),
        "parent_run_id": parent,
        "step_count": len(steps) if isinstance(steps, dict) and steps else None,
        "start_time": iso(start) if start else None,
        "end_time": iso(end) if end else None,
        "duration_ms": int((end - start).total_seconds() * 1000) if start and end and end >= start else None,
        "created_at": iso(t) if (t := _time(getattr(created, "created_at", None))) else None,
        "created_by": _who(getattr(created, "created_by", None)),
        "studio_url": text(getattr(job, "studio_url", None)),
        "tags": free_form(getattr(job, "tags", None)),
    }
    return {k: v for k, v in fields.items() if v is not None}
