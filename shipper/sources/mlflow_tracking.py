"""The MLflow tracking server, behind the small interface the sync engine needs (`TrackingSource`).

Works with any tracking URI the MLflow client understands: an HTTP server, a local sqlite or file
store, or an Azure ML workspace's `azureml://` URI when the azureml-mlflow plugin is installed.
Every request is counted in `shipper_mlflow_requests_total{kind=...}`, which is also how tests and
benchmarks prove that a no-op pass read no metric history.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson

from shipper import telemetry
from shipper.errors import ConfigError, ConnectivityError
from shipper.sources.interface import HISTORY_PAGE, HistoryPage
from shipper.sources.mlflow_errors import refused_message, unreachable_message
from shipper.sources.mlflow_rest import (
    BULK_MAX_RUNS,
    BULK_SAMPLE,
    VIEW_ALL,
    MlflowRest,
    RestError,
    usable_for,
)
from shipper.sources.records import (
    DatasetInput,
    Experiment,
    LoggedModel,
    LoggedModelMetric,
    MetricPoint,
    ModelVersion,
    Run,
)

log = logging.getLogger(__name__)

RUNS_PAGE = 1000
UNKNOWN = -1  # the time and step of a latest point the client did not report
MODELS_PAGE = 1000


class MlflowSource:
    def __init__(self, tracking_uri: str | None = None) -> None:
        from shipper.config import mlflow_tracking_uri, redact_uri

        # MLFLOW_TRACKING_URI is the contract; read it here so that an in-process
        # mlflow.set_tracking_uri() elsewhere cannot redirect the shipper. Checked first: unset, the
        # client would quietly create a local ./mlflow.db.
        uri = tracking_uri or mlflow_tracking_uri()
        self._client: Any
        self._rest: MlflowRest | None = None
        self._rest_store: Any = None
        if usable_for(uri):  # a plain tracking server: its REST API, without importing mlflow
            self._client = self._rest = MlflowRest(uri)
        else:
            self._client = _mlflow_client(uri)
            self._rest_store = _rest_store_of(self._client)
        self.tracking_uri = redact_uri(str(self._client.tracking_uri))  # for messages: no password
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()
        # Whether the server answers bulk history reads: None until the first one tells.
        self.bulk_histories: bool | None = None if self._rest is not None else False

    def _count(self, kind: str) -> None:
        with self._lock:  # histories are read from several threads
            self.requests[kind] = self.requests.get(kind, 0) + 1
        telemetry.MLFLOW_REQUESTS.labels(kind=kind).inc()

    def ping(self, timeout: float = 10.0) -> None:
        """Raise ConnectivityError unless the tracking server answers one request within `timeout`
        seconds: one try, no retries, so an unreachable server is reported at once."""
        if self._rest is not None:
            try:
                response = self._rest.request(
                    "POST",
                    "/api/2.0/mlflow/experiments/search",
                    body={"max_results": 1},
                    retries=False,
                    timeout=timeout,
                )
            except Exception as exc:
                raise ConnectivityError(unreachable_message(self.tracking_uri, exc, timeout)) from None
            if response.status != 200:
                raise ConnectivityError(refused_message(self.tracking_uri, response.status, response.data))
            return
        if self._rest_store is None:  # a local store: nothing to reach
            try:
                self._client.search_experiments(max_results=1)
            except Exception as exc:
                raise ConnectivityError(
                    f"cannot read the MLflow store at {self.tracking_uri}: {str(exc)[:300]}; check "
                    "MLFLOW_TRACKING_URI"
                ) from None
            return
        from mlflow.utils.rest_utils import http_request

        try:
            response = http_request(  # type: ignore[no-untyped-call]
                host_creds=self._rest_store.get_host_creds(),
                endpoint="/api/2.0/mlflow/experiments/search",
                method="POST",
                json={"max_results": 1},
                max_retries=0,
                backoff_factor=0,
                timeout=max(1, math.ceil(timeout)),
            )
        except Exception as exc:
            raise ConnectivityError(unreachable_message(self.tracking_uri, exc, timeout)) from None
        if response.status_code != 200:
            raise ConnectivityError(
                refused_message(self.tracking_uri, response.status_code, response.content)
            )

    def experiments(self) -> list[Experiment]:
        """Every experiment, deleted ones included (their runs may still matter to dashboards)."""
        found: list[Experiment] = []
        token = None
        while True:
            self._count("search_experiments")
            page = self._client.search_experiments(view_type=VIEW_ALL, max_results=1000, page_token=token)
            found += [Experiment(id=str(e.experiment_id), name=str(e.name)) for e in page]
            token = page.token
            if not token:
                break
        return sorted(found, key=lambda e: e.id)

    def runs(self, experiment_ids: Sequence[str], since: datetime | None = None) -> Iterator[Run]:
        if not experiment_ids:
            return
        filter_string = ""
        if since is not None:
            filter_string = f"attributes.start_time >= {int(since.timestamp() * 1000)}"
        token = None
        while True:
            self._count("search_runs")
            page = self._client.search_runs(
                experiment_ids=list(experiment_ids),
                filter_string=filter_string,
                run_view_type=VIEW_ALL,
                max_results=RUNS_PAGE,
                # A stable order keeps pages consistent while runs are being created.
                order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
                page_token=token,
            )
            for run in page:
                yield run_record(run)
            token = page.token
            if not token:
                break

    def runs_by_id(self, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> dict[str, Run]:
        """Several runs at once (a search per 100 ids instead of a request per run)."""
        found: dict[str, Run] = {}
        ids = sorted(set(run_ids))
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            quoted = run_id_list(chunk)
            for odd in (run_id for run_id in chunk if not _QUOTABLE_ID.match(run_id)):
                found.update(self._run_by_id(odd))  # cannot be quoted in a filter: one request each
            if not quoted:
                continue
            token = None
            while True:
                self._count("search_runs")
                page = self._client.search_runs(
                    experiment_ids=list(experiment_ids),
                    filter_string=f"attributes.run_id IN ({quoted})",
                    run_view_type=VIEW_ALL,
                    max_results=RUNS_PAGE,
                    page_token=token,
                )
                found.update((run.info.run_id, run_record(run)) for run in page)
                token = page.token
                if not token:
                    break
        return found

    def _run_by_id(self, run_id: str) -> dict[str, Run]:
        self._count("get_run")
        try:
            return {run_id: run_record(self._client.get_run(run_id))}
        except LookupError:  # MlflowRest: no such run
            return {}
        except Exception as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":  # the MLflow client's way
                return {}
            raise

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        return [point for page in self.metric_history_pages(run_id, key) for point in page]

    def metric_history_pages(
        self, run_id: str, key: str, page_token: str | None = None
    ) -> Iterator[list[MetricPoint]]:
        """A metric's full history, page by page, so a long one never sits in memory whole; from
        `page_token` on when given (the REST API only: the client reads a history whole)."""
        self._count("get_metric_history")
        if self._rest is not None or self._rest_store is not None:
            yield from self._rest_history(run_id, key, page_token)
        else:
            yield [_metric(m) for m in self._client.get_metric_history(run_id, key)]

    def metric_histories(self, key: str, run_ids: Sequence[str]) -> dict[str, Iterable[list[MetricPoint]]]:
        """The full history of `key` in each of up to BULK_MAX_RUNS runs, by run id.

        One `get-history-bulk-interval` request where the server has it, exact by construction.
        That endpoint answers at most BULK_SAMPLE points per run, evenly sampled when a run has
        more (MLflow's SQL stores); a store that samples by step instead (MLflow's generic one)
        thins every run out once the runs together have more than BULK_SAMPLE distinct steps, and
        then the answer holds at least BULK_SAMPLE distinct steps. So an answer is taken only when
        it holds fewer than BULK_SAMPLE distinct steps, and then only its runs with fewer than
        BULK_SAMPLE points (and at least one); when long runs spoil an answer, the others are asked
        for again without them, once. Every run left over is read with `get-history` (paged, when
        shipped). A server without the endpoint (older MLflow, Azure ML) is asked once, then only
        `get-history` is used. Points keep the server's order within one (step, timestamp), which
        is `get-history`'s: ascending value.
        """
        if len(run_ids) > BULK_MAX_RUNS:
            raise ValueError(f"at most {BULK_MAX_RUNS} runs per bulk read, not {len(run_ids)}")
        found: dict[str, Iterable[list[MetricPoint]]] = {}
        todo, again = list(run_ids), []
        tries = 2 if self._rest is not None else 0
        while todo and tries and self.bulk_histories is not False:
            tries -= 1
            raw = self._bulk(key, todo)
            if raw is None:
                break
            short = [run_id for run_id in todo if 0 < len(raw[run_id]) < BULK_SAMPLE]
            if len({m.get("step", 0) for metrics in raw.values() for m in metrics}) < BULK_SAMPLE:
                found.update((run_id, [_points(raw[run_id], key)]) for run_id in short)
                again += [run_id for run_id in todo if run_id not in found]
                todo = []
            elif len(short) < len(todo):  # long runs crowd the answer: ask again without them
                again += [run_id for run_id in todo if run_id not in set(short)]
                todo = short
            else:
                break
        for run_id in again + todo:  # read page by page when shipped, as any long history
            found[run_id] = self.metric_history_pages(run_id, key)
        return found

    def _bulk(self, key: str, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]] | None:
        assert self._rest is not None
        self._count("get_metric_history_bulk")
        try:
            raw = self._rest.history_bulk(key, run_ids)
        except RestError as exc:
            if exc.status != 400:
                raise
            # e.g. a server that takes fewer runs per request: these are read one by one.
            log.warning(
                "the bulk history read of %d runs was refused (%s); reading them one by one",
                len(run_ids),
                exc,
            )
            return None
        if raw is None:
            if self.bulk_histories is None:
                log.info(
                    "%s has no bulk history endpoint; reading each metric history on its own",
                    self.tracking_uri,
                )
            self.bulk_histories = False
            return None
        self.bulk_histories = True
        return raw

    def _rest_history(self, run_id: str, key: str, token: str | None = None) -> Iterator[list[MetricPoint]]:
        """The documented REST endpoint, read with orjson, in pages of HISTORY_PAGE points.

        Metric histories are most of a backfill's bytes. The client reads a whole history at once and
        turns it into protobuf messages and then entities (`json_format.ParseDict`): profiled at
        3.8 s of CPU per 100,000 points, twice the shipper's whole budget. This reads the same JSON
        directly, with the store's credentials, TLS settings and retries (MLflow's own `http_request`
        when the client is used). Servers that predate paging answer with everything in one page.
        """
        while True:
            params = {"run_id": run_id, "run_uuid": run_id, "metric_key": key, "max_results": HISTORY_PAGE}
            if token:
                params["page_token"] = token
            body = self._get_json(HISTORY_ENDPOINT, params)
            token = body.get("next_page_token") or None
            page = HistoryPage(_points(body.get("metrics", ()), key))
            page.next_token = token
            yield page
            if not token:
                return

    def _get_json(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        if self._rest is not None:
            return self._rest.get_json(endpoint, params)
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        response = http_request(  # type: ignore[no-untyped-call]
            host_creds=self._rest_store.get_host_creds(), endpoint=endpoint, method="GET", params=params
        )
        if response.status_code != 200:
            verify_rest_response(response, endpoint)  # raises MLflow's own error for the answer
        # Parsed once: MLflow's response check parses every 200 body as JSON just to look at it.
        try:
            found = orjson.loads(response.content or b"{}")
        except orjson.JSONDecodeError:
            verify_rest_response(response, endpoint)  # MLflow's error, or its "200 OK" case: empty
            return {}
        return found if isinstance(found, dict) else {}

    def model_versions(self) -> list[ModelVersion]:
        found: list[ModelVersion] = []
        token = None
        while True:
            self._count("search_model_versions")
            page = self._client.search_model_versions(max_results=MODELS_PAGE, page_token=token)
            found += [model_version_record(mv) for mv in page]
            token = page.token
            if not token:
                break
        # Version search results carry no aliases; registered models do (alias -> version).
        aliases: dict[tuple[str, str], list[str]] = {}
        token = None
        while True:
            self._count("search_registered_models")
            models = self._client.search_registered_models(max_results=MODELS_PAGE, page_token=token)
            for model in models:
                for alias, version in (getattr(model, "aliases", None) or {}).items():
                    aliases.setdefault((str(model.name), str(version)), []).append(str(alias))
            token = models.token
            if not token:
                break
        return [
            replace(mv, aliases=tuple(sorted(aliases.get((mv.name, mv.version), mv.aliases)))) for mv in found
        ]

    def logged_models(self, experiment_ids: Sequence[str]) -> list[LoggedModel]:
        """MLflow 3 logged models; empty where the server predates them."""
        if not experiment_ids or not hasattr(self._client, "search_logged_models"):
            return []
        found: list[LoggedModel] = []
        token = None
        try:
            while True:
                self._count("search_logged_models")
                page = self._client.search_logged_models(
                    experiment_ids=list(experiment_ids), max_results=100, page_token=token
                )
                found += [logged_model_record(m) for m in page]
                token = page.token
                if not token:
                    break
        except Exception as exc:
            log.info("this tracking server has no logged models API (%s); skipping them", str(exc)[:120])
            return []
        return found


def _points(metrics: Iterable[dict[str, Any]], key: str) -> list[MetricPoint]:
    """REST metrics (proto JSON, which leaves out zero values, hence the defaults) as points."""
    inf, maximum = math.inf, sys.float_info.max
    points: list[MetricPoint] = []
    append = points.append
    for m in metrics:
        value = float(m.get("value", 0.0))
        if value == maximum or value == -maximum:  # metric_value, inlined
            value = math.copysign(inf, value)
        append(MetricPoint(m.get("key", key), value, int(m.get("timestamp", 0)), int(m.get("step", 0))))
    return points


def metric_value(raw: Any) -> float:
    """MLflow's SQL store keeps ±Infinity as ±sys.float_info.max; give the logged value back."""
    value = float(raw)
    if abs(value) == sys.float_info.max:
        return math.copysign(math.inf, value)
    return value


# Run ids a search filter can quote: MLflow's own (hex), Azure ML job names (`AutoML_<uuid>_5`,
# `sharp_tomato_3xk`, `pipe-7f3a`) and the like. Anything else is fetched by id.
_QUOTABLE_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")


def run_id_list(run_ids: Sequence[str]) -> str:
    """The quotable ids as the inside of an `attributes.run_id IN (...)` filter."""
    return ", ".join(f"'{run_id}'" for run_id in run_ids if _QUOTABLE_ID.match(run_id))


HISTORY_ENDPOINT = "/api/2.0/mlflow/metrics/get-history"


def _mlflow_client(uri: str) -> Any:
    """The MLflow client, for every URI the REST reader does not serve."""
    from mlflow import MlflowClient  # imported late: it is the slowest import we have

    from shipper import logs

    logs.quiet_libraries()  # mlflow sets up its own loggers when imported
    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as exc:  # the client's own words for a URI it cannot serve
        raise ConfigError(
            [f"MLFLOW_TRACKING_URI={uri!r} cannot be used by the MLflow client: {str(exc)[:300]}"]
        ) from None


def _rest_store_of(client: Any) -> Any:
    """The client's REST store (HTTP servers, and Azure ML workspaces through azureml-mlflow, whose
    store is one), or None for local sqlite/file stores, which are read through the client."""
    from mlflow.store.tracking.rest_store import RestStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if isinstance(store, RestStore) else None


def _metric(m: Any) -> MetricPoint:
    return MetricPoint(
        key=m.key, value=metric_value(m.value), timestamp=int(m.timestamp), step=int(m.step or 0)
    )


def run_record(run: Any) -> Run:
    info, data = run.info, run.data
    metric_objs = getattr(data, "_metric_objs", None)
    exact = metric_objs is not None
    if metric_objs is not None:
        latest = {m.key: _metric(m) for m in metric_objs}
    else:  # clients that expose only key -> value: the latest point's time and step are unknown
        latest = {k: MetricPoint(k, metric_value(v), UNKNOWN, UNKNOWN) for k, v in data.metrics.items()}
    return Run(
        id=str(info.run_id),
        name=str(info.run_name or ""),
        experiment_id=str(info.experiment_id),
        status=str(info.status),
        start_time=info.start_time,
        end_time=info.end_time,
        user=info.user_id or None,
        lifecycle_stage=str(info.lifecycle_stage or "active"),
        artifact_uri=info.artifact_uri,
        params=dict(data.params),
        tags=dict(data.tags),
        latest_metrics=latest,
        latest_exact=exact,
        dataset_inputs=dataset_inputs_of(getattr(run, "inputs", None)),
        model_inputs=model_inputs_of(getattr(run, "inputs", None)),
    )


# A dataset profile longer than this is left out of run documents (it is MLflow's JSON summary).
PROFILE_MAX = 1024
DATA_CONTEXT_TAG = "mlflow.data.context"


def dataset_inputs_of(inputs: Any) -> tuple[DatasetInput, ...]:
    """The dataset inputs of a run (the client's `RunInputs` or the REST reader's), sorted."""
    found = []
    for item in getattr(inputs, "dataset_inputs", None) or ():
        dataset = item.dataset
        tags = {str(t.key): str(t.value) for t in getattr(item, "tags", None) or ()}
        profile = getattr(dataset, "profile", None) or None
        found.append(
            DatasetInput(
                name=str(dataset.name or ""),
                digest=str(dataset.digest or ""),
                source_type=getattr(dataset, "source_type", None) or None,
                context=tags.get(DATA_CONTEXT_TAG) or None,
                profile=profile if profile is not None and len(profile) <= PROFILE_MAX else None,
            )
        )
    return tuple(sorted(set(found), key=lambda d: (d.name, d.digest, d.context or "")))


def model_inputs_of(inputs: Any) -> tuple[str, ...]:
    return tuple(sorted({str(m.model_id) for m in getattr(inputs, "model_inputs", None) or () if m.model_id}))


def model_version_record(mv: Any) -> ModelVersion:
    return ModelVersion(
        name=str(mv.name),
        version=str(mv.version),
        creation_timestamp=int(mv.creation_timestamp or 0),
        last_updated_timestamp=mv.last_updated_timestamp,
        run_id=mv.run_id or None,
        stage=mv.current_stage or None,
        status=mv.status or None,
        description=mv.description or None,
        source=mv.source or None,
        user=mv.user_id or None,
        aliases=tuple(sorted(getattr(mv, "aliases", None) or ())),
        tags=dict(mv.tags or {}),
        model_id=getattr(mv, "model_id", None) or model_id_of_source(mv.source),
    )


def model_id_of_source(source: str | None) -> str | None:
    """`models:/<model id>` -> the model id. MLflow 3.17's SQL registry stores a version's logged
    model only in its source URI (its REST answers carry no `model_id`); `models:/<name>/<version>`
    and `models:/<name>@<alias>` name other registry versions, not a logged model."""
    if not source or not source.startswith("models:/"):
        return None
    rest = source[len("models:/") :].strip("/")
    return rest if rest and "/" not in rest and "@" not in rest else None


def logged_model_record(m: Any) -> LoggedModel:
    status = getattr(m, "status", None)
    return LoggedModel(
        id=str(m.model_id),
        name=str(m.name),
        experiment_id=str(m.experiment_id),
        creation_timestamp=int(m.creation_timestamp or 0),
        last_updated_timestamp=m.last_updated_timestamp,
        source_run_id=m.source_run_id or None,
        status=str(getattr(status, "name", status)) if status is not None else None,
        model_type=m.model_type or None,
        tags=dict(m.tags or {}),
        params=dict(m.params or {}),
        metrics=tuple(
            LoggedModelMetric(
                key=str(metric.key),
                value=metric_value(metric.value),
                timestamp=int(metric.timestamp or 0),
                step=int(metric.step or 0),
                run_id=getattr(metric, "run_id", None) or None,
                dataset_name=getattr(metric, "dataset_name", None) or None,
                dataset_digest=getattr(metric, "dataset_digest", None) or None,
            )
            for metric in getattr(m, "metrics", None) or ()
        ),
    )


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
