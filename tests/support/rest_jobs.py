"""An offline `JobsClient`: answers from saved Azure ML REST responses.

Jobs are given as the JSON the workspace's jobs API returns (an ARM `JobBase` resource), pipeline
children as the JSON of the run-history API (a `Run`), and both are turned into azure-ai-ml
entities exactly as `MLClient` does: the REST model deserializer of azure-ai-ml, then
`Job._from_rest_object`. So what the shipper reads from these entities is what it would read
from a live workspace. Azure cannot run here, so this is the nearest real thing the tests have;
scripted failures (`fail`) stand for throttling and outages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from shipper.core.events import Workspace


def job_from_rest(document: Mapping[str, Any]) -> Any:
    """A jobs-API response body (`JobBase`) -> azure-ai-ml `Job`, as `MLClient.jobs.get` builds it."""
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import _deserialize
    from azure.ai.ml._restclient.arm_ml_service.models import JobBase
    from azure.ai.ml.entities import Job

    return Job._from_rest_object(_deserialize(JobBase, dict(document)))


def child_from_rest(document: Mapping[str, Any]) -> Any:
    """A run-history `Run` body -> the `_BaseJob` that `MLClient.jobs.list(parent_job_name=...)`
    yields for a pipeline step."""
    from azure.ai.ml._restclient.runhistory._utils.model_base import _deserialize
    from azure.ai.ml._restclient.runhistory.models import Run
    from azure.ai.ml.entities import Job

    return Job._from_rest_object(_deserialize(Run, dict(document)))


class RestJsonJobs:
    def __init__(
        self,
        jobs: Iterable[Mapping[str, Any]] = (),
        children: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
        images: Mapping[str, str] | None = None,
    ) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}
        self._children: dict[str, list[dict[str, Any]]] = {}
        self._images = dict(images or {})
        self._failures: dict[str, list[BaseException]] = {}
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []
        for job in jobs:
            self.add_job(job)
        for parent, runs in (children or {}).items():
            for run in runs:
                self.add_child(parent, run)

    @classmethod
    def from_directory(cls, path: Path) -> RestJsonJobs:
        """`*.json` files of jobs-API bodies; `children/<parent>/*.json` of run-history bodies."""
        client = cls()
        for file in sorted(path.glob("*.json")):
            client.add_job(orjson.loads(file.read_bytes()))
        for folder in sorted((path / "children").glob("*")):
            for file in sorted(folder.glob("*.json")):
                client.add_child(folder.name, orjson.loads(file.read_bytes()))
        return client

    def add_job(self, document: Mapping[str, Any]) -> None:
        with self._lock:
            self._jobs[str(document["name"])] = dict(document)

    def add_child(self, parent: str, document: Mapping[str, Any]) -> None:
        with self._lock:
            self._children.setdefault(parent, []).append(dict(document))

    def fail(self, name: str, *errors: BaseException) -> None:
        """The next calls about `name` raise these errors, in order, before answering again."""
        with self._lock:
            self._failures.setdefault(name, []).extend(errors)

    def _check(self, operation: str, name: str) -> None:
        with self._lock:
            self.calls.append((operation, name))
            queued = self._failures.get(name)
            error = queued.pop(0) if queued else None
        if error is not None:
            raise error

    def get_job(self, workspace: Workspace, name: str) -> Any:
        self._check("get_job", name)
        document = self._jobs.get(name)
        if document is not None:
            return job_from_rest(document)
        if any(str(c.get("runId")) == name for runs in self._children.values() for c in runs):
            from azure.ai.ml.exceptions import PipelineChildJobError

            raise PipelineChildJobError(job_id=name)
        from azure.core.exceptions import ResourceNotFoundError

        raise ResourceNotFoundError(f"job {name} not found in workspace {workspace.name}")

    def list_jobs(self, workspace: Workspace, max_results: int) -> Iterable[Any]:
        self._check("list_jobs", workspace.name)
        documents = list(self._jobs.values())[:max_results]
        return [job_from_rest(d) for d in documents]

    def list_children(self, workspace: Workspace, parent: str) -> Iterable[Any]:
        self._check("list_children", parent)
        return [child_from_rest(d) for d in self._children.get(parent, [])]

    def environment_image(self, workspace: Workspace, environment: str) -> str | None:
        self._check("environment_image", environment)
        return self._images.get(environment)
