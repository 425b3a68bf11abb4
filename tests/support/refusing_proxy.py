"""A real HTTP proxy in front of the real Elasticsearch that refuses writes, for the tests that prove
a failed write moves no checkpoint, and for an overloaded Elasticsearch (429)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class BulkRefusingProxy:
    """A real HTTP proxy in front of the real Elasticsearch that passes every request through except
    `_bulk`, which it answers 503: Elasticsearch "goes away" for writes in the middle of a pass, after
    the pass has read its checkpoints. With `status=429` and an es_rejected_execution_exception body
    it is an overloaded Elasticsearch instead."""

    def __init__(
        self,
        upstream: str,
        refuses: Callable[[bytes], bool] = lambda body: True,
        status: int = 503,
        answer: bytes = b'{"error":"down"}',
    ) -> None:
        """`refuses(body)` picks the `_bulk` requests answered `status` with `answer`; the others
        pass through."""
        import http.server
        import urllib.error
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.bulk_refused = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "/_bulk" in self.path and refuses(body):
                    proxy.bulk_refused += 1
                    product = {"X-Elastic-Product": "Elasticsearch", "Content-Type": "application/json"}
                    self._answer(status, product, answer)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                request = urllib.request.Request(
                    upstream + self.path, data=body or None, headers=headers, method=self.command
                )
                try:
                    with opener.open(request, timeout=30) as resp:
                        self._answer(resp.status, dict(resp.headers.items()), resp.read())
                except urllib.error.HTTPError as err:
                    self._answer(err.code, dict(err.headers.items()), err.read())

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _relay

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
