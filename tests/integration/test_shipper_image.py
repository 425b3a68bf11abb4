"""The shipper image's install step, replayed: the Dockerfile's own `pip install` line run in a fresh
virtual environment with the same constraints (the image cannot be built here: no Docker engine),
then that environment used as the image uses it, against the real Elasticsearch and MLflow:
`shipper check`, and the compose stack's demo trainer, which runs on the shipper image."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.support.deploy_tools import REPO, run

pytestmark = pytest.mark.integration


def _install_step() -> tuple[str, str]:
    structure = DockerfileParser(path=str(REPO / "Dockerfile")).structure
    (install,) = [i["value"] for i in structure if i["instruction"] == "RUN" and "pip install" in i["value"]]
    (extras,) = [
        i["value"].split("=", 1)[1]
        for i in structure
        if i["instruction"] == "ARG" and i["value"].startswith("EXTRAS=")
    ]
    return install, extras


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """/opt/shipper as `docker build` makes it, on this interpreter. pip's cache may serve the same
    files (--no-cache-dir only keeps the image small)."""
    tmp = tmp_path_factory.mktemp("image")
    src = tmp / "src"  # what the Dockerfile copies into /src
    src.mkdir()
    for name in ("constraints.txt", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "shipper", src / "shipper", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp / "opt-shipper"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install, extras = _install_step()
    pip_line, check_line = (part.strip() for part in install.split("&&"))
    words = shlex.split(pip_line.replace("/opt/shipper", str(venv)).replace("${EXTRAS}", extras))
    proc = run([w for w in words if w != "--no-cache-dir"], cwd=src, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    check = run(shlex.split(check_line.replace("/opt/shipper", str(venv))))
    assert check.returncode == 0, check.stdout
    yield venv
    shutil.rmtree(tmp, ignore_errors=True)


def _pin_key(name: str) -> str:
    return name.lower().replace("_", "-")


def test_every_installed_version_is_pinned(image_venv: Path) -> None:
    frozen = run([str(image_venv / "bin" / "pip"), "freeze"]).stdout.splitlines()
    pins = {
        _pin_key(line.split("==")[0]): line.lower()
        for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line
    }
    installed = [line for line in frozen if "==" in line and _pin_key(line.split("==")[0]) != "shipper"]
    assert len(installed) > 50
    unpinned = [line for line in installed if pins.get(_pin_key(line.split("==")[0])) != line.lower()]
    assert unpinned == [], f"installed but not pinned in constraints.txt: {unpinned}"
    # the azure extra is what the image ships by default
    azure = run([str(image_venv / "bin" / "python"), "-c", "import azure.ai.ml, azure.identity"])
    assert azure.returncode == 0, azure.stderr


def _image_env(**extra: str) -> dict[str, str]:
    env = {"PATH": f"{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/tmp")}
    env.update(extra)
    return env


def test_image_runs_shipper_and_the_demo_trainer(image_venv: Path, stack: dict[str, str]) -> None:
    bin_dir = image_venv / "bin"
    suffix = uuid.uuid4().hex[:8]
    version = subprocess.run(
        [str(bin_dir / "shipper"), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.returncode == 0 and "shipper" in version.stdout
    env = _image_env(
        SHIPPER_ELASTICSEARCH_URL=stack["ES_URL"], MLFLOW_TRACKING_URI=stack["MLFLOW_TRACKING_URI"]
    )
    check = subprocess.run(
        [str(bin_dir / "shipper"), "check"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "mlflow:" in check.stdout
    # docker-compose.yml's `trainer` runs examples/demo_experiment.py on the shipper image
    trainer = subprocess.run(
        [
            str(bin_dir / "python"),
            str(REPO / "examples" / "demo_experiment.py"),
            # names of its own: the shared test MLflow may already hold the default demo
            "--experiment",
            f"demo-churn-classifier-{suffix}",
            "--model",
            f"demo-churn-model-{suffix}",
        ],
        capture_output=True,
        text=True,
        env=_image_env(MLFLOW_TRACKING_URI=stack["MLFLOW_TRACKING_URI"]),
        timeout=300,
        check=False,
    )
    assert trainer.returncode == 0, trainer.stderr[-4000:]
    assert f"logged 3 runs to experiment 'demo-churn-classifier-{suffix}'" in trainer.stdout
