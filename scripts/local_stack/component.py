"""One server of the stack and its life: start on a free port, prove it ours, reuse, wait, report.

The servers themselves (elasticsearch, mlflow_server, ingest) are Component values; what differs
between them is in their fields, so nothing here knows which server it handles.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import StackError, log
from .identity import listener_identity
from .ports import ephemeral_port, pick_port, port_free
from .processes import cmdline, group_pids, spawn, stop_group
from .state import LOG_TAIL_LINES, STATE, log_tail, read_int, write_atomic


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    port: int
    hints: str  # what to check when it does not come up


@dataclass
class Component:
    key: str  # "es" / "mlflow" / "ingest": the --only value and the state file prefix
    title: str
    url_var: str  # environment variable that carries its URL
    default_port: int
    port_var: str
    timeout_var: str
    default_timeout: float
    grace: float  # seconds between SIGTERM and SIGKILL on stop
    marker: str  # an argument of the leader's command line that proves it is ours
    health: Callable[..., tuple[bool, str]]  # (url, direct=True) -> (healthy, detail)
    start: Callable[[int], Started]
    data_paths: list[Path] = field(default_factory=list)  # what --purge deletes
    # (url, pids of our process group) -> (the server at url is ours, why)
    identity: Callable[[str, Collection[int]], tuple[bool, str]] = listener_identity
    # url of our healthy server -> why it must be restarted (e.g. another version), or None
    restart_reason: Callable[[str], str | None] | None = None

    @property
    def pid_file(self) -> Path:
        return STATE / f"{self.key}.pid"

    @property
    def port_file(self) -> Path:
        return STATE / f"{self.key}.port"

    @property
    def log_file(self) -> Path:
        return STATE / f"{self.key}.log"

    @property
    def timeout(self) -> float:
        return float(os.environ.get(self.timeout_var) or self.default_timeout)

    def recorded_url(self) -> str | None:
        port = read_int(self.port_file)
        return f"http://127.0.0.1:{port}" if port else None

    def owned_pid(self) -> int | None:
        """The pid from our pid file if that process (group) is still the one we started.

        A recycled pid is told apart by the command line, which carries our own state paths.
        If the leader is gone but its group lives on (e.g. the ES server JVM outlived its
        launcher), the pid cannot have been recycled: Linux does not hand out a pid that is
        still in use as a process group id.
        """
        pid = read_int(self.pid_file)
        if pid is None:
            return None
        members = group_pids(pid)
        if not members:
            return None
        # /proc cmdline arguments end in NUL, read back as a space: the trailing space makes the
        # marker match one whole argument, not a prefix of a longer path.
        if pid in members and f"{self.marker} " not in cmdline(pid):
            return None
        return pid

    def leader_alive(self, pid: int) -> bool:
        return pid in group_pids(pid)

    def external_url(self) -> str | None:
        """$ES_URL / $MLFLOW_TRACKING_URI unless it merely points at the server we manage."""
        url = os.environ.get(self.url_var, "").strip()
        if not url:
            return None
        ours = self.recorded_url()
        if ours and url.rstrip("/") in (ours, ours.replace("127.0.0.1", "localhost")):
            return None
        return url

    def spawn(
        self,
        cmd: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        port: int,
        extra: dict[str, Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start the server detached from us, with its output in <state>/<key>.log."""
        proc = spawn(cmd, log_file=self.log_file, cwd=cwd, env=env, extra=extra)
        write_atomic(self.port_file, f"{port}\n")
        write_atomic(self.pid_file, f"{proc.pid}\n")
        return proc


def choose_port(comp: Component, avoid: Collection[int] = ()) -> int:
    forced = os.environ.get(comp.port_var)
    try:
        port = pick_port(
            forced=int(forced) if forced else None,
            previous=read_int(comp.port_file),
            default=comp.default_port,
            is_free=port_free,
            any_port=ephemeral_port,
            avoid=avoid,
        )
    except StackError as err:
        if forced:
            raise StackError(f"{comp.port_var}={forced}, but {err}") from None
        raise
    if port not in (read_int(comp.port_file), comp.default_port):
        log(f"port {comp.default_port} is busy; {comp.title} gets port {port}")
    return port


def identify(comp: Component, url: str, pgid: int) -> tuple[bool, str]:
    """Whether the server answering at `url` runs in `pgid`, the process group this stack started."""
    pids = set(group_pids(pgid))
    if not pids:
        return False, f"process group {pgid} (the one this stack started) has no live process"
    return comp.identity(url, pids)


def wait_healthy(
    comp: Component, url: str, pid: int, proc: subprocess.Popen[bytes] | None
) -> tuple[bool, str]:
    deadline = time.monotonic() + comp.timeout
    detail = "not checked yet"
    while True:
        if proc is not None and proc.poll() is not None:
            return False, f"the process exited with code {proc.returncode} ({detail})"
        if proc is None and not comp.leader_alive(pid):
            return False, f"the process exited ({detail})"
        ok, detail = comp.health(url)
        if ok:
            # Whoever answers may be another server that took the port first; ours then dies.
            ours, why = identify(comp, url, pid)
            if ours:
                return True, f"{detail}; {why}"
            detail = f"{url} answers, but it is not the server this stack started: {why}"
        if time.monotonic() > deadline:
            return False, f"not healthy after {comp.timeout:.0f}s (last check: {detail})"
        time.sleep(0.5)


def fail_with_log(comp: Component, what: str, hints: str) -> StackError:
    print(
        f"----- last {LOG_TAIL_LINES} lines of {comp.log_file} -----\n{log_tail(comp.log_file)}\n-----",
        file=sys.stderr,
    )
    return StackError(f"{comp.title} {what}. {hints}")


def show_log_tail(comp: Component, lines: int = 15) -> None:
    print(f"----- last {lines} lines of {comp.log_file} -----", file=sys.stderr)
    print(f"{log_tail(comp.log_file, lines)}\n-----", file=sys.stderr, flush=True)
    # The bind error itself is often further up, above the shutdown messages.
    for line in log_tail(comp.log_file, 400).splitlines():
        m = re.search(r"\w*Bind\w*Exception.*|.*address already in use.*", line, re.IGNORECASE)
        if m:
            log(f"{comp.title}'s log says: {m.group(0).strip()[:300]}")
            break


def forget(comp: Component) -> None:
    comp.pid_file.unlink(missing_ok=True)


def try_reuse(comp: Component) -> str | None:
    """URL of a server we started earlier that is still fine, else None (after cleaning up)."""
    pid = comp.owned_pid()
    url = comp.recorded_url()
    if pid is None:
        forget(comp)
        return None
    if url is None or not comp.leader_alive(pid):
        log(f"{comp.title} process group {pid} is in a half-dead state; restarting it")
        stop_group(pid, comp.grace)
        forget(comp)
        return None
    forced = os.environ.get(comp.port_var)
    if forced and int(forced) != read_int(comp.port_file):
        log(f"{comp.title} runs at {url}, but {comp.port_var}={forced}; restarting it there")
        stop_group(pid, comp.grace)
        forget(comp)
        return None
    ok, detail = comp.health(url)
    if ok:
        ours, why = identify(comp, url, pid)
        if not ours:
            # E.g. another server holds the port while ours lingers, or ours predates the cluster
            # name that identifies it: never hand out a URL we cannot tie to our process.
            log(
                f"{url} answers, but it is not the {comp.title} this stack started ({why}); "
                f"stopping process group {pid} and starting anew"
            )
            stop_group(pid, comp.grace)
            forget(comp)
            return None
    else:
        log(f"{comp.title} (pid {pid}) is running but not healthy yet ({detail}); waiting")
        ok, detail = wait_healthy(comp, url, pid, None)
        if not ok:
            raise fail_with_log(
                comp,
                f"(pid {pid}, {url}) is running but unhealthy: {detail}",
                "Restart it with `scripts/stack down && scripts/stack up`.",
            )
    reason = comp.restart_reason(url) if comp.restart_reason else None
    if reason:
        log(f"{reason}; restarting it")
        stop_group(pid, comp.grace)
        forget(comp)
        return None
    log(f"{comp.title} already running: pid {pid}, {url}")
    return url


def check_external(comp: Component, url: str) -> None:
    if not re.match(r"https?://", url):
        # e.g. MLFLOW_TRACKING_URI=databricks or sqlite:///...: nothing to probe over HTTP.
        log(f"{comp.url_var}={url} is not an http(s) URL; passing it through unchecked")
        return
    ok, detail = comp.health(url.rstrip("/"), direct=False)
    if not ok:
        raise StackError(
            f"{comp.url_var}={url} is set, so scripts/stack did not start {comp.title}, "
            f"but it does not answer properly: {detail}. Fix that server or unset "
            f"{comp.url_var} to let scripts/stack start its own."
        )
    log(f"{comp.title}: using {comp.url_var}={url} from the environment ({detail})")


def server_owner(comp: Component, pid: int | None, url: str | None) -> tuple[str, bool, str]:
    """Whose server is at our URL: ("ours" | "someone else's" | "down", healthy and ours, detail)."""
    if pid and url:
        ok, detail = comp.health(url)
        if not ok:
            return "ours", False, f"process group {pid} runs, but {detail}"
        ours, why = identify(comp, url, pid)
        if ours:
            return "ours", True, detail
        return "someone else's", False, f"{url} answers, but it is not the server this stack started: {why}"
    # Nothing of ours runs: whatever holds the port we would use is someone else's.
    port = read_int(comp.port_file) or comp.default_port
    probe = url or f"http://127.0.0.1:{port}"
    ok, detail = comp.health(probe)
    if ok or not port_free(port):
        answer = f"answers ({detail})" if ok else "is in use"
        return "someone else's", False, f"not running; {probe} {answer}, but this stack did not start it"
    return "down", False, "not running"
