"""The REST reader speaks to a tracking server as MLflow's client does: the same credentials from
the same variables, the same retries on 429/5xx. A small HTTP server here records what arrives."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from shipper.errors import ConnectivityError
from shipper.sources.mlflow_rest import MlflowRest, usable_for


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []
    answers: list[tuple[int, bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        _Recorder.seen.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
        status, payload = _Recorder.answers.pop(0) if _Recorder.answers else (200, b'{"experiments": []}')
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.seen, _Recorder.answers = [], []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_basic_auth_wins_over_a_token_as_in_the_mlflow_client(server: str) -> None:
    env = {"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_PASSWORD": "pw", "MLFLOW_TRACKING_TOKEN": "t"}
    MlflowRest(server, env).search_experiments()
    MlflowRest(server, {"MLFLOW_TRACKING_TOKEN": "t0k"}).search_experiments()
    MlflowRest(server, {}).search_experiments()
    assert [s["auth"] for s in _Recorder.seen] == ["Basic YW5uOnB3", "Bearer t0k", None]
    assert _Recorder.seen[0]["body"] == {"max_results": 1000, "view_type": "ALL"}


def test_5xx_is_retried_and_a_4xx_is_said_in_a_sentence(server: str) -> None:
    _Recorder.answers = [(503, b"busy"), (200, b'{"experiments": [{"experiment_id": "1", "name": "e"}]}')]
    env = {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"}
    (experiment,) = MlflowRest(server, env).search_experiments()
    assert (experiment.experiment_id, experiment.name) == ("1", "e")
    _Recorder.answers = [(403, b"<html><title>Forbidden by proxy</title></html>")]
    with pytest.raises(ConnectivityError, match="HTTP 403: an HTML page titled 'Forbidden by proxy'"):
        MlflowRest(server, env).search_experiments()


def test_which_uris_the_rest_reader_serves() -> None:
    assert usable_for("http://mlflow:5000", {})
    assert usable_for("https://mlflow.example", {"MLFLOW_TRACKING_AWS_SIGV4": "false"})
    assert not usable_for("https://mlflow.example", {"MLFLOW_TRACKING_AUTH": "my_plugin"})
    assert not usable_for("https://mlflow.example", {"MLFLOW_TRACKING_AWS_SIGV4": "true"})
    assert not usable_for("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s", {})
    assert not usable_for("sqlite:///mlflow.db", {})


def test_credentials_in_the_uri_are_basic_auth_and_never_shown(server: str) -> None:
    with_password = server.replace("http://", "http://ann:p%40ss@")
    reader = MlflowRest(with_password, {})
    reader.search_experiments()
    assert _Recorder.seen[0]["auth"] == "Basic YW5uOnBAc3M="  # ann:p@ss
    assert "p%40ss" not in reader.tracking_uri and "ann" not in reader.tracking_uri
