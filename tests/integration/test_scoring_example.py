"""The example scoring service, run for real on loopback; its log lines parse with zero failures."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_scoring_pipeline import grok_results
from tests.support.scoring import GrokEngine, join_records

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scoring"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_server(tmp_path: Path, version: str, requests: int) -> list[str]:
    port = _free_port()
    log = tmp_path / f"server-{version}.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLE / "server.py"),
                "--entry-script",
                str(EXAMPLE / "score.py"),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"MODEL_NAME": "churn", "MODEL_VERSION": version, "PATH": "/usr/bin:/bin"},
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            traffic = subprocess.run(
                [
                    sys.executable,
                    str(EXAMPLE / "traffic.py"),
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--requests",
                    str(requests),
                    "--seconds",
                    "60",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            assert '"500"' in traffic.stdout and '"200"' in traffic.stdout
        finally:
            server.terminate()
            server.wait(timeout=10)
    return log.read_text(encoding="utf-8").splitlines()


def test_example_logs_parse(tmp_path: Path, es: Any) -> None:
    engine = GrokEngine.from_node(es)
    for version in ("1", "2"):
        records = join_records(_run_server(tmp_path, version, 60))
        results = grok_results(engine, records)
        unparsed = [r["event.original"] for r in results if r["unparsed"]]
        assert unparsed == []
        kinds = {r["message"]["pattern"] for r in results}
        assert {
            "SCORING_AZML_REQUEST",
            "SCORING_GUNICORN_ACCESS",
            "SCORING_METRIC",
            "SCORING_KV_LIST",
            "SCORING_TRACEBACK_MESSAGE",
        } <= kinds
        assert any(f"version {version}" in r["event.original"] for r in results)
