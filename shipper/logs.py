"""Logging for the CLI and the service: human text, or one JSON object per line.

Client libraries (elasticsearch, urllib3, mlflow, azure, Python's own `warnings`) speak only at
ERROR unless SHIPPER_LOG_LEVEL=DEBUG: their warnings (a retry, a deprecation) are the shipper's to
turn into a sentence, not the user's to decode.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import NoReturn

import orjson

LIBRARIES = ("elastic_transport", "elasticsearch", "urllib3", "mlflow", "azure", "py.warnings", "httpx")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["error.stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


_level = logging.INFO


def quiet_libraries(level: int | None = None) -> None:
    """Client libraries below the default level. Called again after a library that configures its
    own loggers on import (mlflow does) has been imported."""
    shown = _level if level is None else level
    logging.captureWarnings(True)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if shown <= logging.DEBUG else logging.ERROR)


def configure(fmt: str, level: str) -> None:
    global _level
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _level = logging.getLevelName(level)
    quiet_libraries()


def final_error(message: str, fmt: str | None, exit_code: int, kind: str) -> str:
    """The last line a failing command prints: `error: ...`, or one JSON object with --log-format json."""
    if fmt != "json":
        return f"error: {message}"
    return orjson.dumps(
        {
            "@timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "log.level": "error",
            "log.logger": "shipper",
            "message": message,
            "error.type": kind,
            "process.exit_code": exit_code,
        }
    ).decode()


def fail(exc: BaseException, exit_code: int, kind: str, fmt: str | None = None) -> NoReturn:
    """End a command: the final error line on stderr (JSON under --log-format json), then exit."""
    import click

    context = click.get_current_context(silent=True)
    obj = context.find_root().obj if context is not None else None
    if fmt is None and obj is not None and hasattr(obj, "error_format"):
        fmt = obj.error_format()
    click.echo(final_error(str(exc), fmt, exit_code, kind), err=True)
    sys.exit(exit_code)
