"""MLflow's documented REST API, read without importing `mlflow` (seconds of start-up).

`MlflowRest` answers the few client calls `MlflowSource` makes (search experiments, runs, model
versions, registered models, logged models; get a run; one JSON GET) with objects of the same shape
as the client's entities, so the same record builders serve both. It is used for plain http(s)
tracking servers; every other URI (azureml://, databricks, sqlite, file, or a server needing
MLflow's auth plugins or AWS SigV4) goes through the MLflow client itself.

It honours the client's own environment variables: MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME
and MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH,
MLFLOW_TRACKING_CLIENT_CERT_PATH, MLFLOW_HTTP_REQUEST_TIMEOUT, MLFLOW_HTTP_REQUEST_MAX_RETRIES and
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, with the client's defaults.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import urllib3

from shipper.errors import ConnectivityError, summarise_body
from shipper.sources.mlflow_errors import unreachable_message

# Variables that ask for what only the MLflow client can do; with any of them set, it is used.
CLIENT_ONLY_ENV = (
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_TRACKING_CLIENT_CERT_KEY_PATH",
)
VIEW_ALL = 3  # mlflow.entities.ViewType.ALL

# Metric histories of many runs in one request (MLflow's UI endpoint; MLflow >= 2.10). It answers at
# most BULK_SAMPLE points per run: a run with more comes back as an evenly spaced sample of that
# size, so an answer of that size is no proof of completeness (see MlflowSource.metric_histories).
BULK_HISTORY_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
BULK_MAX_RUNS = 100
BULK_SAMPLE = 2500
# The whole step range (int64), so that no store's default range (0 to the largest step) leaves out
# negative steps.
_STEP_RANGE = (-(2**63), 2**63 - 1)
# What a server without the endpoint answers (Flask's 404 page, an API gateway's 404/405/501).
_MISSING_STATUS = frozenset({404, 405, 501})
_LOGGED_MODEL_STATUS = {
    "LOGGED_MODEL_STATUS_UNSPECIFIED": "UNSPECIFIED",
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
}


def usable_for(uri: str, environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if not uri.lower().startswith(("http://", "https://")):
        return False
    return not any(
        environ.get(name, "").strip().lower() not in ("", "false", "0") for name in CLIENT_ONLY_ENV
    )


class RestError(ConnectivityError):
    """The server answered, but not 200 (after MLflow's retries for 429 and 5xx)."""

    def __init__(self, status: int, body: bytes, endpoint: str) -> None:
        self.status, self.body, self.endpoint = status, body, endpoint
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = {}
        self.error_code = parsed.get("error_code", "") if isinstance(parsed, dict) else ""
        message = parsed.get("message", "") if isinstance(parsed, dict) else ""
        said = f"{self.error_code} {message}".strip() or summarise_body(body)
        super().__init__(f"the MLflow tracking server answered {endpoint} with HTTP {status}: {said}")


Params = Mapping[str, Any] | Sequence[tuple[str, Any]]


class Page(list[Any]):
    """A page of results with the token of the next one, as the client's PagedList."""

    def __init__(self, items: list[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token or None


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(environ.get(name, "") or default)
    except ValueError:
        return default


def _env_true(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("true", "1", "yes")


class MlflowRest:
    def __init__(self, tracking_uri: str, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        # user:password@ in the URI is basic auth, as for the client (requests reads it); it is taken
        # out of the URL so that no message or log line can show it.
        parts = urlsplit(tracking_uri.rstrip("/"))
        self.tracking_uri = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
        self.timeout = _env_int(environ, "MLFLOW_HTTP_REQUEST_TIMEOUT", 120)
        self.retries = urllib3.Retry(
            total=_env_int(environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7),
            backoff_factor=_env_int(environ, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2),
            backoff_jitter=1.0,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # every request here only reads, POST searches included
            raise_on_status=False,
        )
        self.headers = {"Content-Type": "application/json", "User-Agent": "shipper"}
        token = environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = environ.get("MLFLOW_TRACKING_USERNAME"), environ.get("MLFLOW_TRACKING_PASSWORD")
        if parts.username is not None and parts.password is not None:
            user, password = unquote(parts.username), unquote(parts.password)
        if user and password:
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {basic}"
        elif token:
            self.headers["Authorization"] = f"Bearer {token}"
        tls: dict[str, Any] = {}
        if _env_true(environ, "MLFLOW_TRACKING_INSECURE_TLS"):
            tls["cert_reqs"] = "CERT_NONE"
        elif environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            tls["ca_certs"] = environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        if environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
            tls["cert_file"] = environ["MLFLOW_TRACKING_CLIENT_CERT_PATH"]
        self.pool = urllib3.PoolManager(maxsize=16, **tls)

    # -- transport -----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Params | None = None,
        body: Any = None,
        retries: urllib3.Retry | int | bool | None = None,
        timeout: float | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """One request, with MLflow's retries unless `retries` says otherwise. No answer at all:
        urllib3's errors when `retries` is False, else ConnectivityError with the reason."""
        if retries is False:
            return self._request(method, endpoint, params, body, False, timeout)
        try:
            return self._request(method, endpoint, params, body, retries, timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectivityError(
                unreachable_message(self.tracking_uri, exc, self.timeout if timeout is None else timeout)
                + f" (after {self.retries.total} retries, during {endpoint})"
            ) from None

    def _request(
        self,
        method: str,
        endpoint: str,
        params: Params | None,
        body: Any,
        retries: urllib3.Retry | int | bool | None,
        timeout: float | None,
    ) -> urllib3.BaseHTTPResponse:
        return self.pool.request(
            method,
            self.tracking_uri + endpoint,
            # A sequence of pairs repeats a name (`run_ids=a&run_ids=b`), a mapping does not.
            fields=(dict(params) if isinstance(params, Mapping) else list(params)) if params else None,
            body=orjson.dumps(body) if body is not None else None,
            headers=self.headers,
            retries=self.retries if retries is None else retries,
            timeout=self.timeout if timeout is None else timeout,
        )

    def get_json(self, endpoint: str, params: Params | None = None) -> dict[str, Any]:
        return self._answer(self.request("GET", endpoint, params=params), endpoint)

    def post_json(self, endpoint: str, body: Any) -> dict[str, Any]:
        return self._answer(self.request("POST", endpoint, body=body), endpoint)

    @staticmethod
    def _answer(response: urllib3.BaseHTTPResponse, endpoint: str) -> dict[str, Any]:
        if response.status != 200:
            raise RestError(response.status, response.data, endpoint)
        found = orjson.loads(response.data or b"{}")
        return found if isinstance(found, dict) else {}

    def history_bulk(self, key: str, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]] | None:
        """The raw points of `key` of up to BULK_MAX_RUNS runs, by run id, in one request; None when
        the server has no such endpoint. Runs with BULK_SAMPLE points or more may be sampled."""
        params: list[tuple[str, Any]] = [("run_ids", run_id) for run_id in run_ids]
        params += [
            ("metric_key", key),
            ("max_results", BULK_SAMPLE),
            ("start_step", _STEP_RANGE[0]),
            ("end_step", _STEP_RANGE[1]),
        ]
        response = self.request("GET", BULK_HISTORY_ENDPOINT, params=params)
        if response.status in _MISSING_STATUS:
            return None
        found = self._answer(response, BULK_HISTORY_ENDPOINT)
        by_run: dict[str, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
        for metric in found.get("metrics", ()):
            points = by_run.get(metric.get("run_id"))
            if points is not None:
                points.append(metric)
        return by_run

    # -- the client calls MlflowSource makes ------------------------------------------------------

    def search_experiments(
        self, view_type: int = VIEW_ALL, max_results: int = 1000, page_token: str | None = None
    ) -> Page:
        body: dict[str, Any] = {"max_results": max_results, "view_type": _view(view_type)}
        if page_token:
            body["page_token"] = page_token
        found = self.post_json("/api/2.0/mlflow/experiments/search", body)
        experiments = [
            SimpleNamespace(experiment_id=e.get("experiment_id"), name=e.get("name", ""))
            for e in found.get("experiments", ())
        ]
        return Page(experiments, found.get("next_page_token"))

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int = VIEW_ALL,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> Page:
        body: dict[str, Any] = {
            "experiment_ids": experiment_ids,
            "filter": filter_string,
            "run_view_type": _view(run_view_type),
            "max_results": max_results,
        }
        if order_by:
            body["order_by"] = order_by
        if page_token:
            body["page_token"] = page_token
        found = self.post_json("/api/2.0/mlflow/runs/search", body)
        return Page([_run(r) for r in found.get("runs", ())], found.get("next_page_token"))

    def get_run(self, run_id: str) -> Any:
        try:
            return _run(self.get_json("/api/2.0/mlflow/runs/get", {"run_id": run_id})["run"])
        except RestError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or exc.status == 404:
                raise LookupError(run_id) from None
            raise

    def search_model_versions(self, max_results: int = 1000, page_token: str | None = None) -> Page:
        params: dict[str, Any] = {"max_results": max_results}
        if page_token:
            params["page_token"] = page_token
        found = self.get_json("/api/2.0/mlflow/model-versions/search", params)
        versions = [
            SimpleNamespace(
                name=v.get("name"),
                version=v.get("version"),
                creation_timestamp=v.get("creation_timestamp"),
                last_updated_timestamp=v.get("last_updated_timestamp"),
                run_id=v.get("run_id"),
                current_stage=v.get("current_stage"),
                status=v.get("status"),
                description=v.get("description"),
                source=v.get("source"),
                user_id=v.get("user_id"),
                aliases=list(v.get("aliases") or ()),
                tags=_pairs(v.get("tags")),
                model_id=v.get("model_id"),
            )
            for v in found.get("model_versions", ())
        ]
        return Page(versions, found.get("next_page_token"))

    def search_registered_models(self, max_results: int = 1000, page_token: str | None = None) -> Page:
        params: dict[str, Any] = {"max_results": max_results}
        if page_token:
            params["page_token"] = page_token
        found = self.get_json("/api/2.0/mlflow/registered-models/search", params)
        models = [
            SimpleNamespace(
                name=m.get("name"),
                aliases={a.get("alias"): a.get("version") for a in m.get("aliases") or () if a.get("alias")},
            )
            for m in found.get("registered_models", ())
        ]
        return Page(models, found.get("next_page_token"))

    def search_logged_models(
        self, experiment_ids: list[str], max_results: int = 100, page_token: str | None = None
    ) -> Page:
        body: dict[str, Any] = {"experiment_ids": experiment_ids, "max_results": max_results}
        if page_token:
            body["page_token"] = page_token
        found = self.post_json("/api/2.0/mlflow/logged-models/search", body)
        return Page([_logged_model(m) for m in found.get("models", ())], found.get("next_page_token"))


def _logged_model(model: dict[str, Any]) -> Any:
    """A logged model (`info` and `data`), shaped as the client's `LoggedModel`."""
    info, data = model.get("info") or {}, model.get("data") or {}
    status = info.get("status")
    return SimpleNamespace(
        model_id=info.get("model_id"),
        name=info.get("name"),
        experiment_id=info.get("experiment_id"),
        creation_timestamp=info.get("creation_timestamp_ms"),
        last_updated_timestamp=info.get("last_updated_timestamp_ms"),
        source_run_id=info.get("source_run_id"),
        status=_LOGGED_MODEL_STATUS.get(status, status) if status is not None else None,
        model_type=info.get("model_type"),
        tags=_pairs(info.get("tags")),
        params=_pairs(data.get("params")),
        metrics=[_logged_model_metric(m) for m in data.get("metrics") or ()],
    )


def _view(view_type: int) -> str:
    return {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}.get(view_type, "ALL")


def _pairs(items: Any) -> dict[str, str]:
    return {str(i.get("key")): str(i.get("value", "")) for i in items or () if isinstance(i, dict)}


def _logged_model_metric(m: dict[str, Any]) -> Any:
    """A metric of a logged model, shaped as the client's `Metric` (proto3 JSON omits zeros)."""
    return SimpleNamespace(
        key=m.get("key"),
        value=m.get("value", 0.0),
        timestamp=int(m.get("timestamp", 0)),
        step=int(m.get("step", 0)),
        run_id=m.get("run_id"),
        dataset_name=m.get("dataset_name"),
        dataset_digest=m.get("dataset_digest"),
    )


def _inputs(raw: dict[str, Any]) -> Any:
    """A run's `inputs`, shaped as the client's `RunInputs`. Run searches list dataset inputs only;
    model inputs come with `runs/get`."""
    return SimpleNamespace(
        dataset_inputs=[
            SimpleNamespace(
                dataset=SimpleNamespace(**{k: (d.get("dataset") or {}).get(k) for k in _DATASET_FIELDS}),
                tags=[SimpleNamespace(key=t.get("key"), value=t.get("value")) for t in d.get("tags") or ()],
            )
            for d in raw.get("dataset_inputs") or ()
            if isinstance(d, dict)
        ],
        model_inputs=[SimpleNamespace(model_id=m.get("model_id")) for m in raw.get("model_inputs") or ()],
    )


_DATASET_FIELDS = ("name", "digest", "source_type", "profile")


def _run(raw: dict[str, Any]) -> Any:
    info, data = raw.get("info") or {}, raw.get("data") or {}
    metrics = [
        SimpleNamespace(
            key=m.get("key"),
            value=m.get("value", 0.0),
            timestamp=int(m.get("timestamp", 0)),
            step=int(m.get("step", 0)),
        )
        for m in data.get("metrics") or ()
    ]
    return SimpleNamespace(
        info=SimpleNamespace(
            run_id=info.get("run_id") or info.get("run_uuid"),
            run_name=info.get("run_name"),
            experiment_id=info.get("experiment_id"),
            status=info.get("status"),
            start_time=info.get("start_time"),
            end_time=info.get("end_time"),
            user_id=info.get("user_id"),
            lifecycle_stage=info.get("lifecycle_stage"),
            artifact_uri=info.get("artifact_uri"),
        ),
        data=SimpleNamespace(
            params=_pairs(data.get("params")),
            tags=_pairs(data.get("tags")),
            metrics={m.key: m.value for m in metrics},
            _metric_objs=metrics,
        ),
        inputs=_inputs(raw.get("inputs") or {}),
    )
