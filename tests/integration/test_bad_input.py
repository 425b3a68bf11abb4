"""Every bad configuration and unusable server we know of, as a table: the command, what is wrong,
the exit code, and the words the user must read (and the words they must never see: tracebacks,
pydantic's phrasing, urllib3's retry warnings).

The real Elasticsearch and MLflow of `scripts/stack` stand in for good servers; a closed port, a
socket that accepts and never answers, and the MLflow server asked at a wrong path stand in for bad
ones. How long each takes is measured by bench/startup.py, never asserted here: the bound is
structural (SHIPPER_MLFLOW_CONNECT_TIMEOUT_SECONDS, one try, no retries).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from shipper.cli import main_group

pytestmark = pytest.mark.integration

NEVER = ("Traceback", "Value error", "Input should", "Retrying (Retry(", "urllib3", "<!doctype", "<html")


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    env: dict[str, str | None]
    exit_code: int
    says: list[str]
    never: tuple[str, ...] = NEVER
    opts: dict[str, str] = field(default_factory=dict)


WS = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"

CASES = [
    # -- MLflow's tracking URI, offline --------------------------------------------------------------
    Case(
        "typo in the scheme",
        ["validate"],
        {"MLFLOW_TRACKING_URI": "htp://oops"},
        2,
        ["'htp'", "did you mean http://?"],
    ),
    Case(
        "azureml URI that is not a workspace's",
        ["validate"],
        {"MLFLOW_TRACKING_URI": "azureml://nope"},
        2,
        ["MLFLOW_TRACKING_URI='azureml://nope'"],
    ),
    Case(
        "sync with an azureml URI that is not a workspace's",
        ["sync"],
        {"MLFLOW_TRACKING_URI": "azureml://nope"},
        2,
        ["azureml://nope"],
    ),
    Case("http URI without a host", ["validate"], {"MLFLOW_TRACKING_URI": "http://"}, 2, ["has no host"]),
    Case(
        "check without MLFLOW_TRACKING_URI",
        ["check"],
        {"MLFLOW_TRACKING_URI": None},
        2,
        ["MLFLOW_TRACKING_URI is not set", "export MLFLOW_TRACKING_URI="],
    ),
    Case(
        "sync without MLFLOW_TRACKING_URI",
        ["sync"],
        {"MLFLOW_TRACKING_URI": None},
        2,
        ["MLFLOW_TRACKING_URI is not set"],
    ),
    Case(
        "validate without MLFLOW_TRACKING_URI: valid, with a note",
        ["validate"],
        {"MLFLOW_TRACKING_URI": None},
        0,
        ["configuration is valid", "note: MLFLOW_TRACKING_URI is not set"],
    ),
    # -- MLflow server unusable ----------------------------------------------------------------------
    Case(
        "check, nothing listens at the MLflow URI",
        ["check"],
        {"MLFLOW_TRACKING_URI": "{closed}"},
        3,
        [
            "cannot reach the MLflow tracking server",
            "nothing accepts connections there",
            "correct MLFLOW_TRACKING_URI",
        ],
    ),
    Case(
        "sync, nothing listens at the MLflow URI",
        ["sync"],
        {"MLFLOW_TRACKING_URI": "{closed}"},
        3,
        ["nothing accepts connections there"],
    ),
    Case(
        "check, MLflow accepts but never answers",
        ["check"],
        {"MLFLOW_TRACKING_URI": "{silent}", "SHIPPER_MLFLOW_CONNECT_TIMEOUT_SECONDS": "1"},
        3,
        ["did not answer within 1 s", "SHIPPER_MLFLOW_CONNECT_TIMEOUT_SECONDS"],
    ),
    Case(
        "check, https spoken to the plain-HTTP MLflow",
        ["check"],
        {"MLFLOW_TRACKING_URI": "{mlflow_https}"},
        3,
        ["asks for TLS (https)", "plain HTTP", "http://"],
    ),
    Case(
        "check, MLflow URI with a wrong path (an HTML 404)",
        ["check"],
        {"MLFLOW_TRACKING_URI": "{mlflow}/not/here"},
        3,
        ["answered HTTP 404 with an HTML page titled '404 Not Found'", "base URL"],
    ),
    Case(
        "a password in the MLflow URI is never shown",
        ["check"],
        {"MLFLOW_TRACKING_URI": "http://ann:s3cret@127.0.0.1:{closed_port}"},
        3,
        ["nothing accepts connections there"],
        never=(*NEVER, "s3cret"),
    ),
    # -- Elasticsearch unusable ----------------------------------------------------------------------
    Case(
        "check, nothing listens at the Elasticsearch URL",
        ["check"],
        {"SHIPPER_ELASTICSEARCH_URL": "{closed}"},
        3,
        ["cannot reach Elasticsearch", "SHIPPER_ELASTICSEARCH_URL"],
    ),
    Case(
        "setup, nothing listens at the Elasticsearch URL",
        ["setup"],
        {"SHIPPER_ELASTICSEARCH_URL": "{closed}"},
        3,
        ["cannot reach Elasticsearch"],
    ),
    Case(
        "sync, nothing listens at the Elasticsearch URL",
        ["sync"],
        {"SHIPPER_ELASTICSEARCH_URL": "{closed}"},
        3,
        ["cannot reach Elasticsearch"],
    ),
    Case(
        "check, https spoken to the plain-HTTP Elasticsearch",
        ["check"],
        {"SHIPPER_ELASTICSEARCH_URL": "{es_https}"},
        3,
        ["asks for TLS (https)", "plain HTTP"],
    ),
    Case(
        "check, the Elasticsearch URL is a web server",
        ["check"],
        {"SHIPPER_ELASTICSEARCH_URL": "{mlflow}"},
        3,
        ["with an HTML page", "is not Elasticsearch"],
    ),
    # -- settings -------------------------------------------------------------------------------------
    Case(
        "a number out of range",
        ["validate"],
        {"SHIPPER_BULK_MAX_ACTIONS": "0"},
        2,
        ["SHIPPER_BULK_MAX_ACTIONS='0': must be at least 1"],
    ),
    Case(
        "not a number",
        ["validate"],
        {"SHIPPER_SYNC_INTERVAL_SECONDS": "soon"},
        2,
        ["SHIPPER_SYNC_INTERVAL_SECONDS='soon': is not a number"],
    ),
    Case("not a yes/no", ["validate"], {"SHIPPER_ELASTICSEARCH_VERIFY_CERTS": "maybe"}, 2, ["true or false"]),
    Case(
        "not a time",
        ["validate"],
        {"SHIPPER_MLFLOW_SINCE": "yesterday"},
        2,
        ["SHIPPER_MLFLOW_SINCE='yesterday'", "ISO 8601"],
    ),
    Case(
        "not a log level",
        ["validate"],
        {"SHIPPER_LOG_LEVEL": "LOUD"},
        2,
        ["SHIPPER_LOG_LEVEL='LOUD'", "'INFO'"],
    ),
    Case(
        "Elasticsearch URL without a scheme",
        ["validate"],
        {"SHIPPER_ELASTICSEARCH_URL": "es.example:9200"},
        2,
        ["scheme included"],
    ),
    Case(
        "Kibana URL without a scheme",
        ["validate"],
        {"SHIPPER_KIBANA_URL": "kibana:5601"},
        2,
        ["SHIPPER_KIBANA_URL", "https://host:5601"],
    ),
    Case(
        "a workspace that is not a resource id",
        ["validate"],
        {"SHIPPER_AZUREML_WORKSPACES": f"{WS},churn-ws"},
        2,
        ["'churn-ws' is not a workspace resource id"],
    ),
    Case(
        "two ways to log in to Elasticsearch",
        ["validate"],
        {
            "SHIPPER_ELASTICSEARCH_API_KEY": "k",
            "SHIPPER_ELASTICSEARCH_USERNAME": "u",
            "SHIPPER_ELASTICSEARCH_PASSWORD": "p",
        },
        2,
        ["mutually exclusive"],
    ),
    Case(
        "a user without a password", ["validate"], {"SHIPPER_ELASTICSEARCH_USERNAME": "u"}, 2, ["go together"]
    ),
    Case(
        "an Entra tenant without an audience",
        ["validate"],
        {"SHIPPER_WEBHOOK_ENTRA_TENANT_ID": "t"},
        2,
        ["needs SHIPPER_WEBHOOK_ENTRA_AUDIENCE"],
    ),
    Case(
        "an unknown setting",
        ["validate"],
        {"SHIPPER_RETENTON_DAYS": "3"},
        2,
        ["did you mean SHIPPER_RETENTION_DAYS?"],
    ),
    Case("serve without any credential", ["serve"], {}, 2, ["SHIPPER_WEBHOOK_SECRET"]),
    Case(
        "a webhook secret short enough to guess",
        ["validate"],
        {"SHIPPER_WEBHOOK_SECRET": "hunter2"},
        2,
        ["SHIPPER_WEBHOOK_SECRET", "shorter than 16 characters", "openssl rand -hex 32"],
        never=(*NEVER, "hunter2"),
    ),
    Case(
        "reconcile of a workspace that is not a resource id",
        ["reconcile", "--workspace", "churn-ws"],
        {},
        2,
        ["not a workspace resource id"],
    ),
]


@pytest.fixture(scope="module")
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(
    case: Case,
    es_url: str,
    mlflow_uri: str,
    silent_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    closed = closed_url()
    places = {
        "closed": closed,
        "closed_port": closed.rsplit(":", 1)[1],
        "silent": silent_url,
        "mlflow": mlflow_uri.rstrip("/"),
        "mlflow_https": mlflow_uri.replace("http://", "https://"),
        "es_https": es_url.replace("http://", "https://"),
    }
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    for key, value in case.env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value.format(**places))
    monkeypatch.chdir(tmp_path)  # anything a client would create behind the user's back lands here
    result = CliRunner().invoke(main_group, case.argv)
    output = result.output
    assert result.exit_code == case.exit_code, output
    for words in case.says:
        assert words in output, output
    for words in case.never:
        assert words not in output, output
    if case.exit_code:
        assert result.stderr.startswith("error: "), output  # one final error, on stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a file was created in the working directory"


def test_the_final_error_is_json_with_log_format_json(es_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_url())
    result = CliRunner().invoke(main_group, ["--log-format", "json", "check"])
    assert result.exit_code == 3
    last = json.loads(result.stderr.strip().splitlines()[-1])
    assert last["log.level"] == "error"
    assert last["process.exit_code"] == 3
    assert last["error.type"] == "ConnectivityError"
    assert "nothing accepts connections there" in last["message"]
    # Even when the configuration itself is what failed (no settings to read the format from).
    monkeypatch.setenv("SHIPPER_LOG_FORMAT", "json")
    monkeypatch.setenv("SHIPPER_BULK_MAX_ACTIONS", "0")
    bad = CliRunner().invoke(main_group, ["validate"])
    assert bad.exit_code == 2
    assert json.loads(bad.stderr.strip().splitlines()[-1])["process.exit_code"] == 2
