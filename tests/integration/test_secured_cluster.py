"""The shipper against a real secured Elasticsearch: HTTP TLS with certificate verification on by
default, a file-realm superuser (basic auth), an OAuth2 access token (bearer) and API keys where the
build can make them.

One secured node serves the whole module (tests/support/secure_es.py starts it from the same cached
distribution as scripts/stack). MLflow is the real tracking server of scripts/stack. Every test runs
the real CLI with SHIPPER_* variables; results are checked through an authenticated client.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from shipper.cli import main_group
from tests.support.secure_es import SecureNode, SecureNodeError, https_request, start_secure_node

pytestmark = pytest.mark.integration

EXIT_UNREACHABLE = 3  # shipper/cli.py: Elasticsearch or MLflow unreachable or refusing


@pytest.fixture(scope="session")
def secure_es() -> Iterator[SecureNode]:
    """The secured node; the session fails (never skips) when it does not start."""
    try:
        node = start_secure_node()
    except SecureNodeError as exc:
        pytest.fail(f"the secured Elasticsearch did not start:\n{exc}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def secure_client(secure_es: SecureNode) -> Iterator[Any]:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(
        secure_es.url,
        ca_certs=str(secure_es.ca_certs),
        basic_auth=(secure_es.username, secure_es.password),
        request_timeout=60,
    )
    yield client
    client.close()


@pytest.fixture
def env(secure_es: SecureNode, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """URL and MLflow set; how to trust and log in is up to each test."""
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", secure_es.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return monkeypatch


def trust_and_basic_auth(env: pytest.MonkeyPatch, node: SecureNode) -> None:
    env.setenv("SHIPPER_ELASTICSEARCH_CA_CERTS", str(node.ca_certs))
    env.setenv("SHIPPER_ELASTICSEARCH_USERNAME", node.username)
    env.setenv("SHIPPER_ELASTICSEARCH_PASSWORD", node.password)


def shipper(*args: str) -> Result:
    return CliRunner().invoke(main_group, list(args), catch_exceptions=False)


def test_the_node_really_is_secured(secure_es: SecureNode) -> None:
    """Guards the other tests: without credentials, or over plain http, nothing is served."""
    status, body = secure_es.request("GET", "/_cluster/health", authorization="Basic Og==")
    assert status == 401, body
    plain = secure_es.url.replace("https://", "http://")
    status, detail = https_request(plain + "/_cluster/health", secure_es.ca_certs)
    assert status is None, detail  # the node closes plaintext connections
    status, body = secure_es.request("GET", "/_security/_authenticate")
    assert status == 200, body
    assert body["authentication_realm"]["type"] == "file"
    assert "superuser" in body["roles"]


def test_check_with_ca_and_basic_auth(env: pytest.MonkeyPatch, secure_es: SecureNode) -> None:
    trust_and_basic_auth(env, secure_es)
    result = shipper("check")
    assert result.exit_code == 0, result.output
    assert f"elasticsearch: {secure_es.version};" in result.output
    assert "mlflow: " in result.output


def test_check_reports_security_on(env: pytest.MonkeyPatch, secure_es: SecureNode) -> None:
    trust_and_basic_auth(env, secure_es)
    result = shipper("check")
    assert result.exit_code == 0, result.output
    assert "security: on" in result.output


def test_check_without_ca_fails_certificate_verification(
    env: pytest.MonkeyPatch, secure_es: SecureNode
) -> None:
    """Verification is on by default: a certificate from an unknown CA is refused."""
    env.setenv("SHIPPER_ELASTICSEARCH_USERNAME", secure_es.username)
    env.setenv("SHIPPER_ELASTICSEARCH_PASSWORD", secure_es.password)
    result = shipper("check")
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert "TLS with Elasticsearch failed" in result.output and "certificate verify failed" in result.output
    assert "SHIPPER_ELASTICSEARCH_CA_CERTS" in result.output
    assert secure_es.password not in result.output


def test_check_with_verification_off_connects(env: pytest.MonkeyPatch, secure_es: SecureNode) -> None:
    env.setenv("SHIPPER_ELASTICSEARCH_VERIFY_CERTS", "false")
    env.setenv("SHIPPER_ELASTICSEARCH_USERNAME", secure_es.username)
    env.setenv("SHIPPER_ELASTICSEARCH_PASSWORD", secure_es.password)
    result = shipper("check")
    assert result.exit_code == 0, result.output
    assert f"elasticsearch: {secure_es.version};" in result.output


def test_wrong_password_is_refused_and_never_printed(
    env: pytest.MonkeyPatch, secure_es: SecureNode, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"not-the-password-{uuid.uuid4().hex}"
    trust_and_basic_auth(env, secure_es)
    env.setenv("SHIPPER_ELASTICSEARCH_PASSWORD", wrong)
    result = shipper("check")
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert "refused the credentials (HTTP 401)" in result.output
    assert "SHIPPER_ELASTICSEARCH_USERNAME/PASSWORD" in result.output
    for secret in (wrong, secure_es.password):
        assert secret not in result.output
        assert secret not in caplog.text


def test_bearer_token(env: pytest.MonkeyPatch, secure_es: SecureNode) -> None:
    assert secure_es.bearer_token, f"the node issued no access token: {secure_es.bearer_error}"
    env.setenv("SHIPPER_ELASTICSEARCH_CA_CERTS", str(secure_es.ca_certs))
    env.setenv("SHIPPER_ELASTICSEARCH_BEARER_TOKEN", secure_es.bearer_token)
    result = shipper("check")
    assert result.exit_code == 0, result.output
    assert secure_es.bearer_token not in result.output


def test_api_key(env: pytest.MonkeyPatch, secure_es: SecureNode) -> None:
    if secure_es.api_key is None:
        pytest.skip(
            "this Elasticsearch build cannot create API keys (the .security index needs the "
            f"analysis-common module): {secure_es.api_key_error}"
        )
    env.setenv("SHIPPER_ELASTICSEARCH_CA_CERTS", str(secure_es.ca_certs))
    env.setenv("SHIPPER_ELASTICSEARCH_API_KEY", secure_es.api_key)
    result = shipper("check")
    assert result.exit_code == 0, result.output
    assert secure_es.api_key not in result.output


def test_unknown_api_key_is_refused_and_never_printed(
    env: pytest.MonkeyPatch, secure_es: SecureNode, caplog: pytest.LogCaptureFixture
) -> None:
    """The API-key header is sent and a refusal is explained, even where keys cannot be made."""
    key = f"{uuid.uuid4().hex}:{uuid.uuid4().hex}"
    env.setenv("SHIPPER_ELASTICSEARCH_CA_CERTS", str(secure_es.ca_certs))
    env.setenv("SHIPPER_ELASTICSEARCH_API_KEY", key)
    result = shipper("check")
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert "refused the credentials (HTTP 401)" in result.output
    for part in (key, *key.split(":")):
        assert part not in result.output
        assert part not in caplog.text


def log_tiny_experiment(mlflow_uri: str) -> tuple[str, str, list[tuple[int, float]]]:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    name = f"secured-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    base = int(time.time() * 1000) - 600_000
    run_id = client.create_run(experiment_id, run_name="tls-run", start_time=base).info.run_id
    client.log_param(run_id, "learning_rate", "0.1")
    points = [(0, 0.5), (1, 0.7), (2, 0.9)]
    for step, value in points:
        client.log_metric(run_id, "accuracy", value, timestamp=base + step * 1000, step=step)
    client.set_terminated(run_id, status="FINISHED", end_time=base + 10_000)
    return name, run_id, points


def test_setup_and_sync_against_secured_cluster(
    env: pytest.MonkeyPatch, secure_es: SecureNode, secure_client: Any, mlflow_uri: str
) -> None:
    trust_and_basic_auth(env, secure_es)
    experiment, run_id, points = log_tiny_experiment(mlflow_uri)
    env.setenv("SHIPPER_MLFLOW_EXPERIMENTS", experiment)

    setup = shipper("setup")
    assert setup.exit_code == 0, setup.output
    assert secure_client.indices.exists_index_template(name="mlops-runs")

    result = shipper("sync", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["runs_seen"] == 1
    assert summary["points_written"] == len(points)

    secure_client.indices.refresh(index="mlops-*")
    hits = secure_client.search(index="mlops-metrics-*", query={"term": {"mlflow.run.id": run_id}}, size=10)[
        "hits"
    ]["hits"]
    got = sorted(
        (h["_source"]["mlflow"]["metric"]["step"], h["_source"]["mlflow"]["metric"]["value"]) for h in hits
    )
    assert got == points
    assert {h["_source"]["mlflow"]["experiment"]["name"] for h in hits} == {experiment}
    run = secure_client.get(index="mlops-runs", id=run_id)["_source"]["mlflow"]
    assert run["run"]["status"] == "FINISHED"
    assert run["experiment"]["name"] == experiment
    assert run["params"]["learning_rate"] == "0.1"


def test_a_revoked_token_is_refused_with_the_fix_and_never_printed(
    env: pytest.MonkeyPatch, secure_es: SecureNode, mlflow_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Revoked credentials: an OAuth2 access token that worked, invalidated by an administrator
    (this build cannot create API keys, see tests/support/secure_es.py; a revoked API key takes the
    same 401 path). `check` and `sync` stop with exit 3 and say which setting to fix."""
    status, body = secure_es.request("POST", "/_security/oauth2/token", {"grant_type": "client_credentials"})
    assert status == 200, body
    token = str(body["access_token"])
    env.setenv("SHIPPER_ELASTICSEARCH_CA_CERTS", str(secure_es.ca_certs))
    env.setenv("SHIPPER_ELASTICSEARCH_BEARER_TOKEN", token)
    assert shipper("check").exit_code == 0
    status, body = secure_es.request("DELETE", "/_security/oauth2/token", {"token": token})
    assert status == 200 and body["invalidated_tokens"] == 1, body
    for command in ("check", "sync"):
        result = shipper(command)
        assert result.exit_code == EXIT_UNREACHABLE, result.output
        assert "refused the credentials (HTTP 401)" in result.output
        assert token not in result.output
    assert token not in caplog.text
