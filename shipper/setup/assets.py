"""Definitions of every Elasticsearch asset the shipper manages.

Each family gets `<family>@mappings` and `<family>@settings` component templates that the shipper
owns and upgrades, plus an empty `<family>@custom` one that users own: the shipper creates it once
and never touches it again. Composable index templates tie them together.

Mappings are guarded against explosion: params, tags, metric keys and Azure ML properties are
user-defined and unbounded, so they live in `subobjects: false` objects (a tag `a` and a tag `a.b`
cannot clash), strings are keywords capped by `ignore_above`, and fields past the limit are
ignored instead of rejecting the document (`ignore_dynamic_beyond_limit`).

Bump ASSET_VERSION whenever any definition here changes: `shipper setup` replaces assets whose
stored version is older.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shipper.core import names

ASSET_VERSION = 6
MANAGED_BY = "shipper"

Kind = Literal["component_template", "index_template", "ingest_pipeline", "ilm_policy"]


@dataclass(frozen=True)
class Asset:
    kind: Kind
    name: str
    body: dict[str, Any]
    # User-owned assets are created when missing and never changed afterwards.
    user_owned: bool = False
    requires_ilm: bool = False
    # For `@mappings` templates: existing indices (patterns) that get the new mappings too, since a
    # template only shapes indices created after it.
    applies_to: tuple[str, ...] = ()


def _meta(description: str) -> dict[str, Any]:
    return {"managed_by": MANAGED_BY, "managed": True, "description": description}


KEYWORD = {"type": "keyword", "ignore_above": 1024}
DATE = {"type": "date"}
LONG = {"type": "long"}
DOUBLE = {"type": "double"}


def _obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"properties": properties}


def _free_form() -> dict[str, Any]:
    """An object of user-defined keys whose dots are part of the name, not nesting; the value
    types come from DYNAMIC_TEMPLATES."""
    return {"type": "object", "subobjects": False, "dynamic": True}


DYNAMIC_TEMPLATES: list[dict[str, Any]] = [
    {"params": {"path_match": "mlflow.params.*", "mapping": KEYWORD}},
    {"tags": {"path_match": ["mlflow.tags.*", "ml.model.tags.*"], "mapping": KEYWORD}},
    {"metrics": {"path_match": "mlflow.metrics.*", "mapping": DOUBLE}},
    {"metrics_nonfinite": {"path_match": "mlflow.metrics_nonfinite.*", "mapping": KEYWORD}},
    # MLflow 3: final metrics of a logged model per evaluation dataset, `<dataset>.<key>`
    # (objects excluded: `<dataset>` itself is flattened away, not a field)
    {
        "dataset_metrics": {
            "path_match": "mlflow.datasets.*",
            "match_mapping_type": ["double", "long"],
            "mapping": DOUBLE,
        }
    },
    {
        "dataset_metrics_nonfinite": {
            "path_match": "mlflow.datasets_nonfinite.*",
            "match_mapping_type": "string",
            "mapping": KEYWORD,
        }
    },
    {"strings_as_keywords": {"match_mapping_type": "string", "mapping": KEYWORD}},
]

MODEL_FIELDS = _obj(
    name=KEYWORD,
    version=KEYWORD,
    # Registries use strings for versions; this numeric twin sorts 10 after 9.
    version_number=LONG,
    aliases=KEYWORD,
    stage=KEYWORD,
    status=KEYWORD,
    kind=KEYWORD,
    ref=KEYWORD,
    type=KEYWORD,
    id=KEYWORD,
    # MLflow 3: the logged model (metric points, registered versions, the logged model itself)
    logged_id=KEYWORD,
    logged_name=KEYWORD,
    source=KEYWORD,
    description={"type": "text"},
    last_updated=DATE,
    tags=_free_form(),
)

EXPERIMENT_FIELDS = _obj(id=KEYWORD, name=KEYWORD)

# MLflow 3: the evaluation dataset of a logged model's metric point (on model documents, the
# datasets its metrics were logged for), and a run's inputs.
DATASET_FIELDS = _obj(name=KEYWORD, digest=KEYWORD)


def _inputs(profile: bool) -> dict[str, Any]:
    dataset = {"name": KEYWORD, "digest": KEYWORD, "source_type": KEYWORD, "context": KEYWORD}
    if profile:
        dataset["profile"] = {"type": "keyword", "index": False, "doc_values": False}
    return _obj(datasets=_obj(**dataset), model_ids=KEYWORD)


# Azure ML: what events and run documents share under `azureml.*` (see
# shipper.transforms.azureml_events); tags and properties are user-defined, hence free-form.
AZUREML_JOB_FIELDS = _obj(
    name=KEYWORD,
    display_name=KEYWORD,
    type=KEYWORD,
    status=KEYWORD,
    experiment_name=KEYWORD,
    description={"type": "text"},
    compute=KEYWORD,
    compute_id=KEYWORD,
    compute_type=KEYWORD,
    environment=KEYWORD,
    image=KEYWORD,
    command={"type": "text", "fields": {"keyword": KEYWORD}},
    parent_run_id=KEYWORD,
    step_count=LONG,
    start_time=DATE,
    end_time=DATE,
    duration_ms=LONG,
    created_at=DATE,
    created_by=KEYWORD,
    studio_url={"type": "keyword", "index": False},
    tags=_free_form(),
)
AZUREML_COMMON = {
    "workspace": _obj(name=KEYWORD, id=KEYWORD),
    "subscription_id": KEYWORD,
    "resource_group": KEYWORD,
    "run": _obj(
        id=KEYWORD,
        status=KEYWORD,
        type=KEYWORD,
        status_time=DATE,
        tags=_free_form(),
        properties=_free_form(),
    ),
    "experiment": _obj(name=KEYWORD, id=KEYWORD),
    "pipeline": _obj(run_id=KEYWORD, role=KEYWORD),
    "job": AZUREML_JOB_FIELDS,
    "enrichment": _obj(status=KEYWORD, time=DATE, attempts=LONG, error={"type": "text"}),
}
AZUREML_EVENT_FIELDS: dict[str, Any] = {
    "dynamic": True,
    "properties": AZUREML_COMMON
    | {
        "event_type": KEYWORD,
        "schema": KEYWORD,
        "topic": KEYWORD,
        "subject": KEYWORD,
        "time_source": KEYWORD,
        "model": _obj(properties=_free_form()),
        "deployment": _obj(
            name=KEYWORD,
            compute_type=KEYWORD,
            model_ids=KEYWORD,
            tags=_free_form(),
            properties=_free_form(),
        ),
        "drift": _obj(
            id=KEYWORD,
            name=KEYWORD,
            base_dataset_id=KEYWORD,
            target_dataset_id=KEYWORD,
            coefficient=DOUBLE,
            start_time=DATE,
            end_time=DATE,
        ),
    },
}
AZUREML_RUN_FIELDS: dict[str, Any] = {
    "dynamic": True,
    "properties": AZUREML_COMMON
    | {
        "source": KEYWORD,
        "reconciled_at": DATE,
        "last_event": _obj(id=KEYWORD, action=KEYWORD, time=DATE),
    },
}

COMMON_SETTINGS: dict[str, Any] = {
    "index": {
        "number_of_shards": 1,
        "auto_expand_replicas": "0-1",
        "mapping": {
            "total_fields": {"limit": 3000, "ignore_dynamic_beyond_limit": True},
            "ignore_malformed": True,
        },
    }
}

FAMILY_MAPPINGS: dict[str, dict[str, Any]] = {
    names.METRICS_FAMILY: {
        "dynamic": True,
        "date_detection": False,
        "dynamic_templates": DYNAMIC_TEMPLATES,
        "properties": {
            "@timestamp": DATE,
            "event": _obj(ingested=DATE, kind=KEYWORD),
            "mlflow": _obj(
                experiment=EXPERIMENT_FIELDS,
                run=_obj(id=KEYWORD, name=KEYWORD),
                metric=_obj(
                    key=KEYWORD,
                    value=DOUBLE,
                    step=LONG,
                    # NaN and ±Infinity: `value` is absent, this says which one it was.
                    value_nonfinite=KEYWORD,
                    # `logged_model` for points read from an MLflow 3 logged model
                    origin=KEYWORD,
                ),
                dataset=DATASET_FIELDS,
                inputs=_inputs(profile=False),
            ),
            "ml": _obj(model=MODEL_FIELDS),
        },
    },
    names.RUNS_INDEX: {
        "dynamic": True,
        "date_detection": False,
        "dynamic_templates": DYNAMIC_TEMPLATES,
        "properties": {
            "@timestamp": DATE,
            "event": _obj(ingested=DATE, duration=LONG),
            "user": _obj(name=KEYWORD),
            "mlflow": _obj(
                experiment=EXPERIMENT_FIELDS,
                run=_obj(
                    id=KEYWORD,
                    name=KEYWORD,
                    status=KEYWORD,
                    user=KEYWORD,
                    start_time=DATE,
                    end_time=DATE,
                    duration_ms=LONG,
                    lifecycle_stage=KEYWORD,
                    artifact_uri={"type": "keyword", "index": False},
                    updated_at=DATE,
                ),
                params=_free_form(),
                tags=_free_form(),
                metrics=_free_form(),
                metrics_nonfinite=_free_form(),
                inputs=_inputs(profile=True),
            ),
            "ml": _obj(model=MODEL_FIELDS),
            "azureml": AZUREML_RUN_FIELDS,
            # Which source wrote which part of the entity, and how new its view was.
            "mlops": _obj(versions={"type": "object", "enabled": False}),
        },
    },
    names.MODELS_INDEX: {
        "dynamic": True,
        "date_detection": False,
        "dynamic_templates": DYNAMIC_TEMPLATES,
        "properties": {
            "@timestamp": DATE,
            "event": _obj(ingested=DATE),
            "user": _obj(name=KEYWORD),
            "mlflow": _obj(
                experiment=EXPERIMENT_FIELDS,
                run=_obj(id=KEYWORD, name=KEYWORD),
                # the keys of `metrics` and `metrics_nonfinite`, for filtering by metric
                metric=_obj(key=KEYWORD),
                metrics=_free_form(),
                metrics_nonfinite=_free_form(),
                dataset=DATASET_FIELDS,
                datasets=_free_form(),
                datasets_nonfinite=_free_form(),
            ),
            "ml": _obj(model=MODEL_FIELDS),
            "mlops": _obj(versions={"type": "object", "enabled": False}),
        },
    },
    names.EVENTS_FAMILY: {
        "dynamic": True,
        "date_detection": False,
        "dynamic_templates": DYNAMIC_TEMPLATES,
        "properties": {
            "@timestamp": DATE,
            "event": _obj(
                id=KEYWORD,
                action=KEYWORD,
                kind=KEYWORD,
                ingested=DATE,
                created=DATE,
                dataset=KEYWORD,
                module=KEYWORD,
                provider=KEYWORD,
                outcome=KEYWORD,
            ),
            "error": _obj(message={"type": "text"}, type=KEYWORD),
            "azureml": AZUREML_EVENT_FIELDS,
            "ml": _obj(model=MODEL_FIELDS),
            "mlops": _obj(raw={"type": "object", "enabled": False}),
        },
    },
    names.DEAD_LETTER_INDEX: {
        "dynamic": False,
        "properties": {
            "@timestamp": DATE,
            "error": _obj(type=KEYWORD, message={"type": "text"}),
            "http": _obj(response=_obj(status_code=LONG)),
            "mlops": _obj(
                dead_letter=_obj(
                    index=KEYWORD,
                    id=KEYWORD,
                    operation=KEYWORD,
                    source=KEYWORD,
                    original={"type": "text", "index": False},
                    content_type=KEYWORD,
                    bytes=LONG,
                    truncated={"type": "boolean"},
                )
            ),
        },
    },
    names.STATE_INDEX: {
        "dynamic": False,
        "properties": {
            "kind": KEYWORD,
            "updated_at": DATE,
            "state": {"type": "object", "enabled": False},
        },
    },
}

# family -> (index patterns, partitioned by month?, retention by the shipper's ILM policy?)
FAMILIES: dict[str, tuple[list[str], bool]] = {
    names.METRICS_FAMILY: ([f"{names.METRICS_FAMILY}-*"], True),
    names.EVENTS_FAMILY: ([f"{names.EVENTS_FAMILY}-*"], True),
    names.RUNS_INDEX: ([names.RUNS_INDEX], False),
    names.MODELS_INDEX: ([names.MODELS_INDEX], False),
    names.DEAD_LETTER_INDEX: ([names.DEAD_LETTER_INDEX], False),
    names.STATE_INDEX: ([names.STATE_INDEX], False),
}

# Templates of ours must win over Elasticsearch's built-ins (priority 100 for logs-*-*).
TEMPLATE_PRIORITY = 300


def ilm_policy_name(family: str) -> str:
    return family


def build_assets(
    retention_days: int,
    logs_retention_days: int,
    has_ilm: bool,
    scoring: Any = None,
    ingest: bool = True,
) -> list[Asset]:
    """All assets, in install order (dependencies first).

    The shipper's own documents need no ingest pipeline (it writes them complete, and `event.ingested`
    on entities itself), so they index on any cluster, including ones without ingest processors.
    `scoring` is the scoring-log module (None: no scoring assets at all). Its data stream (templates,
    mappings, lifecycle) is installed everywhere; only its ingest pipelines and the template's
    `default_pipeline` need `ingest`, a cluster that can run them."""
    assets: list[Asset] = []
    for family, (patterns, partitioned) in FAMILIES.items():
        settings: dict[str, Any] = {"index": dict(COMMON_SETTINGS["index"])}
        if partitioned and has_ilm:
            assets.append(_ilm_policy(family, {"hot": {"min_age": "0ms", "actions": {}}}, retention_days))
            settings["index"]["lifecycle"] = {"name": ilm_policy_name(family)}
        assets += _family_templates(family, patterns, {"settings": settings}, FAMILY_MAPPINGS[family])
    if scoring is not None:
        assets += scoring_assets(scoring, logs_retention_days, has_ilm, ingest)
    return assets


def _ilm_policy(name: str, hot: dict[str, Any], delete_after_days: int) -> Asset:
    return Asset(
        "ilm_policy",
        name,
        {
            "_meta": _meta(f"retention of {name}") | {"version": ASSET_VERSION},
            "phases": hot | {"delete": {"min_age": f"{delete_after_days}d", "actions": {"delete": {}}}},
        },
        requires_ilm=True,
    )


def _family_templates(
    family: str,
    patterns: list[str],
    settings_template: dict[str, Any],
    mappings: dict[str, Any],
    data_stream: bool = False,
) -> list[Asset]:
    """`<family>@settings`, `@mappings` (ours), `@custom` (the user's) and the index template."""
    index_template: dict[str, Any] = {
        "version": ASSET_VERSION,
        "_meta": _meta(f"{family} documents"),
        "index_patterns": patterns,
        "priority": TEMPLATE_PRIORITY,
        "composed_of": [f"{family}@settings", f"{family}@mappings", f"{family}@custom"],
        "ignore_missing_component_templates": [f"{family}@custom"],
    }
    if data_stream:
        index_template["data_stream"] = {}
    return [
        Asset(
            "component_template",
            f"{family}@settings",
            {
                "version": ASSET_VERSION,
                "_meta": _meta(f"settings of {family}"),
                "template": settings_template,
            },
        ),
        Asset(
            "component_template",
            f"{family}@mappings",
            {
                "version": ASSET_VERSION,
                "_meta": _meta(f"mappings of {family}"),
                "template": {"mappings": mappings},
            },
            applies_to=tuple(patterns),
        ),
        Asset(
            "component_template",
            f"{family}@custom",
            {
                "_meta": {
                    "description": f"Yours: settings and mappings added to {family}; "
                    "the shipper never changes it."
                },
                "template": {},
            },
            user_owned=True,
        ),
        Asset("index_template", family, index_template),
    ]


def scoring_assets(scoring: Any, logs_retention_days: int, has_ilm: bool, ingest: bool = True) -> list[Asset]:
    """The scoring-log data stream. Where the cluster can run ingest pipelines, the scoring pipeline
    is its default pipeline, so Filebeat can write straight to Elasticsearch (lines Logstash parsed
    pass through it unchanged). Elsewhere the data stream is the same, without a default pipeline:
    Logstash parses and writes into it."""
    family = "logs-mlops.scoring"
    assets: list[Asset] = []
    index_settings: dict[str, Any] = {
        "mapping": {"total_fields": {"limit": 2000, "ignore_dynamic_beyond_limit": True}}
    }
    if ingest:
        for name, body in scoring.scoring_pipelines().items():
            if name == scoring.CUSTOM_PIPELINE_ID:
                assets.append(Asset("ingest_pipeline", name, body, user_owned=True))
                continue
            assets.append(
                Asset(
                    "ingest_pipeline",
                    name,
                    {"version": ASSET_VERSION, "_meta": _meta(f"scoring logs: {name}")} | body,
                )
            )
        index_settings = {"default_pipeline": scoring.SCORING_PIPELINE_ID} | index_settings
    template: dict[str, Any] = {"settings": {"index": index_settings}}
    if has_ilm:
        rollover = {"rollover": {"max_age": "30d", "max_primary_shard_size": "50gb"}}
        assets.append(
            _ilm_policy(family, {"hot": {"min_age": "0ms", "actions": rollover}}, logs_retention_days)
        )
        template["settings"]["index"]["lifecycle"] = {"name": family}
    else:
        # Without ILM the data stream lifecycle (part of the free distribution) keeps retention.
        template["lifecycle"] = {"data_retention": f"{logs_retention_days}d"}
    assets += _family_templates(
        family, [scoring.SCORING_INDEX_PATTERN], template, scoring.scoring_mappings(), data_stream=True
    )
    return assets
