"""Shared fixtures.

Integration tests run against a real Elasticsearch and a real MLflow tracking server. Where
`ES_URL` / `MLFLOW_TRACKING_URI` are set they are used as they are; otherwise `scripts/stack up`
starts both on loopback. If that fails the session fails loudly: integration tests are never
skipped silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the expected files of golden tests from the current output",
    )


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(autouse=True)
def _clean_shipper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's own SHIPPER_* settings out of the tests."""
    for name in list(os.environ):
        if name.startswith("SHIPPER_") and not name.startswith("SHIPPER_STACK_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """URLs of the real Elasticsearch and MLflow server: from the environment or scripts/stack."""
    env = dict(os.environ)
    env.setdefault("SHIPPER_STACK_PYTHON", sys.executable)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stack"), "up"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            "scripts/stack up failed, so the integration tests cannot run "
            f"(exit {proc.returncode}):\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    urls: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            urls[key.strip()] = value.strip()
    missing = {"ES_URL", "MLFLOW_TRACKING_URI"} - urls.keys()
    if missing:
        pytest.fail(f"scripts/stack up printed no {sorted(missing)}: {proc.stdout!r}", pytrace=False)
    return urls


@pytest.fixture(scope="session")
def es_url(stack: dict[str, str]) -> str:
    return stack["ES_URL"]


@pytest.fixture(scope="session")
def mlflow_uri(stack: dict[str, str]) -> str:
    return stack["MLFLOW_TRACKING_URI"]


@pytest.fixture(scope="session")
def es_ingest_url() -> str:
    """The Elasticsearch 7.10.2 node that executes ingest pipelines: $ES_INGEST_URL (scripts/test
    exports it), else `scripts/stack up --only ingest` starts it. Never skipped: a failure fails."""
    if os.environ.get("ES_INGEST_URL"):
        return os.environ["ES_INGEST_URL"].rstrip("/")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stack"), "up", "--only", "ingest"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ES_INGEST_URL":
            return value.strip()
    pytest.fail(
        f"scripts/stack up --only ingest failed (exit {proc.returncode}), so the pipeline tests cannot "
        f"run:\n{proc.stderr[-4000:]}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def es(es_url: str) -> Iterator[object]:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url, request_timeout=60)
    yield client
    client.close()
