"""The HTTP surface of `shipper serve` (FastAPI; the OpenAPI description is at /openapi.json).

    POST    /events     Event Grid or CloudEvents deliveries, and Event Grid's validation handshake
    OPTIONS /events     the CloudEvents abuse-protection handshake (WebHook-Request-Origin)
    GET     /healthz    the process answers
    GET     /readyz     Elasticsearch answers (503 otherwise)
    GET     /metrics    Prometheus exposition

Order of checks on POST: credentials (401), declared or actual size (400 after dead-lettering a
summary: Event Grid never sends more than 1 MB, so a bigger body is not one of its deliveries),
then the payload (see service.py). The body is read in this thread of the event loop and handled
in a worker thread, so slow Elasticsearch writes never block other requests.

Bounds (see limits.py): at most `limits.max_deliveries` deliveries at once and `limits.max_bytes`
bytes of bodies held at once, beyond either 503 with Retry-After; the header and body timeouts
are the HTTP protocol's.

Request URLs carry the shared secret (`?code=`): uvicorn's access log is off and this module logs
paths without query strings.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from elasticsearch import Elasticsearch
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from shipper import __version__
from shipper import telemetry as metrics
from shipper.webhook.auth import Authenticator, AuthUnavailable
from shipper.webhook.limits import DeliveryLimits
from shipper.webhook.service import Answer, WebhookService, ce_attributes

log = logging.getLogger(__name__)

_CONTENT = {
    "application/json": {
        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/EventGridEvent"}}
    },
    "application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
    "application/cloudevents-batch+json": {
        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/CloudEvent"}}
    },
}
_SCHEMAS = {
    "EventGridEvent": {
        "type": "object",
        "required": ["id", "eventType", "eventTime"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "topic": {"type": "string", "description": "workspace resource id"},
            "subject": {"type": "string"},
            "eventType": {
                "type": "string",
                "minLength": 1,
                "example": "Microsoft.MachineLearningServices.RunStatusChanged",
            },
            "eventTime": {"type": "string", "format": "date-time"},
            "data": {"type": "object"},
            "dataVersion": {"type": "string"},
            "metadataVersion": {"type": "string"},
        },
    },
    "CloudEvent": {
        "type": "object",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"type": "string", "enum": ["1.0"]},
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1, "description": "workspace resource id"},
            "type": {"type": "string", "minLength": 1},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string"},
            "data": {},
            "data_base64": {"type": "string"},
        },
    },
}
_AUTH_PARAMETERS = [
    {
        "name": "code",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "the shared secret (SHIPPER_WEBHOOK_SECRET)",
    },
    {
        "name": "x-shipper-secret",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "the shared secret, as a header",
    },
]


def _json(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def create_app(
    service: WebhookService,
    auth: Authenticator,
    max_body_bytes: int = 2 * 1024 * 1024,
    readiness_client: Elasticsearch | None = None,
    limits: DeliveryLimits | None = None,
) -> FastAPI:
    limits = limits or DeliveryLimits()
    app = FastAPI(
        title="shipper webhook",
        version=__version__,
        description="Receives Azure Machine Learning events from Azure Event Grid (Event Grid schema or "
        "CloudEvents 1.0) and writes them to Elasticsearch. 200 only after the batch is written; 503 "
        "while Elasticsearch cannot take it; 400 (after dead-lettering) for payloads that can never "
        "succeed; 401 for bad credentials.",
        # No redirect of `/events/` to `/events`: Starlette builds it from the Host header, with the
        # query string, so it would send `?code=<secret>` to any host a client names.
        redirect_slashes=False,
    )
    app.openapi_schema = None

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_SCHEMAS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    async def authenticate(request: Request) -> Response | None:
        try:
            if auth.may_block(request.headers):
                # A bearer token may need the signing keys fetched: never on the event loop.
                result = await run_in_threadpool(auth.check, request.headers, request.query_params)
            else:
                result = auth.check(request.headers, request.query_params)
        except AuthUnavailable as exc:
            return _json(service.unavailable(str(exc)))
        if result.ok:
            return None
        metrics.DELIVERIES.labels(outcome="unauthorized").inc()
        log.warning("delivery refused with 401 from %s: %s", _peer(request), result.reason)
        headers = {"WWW-Authenticate": "Bearer"} if auth.entra is not None else {}
        return JSONResponse(
            {"error": "unauthorized", "message": "missing or wrong credentials"},
            status_code=401,
            headers=headers,
        )

    @app.post(
        "/events",
        summary="Deliver events (Event Grid schema or CloudEvents 1.0)",
        openapi_extra={
            "parameters": _AUTH_PARAMETERS,
            "requestBody": {"required": True, "content": _CONTENT},
            "responses": {
                "200": {"description": "written (or the validation handshake's `validationResponse`)"},
                "400": {"description": "can never succeed; dead-lettered first"},
                "401": {"description": "missing or wrong credentials"},
                "403": {"description": "topic not allowed"},
                "503": {"description": "Elasticsearch unavailable; retry (Retry-After)"},
            },
        },
    )
    async def events(request: Request) -> Response:
        started = time.perf_counter()
        response = await _deliver(request)
        outcome = response.headers.get("x-shipper-outcome", str(response.status_code))
        metrics.ACK_SECONDS.labels(outcome=outcome).observe(time.perf_counter() - started)
        return response

    async def _deliver(request: Request) -> Response:
        refused = await authenticate(request)
        if refused is not None:
            return refused
        if not limits.enter():
            return _tagged(
                service.unavailable(f"{limits.max_deliveries} deliveries are being handled already")
            )
        held = Held(limits)
        try:
            return await _bounded(request, held)
        except MemoryFull:
            return _tagged(
                service.unavailable(
                    f"the request bodies held at once would pass {limits.max_bytes} bytes "
                    "(SHIPPER_WEBHOOK_MAX_REQUEST_MEMORY_BYTES)"
                )
            )
        except ClientDisconnect:
            # The client went away (or was cut off by the body timeout): nobody reads an answer.
            return Response(status_code=408)
        finally:
            held.release()
            limits.leave()

    async def _bounded(request: Request, held: Held) -> Response:
        content_type = request.headers.get("content-type")
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > max_body_bytes
        ):
            body = await _read(request, 64 * 1024, held)
            return _tagged(
                await run_in_threadpool(
                    service.reject,
                    body,
                    content_type,
                    [f"the body has {declared} bytes; at most {max_body_bytes} are taken"],
                    int(declared),
                    True,
                    ce_attributes(request.headers),
                )
            )
        body = await _read(request, max_body_bytes + 1, held)
        if len(body) > max_body_bytes:
            return _tagged(
                await run_in_threadpool(
                    service.reject,
                    body[: 64 * 1024],
                    content_type,
                    [f"the body has more than {max_body_bytes} bytes; at most {max_body_bytes} are taken"],
                    None,
                    True,
                    ce_attributes(request.headers),
                )
            )
        answer = await run_in_threadpool(service.handle, body, content_type, dict(request.headers))
        return _tagged(answer)

    @app.options(
        "/events",
        summary="CloudEvents webhook validation (abuse protection)",
        response_class=Response,
        openapi_extra={
            "parameters": [
                *_AUTH_PARAMETERS,
                {
                    "name": "WebHook-Request-Origin",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "the CloudEvents handshake: the origin asking to deliver",
                },
            ]
        },
        responses={
            200: {
                "description": "allowed; no body. With `WebHook-Request-Origin`, the CloudEvents "
                "handshake's `WebHook-Allowed-Origin` and `WebHook-Allowed-Rate` are set",
                "content": None,
                "headers": {
                    "Allow": {"schema": {"type": "string"}},
                    "WebHook-Allowed-Origin": {"schema": {"type": "string"}},
                    "WebHook-Allowed-Rate": {"schema": {"type": "string"}},
                },
            },
            401: {"description": "missing or wrong credentials", "content": {"application/json": {}}},
            503: {
                "description": "the credentials cannot be checked now (Entra ID signing keys); retry",
                "content": {"application/json": {}},
            },
        },
    )
    async def handshake(request: Request) -> Response:
        refused = await authenticate(request)
        if refused is not None:
            return refused
        origin = request.headers.get("webhook-request-origin")
        if not origin:
            return Response(status_code=200, headers={"Allow": "POST, OPTIONS"})
        metrics.DELIVERIES.labels(outcome="handshake").inc()
        log.info("answered the CloudEvents webhook validation for origin %s", origin)
        return Response(
            status_code=200,
            headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"},
        )

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        # On the event loop itself: answers even while every worker thread is busy.
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: Elasticsearch answers",
        responses={
            503: {"description": "Elasticsearch does not answer", "content": {"application/json": {}}}
        },
    )
    def readyz() -> Response:
        client = readiness_client or service.client
        try:
            health = client.options(request_timeout=3).cluster.health()
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "elasticsearch": type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ready", "elasticsearch": health.get("status")})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def access_log(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        log.debug(
            "%s %s -> %d in %.1f ms",
            request.method,
            request.url.path,  # never the query string: it can hold the secret
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    return app


def _tagged(answer: Answer) -> Response:
    response = _json(answer)
    response.headers["x-shipper-outcome"] = answer.outcome
    return response


class Held:
    """The body bytes one delivery holds, counted against the shared `DeliveryLimits`."""

    def __init__(self, limits: DeliveryLimits) -> None:
        self.limits, self.size = limits, 0

    def take(self, size: int) -> bool:
        if not self.limits.take(size):
            return False
        self.size += size
        return True

    def release(self) -> None:
        self.limits.give(self.size)
        self.size = 0


class MemoryFull(Exception):
    """Taking more of a body would go beyond SHIPPER_WEBHOOK_MAX_REQUEST_MEMORY_BYTES."""


async def _read(request: Request, limit: int, held: Held) -> bytes:
    """At most `limit` bytes of the body; the rest is not read. Raise MemoryFull when the bytes
    cannot be held now."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if not held.take(len(chunk)):
            raise MemoryFull
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"
