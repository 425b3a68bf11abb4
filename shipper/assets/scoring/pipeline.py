"""The Elasticsearch side of the scoring-log path: ingest pipeline and mappings.

Filebeat can write scoring-script logs straight to Elasticsearch; `shipper setup` then installs
the body of :func:`scoring_pipeline` as ``_ingest/pipeline/logs-mlops.scoring`` and makes it the
default pipeline of the ``logs-mlops.scoring-*`` data streams, whose component template carries
:func:`scoring_mappings`. Logstash (``logstash/pipeline/``) does the same parsing with the same
grok patterns; an event it already parsed passes through this pipeline unchanged (only
``event.ingested`` is set).

One source of truth for the patterns: ``patterns.grok`` beside this module. Logstash reads it
verbatim (``logstash/patterns/mlops_scoring`` is a byte-identical copy); here it is loaded into the
grok processor's ``pattern_definitions``, with Logstash field references (``[url][path]``)
rewritten to Elasticsearch's dotted paths (``url.path``). Nothing else is changed.

The pipeline reads top to bottom: set ``event.ingested``; keep the raw line in ``event.original``;
decode JSON lines; grok the header (``SCORING_*_LINE``) then the message body; convert; date (UTC);
normalise the level; categorise; copy the model labels; clean up. A processor failure never drops
the event: it is kept with ``error.message`` and a tag.

Usage::

    from shipper.assets.scoring.pipeline import SCORING_PIPELINE_ID, scoring_pipeline
    es.ingest.put_pipeline(id=SCORING_PIPELINE_ID, body=scoring_pipeline())
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "HEADER_PATTERNS",
    "HEALTH_PROBE_PATHS",
    "JSON_FIELDS",
    "MESSAGE_PATTERNS",
    "MODEL_LABELS",
    "PARSED_BY_LOGSTASH",
    "PIPELINE_VERSION",
    "SCORING_INDEX_PATTERN",
    "SCORING_PIPELINE_ID",
    "TAG_BAD_TIMESTAMP",
    "TAG_HEALTH_PROBE",
    "TAG_PIPELINE_ERROR",
    "TAG_UNPARSED",
    "load_pattern_definitions",
    "scoring_mappings",
    "scoring_pipeline",
]

SCORING_PIPELINE_ID: str = "logs-mlops.scoring"
SCORING_INDEX_PATTERN: str = "logs-mlops.scoring-*"

#: Bump when the pipeline body or the mappings change; `shipper setup` compares it.
PIPELINE_VERSION: int = 1

#: Grok patterns tried, in order, on the whole line (``event.original``).
HEADER_PATTERNS: tuple[str, ...] = ("SCORING_AZML_LINE", "SCORING_GUNICORN_LINE", "SCORING_PYTHON_LINE")
#: Grok patterns tried, in order, on ``message`` (the header's message, or the whole line).
MESSAGE_PATTERNS: tuple[str, ...] = (
    "SCORING_AZML_REQUEST",
    "SCORING_GUNICORN_ACCESS",
    "SCORING_METRIC",
    "SCORING_KV_LIST",
    "SCORING_PY_WARNING",
    "SCORING_TRACEBACK_MESSAGE",
)

TAG_UNPARSED = "mlops_scoring_unparsed"
TAG_HEALTH_PROBE = "mlops_scoring_health_probe"
TAG_BAD_TIMESTAMP = "mlops_scoring_bad_timestamp"
TAG_PIPELINE_ERROR = "mlops_scoring_pipeline_error"
TAG_NON_FINITE = "mlops_scoring_metric_non_finite"

#: Value of ``mlops.scoring.parser`` that Logstash sets; with ``event.original`` it means "parsed".
PARSED_BY_LOGSTASH = "logstash"

#: Request paths counted as health probes (GET or HEAD), after removing one trailing slash.
HEALTH_PROBE_PATHS: tuple[str, ...] = (
    "/",
    "/health",
    "/healthz",
    "/healthcheck",
    "/live",
    "/livez",
    "/liveness",
    "/ready",
    "/readyz",
    "/readiness",
    "/ping",
)

#: Container / pod labels (as Filebeat names them: dots become underscores) -> ECS-style field.
#: The first label present wins; a value the log line itself carried (JSON) is never overwritten.
MODEL_LABELS: dict[str, tuple[str, ...]] = {
    "ml.model.name": (
        "container.labels.ml_model_name",
        "kubernetes.labels.ml_model_name",
        "container.labels.azureml_model_name",
        "kubernetes.labels.azureml_model_name",
    ),
    "ml.model.version": (
        "container.labels.ml_model_version",
        "kubernetes.labels.ml_model_version",
        "container.labels.azureml_model_version",
        "kubernetes.labels.azureml_model_version",
    ),
}

#: Fields taken from a JSON log line (dotted or nested keys); the rest go to ``mlops.scoring.extra``.
#: ``@timestamp`` is parsed as a date separately.
JSON_FIELDS: tuple[str, ...] = (
    "message",
    "log.level",
    "log.logger",
    "log.origin.file.name",
    "log.origin.file.line",
    "log.origin.function",
    "process.pid",
    "process.name",
    "process.thread.id",
    "process.thread.name",
    "error.type",
    "error.message",
    "error.stack_trace",
    "http.request.method",
    "http.response.status_code",
    "http.response.body.bytes",
    "url.original",
    "url.path",
    "url.query",
    "event.duration",
    "ml.model.name",
    "ml.model.version",
    "mlops.scoring.metric.name",
    "mlops.scoring.metric.value",
    "mlops.scoring.metric.unit",
    "trace.id",
    "transaction.id",
    "span.id",
    "service.name",
    "service.version",
)

_LEVELS = {
    "d": "debug",
    "i": "info",
    "w": "warning",
    "warn": "warning",
    "e": "error",
    "err": "error",
    "c": "critical",
    "f": "critical",
    "fatal": "critical",
}

_FIELD_REF = re.compile(r"%\{(?P<name>[A-Z0-9_]+):(?P<field>(?:\[[^\[\]{}:]+\])+)(?P<type>:[a-z]+)?\}")
_PATTERN_LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*) (?P<pattern>.+)$")


def _dotted(match: re.Match[str]) -> str:
    field = ".".join(re.findall(r"\[([^\[\]]+)\]", match["field"]))
    return "%{" + match["name"] + ":" + field + (match["type"] or "") + "}"


def parse_pattern_file(text: str) -> dict[str, str]:
    """Pattern name -> pattern, as written in a Logstash patterns file (comments and blanks skipped).

    Raises ValueError naming the line when a line is neither a comment nor ``NAME pattern``, or
    when a name is defined twice.
    """
    patterns: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PATTERN_LINE.match(line)
        if match is None:
            raise ValueError(f"patterns.grok line {number}: expected 'NAME pattern', got {line!r}")
        if match["name"] in patterns:
            raise ValueError(f"patterns.grok line {number}: {match['name']} is defined twice")
        patterns[match["name"]] = match["pattern"]
    return patterns


def to_ingest_pattern(pattern: str) -> str:
    """Rewrite Logstash field references ``%{X:[a][b]}`` to Elasticsearch's ``%{X:a.b}``."""
    return _FIELD_REF.sub(_dotted, pattern)


def pattern_file_text() -> str:
    """The canonical patterns file shipped in this package."""
    return resources.files(__package__).joinpath("patterns.grok").read_text(encoding="utf-8")


@cache
def _definitions() -> tuple[tuple[str, str], ...]:
    parsed = parse_pattern_file(pattern_file_text())
    return tuple((name, to_ingest_pattern(pattern)) for name, pattern in parsed.items())


def load_pattern_definitions() -> dict[str, str]:
    """``pattern_definitions`` for the ingest grok processor, built from ``patterns.grok``."""
    return dict(_definitions())


# --- pipeline building blocks -------------------------------------------------------------------

_NOT_PARSED = (
    f"!(ctx.event?.original != null && ctx.mlops instanceof Map && ctx.mlops.scoring instanceof Map "
    f"&& ctx.mlops.scoring.parser == '{PARSED_BY_LOGSTASH}')"
)


def _guard(processor: dict[str, Any]) -> dict[str, Any]:
    """Make a processor skip events that Logstash already parsed."""
    ((kind, options),) = processor.items()
    condition = options.get("if")
    guarded = dict(options)
    guarded["if"] = _NOT_PARSED if condition is None else f"{_NOT_PARSED} && ({condition})"
    return {kind: guarded}


def _p(kind: str, tag: str, **options: Any) -> dict[str, Any]:
    options["tag"] = tag
    return {kind: options}


def _append_error(tag: str) -> list[dict[str, Any]]:
    return [
        {
            "append": {
                "field": "error.message",
                "value": (
                    "{{{ _ingest.on_failure_processor_type }}} processor "
                    "'{{{ _ingest.on_failure_processor_tag }}}' failed: {{{ _ingest.on_failure_message }}}"
                ),
            }
        },
        {"append": {"field": "tags", "value": [tag], "allow_duplicates": False}},
    ]


def _json_processors() -> list[dict[str, Any]]:
    is_json = "ctx.event?.original instanceof String && ctx.event.original.startsWith('{')"
    processors: list[dict[str, Any]] = [
        _p(
            "json",
            "decode_json_line",
            field="event.original",
            target_field="_tmp.json",
            **{"if": is_json},
            on_failure=[{"remove": {"field": "_tmp.json", "ignore_missing": True}}],
        ),
        _p(
            "dot_expander",
            "expand_json_keys",
            field="*",
            path="_tmp.json",
            **{"if": "ctx._tmp?.json instanceof Map"},
        ),
        _p(
            "rename",
            "json_timestamp",
            field="_tmp.json.@timestamp",
            target_field="_tmp.json_timestamp",
            ignore_missing=True,
            **{"if": "ctx._tmp?.json instanceof Map"},
        ),
    ]
    for field in JSON_FIELDS:
        processors.append(
            _p(
                "rename",
                f"json_{field}",
                field=f"_tmp.json.{field}",
                target_field=field,
                ignore_missing=True,
                override=True,
                **{"if": "ctx._tmp?.json instanceof Map"},
            )
        )
    processors.append(
        _p(
            "script",
            "json_extra",
            lang="painless",
            **{"if": "ctx._tmp?.json instanceof Map"},
            source=(
                "boolean prune(Map m) { m.values().removeIf(v -> v instanceof Map && prune((Map) v)); "
                "return m.isEmpty(); } "
                "if (!prune(ctx._tmp.json)) { "
                "if (ctx.mlops == null) { ctx.mlops = new HashMap(); } "
                "if (ctx.mlops.scoring == null) { ctx.mlops.scoring = new HashMap(); } "
                "ctx.mlops.scoring.extra = ctx._tmp.json; }"
            ),
        )
    )
    return processors


def _model_label_processors() -> list[dict[str, Any]]:
    processors: list[dict[str, Any]] = []
    for target, sources in MODEL_LABELS.items():
        for source in sources:
            condition = "ctx." + source.replace(".", "?.") + " != null"
            processors.append(
                _p(
                    "set",
                    f"label_{source}",
                    field=target,
                    copy_from=source,
                    override=False,
                    **{"if": condition},
                )
            )
    return processors


_LEVEL_SCRIPT = (
    "def l = ctx.log?.level; if (l instanceof String) { "
    "String k = l.trim().toLowerCase(Locale.ROOT); "
    "ctx.log.level = params.levels.getOrDefault(k, k); }"
)

_CATEGORISE_SCRIPT = """
if (ctx.event == null) { ctx.event = new HashMap(); }
def status = ctx.http?.response?.status_code;
if (status != null) {
  ctx.event.category = ['web'];
  ctx.event.type = ['access'];
  ctx.event.outcome = status >= 400 ? 'failure' : 'success';
  def method = ctx.http?.request?.method;
  def path = ctx.url?.path;
  if (path instanceof String) {
    String p = path.length() > 1 && path.endsWith('/') ? path.substring(0, path.length() - 1) : path;
    if ((method == 'GET' || method == 'HEAD') && params.health.contains(p)) {
      if (ctx.tags == null) { ctx.tags = []; }
      if (!ctx.tags.contains(params.health_tag)) { ctx.tags.add(params.health_tag); }
      ctx.mlops.scoring.request = ['kind': 'health'];
    } else if (p == '/score') {
      ctx.mlops.scoring.request = ['kind': 'score'];
    } else {
      ctx.mlops.scoring.request = ['kind': 'other'];
    }
  }
}
if (ctx.error?.type != null) {
  if (ctx.log == null) { ctx.log = new HashMap(); }
  if (ctx.log.level == null) { ctx.log.level = 'error'; }
}
if (ctx.mlops.scoring.warning?.category != null) {
  if (ctx.log == null) { ctx.log = new HashMap(); }
  if (ctx.log.level == null) { ctx.log.level = 'warning'; }
}
def level = ctx.log?.level;
if (level == 'error' || level == 'critical') {
  ctx.event.type = ctx.event.type == null ? ['error'] : ctx.event.type;
  if (!ctx.event.type.contains('error')) { ctx.event.type.add('error'); }
}
if (ctx.mlops.scoring.metric?.name != null) {
  ctx.event.kind = 'metric';
  if (ctx.mlops.scoring.metric.non_finite != null) {
    if (ctx.tags == null) { ctx.tags = []; }
    if (!ctx.tags.contains(params.non_finite_tag)) { ctx.tags.add(params.non_finite_tag); }
  }
}
"""

#: Loggers of the inference server and gunicorn: their "Name: 7" messages are not metrics.
_SERVER_LOGGER = (
    "ctx.log?.logger instanceof String && (ctx.log.logger.startsWith('gunicorn') || "
    "(ctx.log.logger.startsWith('azmlinfsrv') && ctx.log.logger != 'azmlinfsrv.print'))"
)

_DURATION_SCRIPT = (
    "if (ctx.event == null) { ctx.event = new HashMap(); } "
    "ctx.event.duration = Math.round(Double.parseDouble(ctx._tmp.duration_ms.toString()) * 1000000.0d);"
)


def _processors() -> list[dict[str, Any]]:
    header = list(HEADER_PATTERNS)
    body = list(MESSAGE_PATTERNS)
    definitions = load_pattern_definitions()
    not_json = "!(ctx._tmp?.json instanceof Map)"
    processors: list[dict[str, Any]] = [
        _p("set", "event_ingested", field="event.ingested", value="{{{_ingest.timestamp}}}"),
        # keep the raw line: Filebeat sends it in `message`
        _p(
            "rename",
            "keep_original",
            field="message",
            target_field="event.original",
            ignore_missing=True,
            **{"if": "ctx.event?.original == null"},
        ),
        _p(
            "remove",
            "drop_stale_message",
            field="message",
            ignore_missing=True,
            **{"if": "ctx.event?.original != null"},
        ),
        _p("set", "event_kind", field="event.kind", value="event"),
        _p("set", "event_dataset", field="event.dataset", value="mlops.scoring"),
        _p("set", "parser", field="mlops.scoring.parser", value="ingest"),
        *_json_processors(),
        _p(
            "grok",
            "grok_header",
            field="event.original",
            patterns=[f"%{{{name}}}" for name in header],
            pattern_definitions=definitions,
            ecs_compatibility="v1",
            **{"if": f"{not_json} && ctx.event?.original instanceof String"},
            on_failure=[
                {"set": {"field": "message", "copy_from": "event.original"}},
                {"set": {"field": "_tmp.headerless", "value": True}},
            ],
        ),
        _p(
            "grok",
            "grok_message",
            field="message",
            patterns=[f"%{{{name}}}" for name in body],
            pattern_definitions=definitions,
            ecs_compatibility="v1",
            **{
                "if": (
                    "ctx.message instanceof String && ctx.mlops.scoring.metric?.name == null "
                    "&& ctx.http?.request?.method == null"
                )
            },
            on_failure=[
                {
                    "append": {
                        "field": "tags",
                        "value": [TAG_UNPARSED],
                        "allow_duplicates": False,
                        "if": "ctx._tmp?.headerless == true",
                    }
                }
            ],
        ),
        _p(
            "script",
            "gunicorn_error_log",
            lang="painless",
            source="if (ctx.log == null) { ctx.log = new HashMap(); } "
            "ctx.log.level = ctx._tmp.gunicorn_level; ctx.log.logger = 'gunicorn.error';",
            **{"if": "ctx._tmp?.gunicorn_level != null"},
        ),
        # metrics are what the scoring script prints, never the server's own messages
        _p(
            "remove",
            "no_server_metrics",
            field="mlops.scoring.metric",
            ignore_missing=True,
            **{"if": _SERVER_LOGGER},
        ),
        _p(
            "kv",
            "split_key_values",
            field="_tmp.kv",
            target_field="mlops.scoring.kv",
            field_split=r",\s*|\s+",
            value_split="=",
            strip_brackets=True,
            ignore_missing=True,
        ),
        # convert
        _p("convert", "pid_long", field="process.pid", type="long", ignore_missing=True),
        _p("convert", "status_long", field="http.response.status_code", type="long", ignore_missing=True),
        _p("convert", "bytes_long", field="http.response.body.bytes", type="long", ignore_missing=True),
        _p("convert", "line_long", field="log.origin.file.line", type="long", ignore_missing=True),
        _p(
            "convert",
            "metric_double",
            field="mlops.scoring.metric.value",
            type="double",
            ignore_missing=True,
        ),
        _p(
            "script",
            "duration_ns",
            lang="painless",
            source=_DURATION_SCRIPT,
            **{"if": "ctx._tmp?.duration_ms != null"},
        ),
        # date (the server logs UTC)
        _p(
            "date",
            "date_header",
            field="_tmp.timestamp",
            target_field="@timestamp",
            formats=[
                "yyyy-MM-dd HH:mm:ss,SSS",
                "yyyy-MM-dd HH:mm:ss.SSS",
                "yyyy-MM-dd HH:mm:ss Z",
                "yyyy-MM-dd HH:mm:ss",
            ],
            timezone="UTC",
            **{"if": "ctx._tmp?.timestamp != null"},
            on_failure=_append_error(TAG_BAD_TIMESTAMP),
        ),
        _p(
            "date",
            "date_access",
            field="_tmp.access_time",
            target_field="@timestamp",
            formats=["dd/MMM/yyyy:HH:mm:ss Z"],
            timezone="UTC",
            **{"if": "ctx._tmp?.timestamp == null && ctx._tmp?.access_time != null"},
            on_failure=_append_error(TAG_BAD_TIMESTAMP),
        ),
        _p(
            "date",
            "date_json",
            field="_tmp.json_timestamp",
            target_field="@timestamp",
            formats=["ISO8601", "yyyy-MM-dd HH:mm:ss,SSS", "UNIX"],
            timezone="UTC",
            **{"if": "ctx._tmp?.json_timestamp != null"},
            on_failure=_append_error(TAG_BAD_TIMESTAMP),
        ),
        # categorise
        _p("script", "log_level", lang="painless", source=_LEVEL_SCRIPT, params={"levels": _LEVELS}),
        _p(
            "script",
            "categorise",
            lang="painless",
            source=_CATEGORISE_SCRIPT.strip(),
            params={
                "health": list(HEALTH_PROBE_PATHS),
                "health_tag": TAG_HEALTH_PROBE,
                "non_finite_tag": TAG_NON_FINITE,
            },
        ),
        *_model_label_processors(),
        _p("remove", "drop_tmp", field="_tmp", ignore_missing=True),
    ]
    # event.ingested is set on every event; everything after it skips what Logstash parsed
    return [processors[0], *(_guard(processor) for processor in processors[1:])]


def scoring_pipeline() -> dict[str, Any]:
    """Full body for ``PUT _ingest/pipeline/logs-mlops.scoring``."""
    return {
        "description": (
            "Parses scoring-script logs (Azure ML inference server, gunicorn, Python logging, JSON, "
            "printed metrics, tracebacks) into ECS and mlops.scoring.* fields. Events already parsed "
            "by Logstash pass through unchanged."
        ),
        "version": PIPELINE_VERSION,
        "_meta": {"managed_by": "shipper", "version": PIPELINE_VERSION},
        "processors": _processors(),
        "on_failure": [
            {"set": {"field": "event.kind", "value": "pipeline_error"}},
            *_append_error(TAG_PIPELINE_ERROR),
            {"remove": {"field": "_tmp", "ignore_missing": True}},
        ],
    }


def _kw(ignore_above: int = 1024) -> dict[str, Any]:
    return {"type": "keyword", "ignore_above": ignore_above}


def _obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"properties": properties}


def scoring_mappings() -> dict[str, Any]:
    """``mappings`` body for the component template of ``logs-mlops.scoring-*``."""
    return {
        "_meta": {"managed_by": "shipper", "version": PIPELINE_VERSION},
        "dynamic_templates": [
            {
                "strings_as_keyword": {
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword", "ignore_above": 1024},
                }
            }
        ],
        "properties": {
            "@timestamp": {"type": "date"},
            "message": {"type": "text"},
            "tags": _kw(),
            "data_stream": _obj(type=_kw(), dataset=_kw(), namespace=_kw()),
            "event": _obj(
                original={"type": "keyword", "index": False, "doc_values": False},
                ingested={"type": "date"},
                duration={"type": "long"},
                kind=_kw(),
                category=_kw(),
                type=_kw(),
                outcome=_kw(),
                dataset=_kw(),
            ),
            "log": _obj(
                level=_kw(),
                logger=_kw(),
                origin=_obj(
                    file=_obj(name=_kw(), line={"type": "long"}),
                    function=_kw(),
                ),
                file=_obj(path=_kw()),
                offset={"type": "long"},
            ),
            "process": _obj(
                pid={"type": "long"},
                name=_kw(),
                thread=_obj(id={"type": "long"}, name=_kw()),
            ),
            "error": _obj(
                type=_kw(),
                message={"type": "text"},
                stack_trace={"type": "text", "fields": {"keyword": _kw(8191)}},
            ),
            "http": _obj(
                version=_kw(),
                request=_obj(method=_kw(), referrer=_kw()),
                response=_obj(status_code={"type": "long"}, body=_obj(bytes={"type": "long"})),
            ),
            "url": _obj(original=_kw(8191), path=_kw(8191), query=_kw(8191)),
            "source": _obj(address=_kw(), ip={"type": "ip"}),
            "user": _obj(name=_kw()),
            "user_agent": _obj(original=_kw()),
            "trace": _obj(id=_kw()),
            "transaction": _obj(id=_kw()),
            "span": _obj(id=_kw()),
            "service": _obj(name=_kw(), version=_kw()),
            "container": _obj(id=_kw(), name=_kw(), image=_obj(name=_kw())),
            "kubernetes": _obj(
                namespace=_kw(),
                pod=_obj(name=_kw(), uid=_kw()),
                container=_obj(name=_kw()),
            ),
            "ml": _obj(model=_obj(name=_kw(), version=_kw())),
            "mlops": _obj(
                scoring=_obj(
                    parser=_kw(),
                    metric=_obj(
                        name=_kw(),
                        value={"type": "double"},
                        unit=_kw(),
                        non_finite=_kw(),
                    ),
                    request=_obj(kind=_kw()),
                    warning=_obj(category=_kw()),
                    kv={"type": "flattened"},
                    extra={"type": "flattened"},
                )
            ),
        },
    }
