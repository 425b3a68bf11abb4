"""Hand-written expectations: the data-contract fields of golden scoring lines.

Written by reading each raw line in tests/golden/scoring/, not by copying pipeline output, so a
wrong snapshot in `*-expected.json` cannot pass on its own. `None` means "absent". Timestamps are
UTC; `event.duration` is nanoseconds; the model comes from the line itself (JSON), else from the
container / pod labels of the file's `-config.json`.
"""

from __future__ import annotations

from typing import Any

#: The data contract's fields of a scoring line (`logs-mlops.scoring-<namespace>`).
CONTRACT_FIELDS = (
    "@timestamp",
    "log.level",
    "log.logger",
    "process.pid",
    "message",
    "http.request.method",
    "url.path",
    "http.response.status_code",
    "http.response.body.bytes",
    "event.duration",
    "mlops.scoring.metric.name",
    "mlops.scoring.metric.value",
    "ml.model.name",
    "ml.model.version",
)
HEALTH = ["mlops_scoring_health_probe"]
UNPARSED = ["mlops_scoring_unparsed"]
NON_FINITE = ["mlops_scoring_metric_non_finite"]


def _req(
    ts: str,
    method: str | None,
    path: str | None,
    status: int | None,
    size: int | None,
    duration: int | None,
    **more: Any,
) -> dict[str, Any]:
    return {
        "@timestamp": ts,
        "http.request.method": method,
        "url.path": path,
        "http.response.status_code": status,
        "http.response.body.bytes": size,
        "event.duration": duration,
        **more,
    }


def _metric(name: str | None, value: float | None, **more: Any) -> dict[str, Any]:
    return {"mlops.scoring.metric.name": name, "mlops.scoring.metric.value": value, **more}


def _line(ts: str, level: str | None, logger: str | None, pid: int | None, **more: Any) -> dict[str, Any]:
    return {"@timestamp": ts, "log.level": level, "log.logger": logger, "process.pid": pid, **more}


CHURN3 = {"ml.model.name": "churn", "ml.model.version": "3"}

# file -> record index -> dotted field -> expected value
CONTRACT: dict[str, dict[int, dict[str, Any]]] = {
    "test-azmlinfsrv.log": {
        0: _line("2026-11-22T03:06:06.558Z", "info", "azmlinfsrv", 6170, tags=None, **CHURN3),
        1: _line("2026-11-22T03:06:06.788Z", "warning", "azmlinfsrv", 6172),
        2: _line("2026-11-22T03:06:07.141Z", "warning", "azmlinfsrv.trace", 6172, tags=None),
        3: _line("2026-11-22T03:06:07.141Z", "info", "azmlinfsrv.user_script", 6172),
        4: _line("2026-11-22T03:06:07.141Z", "info", "azmlinfsrv.print", 6172, **_metric(None, None)),
        5: _line("2026-11-22T03:06:07.143Z", "info", "azmlinfsrv.swagger", 6172, **_metric(None, None)),
        6: _line("2026-11-22T03:06:07.143Z", "info", "azmlinfsrv", 6172, **_metric(None, None)),
        7: _line("2026-11-22T03:06:14.315Z", "info", "azmlinfsrv.print", 6172, **_metric("Accuracy", 0.93)),
        8: _metric("IoU", 0.78, **CHURN3),
        9: _metric(None, None, **{"log.logger": "azmlinfsrv.print"}),
        10: _req("2026-11-22T03:06:14.316Z", "POST", "/score", 200, 12, 752_000, **{"process.pid": 6172}),
        11: _req(
            "2026-11-22T03:06:14.317Z", "POST", "/score", 200, 12, None, **{"log.logger": "gunicorn.access"}
        ),
        12: _req("2026-11-22T03:06:14.326Z", "POST", "/score", 500, 92, 1_254_000, **{"log.level": "info"}),
        13: _req("2026-11-22T03:06:14.343Z", "GET", "/swagger.json", 200, 2198, 348_000, tags=None),
        14: _req("2026-11-22T03:06:14.354Z", "GET", "/nope", 404, 135, None),
        15: _req("2024-05-02T10:11:12.345Z", "POST", "/score", 200, 1121, 305_413_000, tags=None, **CHURN3),
        16: _req("2024-05-02T10:11:13.001Z", "GET", "/", 200, 7, 112_000, tags=HEALTH),
        17: _req("2024-05-02T10:11:13.502Z", "GET", "/health", 200, 7, 98_000, tags=HEALTH),
        18: _req("2024-05-02T10:11:14.000Z", "GET", "/liveness", 200, 7, 101_000, tags=HEALTH),
        19: _req("2024-05-02T10:11:14.500Z", "HEAD", "/readiness/", 200, 0, 90_000, tags=HEALTH),
        20: _req("2024-05-02T10:11:15.250Z", "POST", "/score", 200, None, 1_520_500_000, tags=None),
        21: _metric("Inference_time", 12.5, **{"@timestamp": "2024-05-02T10:11:15.251Z"}),
        22: _line("2024-05-02T10:11:15.252Z", "debug", "azmlinfsrv", 51),
        23: _line("2024-05-02T10:11:15.253Z", "critical", "azmlinfsrv", 51),
        24: _line("2024-05-02T10:11:16.000Z", "info", "gunicorn.error", 7, **_metric(None, None)),
    },
    "test-gunicorn.log": {
        0: _req(
            "2024-05-02T10:11:12.000Z", "POST", "/score", 200, 1121, None, tags=None, **{"log.level": None}
        ),
        1: _req("2024-05-02T10:11:13.000Z", "GET", "/health", 200, 7, None, tags=HEALTH),
        2: _req("2024-05-02T10:11:14.000Z", "GET", "/readiness", 503, 0, None, tags=HEALTH),
        3: _req("2024-05-02T10:11:15.000Z", "POST", "/score", 400, 85, None, tags=None),
        4: _req("2024-05-02T10:11:16.000Z", "GET", "/swagger.json", 200, None, None),
        5: _line("2024-05-02T10:11:12.000Z", "info", "gunicorn.error", 1),
        6: _line("2024-05-02T10:11:12.000Z", "info", "gunicorn.error", 1, **{"http.request.method": None}),
        7: _line("2024-05-02T10:11:40.000Z", "critical", "gunicorn.error", 1),
        8: _line("2024-05-02T10:11:41.000Z", "error", "gunicorn.error", 8, **{"http.request.method": None}),
    },
    "test-python-metrics.log": {
        0: _line(
            "2024-05-02T10:11:12.999Z",
            "warning",
            "root",
            None,
            **{"ml.model.name": "churn", "ml.model.version": "2"},
        ),
        2: _line("2024-05-02T10:11:12.999Z", "info", "__main__", None, **_metric("Accuracy", 0.91)),
        1: _line("2024-05-02T10:11:12.999Z", "warning", "score", None, **_metric(None, None)),
        3: _line("2024-05-02T10:11:12.999Z", "error", "score", None),
        4: _line("2024-05-02T10:11:12.999Z", "critical", "azureml.core", None),
        5: _line("2024-05-02T10:11:12.999Z", "debug", "urllib3.connectionpool", None, **_metric(None, None)),
        6: _metric("Accuracy", 0.93, tags=None, **{"log.level": None}),
        7: _metric("IoU", 0.78, **{"ml.model.name": "churn", "ml.model.version": "2"}),
        8: _metric("Inference_time", 12.5, **{"@timestamp": "2024-05-02T10:11:12.999Z"}),
        9: _metric("mean absolute error", -0.0015),
        10: _metric("Test F1 (macro)", 2.5e10),
        11: _metric("precision@5", 0.41),
        12: _metric("coverage", 93.5),
        13: _metric("latency", 12.5),
        14: _metric("throughput", 1200.0),
        15: _metric("Loss", None, tags=NON_FINITE),
        16: _metric("delta", None, tags=NON_FINITE),
        17: _metric("r2", -0.0, tags=None),
        18: _metric("accuracy", 0.5),
        19: _metric(None, None, tags=None),
        20: _metric(None, None, tags=None),
        21: _metric(None, None, tags=None),
        22: _metric(None, None),
    },
    "test-json.log": {
        0: _req(
            "2024-05-02T10:11:12.345Z",
            "POST",
            "/score",
            200,
            1121,
            305_413_000,
            **{"log.level": "info", "log.logger": "azmlinfsrv", "process.pid": 51},
            **CHURN3,
        ),
        1: _metric("Accuracy", 0.93, **{"ml.model.name": "fraud", "ml.model.version": "7"}),
        2: {
            "@timestamp": "2024-05-02T10:11:12.500Z",
            "log.level": "error",
            "error.type": "ValueError",
            "error.message": "bad input",
            "message": "Encountered Exception",
        },
        3: _line(
            "2024-05-02T10:11:13.000Z",
            "warning",
            "score",
            51,
            **{"message": "input contains 2 missing values"},
        ),
        4: _metric("IoU", 0.78, **{"@timestamp": "2024-05-02T10:11:14.000Z"}),
        5: {"@timestamp": "2024-05-02T10:11:59.000Z", "ml.model.name": "fraud", "ml.model.version": "7"},
        6: {"@timestamp": "2024-05-02T10:11:59.000Z", "tags": UNPARSED},
    },
    "test-tracebacks.log": {
        0: {"log.level": "error", "error.type": "KeyError", "ml.model.name": "churn"},
        1: _line("2026-11-22T03:06:14.326Z", "error", "azmlinfsrv", 6172),
        2: _req("2026-11-22T03:06:14.326Z", "POST", "/score", 500, 92, 1_254_000),
        3: {"log.level": "error", "log.logger": "score", "error.type": "ZeroDivisionError"},
        4: _line("2024-05-02T10:12:00.000Z", "error", "azmlinfsrv", 51, **{"error.type": None}),
        5: _line(
            "2024-05-02T10:12:00.001Z", "error", "azmlinfsrv", 51, **{"error.type": "KeyboardInterrupt"}
        ),
        6: {"log.level": "warning", "error.type": None},
        7: {"log.level": "warning", "log.logger": "py.warnings", "error.type": None},
    },
    "test-edge.log": {
        0: _line("2024-05-02T10:11:12.345Z", "info", "azmlinfsrv.print", 51, tags=None),
        1: _metric(None, None, **{"log.logger": "azmlinfsrv.print", "tags": None}),
        2: _line("2024-05-02T10:11:12.347Z", "info", "azmlinfsrv", 51, tags=None),
        3: _req("2024-05-02T10:11:12.348Z", None, None, None, None, None, tags=None),
        4: {"@timestamp": "2024-05-02T10:11:59.000Z", "log.logger": None, "tags": UNPARSED},
        5: {"@timestamp": "2024-05-02T10:11:59.000Z", "process.pid": None, "tags": UNPARSED},
        6: {"@timestamp": "2024-05-02T10:11:59.000Z", "log.level": None, "tags": UNPARSED},
        7: {"@timestamp": "2024-05-02T10:11:59.000Z", "tags": UNPARSED},
        8: {"@timestamp": "2024-05-02T10:11:59.000Z", "tags": UNPARSED},
        9: {"@timestamp": "2024-05-02T10:11:59.000Z", "tags": UNPARSED},
        10: _metric(None, None, tags=UNPARSED),
        11: _metric(None, None, tags=UNPARSED),
    },
}
