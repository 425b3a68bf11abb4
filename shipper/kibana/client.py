"""A small client of Kibana's HTTP API: `GET /api/status` and `POST /api/saved_objects/_import`.

Credentials: SHIPPER_KIBANA_API_KEY or SHIPPER_KIBANA_USERNAME/PASSWORD; when neither is set, the
Elasticsearch ones (API key, user and password, or bearer token), since one Elastic Stack login
usually works for both. TLS is verified by default (SHIPPER_KIBANA_CA_CERTS names a private CA).
Secrets travel only in the Authorization header; messages name the setting, never the value.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson
import requests

from shipper.config import Settings
from shipper.errors import ConfigError, ConnectivityError, KibanaImportError
from shipper.kibana import OBJECTS_STACK_VERSION, version_tuple
from shipper.kibana.imports import (
    NEWER_VERSION_MARK,
    ImportOutcome,
    SavedObjectsFile,
    interpret_import,
    newer_version_fix,
)


@dataclass(frozen=True)
class Credentials:
    header: str | None  # the Authorization header's value
    source: str  # which settings it came from, for messages


def credentials(settings: Settings) -> Credentials:
    def api_key(value: str) -> str:
        # Kibana takes the encoded form; an `id:key` pair is encoded here.
        return base64.b64encode(value.encode()).decode() if ":" in value else value

    if settings.kibana_api_key is not None:
        return Credentials(
            "ApiKey " + api_key(settings.kibana_api_key.get_secret_value()), "SHIPPER_KIBANA_API_KEY"
        )
    if settings.kibana_username is not None and settings.kibana_password is not None:
        pair = f"{settings.kibana_username}:{settings.kibana_password.get_secret_value()}"
        return Credentials(
            "Basic " + base64.b64encode(pair.encode()).decode(), "SHIPPER_KIBANA_USERNAME/PASSWORD"
        )
    if settings.elasticsearch_api_key is not None:
        return Credentials(
            "ApiKey " + api_key(settings.elasticsearch_api_key.get_secret_value()),
            "SHIPPER_ELASTICSEARCH_API_KEY (no Kibana credentials are set)",
        )
    if settings.elasticsearch_username is not None and settings.elasticsearch_password is not None:
        pair = f"{settings.elasticsearch_username}:{settings.elasticsearch_password.get_secret_value()}"
        return Credentials(
            "Basic " + base64.b64encode(pair.encode()).decode(),
            "SHIPPER_ELASTICSEARCH_USERNAME/PASSWORD (no Kibana credentials are set)",
        )
    if settings.elasticsearch_bearer_token is not None:
        return Credentials(
            "Bearer " + settings.elasticsearch_bearer_token.get_secret_value(),
            "SHIPPER_ELASTICSEARCH_BEARER_TOKEN (no Kibana credentials are set)",
        )
    return Credentials(None, "no credentials (none are set for Kibana or Elasticsearch)")


@dataclass(frozen=True)
class KibanaStatus:
    level: str | None  # overall status: available, degraded, unavailable, critical
    version: str | None  # None when Kibana hides it (unauthenticated request)
    name: str | None = None

    def older_than_objects(self) -> bool:
        return self.version is not None and version_tuple(self.version) < version_tuple(OBJECTS_STACK_VERSION)


class KibanaClient:
    def __init__(self, settings: Settings) -> None:
        if not settings.kibana_url:
            raise ConfigError(
                ["SHIPPER_KIBANA_URL is not set; set it to Kibana's URL, e.g. https://kibana.example:5601"]
            )
        self.url = settings.kibana_url.rstrip("/")
        self.space = settings.kibana_space
        self.creds = credentials(settings)
        self.timeout = settings.kibana_request_timeout
        self.verify: bool | str = settings.kibana_verify_certs
        if settings.kibana_verify_certs and settings.kibana_ca_certs is not None:
            self.verify = str(settings.kibana_ca_certs)
        self.session = requests.Session()
        self.session.headers["kbn-xsrf"] = "shipper"
        self.session.headers["Accept"] = "application/json"
        if self.creds.header is not None:
            self.session.headers["Authorization"] = self.creds.header

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> KibanaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def space_url(self, path: str) -> str:
        """`/api/...` in the configured space (`/s/<space>/api/...`); the default space has no prefix."""
        prefix = f"/s/{self.space}" if self.space and self.space != "default" else ""
        return f"{self.url}{prefix}{path}"

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            if not self.verify:
                import urllib3

                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            return self.session.request(
                method, url, timeout=self.timeout, verify=self.verify, allow_redirects=False, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            raise ConnectivityError(
                f"TLS with Kibana at {self.url} failed ({_reason(exc)}); set SHIPPER_KIBANA_CA_CERTS to the "
                "PEM file of the CA that signed its certificate (SHIPPER_KIBANA_VERIFY_CERTS=false only "
                "for a throwaway setup)"
            ) from None
        except requests.exceptions.Timeout:
            raise ConnectivityError(
                f"Kibana at {self.url} did not answer within {self.timeout:g} s; check that it is up "
                "(raise SHIPPER_KIBANA_REQUEST_TIMEOUT for a slow import)"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ConnectivityError(
                f"cannot reach Kibana at {self.url} ({_reason(exc)}); check SHIPPER_KIBANA_URL "
                "(scheme, host, port and base path) and that Kibana is up"
            ) from None

    def _refused(self, response: requests.Response, what: str) -> ConnectivityError:
        status = response.status_code
        message = _message(response)
        if status == 401:
            return ConnectivityError(
                f"Kibana refused the credentials for {what} (HTTP 401, using {self.creds.source}); set "
                "SHIPPER_KIBANA_API_KEY or SHIPPER_KIBANA_USERNAME/PASSWORD to a Kibana login"
            )
        if status == 403:
            return ConnectivityError(
                f"Kibana forbids {what} to this user (HTTP 403: {message}); give it the privilege to "
                "manage saved objects (e.g. the kibana_admin role, or 'All' on Saved Objects "
                "Management, Dashboard, Visualize Library, Discover and Data View Management)"
            )
        if status == 404:
            where = f" or the space {self.space!r} does not exist" if self.space else ""
            return ConnectivityError(
                f"Kibana at {self.url} answered 404 for {what}: the URL is not Kibana's{where}; check "
                "SHIPPER_KIBANA_URL (with Kibana's base path, if any)"
                + (" and SHIPPER_KIBANA_SPACE (the space id, as in /s/<id>/)" if self.space else "")
            )
        if status in (301, 302, 303, 307, 308):
            return ConnectivityError(
                f"Kibana at {self.url} redirected {what} to {response.headers.get('location', '?')} "
                "(a login page or another base path); check SHIPPER_KIBANA_URL and the credentials"
            )
        if status == 413:
            return ConnectivityError(
                f"Kibana refused the file as too large (HTTP 413: {message}); raise Kibana's "
                "savedObjects.maxImportPayloadBytes"
            )
        if status in (502, 503, 504):
            return ConnectivityError(
                f"Kibana is not ready (HTTP {status}: {message}); wait until it is up and try again"
            )
        return ConnectivityError(f"Kibana answered HTTP {status} to {what}: {message}")

    def status(self) -> KibanaStatus:
        response = self._send("GET", f"{self.url}/api/status")
        body = _json(response)
        # 503 carries the same body when Kibana or one of its core services is unavailable.
        if response.status_code not in (200, 503) or not isinstance(body, dict):
            raise self._refused(response, "GET /api/status")
        overall = (body.get("status") or {}).get("overall") or {}
        # v8 format has `level`; the v7 format had `state`.
        level = overall.get("level") or overall.get("state")
        version = (body.get("version") or {}).get("number")
        return KibanaStatus(
            level=str(level) if level else None,
            version=str(version) if version else None,
            name=body.get("name"),
        )

    def import_objects(self, objects: SavedObjectsFile, overwrite: bool = True) -> ImportOutcome:
        url = self.space_url("/api/saved_objects/_import")
        response = self._send(
            "POST",
            url,
            params={"overwrite": "true" if overwrite else "false"},
            files={"file": (objects.upload_name, objects.content, "application/ndjson")},
        )
        body = _json(response)
        if response.status_code == 200 and isinstance(body, dict):
            try:
                return interpret_import(body)
            except ValueError as exc:
                raise ConnectivityError(
                    f"Kibana's answer to the import is not an import result: {exc}"
                ) from None
        message = _message(response)
        if NEWER_VERSION_MARK in message:
            raise KibanaImportError(
                f"Kibana refused the import of {objects.path} (HTTP {response.status_code}): {message}\n"
                f"  fix: {newer_version_fix()}"
            )
        if response.status_code in (400, 415, 422):
            raise KibanaImportError(
                f"Kibana refused the import of {objects.path} (HTTP {response.status_code}): {message}\n"
                "  fix: check that the file is an unmodified build or export (one saved object per line)"
            )
        raise self._refused(response, f"the import into {url}")


def _json(response: requests.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _message(response: requests.Response) -> str:
    body = _json(response)
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    text = response.text.strip()
    return text[:300] if text else response.reason or "no message"


def _reason(exc: Exception) -> str:
    """The innermost reason of a requests/urllib3 error, without the long wrapper text."""
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    return str(inner) or type(inner).__name__
