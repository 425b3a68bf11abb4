"""scripts/stack and scripts/demo never adopt a server they did not start.

Impostors are real HTTP servers (stdlib) that answer the health checks of both Elasticsearch and
MLflow, and accept any write. They sit on 9200 and 5000 (unless something else, e.g. another
stack, already does), and take the port a fresh stack picked between its check and its server's
bind: the race in which a stack used to report someone else's server as healthy. Each test uses a
state dir of its own, so the session's stack is someone else's too.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STACK = [sys.executable, str(REPO / "scripts" / "stack")]
PROBES = ("/_cluster/health", "/_nodes/_local", "/health", "/api/2.0/mlflow/experiments/search")

pytestmark = pytest.mark.integration


class Impostor(http.server.ThreadingHTTPServer):
    """Answers like a healthy Elasticsearch of another cluster and a healthy MLflow; records requests."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.requests: list[tuple[str, str, int | None]] = []  # method, path, the client's pgid
        super().__init__(("127.0.0.1", port), ImpostorHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def writes_and_unknown(self, pgid: int | None = None) -> list[tuple[str, str]]:
        """Requests other than read-only health probes, from process group `pgid` (None: anyone).

        On a shared machine other people's programs may call 9200 or 5000 too; a request whose
        client could not be found counts as ours.
        """
        return [
            (method, path)
            for method, path, client in self.requests
            if (pgid is None or client in (pgid, None)) and (method != "GET" or not path.startswith(PROBES))
        ]


def client_pgid(client_port: int) -> int | None:
    """The process group of the process holding our peer's end of a loopback connection."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == client_port and fields[3] == "01":  # ESTABLISHED
                inodes.add(f"socket:[{fields[9]}]")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"{entry.path}/fd"):
                if os.readlink(fd.path) in inodes:
                    stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                    return int(stat[2])
        except OSError:
            continue
    return None


class ImpostorHandler(http.server.BaseHTTPRequestHandler):
    server: Impostor

    def answer(self) -> None:
        self.server.requests.append((self.command, self.path, client_pgid(self.client_address[1])))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/_cluster/health"):
            body: object = {"cluster_name": "someone-else", "status": "green"}
        elif self.path.startswith("/_nodes"):
            node = {"name": "impostor", "version": "9.5.4", "process": {"id": 1}}
            body = {"cluster_name": "someone-else", "nodes": {"abc": node}}
        elif self.path.startswith("/health"):
            body = "OK"
        elif self.path.startswith("/api/2.0/mlflow/experiments/search"):
            body = {"experiments": []}
        else:
            body = {"acknowledged": True}  # a write that "succeeds" is what makes adoption dangerous
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def occupy(port: int) -> Impostor | None:
    """An impostor on `port`, or None when something else already listens there."""
    try:
        return Impostor(port)
    except OSError:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) == 0, f"port {port} is neither free nor in use"
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(state: Path) -> dict[str, str]:
    """No URL of the session's stack or of the developer's shell may leak into the tested commands."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SHIPPER_", "ES_URL", "ES_INGEST_URL", "MLFLOW_", "ES_JAVA"))
        or k == "SHIPPER_STACK_PYTHON"
    }
    env["SHIPPER_STACK_STATE_DIR"] = str(state)
    return env


@pytest.fixture
def state() -> Iterator[Path]:
    # Under /var/tmp, not pytest's tmp_path: as root, Elasticsearch runs as an unprivileged user that
    # cannot enter /tmp/pytest-of-root (mode 700).
    path = Path(tempfile.mkdtemp(prefix="shipper-stack-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run([*STACK, "down", "--purge"], env=clean_env(path), capture_output=True, timeout=300)
    shutil.rmtree(path, ignore_errors=True)


def get_json(url: str) -> dict[str, object]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def port_of(url: str) -> int:
    m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", url)
    assert m, url
    return int(m.group(1))


def test_demo_starts_its_own_stack_when_others_hold_the_ports_and_one_takes_its_port(state: Path) -> None:
    impostors = [imp for imp in (occupy(9200), occupy(5000)) if imp is not None]
    # The ports the stack will pick (it prefers the ones it used last), taken by impostors as soon
    # as the stack has spawned its servers: they cannot bind, must say so, and move.
    picked = {"es": free_port(), "mlflow": free_port()}
    for key, port in picked.items():
        (state / f"{key}.port").write_text(f"{port}\n")
    env = clean_env(state)
    out, err = state / "demo.out", state / "demo.err"
    try:
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            demo = subprocess.Popen(
                [str(REPO / "scripts" / "demo")],
                env=env,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            waiting = dict(picked)
            deadline = time.monotonic() + 900
            while waiting and demo.poll() is None and time.monotonic() < deadline:
                for key in [k for k in waiting if (state / f"{k}.pid").exists()]:
                    impostor = Impostor(waiting.pop(key))
                    impostors.append(impostor)
                time.sleep(0.02)
            assert not waiting, f"the demo never started {sorted(waiting)}:\n{err.read_text()[-3000:]}"
            rc = demo.wait(timeout=900)
        finally:
            if demo.poll() is None:
                demo.kill()
        stderr_text = err.read_text()
        assert rc == 0, f"scripts/demo failed:\n{stderr_text[-4000:]}"

        # It said where it shipped, and how to run shipper there.
        last = out.read_text().splitlines()[-6:]
        m = re.fullmatch(r"  export SHIPPER_ELASTICSEARCH_URL=(\S+) MLFLOW_TRACKING_URI=(\S+)", last[-2])
        assert m, last
        es_url, mlflow_url = m.groups()
        assert last[0] == (
            f"Shipped into this stack's own Elasticsearch at {es_url} (MLflow UI: {mlflow_url})."
        )
        assert last[-1] == "  .venv/bin/shipper sync"
        # Ports held by our impostors all along are never used; another party's (say, a stack of
        # another checkout on 5000) may be given back meanwhile and then rightly be taken.
        held = {impostor.port for impostor in impostors}
        assert port_of(es_url) not in held
        assert port_of(mlflow_url) not in held
        # Both servers lost their port to an impostor, and that was said with the log's tail.
        for title, port in (("Elasticsearch", picked["es"]), ("MLflow", picked["mlflow"])):
            assert (
                f"stack: {title} did not come up on 127.0.0.1:{port}: the process exited with code"
                in stderr_text
            )
        assert stderr_text.count("A server this stack did not start holds that port; trying another one") == 2
        # The cause, from each server's own log.
        assert (
            f"stack: Elasticsearch's log says: BindHttpException: Failed to bind to 127.0.0.1:{picked['es']}"
            in stderr_text
        )
        assert re.search(r"stack: MLflow's log says: .*address already in use", stderr_text, re.IGNORECASE)
        assert " healthy after " in stderr_text

        # Nothing from the demo reached the impostors but the stack's read-only probes.
        for impostor in impostors:
            assert impostor.writes_and_unknown(pgid=demo.pid) == [], impostor.port

        # The data is in the stack's own Elasticsearch.
        models = get_json(f"{es_url}/mlops-models/_count")
        assert models["count"] == 3

        # The printed lines work as they are.
        shipper = subprocess.run(
            ["bash", "-c", "\n".join(last[-2:])],
            cwd=REPO,
            env={k: v for k, v in env.items() if k != "SHIPPER_STACK_STATE_DIR"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert shipper.returncode == 0, shipper.stderr[-3000:]
        assert "3 runs (0 written, 3 unchanged)" in shipper.stdout + shipper.stderr

        # A second demo experiment run adds no versions.
        again = subprocess.run(
            [str(REPO / ".venv" / "bin" / "python"), str(REPO / "examples" / "demo_experiment.py")],
            env={**env, "MLFLOW_TRACKING_URI": mlflow_url},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.stdout.startswith("the demo is already logged (demo-churn-model has 3 versions)")
        versions = get_json(
            f"{mlflow_url}/api/2.0/mlflow/model-versions/search?filter=name%3D%27demo-churn-model%27"
        )
        assert len(versions["model_versions"]) == 3  # type: ignore[arg-type]

        status = subprocess.run([*STACK, "status"], env=env, capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = status.stdout.splitlines()
        assert len(lines) == 2
        assert all("healthy=yes  server=ours" in line for line in lines), lines
    finally:
        for impostor in impostors:
            impostor.shutdown()
            impostor.server_close()


def test_status_tells_down_from_someone_elses_and_a_forced_busy_port_fails(state: Path) -> None:
    ports = {"es": free_port(), "mlflow": free_port()}
    for key, port in ports.items():
        (state / f"{key}.port").write_text(f"{port}\n")
    env = clean_env(state)

    status = subprocess.run([*STACK, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 3
    lines = status.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["Elasticsearch", "MLflow"]
    assert all("healthy=no  server=down  (not running)" in line for line in lines), lines

    impostors = [Impostor(ports["es"]), Impostor(ports["mlflow"])]
    try:
        status = subprocess.run([*STACK, "status"], env=env, capture_output=True, text=True, timeout=120)
        assert status.returncode == 3
        lines = status.stdout.splitlines()
        for line, port in zip(lines, ports.values(), strict=True):
            assert "healthy=no  server=someone else's" in line, line
            assert f"http://127.0.0.1:{port} answers (" in line
            assert "but this stack did not start it" in line

        # A forced port that someone else holds: refused with the reason, nothing started.
        forced = {**env, "SHIPPER_STACK_MLFLOW_PORT": str(ports["mlflow"])}
        up = subprocess.run(
            [*STACK, "up", "--only", "mlflow"], env=forced, capture_output=True, text=True, timeout=120
        )
        assert up.returncode == 1
        assert up.stdout == ""
        assert (
            f"stack: error: SHIPPER_STACK_MLFLOW_PORT={ports['mlflow']}, but 127.0.0.1:{ports['mlflow']} "
            "is already in use" in up.stderr
        )
        assert not (state / "mlflow.pid").exists()
        for impostor in impostors:
            assert impostor.writes_and_unknown() == []
            # The probes came from scripts/stack, and were told from other people's requests.
            assert impostor.requests
            assert all(client is not None for _, _, client in impostor.requests)
    finally:
        for impostor in impostors:
            impostor.shutdown()
            impostor.server_close()
