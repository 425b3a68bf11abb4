"""kibana/roles/*.json on a real secured Elasticsearch: the read-only analyst can read the data and
nothing else, the shipper's writer can run `shipper setup` and `shipper sync` and nothing beyond.

The minimal distribution cannot create the `.security` index (its mapping needs the analysis-common
module), so `PUT /_security/role` cannot store a native role there; it is tried and its answer
recorded, and the same bodies are loaded as file-realm roles (`roles.yml`, the format the role API
takes), with file-realm users holding them. Elasticsearch reloads both files while it runs.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scripts.local_stack import elasticsearch, jdk, processes
from shipper.cli import main_group
from tests.support.secure_es import SecureNode, SecureNodeError, basic_header, start_secure_node

pytestmark = pytest.mark.integration

ROLES = Path(__file__).resolve().parents[2] / "kibana" / "roles"
READER, WRITER = "mlops-reader", "mlops-writer"


def role(name: str) -> dict[str, Any]:
    return dict(json.loads((ROLES / f"{name}.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def node() -> Iterator[SecureNode]:
    try:
        secured = start_secure_node()
    except SecureNodeError as exc:
        pytest.fail(f"the secured Elasticsearch did not start:\n{exc}", pytrace=False)
    try:
        yield secured
    finally:
        secured.stop()


@pytest.fixture(scope="module")
def users(node: SecureNode) -> dict[str, str]:
    """A file-realm user per role, the roles loaded from kibana/roles as file-realm roles."""
    conf = node.workdir / "config"
    roles_yml = "".join(f"{name}: {json.dumps(role(name))}\n" for name in (READER, WRITER))
    (conf / "roles.yml").write_text(roles_yml, encoding="utf-8")
    home = elasticsearch.es_distribution(node.version)
    java_home, _ = jdk.pick_jdk(node.version)
    env = dict(os.environ, ES_JAVA_HOME=str(java_home), ES_PATH_CONF=str(conf))
    env.pop("ES_JAVA_OPTS", None)
    passwords = {}
    for name in (READER, WRITER):
        passwords[name] = secrets.token_urlsafe(18)
        done = subprocess.run(
            [
                str(home / "bin" / "elasticsearch-users"),
                "useradd",
                f"{name}-user",
                "-p",
                passwords[name],
                "-r",
                name,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (done.stdout + done.stderr).replace(passwords[name], "***")
    if os.geteuid() == 0:
        processes.chown_tree(conf, processes.ensure_service_user())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the file realm reloads its files every few seconds
        status, _ = node.request(
            "GET", "/_security/_authenticate", authorization=basic_header(f"{WRITER}-user", passwords[WRITER])
        )
        if status == 200:
            break
        time.sleep(1)
    return passwords


def as_user(
    node: SecureNode, users: dict[str, str], name: str, method: str, path: str, body: Any = None
) -> tuple[int | None, Any]:
    return node.request(method, path, body, authorization=basic_header(f"{name}-user", users[name]))


def test_role_bodies_are_accepted_by_the_role_api_where_it_can_store_them(node: SecureNode) -> None:
    for name in (READER, WRITER):
        status, body = node.request("PUT", f"/_security/role/{name}-api", role(name))
        if status == 200:
            assert body["role"]["created"] in (True, False)
            continue
        # Only the missing `.security` index may refuse it, never the body itself.
        text = json.dumps(body)
        assert status in (400, 500) and "pattern_capture" in text, (status, body)


def test_the_file_realm_loaded_both_roles(node: SecureNode, users: dict[str, str]) -> None:
    for name in (READER, WRITER):
        status, body = as_user(node, users, name, "GET", "/_security/_authenticate")
        assert status == 200, body
        assert body["roles"] == [name]


def log_a_registered_run(mlflow_uri: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    suffix = uuid.uuid4().hex[:8]
    run = client.create_run(client.create_experiment(f"roles-{suffix}"))
    client.log_metric(run.info.run_id, "accuracy", 0.9, step=0)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(f"roles-model-{suffix}")
    client.create_model_version(
        f"roles-model-{suffix}", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )


def test_writer_runs_setup_and_sync_and_nothing_beyond(
    node: SecureNode, users: dict[str, str], mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", node.url)
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_CA_CERTS", str(node.ca_certs))
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_USERNAME", f"{WRITER}-user")
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_PASSWORD", users[WRITER])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    node.request("PUT", "/secret-hr/_doc/1?refresh=true", {"salary": 1})
    log_a_registered_run(mlflow_uri)  # so the writer has a run, points and a model version to write
    for command in (["setup"], ["setup"], ["sync"], ["check"]):
        result = CliRunner().invoke(main_group, command, catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)
        assert users[WRITER] not in result.output
    status, body = as_user(node, users, WRITER, "POST", "/mlops-runs/_search", {"size": 0})
    assert status == 200, body
    assert as_user(node, users, WRITER, "POST", "/secret-hr/_search", {})[0] == 403
    assert as_user(node, users, WRITER, "DELETE", "/secret-hr")[0] == 403
    assert as_user(node, users, WRITER, "PUT", "/_security/role/escalate", {"cluster": ["all"]})[0] == 403
    status, body = as_user(
        node,
        users,
        WRITER,
        "POST",
        "/_security/user/_has_privileges",
        {
            "cluster": ["manage_index_templates", "manage_ilm", "manage_pipeline", "monitor"],
            "index": [
                {
                    "names": [
                        "mlops-metrics-2020.01",
                        "mlops-runs",
                        "mlops-dead-letter",
                        "mlops-shipper-state",
                    ],
                    "privileges": ["create_index", "delete_index", "index", "indices:admin/mapping/put"],
                }
            ],
        },
    )
    assert status == 200 and body["has_all_requested"], body


def test_reader_reads_the_data_and_nothing_else(node: SecureNode, users: dict[str, str]) -> None:
    """Runs after the writer's test, on what `shipper sync` wrote."""
    node.request("POST", "/mlops-*/_refresh")
    status, body = as_user(node, users, READER, "POST", "/mlops-runs/_search", {"query": {"match_all": {}}})
    assert status == 200 and body["hits"]["total"]["value"] > 0, body
    status, body = as_user(node, users, READER, "POST", "/mlops-metrics-*/_search", {"size": 0})
    assert status == 200 and body["hits"]["total"]["value"] > 0, body
    status, body = as_user(node, users, READER, "GET", "/mlops-models/_mapping")
    assert status == 200, body
    assert as_user(node, users, READER, "POST", "/secret-hr/_search", {})[0] == 403
    assert as_user(node, users, READER, "PUT", "/mlops-runs/_doc/x", {"a": 1})[0] == 403
    assert as_user(node, users, READER, "DELETE", "/mlops-runs")[0] == 403
    assert (
        as_user(node, users, READER, "PUT", "/_component_template/mlops-runs@custom", {"template": {}})[0]
        == 403
    )
    status, body = as_user(
        node,
        users,
        READER,
        "POST",
        "/_security/user/_has_privileges",
        {
            "index": [
                {"names": ["mlops-metrics-2026.11", "logs-mlops.scoring-default"], "privileges": ["read"]}
            ]
        },
    )
    assert status == 200 and body["has_all_requested"], body
