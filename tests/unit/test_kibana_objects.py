"""The Kibana saved objects in kibana/: built copies current, sources canonical, and every object
passing the strict verifier (tests/support/kibana_verify.py), whose every rule is shown to catch a
broken fixture made from the real objects.

Kibana itself cannot run here: this is structural checking written from Kibana's rules; the panels'
queries are replayed on a real Elasticsearch in tests/integration/test_kibana_panels.py.
"""

from __future__ import annotations

import json
import runpy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import kql
from tests.support.kibana_verify import CORE_MIGRATION_VERSION, PINS, verify

REPO = Path(__file__).resolve().parents[2]
BUILD = runpy.run_path(str(REPO / "scripts" / "kibana_build.py"))
NDJSON = REPO / "kibana" / "mlops-saved-objects.ndjson"
PACKAGE_COPY = REPO / "shipper" / "assets" / "kibana" / "mlops-saved-objects.ndjson"

Objects = list[dict[str, Any]]


def built() -> Objects:
    return [json.loads(line) for line in NDJSON.read_text(encoding="utf-8").splitlines()]


def text(objects: Objects) -> str:
    return "\n".join(json.dumps(o) for o in objects) + "\n"


def find(objects: Objects, type_: str, id_: str) -> dict[str, Any]:
    return next(o for o in objects if o["type"] == type_ and o["id"] == id_)


# --- built copies and sources ------------------------------------------------------------------


def test_both_built_copies_equal_what_the_sources_build() -> None:
    expected = BUILD["build_text"]()
    for path in (NDJSON, PACKAGE_COPY):
        assert path.read_text(encoding="utf-8") == expected, (
            f"{path.relative_to(REPO)} differs from kibana/<type>/*.json: run scripts/kibana-build"
        )


def test_a_stale_copy_is_named_and_a_misplaced_source_refused(tmp_path: Path) -> None:
    good, stale = tmp_path / "good.ndjson", tmp_path / "stale.ndjson"
    good.write_text(BUILD["build_text"](), encoding="utf-8")
    stale.write_text(BUILD["build_text"]().replace('"mlops-models"', '"mlops-model"', 1), encoding="utf-8")
    assert BUILD["stale_outputs"](outputs=(good, stale, tmp_path / "missing.ndjson")) == [
        stale,
        tmp_path / "missing.ndjson",
    ]
    root = tmp_path / "kibana"
    (root / "lens").mkdir(parents=True)
    source = REPO / "kibana" / "lens" / "mlops-drift-events.json"
    (root / "lens" / "drift.json").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(BUILD["BuildError"], match=r"rename the file or fix the object"):
        BUILD["build_text"](root)


def test_sources_are_canonical_and_round_trip() -> None:
    for source in BUILD["load_sources"]():
        path = REPO / "kibana" / source["type"] / f"{source['id']}.json"
        assert path.read_text(encoding="utf-8") == BUILD["source_text"](source), (
            f"{path.relative_to(REPO)} is not in canonical form (2-space indent, keys sorted)"
        )
        assert BUILD["decode"](BUILD["encode"](source)) == source, path


def test_a_kibana_export_decodes_to_the_sources(tmp_path: Path) -> None:
    export = tmp_path / "export.ndjson"
    lines = []
    for obj in built():
        obj |= {"updated_at": "2026-11-30T10:00:00.000Z", "version": "WzEsMV0=", "namespaces": ["default"]}
        lines.append(json.dumps(obj))
    export.write_text("\n".join([*lines, '{"exportedCount": 33, "missingRefCount": 0}']) + "\n")
    root = tmp_path / "kibana"
    BUILD["write_decoded"](export, root)
    assert BUILD["build_text"](root) == NDJSON.read_text(encoding="utf-8")


def test_package_data_ships_the_ndjson() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "**/*.ndjson" in pyproject["tool"]["setuptools"]["package-data"]["shipper"]


def test_ids_are_stable_prefixed_and_versions_pinned() -> None:
    objects = built()
    assert {o["id"] for o in objects if o["type"] == "dashboard"} >= {
        "mlops-model-version-comparison",
        "mlops-training-runs",
        "mlops-scoring-service",
        "mlops-home-data-scientist",
        "mlops-home-engineer",
        "mlops-home-qa",
        "mlops-home-business-analyst",
    }
    for obj in objects:
        assert obj["id"].startswith("mlops-"), obj["id"]
        assert obj["coreMigrationVersion"] == CORE_MIGRATION_VERSION, obj["id"]
        assert obj["typeMigrationVersion"] == PINS[obj["type"]], obj["id"]


def test_readme_table_quotes_the_pins() -> None:
    readme = (REPO / "kibana" / "README.md").read_text(encoding="utf-8")
    for type_, version in PINS.items():
        assert f"| `{type_}` | `{version}` |" in readme, f"kibana/README.md does not pin {type_} at {version}"


# --- the verifier ------------------------------------------------------------------------------


def test_every_saved_object_passes_the_verifier() -> None:
    problems = verify(NDJSON.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(map(str, problems))


def _lens_column(objects: Objects, lens_id: str, column: str) -> dict[str, Any]:
    layers = find(objects, "lens", lens_id)["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
    return dict(next(iter(layers.values()))["columns"][column])


def _set_column(objects: Objects, lens_id: str, column: str, **changes: Any) -> None:
    layers = find(objects, "lens", lens_id)["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
    next(iter(layers.values()))["columns"][column].update(changes)


def _dashboard(objects: Objects, dashboard_id: str, key: str, change: Callable[[Any], Any]) -> None:
    attributes = find(objects, "dashboard", dashboard_id)["attributes"]
    holder, leaf = (attributes["controlGroupInput"], "panelsJSON") if key == "controls" else (attributes, key)
    holder[leaf] = json.dumps(change(json.loads(holder[leaf])))


def _panel(panels: list[dict[str, Any]], pid: str, **grid: int) -> list[dict[str, Any]]:
    next(p for p in panels if p["panelIndex"] == pid)["gridData"].update(grid)
    return panels


def _rename_ref(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    panels[1]["panelRefName"] = "panel_elsewhere"
    return panels


def _vega(objects: Objects, change: Callable[[dict[str, Any]], None]) -> None:
    obj = find(objects, "visualization", "mlops-versions-parallel-coordinates")
    vis = json.loads(obj["attributes"]["visState"])
    spec = json.loads(vis["params"]["spec"])
    change(spec)
    vis["params"]["spec"] = json.dumps(spec)
    obj["attributes"]["visState"] = json.dumps(vis)


def _xy_layer(objects: Objects, lens_id: str) -> dict[str, Any]:
    return dict(find(objects, "lens", lens_id)["attributes"]["state"]["visualization"]["layers"][0])


def _m_not_json(o: Objects) -> str:
    return text(o) + "{not json\n"


def _m_missing_version(o: Objects) -> None:
    del find(o, "lens", "mlops-model-version-table")["typeMigrationVersion"]


def _m_unknown_attribute(o: Objects) -> None:
    find(o, "visualization", "mlops-versions-parallel-coordinates")["attributes"]["savedSearchId"] = "x"


def _m_newer_type(o: Objects) -> None:
    find(o, "lens", "mlops-model-version-table")["typeMigrationVersion"] = "10.2.0"


def _m_newer_core(o: Objects) -> None:
    find(o, "dashboard", "mlops-scoring-service")["coreMigrationVersion"] = "9.5.0"


def _m_unknown_type(o: Objects) -> None:
    o.append(dict(find(o, "lens", "mlops-failed-runs"), type="lens-ui-telemetry", id="mlops-x"))


def _m_bad_json_string(o: Objects) -> None:
    attributes = find(o, "dashboard", "mlops-training-runs")["attributes"]
    attributes["panelsJSON"] = attributes["panelsJSON"][:-1]


def _m_object_not_string(o: Objects) -> None:
    attributes = find(o, "index-pattern", "mlops-runs")["attributes"]
    attributes["fieldFormatMap"] = json.loads(attributes["fieldFormatMap"])


def _m_dangling_reference(o: Objects) -> None:
    find(o, "lens", "mlops-recent-runs")["references"][0]["id"] = "mlops-runs-renamed"


def _m_missing_panel_object(o: Objects) -> None:
    o.remove(find(o, "lens", "mlops-drift-events"))


def _m_panel_ref_name(o: Objects) -> None:
    _dashboard(o, "mlops-training-runs", "panelsJSON", _rename_ref)


def _m_control_reference(o: Objects) -> None:
    find(o, "dashboard", "mlops-model-version-comparison")["references"] = [
        r
        for r in find(o, "dashboard", "mlops-model-version-comparison")["references"]
        if "control-model" not in r["name"]
    ]


def _m_layer_reference(o: Objects) -> None:
    find(o, "lens", "mlops-failed-runs")["references"][0]["name"] = (
        "indexpattern-datasource-current-indexpattern"
    )


def _m_unknown_field(o: Objects) -> None:
    _set_column(o, "mlops-model-version-table", "stage", sourceField="ml.model.stgae")


def _m_unknown_control_field(o: Objects) -> None:
    def change(controls: dict[str, Any]) -> dict[str, Any]:
        controls["control-model"]["explicitInput"]["fieldName"] = "ml.model.nmae"
        return controls

    _dashboard(o, "mlops-model-version-comparison", "controls", change)


def _m_unknown_query_field(o: Objects) -> None:
    find(o, "lens", "mlops-failed-runs")["attributes"]["state"]["query"]["query"] = (
        'mlflow.run.state : "FAILED"'
    )


def _m_text_field_terms(o: Objects) -> None:
    _set_column(o, "mlops-scoring-recent-errors", "type", sourceField="message")


def _m_not_aggregatable(o: Objects) -> None:
    _set_column(o, "mlops-scoring-recent-errors", "trace", sourceField="event.original")


def _m_histogram_on_keyword(o: Objects) -> None:
    _set_column(o, "mlops-run-status-over-time", "time", sourceField="mlflow.run.status")


def _m_percentile_on_keyword(o: Objects) -> None:
    _set_column(o, "mlops-scoring-latency-percentiles", "p50", sourceField="log.level")


def _m_x_accessor(o: Objects) -> None:
    layer = find(o, "lens", "mlops-drift-events")["attributes"]["state"]["visualization"]["layers"][0]
    layer["xAccessor"] = "timestamp"


def _m_accessor_is_bucket(o: Objects) -> None:
    layer = find(o, "lens", "mlops-drift-events")["attributes"]["state"]["visualization"]["layers"][0]
    layer["accessors"] = ["name"]


def _m_column_order(o: Objects) -> None:
    layers = find(o, "lens", "mlops-recent-runs")["attributes"]["state"]["datasourceStates"]["formBased"][
        "layers"
    ]
    layers["layer1"]["columnOrder"].pop()


def _m_formula_reference(o: Objects) -> None:
    _set_column(o, "mlops-serving-traffic-by-version", "rateX2", references=["rateX0", "rateX9"])


def _m_datatable_column(o: Objects) -> None:
    vis = find(o, "lens", "mlops-model-version-table")["attributes"]["state"]["visualization"]
    vis["columns"].append({"columnId": "metric-f1"})


def _m_outside_grid(o: Objects) -> None:
    _dashboard(o, "mlops-training-runs", "panelsJSON", lambda p: _panel(p, "drift", x=40, w=16))


def _m_overlap(o: Objects) -> None:
    _dashboard(o, "mlops-training-runs", "panelsJSON", lambda p: _panel(p, "failed", y=6))


def _m_duplicate_id(o: Objects) -> None:
    o.append(dict(find(o, "lens", "mlops-drift-events")))


def _m_vega_query_and_context(o: Objects) -> None:
    _vega(o, lambda spec: spec["data"]["url"]["body"].update(query={"match_all": {}}))


def _m_vega_unknown_index(o: Objects) -> None:
    _vega(o, lambda spec: spec["data"]["url"].update(index="mlflow-metrics-*"))


def _m_vega_timefield(o: Objects) -> None:
    _vega(o, lambda spec: spec["data"]["url"].update({"%timefield%": "mlflow.metric.key"}))


def _m_vega_no_context(o: Objects) -> None:
    _vega(o, lambda spec: spec["data"]["url"].pop("%context%"))


def _m_vega_agg_field(o: Objects) -> None:
    _vega(
        o,
        lambda spec: spec["data"]["url"]["body"]["aggs"]["versions"]["terms"].update(
            field="ml.model.versoin"
        ),
    )


def _m_vega_not_json(o: Objects) -> None:
    obj = find(o, "visualization", "mlops-versions-parallel-coordinates")
    vis = json.loads(obj["attributes"]["visState"])
    vis["params"]["spec"] = vis["params"]["spec"][:-2]
    obj["attributes"]["visState"] = json.dumps(vis)


def _m_vega_property(o: Objects) -> None:
    _vega(o, lambda spec: spec["data"]["format"].update(property="aggregations.version.buckets"))


def _m_markdown_link(o: Objects) -> None:
    def change(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        params = panels[0]["embeddableConfig"]["savedVis"]["params"]
        params["markdown"] = params["markdown"].replace("#/view/mlops-training-runs", "#/view/mlops-training")
        return panels

    _dashboard(o, "mlops-home-qa", "panelsJSON", change)


def _m_format_field(o: Objects) -> None:
    attributes = find(o, "index-pattern", "mlops-scoring")["attributes"]
    formats = json.loads(attributes["fieldFormatMap"])
    formats["event.durations"] = formats.pop("event.duration")
    attributes["fieldFormatMap"] = json.dumps(formats)


def _m_time_field(o: Objects) -> None:
    find(o, "index-pattern", "mlops-runs")["attributes"]["timeFieldName"] = "mlflow.run.status"


def _m_unknown_operation(o: Objects) -> None:
    _set_column(o, "mlops-recent-runs", "duration", operationType="maximum")


def _m_bad_kql(o: Objects) -> None:
    find(o, "lens", "mlops-failed-runs")["attributes"]["state"]["query"]["query"] = (
        'mlflow.run.status : ("FAILED"'
    )


def _m_visualization_type(o: Objects) -> None:
    find(o, "lens", "mlops-failed-runs")["attributes"]["visualizationType"] = "lnsTable"


def _m_bucketed_flag(o: Objects) -> None:
    _set_column(o, "mlops-recent-runs", "id", isBucketed=False)


MUTATIONS: list[tuple[str, Callable[[Objects], Any], str, str]] = [
    ("line not JSON", _m_not_json, "K01", "not JSON"),
    ("typeMigrationVersion missing", _m_missing_version, "K02", "typeMigrationVersion"),
    ("attribute the schema lacks", _m_unknown_attribute, "K02", "savedSearchId"),
    ("type version newer than 9.5", _m_newer_type, "K03", "newer than 9.5"),
    ("core version newer than 8.8.0", _m_newer_core, "K03", "coreMigrationVersion"),
    ("type unknown", _m_unknown_type, "K03", "lens-ui-telemetry"),
    ("JSON string truncated", _m_bad_json_string, "K04", "panelsJSON does not parse"),
    ("JSON string stored as object", _m_object_not_string, "K04", "must be JSON text"),
    ("reference to a missing data view", _m_dangling_reference, "K05", "mlops-runs-renamed"),
    ("dashboard panel's object missing", _m_missing_panel_object, "K05", "lens/mlops-drift-events"),
    ("panelRefName without reference", _m_panel_ref_name, "K06", "panel_elsewhere"),
    ("control without reference", _m_control_reference, "K06", "control-model"),
    (
        "Lens layer without data-view reference",
        _m_layer_reference,
        "K07",
        "indexpattern-datasource-layer-layer1",
    ),
    ("column field not in mappings", _m_unknown_field, "K08", "ml.model.stgae"),
    ("control field not in mappings", _m_unknown_control_field, "K08", "ml.model.nmae"),
    ("query field not in mappings", _m_unknown_query_field, "K08", "mlflow.run.state"),
    ("terms on a text field", _m_text_field_terms, "K09", "'message' (text) is not aggregatable"),
    ("last value of a field without doc values", _m_not_aggregatable, "K09", "event.original"),
    ("date histogram on a keyword", _m_histogram_on_keyword, "K09", "mlflow.run.status"),
    ("percentile of a keyword", _m_percentile_on_keyword, "K09", "log.level"),
    ("xAccessor names no column", _m_x_accessor, "K10", "xAccessor 'timestamp'"),
    ("accessor names a bucket column", _m_accessor_is_bucket, "K10", "must be a metric column"),
    ("columnOrder misses a column", _m_column_order, "K10", "columnOrder"),
    ("formula part references no column", _m_formula_reference, "K10", "rateX9"),
    ("datatable names no column", _m_datatable_column, "K10", "metric-f1"),
    ("panel wider than the grid", _m_outside_grid, "K11", "48-column grid"),
    ("panels overlap", _m_overlap, "K11", "overlaps"),
    ("duplicate id", _m_duplicate_id, "K12", "used twice"),
    ("Vega %context% with body.query", _m_vega_query_and_context, "K13", "%context%"),
    ("Vega index is no data view", _m_vega_unknown_index, "K13", "mlflow-metrics-*"),
    ("Vega %timefield% not a date", _m_vega_timefield, "K09", "mlflow.metric.key"),
    ("Vega without %context% or query", _m_vega_no_context, "K13", "neither %context%"),
    ("Vega aggregation on a missing field", _m_vega_agg_field, "K08", "ml.model.versoin"),
    ("Vega spec not JSON", _m_vega_not_json, "K13", "does not parse"),
    ("Vega reads an aggregation the body lacks", _m_vega_property, "K13", "aggregations.version.buckets"),
    ("markdown links to a missing dashboard", _m_markdown_link, "K05", "'mlops-training'"),
    ("data view formats a missing field", _m_format_field, "K08", "event.durations"),
    ("data view time field not a date", _m_time_field, "K09", "timeFieldName"),
    ("unknown Lens operation", _m_unknown_operation, "K14", "maximum"),
    ("KQL does not parse", _m_bad_kql, "K14", "expected"),
    ("unknown visualization type", _m_visualization_type, "K14", "lnsTable"),
    ("bucket column not marked bucketed", _m_bucketed_flag, "K14", "isBucketed"),
]


@pytest.mark.parametrize(
    ("mutate", "code", "needle"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_the_verifier_catches_each_broken_fixture(
    mutate: Callable[[Objects], Any], code: str, needle: str
) -> None:
    objects = built()
    result = mutate(objects)
    problems = verify(result if isinstance(result, str) else text(objects))
    assert any(p.code == code and needle in str(p) for p in problems), (
        f"expected a {code} problem mentioning {needle!r}, got:\n" + "\n".join(map(str, problems))
    )


def test_every_rule_has_a_broken_fixture() -> None:
    assert {m[2] for m in MUTATIONS} == {f"K{n:02d}" for n in range(1, 15)}


# --- KQL, as the verifier and the replay read it -----------------------------------------------


def test_kql_becomes_the_query_kibana_sends() -> None:
    assert kql.to_query('a : "x" and not b : "gunicorn.access"') == {
        "bool": {
            "filter": [
                {"match_phrase": {"a": "x"}},
                {"bool": {"must_not": [{"match_phrase": {"b": "gunicorn.access"}}]}},
            ]
        }
    }
    assert kql.to_query("s >= 400 and s < 500 or e : *") == {
        "bool": {
            "should": [
                {"bool": {"filter": [{"range": {"s": {"gte": 400}}}, {"range": {"s": {"lt": 500}}}]}},
                {"exists": {"field": "e"}},
            ],
            "minimum_should_match": 1,
        }
    }
    assert kql.to_query('k : ("a" or b)') == {
        "bool": {
            "should": [{"match_phrase": {"k": "a"}}, {"match_phrase": {"k": "b"}}],
            "minimum_should_match": 1,
        }
    }
    assert kql.to_query("") == {"match_all": {}}
    with pytest.raises(kql.KqlError, match="wildcards"):
        kql.to_query("a : ab*")
