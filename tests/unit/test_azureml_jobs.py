"""Job details through azure-ai-ml: REST JSON (tests/golden/azureml/jobs/) -> azure-ai-ml's own
deserializer -> `azureml.job.*`, and the enrichment's retry rules, without Azure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.rest import HttpRequest

from shipper.azure.enrich import EnrichRequest, PendingRuns
from shipper.azure.jobs import classify, job_fields, parse_environment
from shipper.core.events import parse_workspace
from tests.support.rest_jobs import RestJsonJobs

JOBS = Path(__file__).resolve().parent.parent / "golden" / "azureml" / "jobs"
WS = parse_workspace(
    "/subscriptions/9f2c4e1a-7b3d-4c55-8e0f-2a6b1d3c4e5f/resourceGroups/ml-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/churn-ws"
)
assert WS is not None
AUTOML = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"


def http_error(status: int) -> HttpResponseError:
    """An azure-core error carrying a real HTTP response of that status."""
    from azure.core.pipeline.transport import HttpResponse as LegacyResponse

    class Response(LegacyResponse):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(HttpRequest("GET", "https://management.azure.com/x"), None)
            self.status_code = status
            self.reason = "Too Many Requests" if status == 429 else "Error"

        def body(self) -> bytes:
            return b'{"error": {"code": "TooManyRequests", "message": "slow down"}}'

    return HttpResponseError(response=Response())


def jobs() -> RestJsonJobs:
    return RestJsonJobs.from_directory(JOBS)


def test_command_job_fields() -> None:
    fields = job_fields(jobs().get_job(WS, AUTOML))
    assert fields == {
        "name": AUTOML,
        "display_name": "lasso-lars-iteration-5",
        "type": "command",
        "status": "Failed",
        "experiment_name": "automl-local-regression",
        "description": "AutoML child run 5",
        "compute": "cpu-cluster",
        "compute_id": WS.id + "/computes/cpu-cluster",
        "compute_type": "amlcompute",
        "environment": "azureml:AzureML-sklearn-1.5:12",
        "command": "python train.py --algorithm LassoLars --iteration 5",
        "start_time": "2017-06-26T18:31:10.000Z",
        "end_time": "2017-06-26T18:40:55.000Z",
        "duration_ms": 585_000,
        "created_at": "2017-06-26T18:30:00.000Z",
        "created_by": "Ada Lovelace",
        "studio_url": f"https://ml.azure.com/runs/{AUTOML}?wsid={WS.id}",
        "tags": {"team": "growth", "iteration": "5"},
    }


def test_pipeline_job_fields() -> None:
    fields = job_fields(jobs().get_job(WS, "pipe-7f3a"))
    assert fields["type"] == "pipeline"
    assert fields["compute"] == "gpu-cluster"  # the pipeline's default compute
    assert fields["step_count"] == 2
    assert fields["duration_ms"] == 1_170_000


def test_pipeline_steps_are_not_jobs_of_their_own() -> None:
    client = jobs()
    with pytest.raises(Exception) as caught:
        client.get_job(WS, "step-train-1")
    assert classify(caught.value) == "pipeline_child"
    (step,) = client.list_children(WS, "pipe-7f3a")
    fields = job_fields(step)
    assert fields["name"] == "step-train-1"
    assert fields["parent_run_id"] == "pipe-7f3a"
    assert fields["status"] == "Completed"
    assert fields["created_by"] == "Ada Lovelace"


def test_unknown_job() -> None:
    with pytest.raises(ResourceNotFoundError):
        jobs().get_job(WS, "nope")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("azureml:AzureML-sklearn-1.5:12", ("AzureML-sklearn-1.5", "12", None)),
        ("azureml:my-env@latest", ("my-env", None, "latest")),
        ("my-env:3", ("my-env", "3", None)),
        (WS.id + "/environments/my-env/versions/4", ("my-env", "4", None)),
        ("azureml:bare", ("bare", None, None)),
    ],
)
def test_environment_references(reference: str, expected: tuple[Any, ...]) -> None:
    assert parse_environment(reference) == expected


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ResourceNotFoundError("gone"), "not_found"),
        (ServiceRequestError("connection reset"), "transient"),
        (ClientAuthenticationError("no credential"), "permanent"),
        (ValueError("odd"), "permanent"),
        (TimeoutError(), "transient"),
    ],
)
def test_classify(error: BaseException, kind: str) -> None:
    assert classify(error) == kind


@pytest.mark.parametrize(
    ("status", "kind"), [(429, "transient"), (503, "transient"), (403, "permanent"), (404, "not_found")]
)
def test_classify_http(status: int, kind: str) -> None:
    assert classify(http_error(status)) == kind


def request(run_id: str, stamp: int = 1) -> EnrichRequest:
    return EnrichRequest(WS, run_id, stamp, {"run": {"id": run_id}})


def test_pending_runs_keep_one_request_per_run_and_the_newest() -> None:
    pending = PendingRuns(capacity=2)
    assert pending.put(request("a", 5))
    assert pending.put(request("a", 3))  # older: ignored, but not an error
    assert pending.put(request("b", 1))
    assert not pending.put(request("c", 1))  # full
    first = pending.get()
    assert first is not None and (first.run_id, first.stamp) == ("a", 5)
    pending.done()
    assert pending.put(request("a", 7))
    assert len(pending) == 2
