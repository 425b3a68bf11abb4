"""The shipper's Dockerfile (and the compose stack's MLflow one): linted by hadolint, its rules
checked on the parsed file, its HEALTHCHECK command run. The install step is replayed in
tests/integration/test_shipper_image.py. The image itself cannot be built here (no Docker engine,
no image registry)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.support.deploy_tools import REPO, run, venv_tool

DOCKERFILES = ["Dockerfile", "docker/mlflow/Dockerfile"]
EXACT_TAG = re.compile(r"^[a-z0-9./-]+:\d+\.\d+\.\d+[-a-z0-9.]*$")


def _parsed(path: str) -> DockerfileParser:
    parser = DockerfileParser(path=str(REPO / path))
    return parser


def _args(path: str) -> dict[str, str]:
    """Every ARG with a default, in every stage (and before the first FROM)."""
    pairs = [value.split("=", 1) for value in _instructions(path, "ARG") if "=" in value]
    return {name: default for name, default in pairs}


def _instructions(path: str, name: str) -> list[str]:
    return [i["value"] for i in _parsed(path).structure if i["instruction"] == name]


@pytest.mark.parametrize("path", DOCKERFILES)
def test_hadolint_finds_nothing(path: str) -> None:
    proc = run([venv_tool("hadolint"), "--no-color", "--format", "json", path])
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], findings


def test_hadolint_is_a_real_linter(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install shipper\n", encoding="utf-8")
    proc = run([venv_tool("hadolint"), "--no-color", "--format", "json", str(bad)])
    codes = {finding["code"] for finding in json.loads(proc.stdout)}
    assert proc.returncode != 0 and {"DL3007", "DL3003", "DL3013"} <= codes, codes


@pytest.mark.parametrize("path", DOCKERFILES)
def test_base_pinned_by_exact_tag_and_user_not_root(path: str) -> None:
    base = _args(path)["PYTHON_IMAGE"]
    assert EXACT_TAG.match(base), f"{path}: base {base} is not an exact x.y.z tag"
    for value in _instructions(path, "FROM"):
        assert value.split()[0] == "${PYTHON_IMAGE}", f"{path}: every stage starts from PYTHON_IMAGE"
    users = _instructions(path, "USER")
    assert users, f"{path} never leaves root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, f"{path}: USER {users[-1]} (numeric, non-root)"
    assert _instructions(path, "HEALTHCHECK"), f"{path} has no HEALTHCHECK"


def test_shipper_image_rules() -> None:
    froms = _instructions("Dockerfile", "FROM")
    assert len(froms) == 2 and froms[0].endswith(" AS build") and froms[1].endswith(" AS runtime")
    runs = _instructions("Dockerfile", "RUN")
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1 and "-c constraints.txt" in installs[0] and "pip check" in installs[0]
    assert json.loads(_instructions("Dockerfile", "ENTRYPOINT")[0]) == ["shipper"]
    copies = _instructions("Dockerfile", "COPY")
    assert any(c.startswith("--from=build /opt/shipper") for c in copies)
    # the runtime stage copies nothing from the build context: no sources, no constraints, no tests
    runtime = _parsed("Dockerfile").structure
    start = max(i for i, ins in enumerate(runtime) if ins["instruction"] == "FROM")
    runtime_copies = [ins["value"] for ins in runtime[start:] if ins["instruction"] == "COPY"]
    assert runtime_copies == ["--from=build /opt/shipper /opt/shipper"]
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[ignore.index("*")] == "*" and "!shipper/" in ignore and ".env" not in ignore


def _healthcheck_argv() -> list[str]:
    (value,) = _instructions("Dockerfile", "HEALTHCHECK")
    exec_form = value.split("CMD", 1)[1].strip()
    argv: list[str] = json.loads(exec_form)
    return argv


def test_healthcheck_command_probes_healthz(tmp_path: Path) -> None:
    """The HEALTHCHECK's own command, run against a server answering /healthz, then against none."""
    import http.server
    import threading

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    argv = _healthcheck_argv()
    assert argv[0] == "python"
    argv[0] = sys.executable
    env = {"SHIPPER_WEBHOOK_PORT": str(port), "PATH": "/usr/bin:/bin"}
    try:
        up = subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)
        assert up.returncode == 0, up.stderr
    finally:
        server.shutdown()
        server.server_close()
    down = subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)
    assert down.returncode != 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
