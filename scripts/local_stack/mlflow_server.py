"""MLflow: `<python> -m mlflow server` with a sqlite store and proxied artifacts under the state dir."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .common import StackError, log
from .component import Component, Started
from .fetch import fetch
from .processes import cmdline
from .state import REPO, STATE, rel

MLFLOW_DIR = STATE / "mlflow"
MLFLOW_DB = MLFLOW_DIR / "mlflow.db"


def mlflow_auth_headers() -> dict[str, str]:
    # The same variables the MLflow client uses, for a user-provided MLFLOW_TRACKING_URI.
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        cred = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        return {"Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}
    return {}


def mlflow_health(url: str, *, direct: bool = True) -> tuple[bool, str]:
    headers = {} if direct else mlflow_auth_headers()
    status, body = fetch(f"{url}/health", timeout=5, direct=direct, headers=headers)
    if status != 200:
        return False, f"/health: {f'HTTP {status}' if status else body}"
    # /health is answered before the store is usable; a real API call proves the whole path,
    # including MLflow 3's host-header check (which answers 403 "Invalid Host header").
    status, body = fetch(
        f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10, direct=direct, headers=headers
    )
    if status != 200:
        return False, f"experiments/search: {f'HTTP {status} {body[:200]}' if status else body}"
    return True, "API answers"


def mlflow_python() -> str:
    explicit = os.environ.get("SHIPPER_STACK_PYTHON")
    if explicit:
        return explicit
    venv = REPO / ".venv" / "bin" / "python"
    # Not resolved: the venv's python is a symlink, and resolving it would lose the venv.
    # os.path.exists, not Path.exists: a venv symlinked into another user's private pyenv
    # raises PermissionError there, and should just count as "not usable".
    return str(venv) if os.path.exists(venv) else (shutil.which("python3") or "python3")


_MLFLOW_PROBE = """
import importlib.metadata as md, importlib.util, sys
if importlib.util.find_spec("mlflow") is None:
    sys.exit(3)
for dist in ("mlflow", "mlflow-skinny"):
    try:
        print(md.version(dist)); break
    except md.PackageNotFoundError:
        pass
else:
    print("0")
"""


def mlflow_version(python: str) -> str | None:
    # Metadata only: importing mlflow to ask would cost seconds on every cold start.
    try:
        r = subprocess.run([python, "-c", _MLFLOW_PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def pip_install_running() -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            args = cmdline(int(entry.name)).split()
            if "install" in args and any(re.search(r"(^|/)pip[0-9.]*$", a) or a == "pip" for a in args[:4]):
                return True
    return False


def wait_for_mlflow_install(python: str, timeout: float) -> str:
    """The installed MLflow version, waiting while a pip install is still running.

    A fresh checkout's setup runs pip in the background, and `up` may be called before it has
    finished; without a running pip there is nothing to wait for, so fail at once.
    """
    deadline = time.monotonic() + timeout
    told = False
    while True:
        version = mlflow_version(python)
        if version:
            return version
        if not pip_install_running() or time.monotonic() > deadline:
            raise StackError(
                f"MLflow is not installed for {python}. Install it ({python} -m pip "
                "install mlflow) or set SHIPPER_STACK_PYTHON to an interpreter that has it."
            )
        if not told:
            log(f"mlflow is not importable by {python} yet and a pip install is running; waiting")
            told = True
        time.sleep(3)


def mlflow_command(python: str, version: str, port: int, db: Path, artifacts: Path) -> list[str]:
    """The server's command line for MLflow `version`."""
    cmd = [
        python,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    vparts = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    if vparts >= (1, 24):
        # Proxied artifacts (runs get mlflow-artifacts:/ locations): clients upload through the
        # server, as against a real deployment, instead of writing into our directory.
        cmd += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    else:
        cmd += ["--default-artifact-root", str(artifacts)]
    return cmd


def mlflow_start(port: int) -> Started:
    python = mlflow_python()
    version = wait_for_mlflow_install(python, ML.timeout)
    artifacts = MLFLOW_DIR / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = mlflow_command(python, version, port, MLFLOW_DB, artifacts)
    # The loopback Host header passes MLflow 3's default --allowed-hosts (localhost and private
    # addresses), so the security middleware needs no options; mlflow_health() would tell.
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    log(f"starting MLflow {version} on 127.0.0.1:{port} ({python})")
    proc = ML.spawn(cmd, cwd=MLFLOW_DIR, env=env, port=port)
    hints = (
        f"Check {rel(ML.log_file)}; interpreter {python} (mlflow {version}); port {port}. "
        "A 403 'Invalid Host header' means MLflow's --allowed-hosts needs 127.0.0.1."
    )
    return Started(proc, port, hints)


ML = Component(
    key="mlflow",
    title="MLflow",
    url_var="MLFLOW_TRACKING_URI",
    default_port=5000,
    port_var="SHIPPER_STACK_MLFLOW_PORT",
    timeout_var="SHIPPER_STACK_MLFLOW_TIMEOUT",
    default_timeout=120,
    grace=20,
    marker=f"sqlite:///{MLFLOW_DB}",
    health=mlflow_health,
    start=mlflow_start,
    data_paths=[MLFLOW_DIR],
)
