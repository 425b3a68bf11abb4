"""Where the stack keeps its state and its downloads, and the small file helpers for them.

State (pid files, ports, logs, data): $SHIPPER_STACK_STATE_DIR, else <repo>/.stack. As root,
scripts/lib.sh points SHIPPER_STACK_STATE_DIR into /var/tmp (see stack_state_dir_for_root).
Downloads and assembled distributions: ${XDG_CACHE_HOME:-~/.cache}/shipper-stack.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from .common import log

REPO = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 40


def state_dir(environ: Mapping[str, str], repo: Path) -> Path:
    """The state directory: $SHIPPER_STACK_STATE_DIR (made absolute), else <repo>/.stack."""
    return Path(environ.get("SHIPPER_STACK_STATE_DIR") or repo / ".stack").absolute()


def cache_dir(environ: Mapping[str, str], home: Path) -> Path:
    """The download cache, shared by every checkout of the user."""
    xdg_cache = environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    return (Path(xdg_cache) if os.path.isabs(xdg_cache) else home / ".cache") / "shipper-stack"


STATE = state_dir(os.environ, REPO)
CACHE = cache_dir(os.environ, Path.home())


def rel(path: Path) -> str:
    """A path as the user would type it from the repo root, for messages."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_atomic(path: Path, text: str) -> None:
    # Readers (status, a concurrent up) must never see a half-written pid or port file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, read from the end: ES logs grow to megabytes."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    # Java stack-trace lines can be very long; keep the tail readable.
    return "\n".join(line[:600] for line in text.splitlines()[-lines:])


def make_state_dir() -> None:
    if not STATE.exists():
        STATE.mkdir(parents=True)
        # With a strict umask (077, common in CI) the unprivileged ES user could not enter it.
        STATE.chmod(0o755)


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """Serialise up/down, e.g. parallel test sessions all calling `up` at once."""
    make_state_dir()
    # Python opens files close-on-exec, so the servers we spawn do not inherit (and hold) the lock.
    with open(STATE / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another scripts/stack is running; waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
