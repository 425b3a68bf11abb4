"""A throwaway PostgreSQL cluster and `mlflow server` on it with several workers, for bench/suite.py.

The server binaries are Debian's (`apt-get install postgresql`: /usr/lib/postgresql/<version>/bin);
the benchmark never installs them itself. The cluster lives under <state-dir>/postgres, listens only on
127.0.0.1 at a free port (no Unix socket outside that directory), trusts loopback connections (it holds
nothing but generated benchmark data) and is stopped at the end; its data is kept so that generated
experiments are reused by the next run. PostgreSQL refuses to run as root, so as root the cluster runs
as the `postgres` system user that Debian's package creates (`runuser`).

MLflow talks to it with psycopg2 (`postgresql+psycopg2://`: SQLAlchemy's default PostgreSQL
driver is psycopg 3 now; the `bench` extra pins psycopg2-binary); the schema is created once
by MLflow's own SqlAlchemyStore before the server starts, so its workers never race to migrate it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import requests


class Unavailable(Exception):
    """PostgreSQL (or the driver) cannot be had here; the message says why and what would fix it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise Unavailable(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (Debian's package: "
            "`apt-get install postgresql` as root)"
        )
    return Path(found[-1]).parent


class MlflowOnPostgres:
    def __init__(self, state: Path, workers: int = 4) -> None:
        self.state = state
        self.workers = workers
        self.data = state / "data"
        self.log = state / "postgres.log"
        self.port = 0
        self.mlflow: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.bin = server_bin()
        self.as_root = os.geteuid() == 0
        self.version = ""
        self.store_uri = ""
        self.dsn = ""

    def _pg(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd="/")

    def start(self) -> None:
        try:
            import psycopg2  # noqa: F401
        except ImportError as exc:
            raise Unavailable("psycopg2 is not installed (scripts/install installs the bench extra)") from exc
        if self.as_root:
            try:
                subprocess.run(["id", "postgres"], check=True, capture_output=True)
            except subprocess.CalledProcessError as exc:
                raise Unavailable(
                    "running as root and there is no `postgres` user to run the server as"
                ) from exc
        self.state.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.state, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            c.say(f"initdb {self.data}")
            shutil.rmtree(self.data, ignore_errors=True)
            self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._pg(
            "pg_ctl", "-D", str(self.data), "stop", "-m", "fast", check=False
        )  # a leftover from a killed run
        self.port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.state}"
        options += " -c max_connections=100 -c shared_buffers=128MB -c fsync=off -c synchronous_commit=off"
        r = self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if r.returncode != 0:
            tail = self.log.read_text()[-1000:] if self.log.exists() else ""
            raise Unavailable(f"pg_ctl start failed: {r.stderr.strip()} {tail}")
        self.version = self._pg("postgres", "--version").stdout.strip()
        db_uri = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._create_db(db_uri)
        store = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mlflow"
        self.store_uri = store
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/mlflow"  # for psycopg2 itself
        artifacts = self.state / "artifacts"
        c.say("MLflow schema on PostgreSQL (SqlAlchemyStore, once, before the workers start)")
        made = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as S; "
                "S(sys.argv[1], sys.argv[2])",
                store,
                str(artifacts),
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise Unavailable(f"MLflow could not create its schema on PostgreSQL: {made.stderr[-800:]}")
        port = free_port()
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", store,
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(self.workers),
            "--serve-artifacts", "--artifacts-destination", str(artifacts),
        ]  # fmt: skip
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        env.pop("MLFLOW_TRACKING_URI", None)
        c.say(f"mlflow server on PostgreSQL, {self.workers} workers, port {port}")
        log = (self.state / "mlflow.log").open("ab")
        self.mlflow = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, cwd=self.state)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.mlflow.poll() is not None:
                raise Unavailable(
                    f"mlflow server on PostgreSQL exited {self.mlflow.returncode}; "
                    f"see {self.state / 'mlflow.log'}"
                )
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise Unavailable(
            f"mlflow server on PostgreSQL did not answer /health within 180 s; see {self.state}/mlflow.log"
        )

    def _create_db(self, admin_uri: str) -> None:
        import psycopg2

        conn = psycopg2.connect(admin_uri)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'mlflow'")
            if cur.fetchone() is None:
                cur.execute("CREATE DATABASE mlflow")
        conn.close()

    def describe(self) -> dict[str, Any]:
        return {"postgres": self.version, "workers": self.workers, "url": self.url, "data": str(self.data)}

    def stop(self) -> None:
        import signal

        if self.mlflow is not None and self.mlflow.poll() is None:
            os.killpg(self.mlflow.pid, signal.SIGTERM)
            try:
                self.mlflow.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.mlflow.pid, signal.SIGKILL)
                self.mlflow.wait()
        self._pg("pg_ctl", "-D", str(self.data), "stop", "-m", "fast", check=False)
