"""What every benchmark shares: a private stack, generated MLflow experiments, the shipper run as a
measured child process, ground truth read back from MLflow, and the report (table, JSON, command).

The benchmarks delete and recreate the shipper's own indices (`mlops-*`), whose names are fixed, so
they never run against the shared stack of `scripts/stack up`: they start a private one with the same
script and a state directory of their own (default /var/tmp/shipper-bench/stack, kept between runs
so generated experiments are reused). `--es-url` / `--mlflow-uri` point them elsewhere instead; the
Elasticsearch given there loses its `mlops-*` indices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or BENCH / "results")  # bench/suite.py sets it
PYTHON = sys.executable
CHILD = BENCH / "_shipper_child.py"
DEFAULT_STATE = Path(os.environ.get("SHIPPER_BENCH_STATE_DIR") or "/var/tmp/shipper-bench")
COMPLETE_TAG = "bench.complete"
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run" lines


# -- command line, report -----------------------------------------------------------------------


SRC = REPO  # whose shipper/ is measured; --shipper-src changes it


class _UseSource(argparse.Action):
    """--shipper-src DIR: measure the shipper package in DIR (e.g. a `git worktree` of a commit)
    instead of the editable install, in this process and in every child."""

    def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
        global SRC
        SRC = Path(value).resolve()
        if not (SRC / "shipper" / "__init__.py").is_file():
            parser.error(f"{SRC} has no shipper/ package")
        sys.path.insert(0, str(SRC))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
        setattr(namespace, self.dest, SRC)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--es-url", help="use this Elasticsearch (its mlops-* indices are DELETED) instead of a private one"
    )
    p.add_argument("--mlflow-uri", help="use this MLflow tracking server instead of the private one")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE,
        help=f"where the private stack lives (default {DEFAULT_STATE}; env SHIPPER_BENCH_STATE_DIR)",
    )
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/<name>.json")
    p.add_argument(
        "--runtime-venv",
        type=Path,
        help="run the shipper with this venv's interpreter: what the Dockerfile installs (made if "
        "missing; default <state-dir>/runtime-venv)",
    )
    p.add_argument(
        "--dev-install", action="store_true", help="run the shipper from this venv (full mlflow) instead"
    )
    p.add_argument(
        "--shipper-src",
        action=_UseSource,
        metavar="DIR",
        help="measure the shipper/ package in DIR instead of this checkout, e.g. a commit exported with "
        "`git archive <commit> shipper | tar -x -C DIR` (write the commit into DIR/.bench-commit)",
    )
    return p


def command() -> str:
    exe = os.path.relpath(PYTHON, REPO) if PYTHON.startswith(str(REPO)) else PYTHON
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return " ".join(shlex.quote(a) for a in [exe, script, *sys.argv[1:]])


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def machine(es_url: str | None = None) -> dict[str, Any]:
    import psutil

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        from importlib.metadata import version

        info["mlflow"] = version("mlflow")
        info["elasticsearch_py"] = version("elasticsearch")
    except Exception:  # pragma: no cover - informational only
        pass
    info["shipper_code"] = code_version()
    if es_url:
        try:
            nodes = es_client(es_url).nodes.info(node_id="_local")["nodes"]
            info["elasticsearch"] = next(iter(nodes.values()))["version"]
        except Exception:
            pass
    return info


def code_version() -> dict[str, Any]:
    """The commit measured, and which files under shipper/ differ from it (others edit concurrently)."""
    import hashlib

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=SRC, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    status = git("status", "--porcelain", "--", "shipper") if (SRC / ".git").exists() else ""
    dirty = [line.split(maxsplit=1)[-1] for line in status.splitlines()]
    digest = hashlib.sha256()
    for path in sorted((SRC / "shipper").rglob("*.py")):
        digest.update(path.read_bytes())
    return {
        "source": str(SRC),
        "commit": git("rev-parse", "--short", "HEAD")
        if (SRC / ".git").exists()
        else ((SRC / ".bench-commit").read_text().strip() if (SRC / ".bench-commit").exists() else "?"),
        "uncommitted": dirty,
        "sha256": digest.hexdigest()[:12],
    }


def save(name: str, data: dict[str, Any], args: argparse.Namespace) -> None:
    code = code_version()
    started = (data.get("machine") or {}).get("shipper_code")
    note = " (CHANGED during the run)" if started and started != code else ""
    extra = f", uncommitted: {', '.join(code['uncommitted'])}" if code["uncommitted"] else ""
    print(f"\nshipper code: {code['commit']}{extra}; sources {code['sha256']}{note}")
    print(f"command: {command()}")
    data = {**data, "shipper_code_at_end": code}
    if args.no_json:
        return
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"bench": name, "command": command(), **data}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"results: {os.path.relpath(path, REPO)}")


# -- the private stack ---------------------------------------------------------------------------


@dataclass
class Stack:
    es_url: str
    mlflow_uri: str


def stack_up(state_dir: Path, only: str | None = None) -> dict[str, str]:
    """`scripts/stack up` with its own state directory: a private ES and/or MLflow (reused if running)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ES_URL", "MLFLOW_TRACKING_URI")}
    env["SHIPPER_STACK_STATE_DIR"] = str(state_dir)
    for var in ("SHIPPER_STACK_ES_PORT", "SHIPPER_STACK_MLFLOW_PORT"):
        env.pop(var, None)
    cmd = [str(REPO / "scripts" / "stack"), "up"] + (["--only", only] if only else [])
    say(f"private stack: SHIPPER_STACK_STATE_DIR={state_dir} {' '.join(cmd[1:])}")
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    urls = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        urls[key.strip()] = value.strip().strip("'")
    return urls


def stack_down(state_dir: Path, only: str | None = None, purge: bool = False) -> None:
    env = dict(os.environ, SHIPPER_STACK_STATE_DIR=str(state_dir))
    env.pop("ES_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = (
        [str(REPO / "scripts" / "stack"), "down"]
        + (["--only", only] if only else [])
        + (["--purge"] if purge else [])
    )
    subprocess.run(cmd, env=env, check=False)


def stack(args: argparse.Namespace) -> Stack:
    if not getattr(args, "dev_install", True):
        use_runtime_install(args.runtime_venv or args.state_dir / "runtime-venv")
    if args.es_url and args.mlflow_uri:
        return Stack(args.es_url, args.mlflow_uri)
    only = "mlflow" if args.es_url else ("es" if args.mlflow_uri else None)
    urls = stack_up(args.state_dir / "stack", only)
    return Stack(args.es_url or urls["ES_URL"], args.mlflow_uri or urls["MLFLOW_TRACKING_URI"])


def es_client(url: str) -> Any:
    from elasticsearch import Elasticsearch

    return Elasticsearch(url, request_timeout=300)


def shipper_env(st: Stack, experiment: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_") or k.startswith("SHIPPER_STACK_")
    }
    env.update(
        SHIPPER_ELASTICSEARCH_URL=st.es_url, MLFLOW_TRACKING_URI=st.mlflow_uri, SHIPPER_LOG_LEVEL="WARNING"
    )
    if experiment is not None:
        env["SHIPPER_MLFLOW_EXPERIMENTS"] = experiment
    env.update(extra)
    return env


def reset_indices(es: Any) -> None:
    """Delete every shipper index (metrics partitions, runs, models, state, dead letters)."""
    names = list(es.indices.get(index="mlops-*", expand_wildcards="all", allow_no_indices=True))
    if names:
        es.indices.delete(index=",".join(names), expand_wildcards="all")


def setup(st: Stack) -> None:
    """`shipper setup`: templates, so every index created afterwards has the product's mappings."""
    subprocess.run(
        [str(Path(PYTHON).parent / "shipper"), "setup"],
        env=shipper_env(st),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def count_metrics(es: Any) -> int:
    from elasticsearch import ApiError

    for _ in range(100):
        try:
            es.indices.refresh(index="mlops-metrics-*", allow_no_indices=True, ignore_unavailable=True)
            answer = es.count(index="mlops-metrics-*", allow_no_indices=True, ignore_unavailable=True)
            return int(answer["count"])
        except ApiError as exc:  # 503 while a partition the shipper just created has no active shard yet
            if exc.meta.status != 503:
                raise
            time.sleep(0.1)
    raise SystemExit("Elasticsearch answered 503 to every count for 10 s")


# -- generated experiments -----------------------------------------------------------------------


@dataclass
class Shape:
    runs: int
    keys: int
    steps: int

    @property
    def points(self) -> int:
        return self.runs * self.keys * self.steps

    def name(self, prefix: str) -> str:
        # g2: metric keys unique per experiment (see ensure_experiment)
        return f"{prefix}-r{self.runs}-k{self.keys}-s{self.steps}-g2"


@dataclass
class Generated:
    name: str
    experiment_id: str
    points: int
    runs: int
    generated_seconds: float | None  # None: reused from an earlier run
    points_per_second: float | None = None


def ensure_experiment(mlflow_uri: str, name: str, shape: Shape, workers: int = 4) -> Generated:
    """The experiment `name` with `shape`, generated with log_batch unless a complete one exists.

    Runs are spread over ~3 months back from now (so points land in several monthly indices),
    one point per second per step, values a seeded random walk; every run is FINISHED, with a few
    params and tags. A generation that was interrupted is renamed away and redone.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(mlflow_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(COMPLETE_TAG) == "true" and existing.lifecycle_stage == "active":
            return Generated(name, existing.experiment_id, shape.points, shape.runs, None)
        stale = f"{name}-incomplete-{int(time.time())}"
        say(f"experiment {name} is incomplete; renaming it to {stale} and deleting it")
        client.rename_experiment(existing.experiment_id, stale)
        if existing.lifecycle_stage == "active":
            client.delete_experiment(existing.experiment_id)
    say(
        f"generating {name}: {shape.runs} runs x {shape.keys} keys x {shape.steps} steps"
        f" = {shape.points:,} points"
    )
    started = time.monotonic()
    eid = client.create_experiment(name)
    now_ms = int(time.time() * 1000)
    span_ms = 90 * 86_400_000
    # Key names unique to the experiment: MLflow's sqlite store answers get-history with a query
    # that sqlite plans on the metrics primary key (key, ...), i.e. it scans every row of that key
    # in the whole database. With shared names ("loss"), generating the 1M-point memory experiment
    # made every later benchmark's history reads slower (10-point histories: 16 ms -> 85 ms each).
    tag = name.removeprefix("bench-")
    keys = [
        f"{tag}/{k}"
        for k in ["loss", "accuracy", *(f"metric_{i}" for i in range(2, shape.keys))][: shape.keys]
    ]

    def one_run(i: int) -> None:
        rng = random.Random(i)
        start = now_ms - span_ms + (span_ms * i) // max(shape.runs, 1)
        run = client.create_run(eid, run_name=f"run-{i:05d}", start_time=start)
        rid = run.info.run_id
        batch: list[Metric] = []
        params = [
            Param("lr", str(rng.choice([0.1, 0.01, 0.001]))),
            Param("batch_size", str(rng.choice([32, 64]))),
        ]
        tags = [RunTag("team", "bench"), RunTag("shape", name)]
        client.log_batch(rid, params=params, tags=tags)
        for key in keys:
            value = rng.random()
            for step in range(shape.steps):
                value += rng.uniform(-0.01, 0.01)
                batch.append(Metric(key, value, start + step * 1000, step))
                if len(batch) == 1000:
                    client.log_batch(rid, metrics=batch)
                    batch = []
        if batch:
            client.log_batch(rid, metrics=batch)
        client.set_terminated(rid, "FINISHED", end_time=start + shape.steps * 1000)

    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one_run, range(shape.runs)):
            pass
    client.set_experiment_tag(eid, COMPLETE_TAG, "true")
    took = time.monotonic() - started
    say(f"generated {shape.points:,} points in {took:.1f}s ({shape.points / took:,.0f} points/s)")
    return Generated(name, eid, shape.points, shape.runs, took, shape.points / took)


def experiment_runs(mlflow_uri: str, experiment_id: str) -> list[Any]:
    """Every run of the experiment as the shipper's Run record (ascending start time)."""
    from shipper.sources.mlflow_tracking import MlflowSource

    return list(MlflowSource(mlflow_uri).runs([experiment_id]))


def experiment_points(mlflow_uri: str, experiment_id: str) -> Iterator[tuple[Any, Any]]:
    """(run, MetricPoint) for every point of the experiment, read from MLflow."""
    from shipper.sources.mlflow_tracking import MlflowSource

    source = MlflowSource(mlflow_uri)
    for run in source.runs([experiment_id]):
        for key in sorted(run.latest_metrics):
            for point in source.metric_history(run.id, key):
                yield run, point


def expected_ids(mlflow_uri: str, experiment_id: str) -> set[tuple[str, str]]:
    from shipper.core.names import metrics_index
    from shipper.transforms.mlflow_docs import metric_point_id

    return {
        (metrics_index(p.timestamp), metric_point_id(r.id, p))
        for r, p in experiment_points(mlflow_uri, experiment_id)
    }


def stored_ids(es: Any) -> tuple[set[tuple[str, str]], int]:
    """(index, _id) of every metric document, and how many documents were scanned."""
    from elasticsearch import helpers

    es.indices.refresh(index="mlops-metrics-*", allow_no_indices=True, ignore_unavailable=True)
    seen: set[tuple[str, str]] = set()
    scanned = 0
    for hit in helpers.scan(
        es, index="mlops-metrics-*", query={"query": {"match_all": {}}}, _source=False, size=5000, scroll="5m"
    ):
        scanned += 1
        seen.add((hit["_index"], hit["_id"]))
    return seen, scanned


# -- the product's install, the whole chain --------------------------------------------------------

RUNTIME_PYTHON: str | None = None  # set by use_runtime_install(): the interpreter of the runtime venv


def use_runtime_install(venv: Path) -> str:
    """Run the shipper from `venv`, an install of what the Dockerfile installs (the package with its
    `azure` extra, pinned by constraints.txt: mlflow-skinny, not mlflow), made here if missing.
    The benchmark itself keeps the development venv (it needs mlflow to generate data)."""
    global RUNTIME_PYTHON
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating the runtime-only install in {venv} (as the Dockerfile: .[azure], constraints.txt)")
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-c",
                str(REPO / "constraints.txt"),
                f"{REPO}[azure]",
            ],
            check=True,
        )
    full = (  # exit 0 when the full `mlflow` distribution is there (mlflow-skinny has mlflow/ too)
        "import importlib.metadata as m, sys\n"
        "try:\n    m.version('mlflow')\nexcept m.PackageNotFoundError:\n    sys.exit(1)"
    )
    if subprocess.run([str(python), "-c", full], check=False).returncode == 0:
        say(f"note: {venv} has the full mlflow package, not only mlflow-skinny")
    RUNTIME_PYTHON = str(python)
    return RUNTIME_PYTHON


def wait_ready(port: int, alive: Callable[[], bool], seconds: float) -> bool:
    """Whether `shipper serve` on `port` answers GET /readyz with 200 within `seconds` (False as soon
    as `alive()` says the process is gone)."""
    import http.client

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """`mlflow server --workers N` on the private stack's sqlite store (the same experiments), for
    as long as a benchmark needs it."""

    def __init__(self, state_dir: Path, workers: int) -> None:
        db = state_dir / "stack" / "mlflow" / "mlflow.db"
        if not db.exists():
            raise SystemExit(f"{db} does not exist: start the private stack first")
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        artifacts = state_dir / "stack" / "mlflow" / "artifacts"
        cmd = [
            PYTHON, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
            "--serve-artifacts", "--artifacts-destination", str(artifacts),
        ]  # fmt: skip
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        env.pop("MLFLOW_TRACKING_URI", None)
        self.log = open(state_dir / f"mlflow-{workers}w.log", "wb")  # noqa: SIM115 - closed in stop()
        say(f"starting mlflow server --workers {workers} on port {self.port}")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 180
        import urllib.request

        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mlflow server did not start; see {self.log.name}")
            time.sleep(1)
        time.sleep(3)  # the workers start after the first answers
        self.workers = workers

    def pids(self) -> list[int]:
        import psutil

        root = psutil.Process(self.proc.pid)
        return [root.pid, *(p.pid for p in root.children(recursive=True))]

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def es_pids(state_dir: Path) -> list[int]:
    """The private Elasticsearch: its launcher's pid file and every process below it."""
    import psutil

    pid_file = state_dir / "stack" / "es.pid"
    if not pid_file.exists():
        return []
    root = psutil.Process(int(pid_file.read_text().strip()))
    return [root.pid, *(p.pid for p in root.children(recursive=True))]


# -- the shipper as a measured child process ------------------------------------------------------


@dataclass
class ChildResult:
    argv: list[str]
    returncode: int
    wall_seconds: float
    cpu_seconds: float  # user + system of the shipper process alone (os.wait4)
    # Peak RSS of the shipper process: VmHWM of its own address space (read by the child at exit,
    # else the last polled value). Not ru_maxrss: Linux carries the forking process's peak (this
    # benchmark's) across exec into it; that figure is kept apart as ru_maxrss_mb.
    maxrss_mb: float
    polled_peak_rss_mb: float
    summary: dict[str, Any] | None
    report: dict[str, Any] | None  # from _shipper_child.py: the pass's own wall and CPU, requests
    stderr_tail: str = ""
    killed: bool = False
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    ru_maxrss_mb: float = 0.0  # os.wait4's figure, inherited across exec (see maxrss_mb)


class Child:
    """`shipper <args>` (through _shipper_child.py, which adds a report) as a subprocess."""

    started_children: list[Child] = []  # every one, so kill_children() finds them

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str],
        poll_rss: float | None = None,
        python: str | None = None,
        src: Path | None = None,
    ) -> None:
        """`python`: the interpreter (default: RUNTIME_PYTHON, else this one); `src`: a directory
        whose shipper/ package is measured instead of the installed one (put first on PYTHONPATH)."""
        import tempfile

        self.report_path = Path(tempfile.mkstemp(prefix="shipper-bench-", suffix=".json")[1])
        env = dict(env, BENCH_SHIPPER_REPORT=str(self.report_path))
        env["PYTHONPATH"] = str(src or SRC)  # the runtime venv's own copy may be older
        self.argv = [python or RUNTIME_PYTHON or PYTHON, str(CHILD), *args]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()
        self._stdout = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env=env, stdout=self._stdout, stderr=self._stderr, cwd=REPO)
        Child.started_children.append(self)
        self.peak_rss = 0.0
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._poller = None
        if poll_rss:
            self._poller = threading.Thread(target=self._poll, args=(poll_rss,), daemon=True)
            self._poller.start()

    def _poll(self, interval: float) -> None:
        path = Path(f"/proc/{self.proc.pid}/status")
        while not self._stop.is_set():
            try:
                for line in path.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        mb = int(line.split()[1]) / 1024
                        self.samples.append((round(time.monotonic() - self.started, 2), round(mb, 1)))
                    elif line.startswith("VmHWM:"):  # this address space's own peak, so far
                        self.peak_rss = max(self.peak_rss, int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                pass
            self._stop.wait(interval)

    def kill(self) -> None:
        import signal

        os.kill(self.proc.pid, signal.SIGKILL)

    def alive(self) -> bool:
        """Still running (not exited; an exited child stays a zombie until wait() reaps it)."""
        return _state(self.proc.pid) not in ("Z", "X")

    def wait(self, killed: bool = False) -> ChildResult:
        _, status, usage = os.wait4(self.proc.pid, 0)
        wall = time.monotonic() - self.started
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        self._stdout.seek(0)
        out = self._stdout.read().decode(errors="replace")
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace")
        self._stdout.close()
        self._stderr.close()
        summary = None
        for line in reversed(out.strip().splitlines()):
            if line.startswith("{"):
                summary = json.loads(line)
                break
        report = None
        try:
            text = self.report_path.read_text()
            report = json.loads(text) if text.strip() else None
        except (OSError, ValueError):
            pass
        self.report_path.unlink(missing_ok=True)
        own_peak = float((report or {}).get("vmhwm_mb") or 0.0)
        return ChildResult(
            argv=self.argv,
            returncode=self.proc.returncode,
            wall_seconds=wall,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            maxrss_mb=max(own_peak, self.peak_rss),
            ru_maxrss_mb=usage.ru_maxrss / 1024,
            polled_peak_rss_mb=self.peak_rss,
            summary=summary,
            report=report,
            stderr_tail=err[-3000:],
            killed=killed,
            rss_samples=self.samples,
        )


def kill_children() -> None:
    """SIGKILL every shipper child still running: a benchmark that stops early must not leave a
    pass writing into the next run's Elasticsearch (it would create indices without templates)."""
    for child in Child.started_children:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def run_shipper(
    args: Sequence[str],
    env: dict[str, str],
    poll_rss: float | None = None,
    python: str | None = None,
    src: Path | None = None,
) -> ChildResult:
    result = Child(args, env, poll_rss, python, src).wait()
    if result.returncode != 0:
        raise SystemExit(
            f"shipper {' '.join(args)} failed with exit {result.returncode}:\n{result.stderr_tail}"
        )
    return result
