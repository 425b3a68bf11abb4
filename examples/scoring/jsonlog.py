"""A JSON log formatter with ECS field names (standard library only), used by logging.json.

One JSON object per line, so the pipelines take the fields as they are and skip grok:
{"@timestamp": "2024-05-02T10:11:12.345Z", "log.level": "info", "log.logger": "azmlinfsrv",
 "process.pid": 51, "message": "...", "ml.model.name": "churn", "ml.model.version": "3"}
"""

from __future__ import annotations

import json
import logging
import os
import time


class EcsJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc: dict[str, object] = {
            "@timestamp": f"{seconds}.{int(record.msecs):03d}Z",
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "process.pid": record.process,
            "message": record.getMessage(),
            "log": {"origin": {"file": {"name": record.filename, "line": record.lineno}}},
        }
        for env, field in (("MODEL_NAME", "ml.model.name"), ("MODEL_VERSION", "ml.model.version")):
            if os.environ.get(env):
                doc[field] = os.environ[env]
        if record.exc_info:
            doc["error.type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            doc["error.message"] = str(record.exc_info[1])
            doc["error.stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)
