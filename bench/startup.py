"""Process start-up and peak RSS of `shipper validate`, a no-op `shipper sync` and `shipper serve`,
and how long the CLI takes to give up on an MLflow tracking server that cannot be used.

    .venv/bin/python bench/startup.py [--repeat 5] [--es-url URL --mlflow-uri URI]

Each figure is a whole process (`python -m shipper ...`), started fresh `--repeat` times after one
warm-up; the median, min and max are reported, with peak RSS from the kernel's own accounting
(os.wait4's ru_maxrss). Targets (DESIGN.md): `validate` <= 1 s, a no-op `sync` process <= 2 s.

- validate: offline, the default configuration plus MLFLOW_TRACKING_URI.
- sync (no-op): one small experiment (`bench-startup`, 3 runs) synced once, then measured passes
  in which nothing changed; SHIPPER_MLFLOW_EXPERIMENTS limits the pass to it.
- serve: from the start of the process until `GET /healthz` answers, then SIGTERM; RSS at that point.
- unreachable MLflow: `shipper check` and `shipper sync` with MLFLOW_TRACKING_URI on a closed port
  (nothing listens: refused at once) and on a port that accepts connections but never answers (the
  bound is SHIPPER_MLFLOW_CONNECT_TIMEOUT_SECONDS, one try, no retries). Exit code and wall time.

It writes nothing to the shipper's indices beyond the checkpoints of its own small experiment, so it
may use the shared stack (`--es-url`/`--mlflow-uri`); without them it starts the private one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import _common as c

TARGETS = {"validate": 1.0, "sync (no-op)": 2.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A small process that starts the measured commands: the kernel counts the RSS of whoever spawned a
# process in that process's peak (ru_maxrss survives exec), so they must not come from this one,
# which has MLflow imported by then. Started first thing, while this process is small; one JSON line
# in (argv, env), one out (wall, rusage, exit, last stderr line).
LAUNCHER = """
import json, os, sys, tempfile, time
for line in sys.stdin:
    job = json.loads(line)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        pid = os.posix_spawn(job["argv"][0], job["argv"], job["env"],
                             file_actions=[(os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                                           (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - started
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
    print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                      "rss_mb": usage.ru_maxrss / 1024, "exit": os.waitstatus_to_exitcode(status),
                      "last_line": tail[0][:300]}), flush=True)
"""
_launcher: subprocess.Popen[str] | None = None


def start_launcher() -> None:
    global _launcher
    _launcher = subprocess.Popen(
        [c.PYTHON, "-I", "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def spawn(args: list[str], env: dict[str, str], out: int, err: int) -> int:
    """posix_spawn, not fork: a forked copy of this (large) process would count in the child's
    peak RSS."""
    actions = [(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
    argv = [c.PYTHON, "-P", "-m", "shipper", *args]  # -P: the package is the measured one, not ./shipper
    return os.posix_spawn(c.PYTHON, argv, env, file_actions=actions)


def run_once(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    if _launcher is not None and _launcher.stdin is not None and _launcher.stdout is not None:
        argv = [c.PYTHON, "-P", "-m", "shipper", *args]
        _launcher.stdin.write(json.dumps({"argv": argv, "env": env}) + "\n")
        _launcher.stdin.flush()
        return dict(json.loads(_launcher.stdout.readline()))
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = spawn(args, env, out.fileno(), err.fileno())
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - started
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
        "last_line": tail[0][:300],
    }


def serve_once(env: dict[str, str]) -> dict[str, Any]:
    port = free_port()
    started = time.monotonic()
    with open(os.devnull, "wb") as null:
        pid = spawn(["serve", "--host", "127.0.0.1", "--port", str(port)], env, null.fileno(), null.fileno())
    ready = float("nan")
    deadline = started + 60
    while time.monotonic() < deadline and _alive(pid):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    ready = time.monotonic() - started
                    break
        except OSError:
            time.sleep(0.02)
    rss = _rss_mb(pid)
    cpu = _cpu_seconds(pid)
    os.kill(pid, signal.SIGTERM)
    _, status, usage = os.wait4(pid, 0)
    return {
        "wall": ready,
        "cpu": cpu,
        "rss_mb": max(rss, 0.0) or usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
        "last_line": "",
    }


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):  # the peak so far
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(key: str) -> dict[str, float]:
        values = [r[key] for r in runs]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "wall": stat("wall"),
        "cpu": stat("cpu"),
        "rss_mb": stat("rss_mb"),
        "exit": sorted({r["exit"] for r in runs}),
        "last_line": runs[-1]["last_line"],
        "runs": runs,
    }


def measure(name: str, once: Any, repeat: int) -> dict[str, Any]:
    c.say(f"{name}: 1 warm-up + {repeat} runs")
    once()
    return summarise([once() for _ in range(repeat)])


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--repeat", type=int, default=5, help="measured runs of each command")
    p.add_argument(
        "--unreachable-repeat",
        type=int,
        default=2,
        help="measured runs of each unreachable-MLflow case (0: skip; before the bound, one took minutes)",
    )
    args = p.parse_args()
    start_launcher()
    st = c.stack(args)
    info = c.machine(st.es_url)
    gen = c.ensure_experiment(st.mlflow_uri, "bench-startup", c.Shape(3, 2, 5))
    env = c.shipper_env(st, gen.name, SHIPPER_WEBHOOK_SECRET="bench-startup-secret")
    c.run_shipper(["setup"], env)
    c.run_shipper(["sync"], env)  # the passes measured below find nothing to do

    results: dict[str, dict[str, Any]] = {}
    results["validate"] = measure("validate", lambda: run_once(["validate"], env), args.repeat)
    results["sync (no-op)"] = measure("sync", lambda: run_once(["sync", "--json"], env), args.repeat)
    results["serve (until /healthz answers)"] = measure("serve", lambda: serve_once(env), args.repeat)

    # MLflow that cannot be used: refused at once, and a server that accepts but never answers.
    closed = dict(env, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    silent_socket = socket.socket()
    silent_socket.bind(("127.0.0.1", 0))
    silent_socket.listen(64)  # never accepted: the connection completes, no answer ever comes
    silent = dict(
        env,
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{silent_socket.getsockname()[1]}",
        SHIPPER_MLFLOW_CONNECT_TIMEOUT_SECONDS="5",
    )
    for label, case_env in (("refused", closed), ("silent, timeout 5 s", silent)):
        for command in ("check", "sync"):
            if args.unreachable_repeat <= 0:
                break
            name = f"{command}, MLflow {label}"
            results[name] = summarise([run_once([command], case_env) for _ in range(args.unreachable_repeat)])
    silent_socket.close()

    rows = []
    for name, r in results.items():
        target = TARGETS.get(name)
        rows.append(
            [
                name,
                r["wall"]["median"],
                f"{r['wall']['min']:.2f}-{r['wall']['max']:.2f}",
                r["cpu"]["median"],
                r["rss_mb"]["median"],
                ",".join(str(e) for e in r["exit"]),
                "" if target is None else f"<= {target:g} s: {c.verdict(r['wall']['median'] <= target)}",
            ]
        )
    print()
    print(c.table(rows, ["process", "wall s (median)", "min-max", "cpu s", "peak RSS MB", "exit", "target"]))
    for name, r in results.items():
        if "MLflow" in name:
            print(f"  {name}: {r['last_line']}")
    c.save("startup", {"machine": info, "repeat": args.repeat, "results": results}, args)


if __name__ == "__main__":
    main()
