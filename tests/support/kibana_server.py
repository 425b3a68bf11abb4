"""A local stand-in for Kibana's HTTP API, for testing the shipper's Kibana client without a Kibana.

Kibana cannot run on our machines. This is a real HTTP server on loopback (the standard library's
`ThreadingHTTPServer`, optionally over TLS) that answers the two endpoints the shipper calls, with
the request checks and response shapes Kibana documents and implements:

- `GET /api/status`: the full body (`name`, `uuid`, `version.number`..., `status.overall.level`) to
  an authenticated request; the redacted `{"status": {"overall": {"level": ...}}}` to an anonymous
  one (Kibana shows its version only to authenticated users); 401 for wrong credentials; 503 with
  the same body when unavailable.
- `POST [/s/<space>]/api/saved_objects/_import?overwrite=...`: requires the `kbn-xsrf` header (400
  otherwise), credentials (401), a known space (404), `multipart/form-data` (415) with a `file` part
  whose name ends in `.ndjson` (400 "Invalid file extension"), query validation (`overwrite` with
  `createNewCopies` is 400), NDJSON parsing (the export summary line skipped), then per object:
  `unsupported_type` for types it does not know, `missing_references` for references found neither
  in the file nor in the space, `conflict` for existing objects when `overwrite` is false, and the
  whole request refused with 422 "belongs to a more recent version of Kibana" when an object's
  `typeMigrationVersion` is newer than the type's latest. The 200 answer has `success`,
  `successCount`, `successResults` (with `overwrite: true` for replaced objects), `warnings` and, when
  some failed, `errors`, as Kibana's importer builds it.

What it does not do: run migrations, validate attributes, or render anything. It records every
request so tests can check what the client sent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# The latest model version per type a Kibana of this server's version knows ("10.N.0" is model
# version N); an object newer than this is refused. Tests may pass their own.
DEFAULT_TYPE_VERSIONS = {
    "config": "10.0.0",
    "index-pattern": "8.0.0",
    "search": "10.6.0",
    "visualization": "8.5.0",
    "lens": "10.1.0",
    "dashboard": "10.4.0",
    "tag": "8.0.0",
}
_PATH = re.compile(r"^(?:/s/(?P<space>[a-z0-9_-]+))?(?P<api>/api/.*)$")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    space: str | None = None
    upload_name: str | None = None
    upload: bytes | None = None


@dataclass
class KibanaState:
    version: str = "9.5.4"
    level: str = "available"
    type_versions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TYPE_VERSIONS))
    spaces: set[str] = field(default_factory=lambda: {"default"})
    users: dict[str, str] = field(default_factory=dict)  # basic auth user -> password
    api_keys: set[str] = field(default_factory=set)  # encoded API keys
    bearer_tokens: set[str] = field(default_factory=set)
    read_only_users: set[str] = field(default_factory=set)  # authenticated, but may not import
    # (space, type, id) -> the stored object
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _semver(value: str | None) -> tuple[int, ...]:
    if not value:
        return (0,)
    return tuple(int(p) if p.isdigit() else 0 for p in value.split("-")[0].split("."))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    # --- plumbing -------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, error: str, message: str) -> None:
        self._send(status, {"statusCode": status, "error": error, "message": message})

    def _user(self) -> tuple[bool, str | None]:
        """(credentials given, principal or None when they are wrong)."""
        state = self.server.state
        header = self.headers.get("Authorization")
        if not header:
            return False, None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return True, None
            return True, (user if state.users.get(user) == password and password else None)
        if scheme == "apikey":
            return True, ("api-key" if value in state.api_keys else None)
        if scheme == "bearer":
            return True, ("token" if value in state.bearer_tokens else None)
        return True, None

    def _record(self, space: str | None) -> Recorded:
        split = urlsplit(self.path)
        recorded = Recorded(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            space=space,
        )
        with self.server.state.lock:
            self.server.state.requests.append(recorded)
        return recorded

    def _route(self) -> tuple[str | None, str] | None:
        match = _PATH.match(urlsplit(self.path).path)
        if not match:
            return None
        return match.group("space"), match.group("api")

    # --- endpoints ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        route = self._route()
        self._body()
        if route is None or route[1] != "/api/status":
            self._record(None)
            self._error(404, "Not Found", "Not Found")
            return
        self._record(route[0])
        state = self.server.state
        given, user = self._user()
        if given and user is None:
            self._error(401, "Unauthorized", "[security_exception]: unable to authenticate user")
            return
        status = 503 if state.level in ("unavailable", "critical") else 200
        if not given:
            self._send(status, {"status": {"overall": {"level": state.level}}})
            return
        self._send(
            status,
            {
                "name": "kibana-test",
                "uuid": "5b2de169-0000-4000-8000-000000000000",
                "version": {
                    "number": state.version,
                    "build_hash": "0" * 40,
                    "build_number": 1,
                    "build_snapshot": False,
                    "build_flavor": "traditional",
                    "build_date": "2026-01-01T00:00:00.000Z",
                },
                "status": {
                    "overall": {"level": state.level, "summary": f"All services are {state.level}"},
                    "core": {
                        "elasticsearch": {"level": state.level, "summary": "Elasticsearch is available"},
                        "savedObjects": {
                            "level": state.level,
                            "summary": "SavedObjects service is available",
                        },
                    },
                    "plugins": {},
                },
                "metrics": {
                    "last_updated": "2026-01-01T00:00:05.000Z",
                    "collection_interval_in_millis": 5000,
                },
            },
        )

    def do_POST(self) -> None:
        body = self._body()
        route = self._route()
        if route is None or route[1] != "/api/saved_objects/_import":
            self._record(None)
            self._error(404, "Not Found", "Not Found")
            return
        space = route[0] or "default"
        recorded = self._record(route[0])
        state = self.server.state
        given, user = self._user()
        if user is None:
            self._error(
                401,
                "Unauthorized",
                "Unauthorized" if not given else "[security_exception]: unable to authenticate",
            )
            return
        if "kbn-xsrf" not in recorded.headers:
            self._error(400, "Bad Request", "Request must contain a kbn-xsrf header.")
            return
        if space not in state.spaces:
            self._error(404, "Not Found", "Not Found")
            return
        if user in state.read_only_users:
            self._error(403, "Forbidden", "Unable to bulk_create index-pattern,lens,dashboard")
            return
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            self._error(415, "Unsupported Media Type", "Unsupported Media Type")
            return
        query = {k: v[-1] for k, v in recorded.query.items()}
        for key in query:
            if key not in ("overwrite", "createNewCopies", "compatibilityMode"):
                self._error(400, "Bad Request", f"[request query.{key}]: definition for this key is missing")
                return
        flags = {}
        for key in ("overwrite", "createNewCopies", "compatibilityMode"):
            value = query.get(key, "false")
            if value not in ("true", "false"):
                self._error(
                    400,
                    "Bad Request",
                    f"[request query.{key}]: expected value of type [boolean] but got [string]",
                )
                return
            flags[key] = value == "true"
        if flags["overwrite"] and flags["createNewCopies"]:
            self._error(400, "Bad Request", "[request query]: cannot use [overwrite] with [createNewCopies]")
            return
        parts = self._multipart(content_type, body)
        if parts is None:
            self._error(400, "Bad Request", "Invalid multipart payload format")
            return
        if "file" not in parts:
            self._error(
                400, "Bad Request", "[request body.file]: expected value of type [Stream] but got [undefined]"
            )
            return
        filename, content = parts["file"]
        recorded.upload_name, recorded.upload = filename, content
        extension = Path(filename or "").suffix.lower()
        if extension != ".ndjson":
            self._error(400, "Bad Request", f"Invalid file extension {extension}")
            return
        objects = []
        for line in content.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                self._error(400, "Bad Request", f"Unexpected token in JSON at position {exc.pos}")
                return
            if isinstance(item, dict) and "exportedCount" in item:
                continue
            objects.append(item)
        self._import(space, objects, flags["overwrite"])

    def _multipart(self, content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]] | None:
        if "boundary=" not in content_type:
            return None
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
        )
        if not message.is_multipart():
            return None
        parts: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                return None
            payload = part.get_payload(decode=True)
            parts[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
        return parts

    def _import(self, space: str, objects: list[dict[str, Any]], overwrite: bool) -> None:
        state = self.server.state

        def meta(obj: dict[str, Any]) -> dict[str, Any]:
            title = (obj.get("attributes") or {}).get("title")
            return {"title": title} if title else {}

        errors: list[dict[str, Any]] = []
        candidates = []
        for obj in objects:
            if obj.get("type") not in state.type_versions:
                errors.append(
                    {
                        "id": obj.get("id"),
                        "type": obj.get("type"),
                        "title": meta(obj).get("title"),
                        "meta": meta(obj),
                        "error": {"type": "unsupported_type"},
                    }
                )
            else:
                candidates.append(obj)
        in_file = {(o["type"], o["id"]) for o in candidates}
        ready = []
        with state.lock:
            stored = {(t, i) for (s, t, i) in state.objects if s == space}
        for obj in candidates:
            missing = [
                {"type": ref["type"], "id": ref["id"]}
                for ref in obj.get("references") or []
                if (ref["type"], ref["id"]) not in in_file and (ref["type"], ref["id"]) not in stored
            ]
            if missing:
                errors.append(
                    {
                        "id": obj["id"],
                        "type": obj["type"],
                        "title": meta(obj).get("title"),
                        "meta": meta(obj),
                        "error": {"type": "missing_references", "references": missing},
                    }
                )
            elif (obj["type"], obj["id"]) in stored and not overwrite:
                errors.append(
                    {
                        "id": obj["id"],
                        "type": obj["type"],
                        "title": meta(obj).get("title"),
                        "meta": meta(obj),
                        "error": {"type": "conflict"},
                    }
                )
            else:
                ready.append(obj)
        # Creating migrates each object first; one newer than this Kibana knows fails the request.
        for obj in ready:
            latest = state.type_versions[obj["type"]]
            version = obj.get("typeMigrationVersion") or (obj.get("migrationVersion") or {}).get(obj["type"])
            if _semver(version) > _semver(latest):
                self._error(
                    422,
                    "Unprocessable Entity",
                    f'Document "{obj["id"]}" belongs to a more recent version of Kibana [{version}] when the '
                    f"last known version is [{latest}].",
                )
                return
        results = []
        with state.lock:
            for obj in ready:
                key = (space, obj["type"], obj["id"])
                existed = key in state.objects
                state.objects[key] = obj
                result: dict[str, Any] = {"type": obj["type"], "id": obj["id"], "meta": meta(obj)}
                if existed:
                    result["overwrite"] = True
                results.append(result)
        response: dict[str, Any] = {"successCount": len(results), "success": not errors, "warnings": []}
        if results:
            response["successResults"] = results
        if errors:
            response["errors"] = errors
        self._send(200, response)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: KibanaState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextlib.contextmanager
def running(state: KibanaState, tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, KibanaState]]:
    """Serve `state` on a free loopback port; yields (base URL, state). `tls`: (cert, key) PEM."""
    server = _Server(state)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kibana", daemon=True
    )
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
