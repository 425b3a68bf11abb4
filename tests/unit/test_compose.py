"""docker-compose.yml, validated by Docker Compose v2 itself (`docker compose config`, which loads
the file with compose-go and checks it against the Compose Specification's schema), then the
project's own rules on the rendered model. No container is started: there is no Docker engine here.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipper.config import Settings, env_name
from tests.support.deploy_tools import REPO, compose_binary, run, stack_version, venv_tool

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

# Services the issue asks for, by role.
EXPECTED = {
    "certs",
    "elasticsearch",
    "elastic-setup",
    "kibana",
    "logstash",
    "filebeat",
    "postgres",
    "mlflow",
    "shipper-setup",
    "shipper-run",
    "shipper-serve",
    "trainer",
    "scoring-v1",
    "scoring-v2",
    "traffic",
}
ONE_OFF = {"certs", "elastic-setup", "shipper-setup", "trainer", "traffic"}
ELASTIC_IMAGES = tuple(
    f"docker.elastic.co/{product}/" for product in ("elasticsearch", "kibana", "logstash", "beats")
)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN|ENCRYPTIONKEY|ENCRYPTION_KEY", re.I)


def _example_values(tmp_path: Path) -> Path:
    """.env.example with every empty value filled by a fresh random test value."""
    lines = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if re.fullmatch(r"[A-Z_]+=", line):
            lines.append(line + secrets.token_hex(20))
        else:
            lines.append(line)
    path = tmp_path / "env.local"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(tmp_path: Path, *env_files: Path, fmt: str = "json") -> Any:
    args = [compose_binary(), "-f", str(COMPOSE), "--project-directory", str(REPO)]
    for env_file in env_files:
        args += ["--env-file", str(env_file)]
    proc = run([*args, "config", "--format", fmt])
    assert proc.returncode == 0, f"docker compose config refused the file:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("compose")
    model: dict[str, Any] = _config(tmp, REPO / ".env", _example_values(tmp))
    return model


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_validates_and_has_every_service(rendered: dict[str, Any]) -> None:
    assert set(rendered["services"]) == EXPECTED


def test_without_secrets_compose_refuses_and_names_the_fix() -> None:
    proc = run([compose_binary(), "-f", str(COMPOSE), "--env-file", str(REPO / ".env"), "config", "-q"])
    assert proc.returncode != 0
    # which missing variable compose names first varies; each message names the fix
    assert "required variable" in proc.stderr and ".env.example" in proc.stderr
    secrets_ = re.findall(r"^([A-Z_]+)=$", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M)
    assert any(name in proc.stderr for name in secrets_), proc.stderr
    for variable, message in re.findall(r"\$\{([A-Z_]+):\?([^}]*)\}", COMPOSE.read_text(encoding="utf-8")):
        fix = ".env" if variable == "ELASTIC_STACK_VERSION" else ".env.example"
        assert fix in message, f"the message for {variable} does not name {fix}"


def test_a_misspelt_key_is_refused(tmp_path: Path) -> None:
    """The validator is real: the Compose Specification's schema rejects an unknown key."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text(encoding="utf-8").replace("\n    healthcheck:\n", "\n    helthcheck:\n", 1)
    )
    env_file = _example_values(tmp_path)
    proc = run([compose_binary(), "-f", str(broken), "--project-directory", str(REPO),
                "--env-file", str(REPO / ".env"), "--env-file", str(env_file), "config", "-q"])  # fmt: skip
    assert proc.returncode != 0 and "helthcheck" in proc.stderr


def test_stack_version_only_from_env(rendered: dict[str, Any]) -> None:
    version = stack_version()
    text = COMPOSE.read_text(encoding="utf-8")
    assert version not in text, (
        "the stack version is written in docker-compose.yml; use ${ELASTIC_STACK_VERSION}"
    )
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert not re.search(r"^#?ELASTIC_STACK_VERSION=", example, re.M), ".env.example repeats the version"
    elastic = {
        n: s["image"] for n, s in rendered["services"].items() if s["image"].startswith(ELASTIC_IMAGES)
    }
    assert {"elasticsearch", "kibana", "logstash", "filebeat"} <= set(elastic)
    for name, image in elastic.items():
        assert image.endswith(":" + version), (name, image)


def test_every_service_has_a_healthcheck_or_a_reason(raw: dict[str, Any]) -> None:
    for name, service in raw["services"].items():
        if name in ONE_OFF:
            assert service.get("restart") == "no", name
            assert "healthcheck" not in service and service.get("x-healthcheck"), name
        else:
            check = service.get("healthcheck")
            assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_depends_on_waits_for_health_or_completion(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in ONE_OFF else "service_healthy"
            assert spec["condition"] == expected, (name, dependency, spec)
    # the order the product needs
    assert "shipper-setup" in services["logstash"]["depends_on"]  # template before the first event
    assert "elastic-setup" in services["kibana"]["depends_on"]  # kibana_system's password
    assert "mlflow" in services["shipper-run"]["depends_on"]


def test_no_secret_values_in_the_file(raw: dict[str, Any]) -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and SECRET_NAME.search(str(key)):
                    ok = value.startswith("${") or value in ("elastic", "kibana_system")
                    assert ok, f"{where}.{key} holds a literal; take it from .env.local as ${{{key}:?...}}"
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(raw, "compose")
    text = COMPOSE.read_text(encoding="utf-8")
    # passwords inside URLs come from interpolation too
    for url in re.findall(r"\w+://[^\s'\"]+", text):
        if "@" in url:
            assert re.search(r"://[^:]+:\$\{[A-Z_]+:\?", url), url
    # the example file holds no value for a secret
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if SECRET_NAME.search(line.split("=")[0]) and not line.startswith("#"):
            assert line.endswith("="), f".env.example gives a value: {line.split('=')[0]}"
    assert ".env.local" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_volumes_are_named_or_repository_files(rendered: dict[str, Any]) -> None:
    declared = set(rendered["volumes"])
    used = set()
    host_paths = {"/var/lib/docker/containers", "/var/run/docker.sock"}  # Filebeat reads these
    for name, service in rendered["services"].items():
        for mount in service.get("volumes", []):
            if mount["type"] == "volume":
                assert mount.get("source"), f"{name}: anonymous volume at {mount['target']}"
                used.add(mount["source"])
            else:
                assert mount["type"] == "bind", (name, mount)
                source = Path(mount["source"])
                if str(source) in host_paths:
                    assert name == "filebeat" and mount.get("read_only"), (name, mount)
                    continue
                assert source.is_relative_to(REPO), (name, mount)
                assert mount.get("read_only"), f"{name}: bind mount {source} is writable"
                relative = source.relative_to(REPO).as_posix()
                assert source.exists(), f"{name}: {relative} does not exist"
    assert used == declared, (used, declared)


def test_ports_published_on_loopback_only(rendered: dict[str, Any]) -> None:
    published = {}
    for name, service in rendered["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", (name, port)
            published[name] = int(port["target"])
    assert published == {
        "elasticsearch": 9200,
        "kibana": 5601,
        "mlflow": 5000,
        "shipper-serve": 8080,
    }


def test_shipper_services_build_this_repository_image(rendered: dict[str, Any]) -> None:
    shipper = {n for n in rendered["services"] if n.startswith("shipper-")} | {"trainer"}
    images = set()
    for name in shipper:
        service = rendered["services"][name]
        assert Path(service["build"]["context"]) == REPO, name
        assert service["build"]["dockerfile"] == "Dockerfile", name
        images.add(service["image"])
    assert len(images) == 1
    commands = {n: rendered["services"][n]["command"] for n in shipper - {"trainer"}}
    assert commands == {
        "shipper-setup": ["setup", "--kibana"],
        "shipper-run": ["run"],
        "shipper-serve": ["serve"],
    }


def test_shipper_settings_are_known(rendered: dict[str, Any]) -> None:
    known = {env_name(field) for field in Settings.model_fields}
    for name, service in rendered["services"].items():
        for key in service.get("environment") or {}:
            if key.startswith("SHIPPER_"):
                assert key in known, f"{name}: {key} is not a shipper setting (shipper/config.py)"


def test_scoring_services_carry_the_model_labels(rendered: dict[str, Any]) -> None:
    versions = set()
    for name in ("scoring-v1", "scoring-v2"):
        service = rendered["services"][name]
        labels, env = service["labels"], service["environment"]
        assert labels["ml.model.name"] == env["MODEL_NAME"] == "demo-churn-model"
        assert labels["ml.model.version"] == env["MODEL_VERSION"]
        versions.add(labels["ml.model.version"])
    assert versions == {"1", "2"}
    demo = (REPO / "examples" / "demo_experiment.py").read_text(encoding="utf-8")
    assert 'MODEL = "demo-churn-model"' in demo


def test_mounted_configs_are_the_checked_files(rendered: dict[str, Any]) -> None:
    """Logstash and Filebeat mount exactly the files tests/unit/test_scoring_* check."""
    mounts = {
        (name, m["target"]): Path(m["source"]).relative_to(REPO).as_posix()
        for name, s in rendered["services"].items()
        for m in s.get("volumes", [])
        if m["type"] == "bind" and Path(m["source"]).is_relative_to(REPO)
    }
    assert mounts[("filebeat", "/usr/share/filebeat/filebeat.yml")] == "filebeat/filebeat.docker.yml"
    assert mounts[("logstash", "/usr/share/logstash/pipeline")] == "logstash/pipeline"
    assert mounts[("logstash", "/usr/share/logstash/config/pipelines.yml")] == "logstash/pipelines.yml"
    assert mounts[("logstash", "/usr/share/logstash/patterns")] == "logstash/patterns"


def test_mlflow_image_follows_constraints(rendered: dict[str, Any]) -> None:
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line
    )
    dockerfile = (REPO / "docker" / "mlflow" / "Dockerfile").read_text(encoding="utf-8")
    arg = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", dockerfile, re.M)
    assert arg and arg.group(1) == pins["mlflow"]
    assert rendered["services"]["mlflow"]["image"].endswith(":" + pins["mlflow"])


def test_bootstrap_script_passes_shellcheck() -> None:
    proc = run([venv_tool("shellcheck"), "--severity=style", "docker/elastic/bootstrap.sh"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_roles_are_role_api_bodies() -> None:
    role = json.loads((REPO / "docker/elastic/roles/mlops-logstash-writer.json").read_text(encoding="utf-8"))
    assert set(role) <= {"description", "cluster", "indices"}
    assert [i["names"] for i in role["indices"]] == [["logs-mlops.scoring-*"]]
