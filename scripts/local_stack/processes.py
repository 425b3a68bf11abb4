"""The processes the stack starts, finds and stops, and the user Elasticsearch runs as under root.

Everything we start is the leader of its own process group (start_new_session), so the group id
is the pid in the pid file and stopping the group also stops the children (the ES launcher's
server JVM, the uvicorn worker of `mlflow server`). Linux only: it reads /proc.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import StackError, log

SERVICE_USER = os.environ.get("SHIPPER_STACK_ES_USER") or "shipper-stack"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group.

    Scanning /proc rather than os.killpg(pgid, 0): zombies count as present for kill(), and in a
    container whose init does not reap them we would wait for ever.
    """
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # Format: "pid (comm) state ppid pgrp ...", and comm may itself contain ") ".
        fields = raw.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def stop_group(pgid: int, grace: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the whole group, SIGKILL whatever is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()  # reap our own child, or it stays a zombie and looks alive
            if not group_pids(pgid):
                return
            time.sleep(0.2)
        if sig == signal.SIGTERM:
            log(f"process group {pgid} ignored SIGTERM for {grace:.0f}s; sending SIGKILL")
    raise StackError(f"could not stop process group {pgid}; left: {group_pids(pgid)}")


def spawn(
    cmd: list[str], *, log_file: Path, cwd: Path, env: dict[str, str], extra: dict[str, Any] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server detached from us, with its output in `log_file`."""
    if log_file.exists():  # keep the previous run's log for post-mortems
        os.replace(log_file, log_file.with_suffix(".log.prev"))
    with open(log_file, "wb") as out:
        # start_new_session: own session and process group, so the server outlives this script,
        # gets no SIGHUP when the terminal closes, and `down` can signal the whole group.
        # stdin/stdout/stderr are not our pipes, so `$(scripts/stack up)` does not wait on them.
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **(extra or {}),
        )


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account Elasticsearch runs under when we are root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def can(self, test_flag: str, path: Path) -> bool:
        # Asking `test` as that user is the only check that honours every ancestor directory's
        # mode and ACLs; reimplementing permission rules here would get corner cases wrong.
        test = shutil.which("test") or "/usr/bin/test"
        r = subprocess.run(
            [test, test_flag, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self.popen_kwargs(),
        )
        return r.returncode == 0


def ensure_service_user() -> RunAs:
    try:
        pw = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd") or next(
            (p for p in ("/usr/sbin/useradd", "/sbin/useradd") if os.path.exists(p)), None
        )
        if useradd is None:
            raise StackError(
                f"Elasticsearch refuses to run as root and there is no user {SERVICE_USER!r}; "
                "useradd was not found to create it. Create an unprivileged user yourself and set "
                "SHIPPER_STACK_ES_USER to its name, or run scripts/stack as a normal user."
            ) from None
        log(f"running as root, which Elasticsearch refuses: creating system user {SERVICE_USER!r}")
        r = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise StackError(
                f"useradd {SERVICE_USER} failed: {r.stderr.strip() or r.stdout.strip()}"
            ) from None
        pw = pwd.getpwnam(SERVICE_USER)
    if pw.pw_uid == 0:
        raise StackError(f"SHIPPER_STACK_ES_USER={SERVICE_USER} is uid 0; it must be an unprivileged user")
    return RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(pw.pw_name, pw.pw_gid)))


def chown_tree(root: Path, run_as: RunAs) -> None:
    os.chown(root, run_as.uid, run_as.gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), run_as.uid, run_as.gid, follow_symlinks=False)


def linked_copy(home: Path, target: Path) -> None:
    """Copy a distribution tree with hard links (a real copy across filesystems), renamed into place."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(home, tmp, symlinks=True, copy_function=link_or_copy)
    tmp.rename(target)
