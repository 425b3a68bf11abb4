"""A stand-in for the Azure ML inference server (azureml-inference-server-http), standard library only.

It loads an entry script (init/run) and logs what the real server logs, in its format:

    <UTC yyyy-mm-dd hh:mm:ss,ms> <level letter> [<pid>] <logger> - <message>
    2024-05-02 10:11:12,345 I [51] azmlinfsrv - POST /score 200 305.413ms 1121
    2024-05-02 10:11:12,346 I [51] gunicorn.access - 127.0.0.1 - - [02/May/2024:10:11:12 +0000]
        "POST /score HTTP/1.1" 200 1121 "-" "curl/8.0"          (one line)

print() in the entry script is logged by `azmlinfsrv.print`, an exception in run() by `azmlinfsrv`
("Encountered Exception: Traceback ...") with a 500 answer; `GET /` answers "Healthy". With
`--log-config logging.json` every record is one JSON object instead (see jsonlog.py).

    python server.py --entry-script score.py --port 5001 [--log-config logging.json]
"""

from __future__ import annotations

import argparse
import builtins
import importlib.util
import json
import logging
import logging.config
import os
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

FORMAT = "%(asctime)s %(levelname).1s [%(process)d] %(name)s - %(message)s"
HEALTH_PATHS = {"/", "/health", "/liveness", "/readiness"}

logger = logging.getLogger("azmlinfsrv")
access_logger = logging.getLogger("gunicorn.access")


class UtcFormatter(logging.Formatter):
    converter = time.gmtime


def configure_logging(log_config: str | None) -> None:
    # other loggers of the entry script: Python's default format on stderr, as under the real server
    logging.basicConfig()
    if log_config:
        sys.path.insert(0, str(Path(log_config).resolve().parent))
        logging.config.dictConfig(json.loads(Path(log_config).read_text(encoding="utf-8")))
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(UtcFormatter(FORMAT))
    for name in ("azmlinfsrv", "gunicorn.access"):
        named = logging.getLogger(name)
        named.handlers[:] = [handler]
        named.setLevel(logging.INFO)
        named.propagate = False


def redirect_print() -> None:
    """As the real server does: print() to stdout becomes an INFO record of azmlinfsrv.print."""
    default_print = builtins.print
    print_logger = logging.getLogger("azmlinfsrv.print")

    def print_to_logger(
        *objects: Any, sep: str = " ", end: str = "\n", file: Any = None, flush: bool = False
    ) -> None:
        if file is None or file is sys.stdout:
            print_logger.info(sep.join(map(str, objects)))
        else:
            default_print(*objects, sep=sep, end=end, file=file, flush=flush)

    builtins.print = print_to_logger


def load_entry_script(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("entry_script", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the entry script {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_handler(script: ModuleType) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "azmlinfsrv-standin/1.0"

        def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response_only(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self._status, self._length = status, len(body)

        def _handle(self) -> None:
            started = time.perf_counter()
            path, _, query = self.path.partition("?")
            self._status, self._length = 500, 0
            if path in HEALTH_PATHS and self.command in ("GET", "HEAD"):
                self._answer(200, b"Healthy", "text/plain")
            elif path == "/score" and self.command == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", "replace")
                try:
                    output = script.run(raw)
                    self._answer(200, json.dumps(output).encode())
                except Exception:
                    logger.error("Encountered Exception: %s", traceback.format_exc())
                    message = "An unexpected error occurred in scoring script. Check the logs for more info."
                    self._answer(500, json.dumps({"message": message}).encode())
            else:
                self._answer(404, b'{"message": "Not Found"}')
            elapsed_ms = (time.perf_counter() - started) * 1e3
            shown = path + (f"?{query}" if query else "")
            logger.info("%s %s %d %.3fms %d", self.command, shown, self._status, elapsed_ms, self._length)
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
            agent = self.headers.get("User-Agent", "-")
            access_logger.info(
                '%s - - [%s] "%s" %d %d "-" "%s"',
                self.client_address[0],
                stamp,
                self.requestline,
                self._status,
                self._length,
                agent,
            )

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:  # the access line is logged above
            return

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entry-script", default=os.environ.get("AZUREML_ENTRY_SCRIPT", "score.py"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AML_PORT", "5001")))
    parser.add_argument("--log-config", default=os.environ.get("SCORING_LOG_CONFIG"))
    args = parser.parse_args(argv)
    configure_logging(args.log_config)
    redirect_print()
    script = load_entry_script(args.entry_script)
    logging.getLogger("azmlinfsrv.user_script").info("Invoking user's init function")
    script.init()
    logging.getLogger("azmlinfsrv.user_script").info("Users's init has completed successfully")
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(script))
    logger.info(
        "Worker with pid %d ready for serving traffic on port %d", os.getpid(), httpd.server_address[1]
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
