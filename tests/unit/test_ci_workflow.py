"""The hosted CI workflow and the choice of the end-to-end backend, checked where Docker is absent.

The workflow is validated by check-jsonschema against the GitHub workflow schema it vendors (no
network), and a broken copy must be refused, so the check itself is shown able to fail.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy_tools import venv_tool
from tests.support.docker_stack import (
    NAMESPACE_DIRECT,
    Decision,
    decide,
    filebeat_config,
    image,
    stack_version,
)

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "e2e.yml"


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return data


def test_workflow_passes_the_github_workflow_schema() -> None:
    result = _check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_refuses_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = WORKFLOW.read_text(encoding="utf-8").replace("    runs-on: ubuntu-24.04\n", "    runs_on: x\n", 1)
    broken.write_text(text, encoding="utf-8")
    result = _check(broken)
    assert result.returncode != 0
    assert "runs_on" in result.stdout + result.stderr


def test_every_action_is_pinned_by_full_commit_sha_with_its_tag() -> None:
    uses = re.findall(r"uses: (\S+)(.*)", WORKFLOW.read_text(encoding="utf-8"))
    assert uses
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), (ref, comment)


def test_jobs_run_the_test_command_and_the_docker_backend() -> None:
    jobs = _workflow()["jobs"]
    assert set(jobs) == {"test", "e2e"}
    assert any(step.get("run") == "bash .ci/run" for step in jobs["test"]["steps"])
    e2e = jobs["e2e"]
    assert e2e["runs-on"].startswith("ubuntu-")
    assert e2e["env"]["SHIPPER_TEST_BACKEND"] == "docker"
    assert any("pytest tests/e2e" in step.get("run", "") for step in e2e["steps"])
    for job in jobs.values():
        uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
        assert uploads and all(s["if"] == "failure()" for s in uploads), job


def test_workflow_permissions_are_read_only() -> None:
    assert _workflow()["permissions"] == {"contents": "read"}


@pytest.mark.parametrize(
    ("requested", "problem", "action"),
    [
        (None, None, "skip"),
        ("local", None, "skip"),
        ("local", "no Docker engine here", "skip"),
        (None, "no Docker engine here", "skip"),
        ("auto", None, "run"),
        ("auto", "no Docker engine here", "skip"),
        ("docker", None, "run"),
        (" Docker ", None, "run"),
        ("docker", "no Docker engine here", "fail"),
        ("podman", None, "fail"),
    ],
)
def test_backend_decision(requested: str | None, problem: str | None, action: str) -> None:
    decision = decide(requested, lambda: problem)
    assert decision.action == action
    if problem is not None and action != "run":
        assert problem in decision.reason
    if action != "run":
        assert "SHIPPER_TEST_BACKEND" in decision.reason


def test_failure_names_the_fix() -> None:
    decision = decide("docker", lambda: "no Docker engine here")
    assert decision == Decision(
        "fail",
        "SHIPPER_TEST_BACKEND=docker asks for the end-to-end tests against real Elasticsearch, Kibana, "
        f"Logstash and Filebeat {stack_version()}, but no Docker engine here; start Docker (or point "
        "DOCKER_HOST at it), or unset SHIPPER_TEST_BACKEND",
    )


def test_images_are_the_official_ones_at_the_pinned_version() -> None:
    assert stack_version() == "9.5.4"
    assert image("kibana") == "docker.elastic.co/kibana/kibana:9.5.4"
    assert image("filebeat") == "docker.elastic.co/beats/filebeat:9.5.4"
    compose = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    for product in ("elasticsearch/elasticsearch", "kibana/kibana", "logstash/logstash", "beats/filebeat"):
        assert f"docker.elastic.co/{product}:${{ELASTIC_STACK_VERSION" in compose


def test_direct_filebeat_is_the_documented_option_of_the_repo_file() -> None:
    to_logstash = filebeat_config(direct=False)
    direct = filebeat_config(direct=True)
    assert to_logstash == yaml.safe_load((REPO / "filebeat" / "filebeat.docker.yml").read_text("utf-8"))
    assert "output.logstash" not in direct
    assert direct["output.elasticsearch"]["index"] == f"logs-mlops.scoring-{NAMESPACE_DIRECT}"
    assert direct["output.elasticsearch"]["pipeline"] == "logs-mlops.scoring"
    assert direct["output.elasticsearch"]["api_key"] == "${ES_API_KEY}"
    assert direct["filebeat.inputs"] == to_logstash["filebeat.inputs"]


def test_node_certificate_names_the_network_alias_and_the_docker_host(tmp_path: Path) -> None:
    from cryptography import x509

    from tests.support.docker_stack import ES_ALIAS
    from tests.support.secure_es import make_certificates

    certs = make_certificates(tmp_path, extra_names=(ES_ALIAS, "10.1.2.3", "localhost"))
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", ES_ALIAS]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.1.2.3"]
