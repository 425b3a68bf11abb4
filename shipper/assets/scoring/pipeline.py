"""The Elasticsearch side of the scoring-log path: ingest pipelines and mappings.

Filebeat can write scoring-script logs straight to Elasticsearch; `shipper setup` then installs
three pipelines and makes ``logs-mlops.scoring`` the default pipeline of the
``logs-mlops.scoring-*`` data streams, whose component template carries :func:`scoring_mappings`:

- ``logs-mlops.scoring`` (``ingest_pipeline/default.yml``): sets ``event.ingested``, calls the
  parser unless Logstash parsed the event already, then calls the user's pipeline;
- ``logs-mlops.scoring@parse`` (``ingest_pipeline/parse.yml``): the parsing;
- ``logs-mlops.scoring@custom``: empty, created once, the user's (like the ``@custom`` templates).

The pipelines are declarative data (YAML beside this module, as elastic/integrations keeps its
``ingest_pipeline/default.yml``); this module only loads them and fills each grok processor's
``pattern_definitions`` from ``patterns.grok``, the one pattern file, which Logstash reads verbatim
(``logstash/patterns/mlops_scoring`` is a byte-identical copy). Logstash field references
(``[url][path]``) become Elasticsearch's dotted paths (``url.path``); nothing else changes.

They use only processors and options that both Elasticsearch 7.10 and 9.5 have, so they run on
the 7.10.2 node the tests execute them on and on the clusters the product supports.

Usage::

    from shipper.assets.scoring.pipeline import scoring_pipelines
    for name, body in scoring_pipelines().items():
        es.ingest.put_pipeline(id=name, **body)
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import yaml  # type: ignore[import-untyped]

__all__ = [
    "CUSTOM_PIPELINE_ID",
    "HEADER_PATTERNS",
    "HEALTH_PROBE_PATHS",
    "JSON_FIELDS",
    "MESSAGE_PATTERNS",
    "MODEL_LABELS",
    "PARSED_BY_LOGSTASH",
    "PARSE_PIPELINE_ID",
    "PIPELINE_VERSION",
    "SCORING_INDEX_PATTERN",
    "SCORING_PIPELINE_ID",
    "TAG_BAD_TIMESTAMP",
    "TAG_HEALTH_PROBE",
    "TAG_PIPELINE_ERROR",
    "TAG_UNPARSED",
    "custom_pipeline",
    "load_pattern_definitions",
    "parse_pipeline",
    "required_processors",
    "scoring_mappings",
    "scoring_pipeline",
    "scoring_pipelines",
]

SCORING_PIPELINE_ID: str = "logs-mlops.scoring"
#: The parsing itself, called by the default pipeline for events Logstash has not parsed.
PARSE_PIPELINE_ID: str = "logs-mlops.scoring@parse"
#: Yours: called last by the default pipeline; created empty once, never changed by the shipper.
CUSTOM_PIPELINE_ID: str = "logs-mlops.scoring@custom"
SCORING_INDEX_PATTERN: str = "logs-mlops.scoring-*"

#: Bump when the pipeline body or the mappings change; `shipper setup` compares it.
PIPELINE_VERSION: int = 1

TAG_UNPARSED = "mlops_scoring_unparsed"
TAG_HEALTH_PROBE = "mlops_scoring_health_probe"
TAG_BAD_TIMESTAMP = "mlops_scoring_bad_timestamp"
TAG_PIPELINE_ERROR = "mlops_scoring_pipeline_error"
TAG_NON_FINITE = "mlops_scoring_metric_non_finite"

#: Value of ``mlops.scoring.parser`` that Logstash sets; with ``event.original`` it means "parsed".
PARSED_BY_LOGSTASH = "logstash"

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


# --- the pipelines: declarative data in ingest_pipeline/*.yml -----------------------------------


@cache
def _pipeline_file(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("ingest_pipeline", f"{name}.yml").read_text(encoding="utf-8")
    body = yaml.safe_load(text)
    if not isinstance(body, dict) or not isinstance(body.get("processors"), list):
        raise ValueError(f"ingest_pipeline/{name}.yml: expected a mapping with a `processors` list")
    return body


def _with_pattern_definitions(node: Any, definitions: dict[str, str]) -> Any:
    """A deep copy of a pipeline body whose grok processors carry the shared pattern definitions."""
    if isinstance(node, list):
        return [_with_pattern_definitions(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _with_pattern_definitions(value, definitions) for key, value in node.items()}
    grok = out.get("grok")
    if isinstance(grok, dict) and len(out) == 1:
        out["grok"] = {**grok, "pattern_definitions": dict(definitions)}
    return out


def _body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = _with_pattern_definitions(_pipeline_file(name), load_pattern_definitions())
    return body


def _processor(pipeline: str, tag: str) -> dict[str, Any]:
    for processor in _pipeline_file(pipeline)["processors"]:
        ((_kind, options),) = processor.items()
        if options.get("tag") == tag:
            return dict(options)
    raise KeyError(f"ingest_pipeline/{pipeline}.yml has no processor tagged {tag!r}")


def scoring_pipeline() -> dict[str, Any]:
    """Body of the default pipeline ``logs-mlops.scoring`` (``shipper setup`` adds version and _meta)."""
    return _body("default")


def parse_pipeline() -> dict[str, Any]:
    """Body of ``logs-mlops.scoring@parse``, with the grok patterns of ``patterns.grok``."""
    return _body("parse")


def custom_pipeline() -> dict[str, Any]:
    """The empty ``logs-mlops.scoring@custom`` that ``shipper setup`` creates once; it is the user's."""
    return {
        "description": "Yours: processors run on every scoring-log event after the shipper's own; "
        "the shipper creates this pipeline once and never changes it.",
        "processors": [],
    }


def scoring_pipelines() -> dict[str, dict[str, Any]]:
    """Every pipeline of the scoring-log path, name -> body, called ones before their callers."""
    return {
        PARSE_PIPELINE_ID: parse_pipeline(),
        CUSTOM_PIPELINE_ID: custom_pipeline(),
        SCORING_PIPELINE_ID: scoring_pipeline(),
    }


def required_processors() -> set[str]:
    """Every processor type the scoring pipelines use, nested ones (on_failure) included."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("processors", "on_failure"):
                for processor in node.get(key) or []:
                    for kind, options in processor.items():
                        found.add(kind)
                        walk(options)

    for body in scoring_pipelines().values():
        walk(body)
    return found


def _tuple(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _grok_names(tag: str) -> tuple[str, ...]:
    return tuple(p.removeprefix("%{").removesuffix("}") for p in _processor("parse", tag)["patterns"])


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


#: Grok patterns tried, in order, on the whole line (``event.original``).
HEADER_PATTERNS: tuple[str, ...] = _grok_names("grok_header")
#: Grok patterns tried, in order, on ``message`` (the header's message, or the whole line).
MESSAGE_PATTERNS: tuple[str, ...] = _grok_names("grok_message")
#: Fields taken from a JSON log line (dotted or nested keys); the rest go to ``mlops.scoring.extra``.
JSON_FIELDS: tuple[str, ...] = _tuple(_processor("parse", "json_fields")["params"]["fields"])
#: Request paths counted as health probes (GET or HEAD), after removing one trailing slash.
HEALTH_PROBE_PATHS: tuple[str, ...] = _tuple(_processor("parse", "categorise")["params"]["health"])
#: Container / pod labels (as Filebeat names them: dots become underscores) -> ECS-style field.
#: The first label present wins; a value the log line itself carried (JSON) is never overwritten.
MODEL_LABELS: dict[str, tuple[str, ...]] = {
    target: _tuple(sources)
    for target, sources in _processor("parse", "model_labels")["params"]["labels"].items()
}
