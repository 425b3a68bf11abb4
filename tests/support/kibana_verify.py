"""A strict structural verifier of Kibana saved-object NDJSON, written from Kibana's own rules.

Kibana cannot run on our machines, and its import validates little (a Lens object needs a title and
any `state`), so a broken panel imports fine and fails only when it renders. This checks what Kibana
needs for every object to import AND render. Each rule has a code; `verify` returns one `Problem`
per violation, naming the object, the rule and what is wrong.

| code | rule |
| --- | --- |
| K01 | every line parses as one JSON object |
| K02 | `id`, `type`, `attributes`, `references`, both versions present; no attribute unknown to the type |
| K03 | the type is one Kibana 9.5 knows and no version is newer than 9.5's (PINS) |
| K04 | every JSON string field is a string that parses |
| K05 | every reference (and every markdown link to a dashboard) resolves to an object in the set |
| K06 | every dashboard panel's `panelRefName` (and every control) has its reference |
| K07 | every Lens layer has its data-view reference `indexpattern-datasource-layer-<layerId>` |
| K08 | every field a panel, control or data view format uses is in the mappings `shipper setup` installs |
| K09 | a field a panel aggregates on is aggregatable, of the type the operation needs |
| K10 | chart accessors, column order and column references name real columns of the right kind |
| K11 | panels fit the 48-column grid and do not overlap |
| K12 | no duplicate ids |
| K13 | Vega specs parse, name a data view's index, use `%context%`/`%timefield%` as Kibana does |
|     | and read (`format.property`) an aggregation their body defines |
| K14 | Lens state is well formed (known operations, layers, visualization type, queries that parse) |
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.support import kql

#: Kibana 9.5's `coreMigrationVersion` and `typeMigrationVersion` per type (see kibana/README.md
#: for where each value comes from). The verifier refuses anything newer.
CORE_MIGRATION_VERSION = "8.8.0"
PINS: dict[str, str] = {
    "index-pattern": "8.0.0",
    "lens": "10.1.0",
    "visualization": "8.5.0",
    "dashboard": "10.4.0",
}

#: The attributes each type's schema knows (visualization's `8.8.0` schema is strict: Kibana refuses
#: an import with any other; for the others, unknown attributes are dropped or break rendering).
ATTRIBUTES: dict[str, set[str]] = {
    "index-pattern": {
        "title",
        "name",
        "type",
        "typeMeta",
        "timeFieldName",
        "sourceFilters",
        "fields",
        "fieldFormatMap",
        "fieldAttrs",
        "runtimeFieldMap",
        "allowNoIndex",
        "allowHidden",
    },
    "lens": {"title", "description", "visualizationType", "state", "uiStateJSON", "version"},
    "visualization": {
        "title",
        "description",
        "version",
        "kibanaSavedObjectMeta",
        "uiStateJSON",
        "visState",
        "savedSearchRefName",
    },
    "dashboard": {
        "title",
        "description",
        "panelsJSON",
        "optionsJSON",
        "timeRestore",
        "timeFrom",
        "timeTo",
        "refreshInterval",
        "kibanaSavedObjectMeta",
        "controlGroupInput",
        "version",
        "hits",
        "sections",
    },
}

GRID_COLUMNS = 48
REQUIRED = ("id", "type", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion")

#: Attributes Kibana stores as JSON text (dotted paths under `attributes`).
JSON_STRINGS: dict[str, tuple[str, ...]] = {
    "index-pattern": ("fieldFormatMap", "fields", "runtimeFieldMap", "sourceFilters"),
    "visualization": ("visState", "uiStateJSON", "kibanaSavedObjectMeta.searchSourceJSON"),
    "dashboard": (
        "panelsJSON",
        "optionsJSON",
        "kibanaSavedObjectMeta.searchSourceJSON",
        "controlGroupInput.panelsJSON",
        "controlGroupInput.ignoreParentSettingsJSON",
    ),
    "lens": (),
}

AGGREGATABLE_TYPES = {
    "keyword",
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
    "date",
    "date_nanos",
    "boolean",
    "ip",
    "flattened",
}
NUMERIC = {
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
}
DATES = {"date", "date_nanos"}

# Lens form-based operations: what field type each needs (None: no field).
FIELD_OPERATIONS: dict[str, set[str] | None] = {
    "terms": AGGREGATABLE_TYPES - {"flattened"},
    "date_histogram": DATES,
    "range": NUMERIC,
    "min": NUMERIC | DATES,
    "max": NUMERIC | DATES,
    "average": NUMERIC,
    "sum": NUMERIC,
    "median": NUMERIC,
    "percentile": NUMERIC,
    "standard_deviation": NUMERIC,
    "unique_count": AGGREGATABLE_TYPES,
    "last_value": AGGREGATABLE_TYPES,
    "count": None,
}
REFERENCE_OPERATIONS = {"formula", "math", "differences", "moving_average", "cumulative_sum", "counter_rate"}
BUCKET_OPERATIONS = {"terms", "date_histogram", "range", "filters"}
VISUALIZATION_TYPES = {"lnsDatatable", "lnsXY", "lnsMetric"}


@dataclass(frozen=True)
class Problem:
    code: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.where}: {self.message}"


# ------------------------------------------------------------------------------------------------
# Mappings: what a data view's index pattern holds, as `shipper setup` installs it
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    type: str
    aggregatable: bool


class FieldIndex:
    """Field lookups in one index pattern's mappings: explicit properties (dotted paths, multi-fields,
    `subobjects: false` objects) and `path_match` dynamic templates. A field that would only be
    created by a `match_mapping_type` template is unknown: such a name is most likely a typo."""

    def __init__(self, mappings: dict[str, Any]) -> None:
        self.fields: dict[str, Field] = {}
        self.templates: list[tuple[list[str], dict[str, Any]]] = []
        self._walk(mappings.get("properties", {}), "")
        for entry in mappings.get("dynamic_templates", []):
            ((_, template),) = entry.items()
            patterns = template.get("path_match")
            if patterns:
                self.templates.append(
                    ([patterns] if isinstance(patterns, str) else list(patterns), template["mapping"])
                )

    @staticmethod
    def _field(mapping: dict[str, Any]) -> Field:
        type_ = mapping.get("type", "object")
        aggregatable = type_ in AGGREGATABLE_TYPES and mapping.get("doc_values", True) is not False
        return Field(type_, aggregatable)

    def _walk(self, properties: dict[str, Any], prefix: str) -> None:
        for name, mapping in properties.items():
            path = prefix + name
            if "properties" in mapping or mapping.get("type") == "object":
                if mapping.get("enabled", True) is not False:
                    self._walk(mapping.get("properties", {}), path + ".")
                continue
            self.fields[path] = self._field(mapping)
            for sub, sub_mapping in mapping.get("fields", {}).items():
                self.fields[f"{path}.{sub}"] = self._field(sub_mapping)

    def get(self, path: str) -> Field | None:
        if path in self.fields:
            return self.fields[path]
        for patterns, mapping in self.templates:
            if any(fnmatch.fnmatchcase(path, p) for p in patterns):
                return self._field(mapping)
        return None


def installed_mappings() -> dict[str, FieldIndex]:
    """Index pattern -> its fields, from the mappings `shipper setup` installs."""
    from shipper.assets.scoring import SCORING_INDEX_PATTERN, scoring_mappings
    from shipper.setup.assets import FAMILIES, FAMILY_MAPPINGS

    out = {SCORING_INDEX_PATTERN: FieldIndex(scoring_mappings())}
    for family, (patterns, _) in FAMILIES.items():
        for pattern in patterns:
            out[pattern] = FieldIndex(FAMILY_MAPPINGS[family])
    return out


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _version_tuple(text: Any) -> tuple[int, ...] | None:
    if not isinstance(text, str):
        return None
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return None


def _lookup(obj: Any, dotted: str) -> tuple[bool, Any]:
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return False, None
        obj = obj[key]
    return True, obj


class _Checker:
    def __init__(self, mappings: dict[str, FieldIndex]) -> None:
        self.mappings = mappings
        self.problems: list[Problem] = []
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.decoded: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, code: str, where: str, message: str) -> None:
        self.problems.append(Problem(code, where, message))

    # -- data views ------------------------------------------------------------------------------
    def data_view_fields(self, dv_id: str, where: str) -> tuple[str, FieldIndex] | None:
        view = self.objects.get(("index-pattern", dv_id))
        if view is None:
            return None  # K05 reports the missing object
        title = view["attributes"].get("title")
        index = self.mappings.get(title) if isinstance(title, str) else None
        if index is None:
            self.add(
                "K08",
                where,
                f"data view {dv_id!r} has index pattern {title!r}, which `shipper setup` maps nowhere",
            )
            return None
        return title, index

    def check_field(
        self,
        index: FieldIndex,
        field: Any,
        where: str,
        *,
        need: set[str] | None = None,
        aggregate: bool = True,
    ) -> None:
        if not isinstance(field, str) or not field:
            self.add("K08", where, f"field name {field!r} is not a string")
            return
        info = index.get(field)
        if info is None:
            self.add("K08", where, f"field {field!r} is not in the data view's mappings")
            return
        if aggregate and not info.aggregatable:
            self.add("K09", where, f"field {field!r} ({info.type}) is not aggregatable")
        elif need is not None and info.type not in need:
            self.add("K09", where, f"field {field!r} is {info.type}; this needs one of {sorted(need)}")

    def check_kql(self, index: FieldIndex, query: Any, where: str) -> None:
        if (
            not isinstance(query, dict)
            or query.get("language") != "kuery"
            or not isinstance(query.get("query"), str)
        ):
            self.add("K14", where, f"query must be {{'language': 'kuery', 'query': str}}, got {query!r}")
            return
        try:
            names = kql.fields(query["query"])
        except kql.KqlError as exc:
            self.add("K14", where, str(exc))
            return
        for name in names:
            self.check_field(index, name, where + " query", aggregate=False)

    # -- per type --------------------------------------------------------------------------------
    def check_data_view(self, key: tuple[str, str], attributes: dict[str, Any]) -> None:
        where = f"index-pattern/{key[1]}"
        resolved = self.data_view_fields(key[1], where)
        if resolved is None:
            return
        index = resolved[1]
        time_field = attributes.get("timeFieldName")
        if time_field is not None:
            self.check_field(index, time_field, where + " timeFieldName", need=DATES)
        formats = attributes.get("fieldFormatMap", {})
        for field, fmt in formats.items() if isinstance(formats, dict) else ():
            self.check_field(index, field, where + " fieldFormatMap", aggregate=False)
            if not isinstance(fmt, dict) or not isinstance(fmt.get("id"), str):
                self.add("K14", where, f"fieldFormatMap[{field!r}] needs a format id")

    def check_references(self, key: tuple[str, str], obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
        where = f"{key[0]}/{key[1]}"
        by_name: dict[str, dict[str, Any]] = {}
        for ref in obj.get("references", []):
            if not isinstance(ref, dict) or not all(
                isinstance(ref.get(k), str) for k in ("type", "id", "name")
            ):
                self.add("K05", where, f"reference {ref!r} needs string type, id and name")
                continue
            if ref["name"] in by_name:
                self.add("K05", where, f"reference name {ref['name']!r} is used twice")
            by_name[ref["name"]] = ref
            if (ref["type"], ref["id"]) not in self.objects:
                self.add(
                    "K05", where, f"reference {ref['name']!r} -> {ref['type']}/{ref['id']} is not in the set"
                )
        return by_name

    def check_lens(
        self, key: tuple[str, str], attributes: dict[str, Any], refs: dict[str, dict[str, Any]]
    ) -> None:
        where = f"lens/{key[1]}"
        state = attributes.get("state")
        if not isinstance(attributes.get("title"), str) or not isinstance(state, dict):
            self.add("K14", where, "a Lens object needs a string title and a state object")
            return
        vis_type = attributes.get("visualizationType")
        if vis_type not in VISUALIZATION_TYPES:
            self.add(
                "K14", where, f"visualizationType {vis_type!r} is not one of {sorted(VISUALIZATION_TYPES)}"
            )
        layers = state.get("datasourceStates", {}).get("formBased", {}).get("layers")
        if not isinstance(layers, dict) or not layers:
            self.add("K14", where, "state.datasourceStates.formBased.layers is missing or empty")
            return
        all_columns: dict[str, dict[str, dict[str, Any]]] = {}
        for layer_id, layer in layers.items():
            lwhere = f"{where} layer {layer_id}"
            ref = refs.get(f"indexpattern-datasource-layer-{layer_id}")
            if ref is None or ref["type"] != "index-pattern":
                self.add(
                    "K07",
                    lwhere,
                    f"no index-pattern reference named indexpattern-datasource-layer-{layer_id}",
                )
                continue
            resolved = self.data_view_fields(ref["id"], lwhere)
            columns = layer.get("columns")
            if not isinstance(columns, dict) or not columns:
                self.add("K14", lwhere, "a layer needs columns")
                continue
            all_columns[layer_id] = columns
            order = layer.get("columnOrder")
            if not isinstance(order, list) or sorted(order) != sorted(columns):
                self.add(
                    "K10", lwhere, f"columnOrder {order!r} must list exactly the columns {sorted(columns)}"
                )
            if resolved is not None:
                self.check_kql(resolved[1], state.get("query"), where)
            for column_id, column in columns.items():
                self.check_column(lwhere, column_id, column, columns, resolved[1] if resolved else None)
        self.check_lens_visualization(where, vis_type, state.get("visualization"), all_columns)

    def check_column(
        self,
        where: str,
        column_id: str,
        column: dict[str, Any],
        columns: dict[str, dict[str, Any]],
        index: FieldIndex | None,
    ) -> None:
        cwhere = f"{where} column {column_id}"
        op = column.get("operationType")
        if op not in FIELD_OPERATIONS and op not in REFERENCE_OPERATIONS and op != "filters":
            self.add("K14", cwhere, f"unknown operationType {op!r}")
            return
        if not isinstance(column.get("label"), str) or not isinstance(column.get("dataType"), str):
            self.add("K14", cwhere, "a column needs a string label and dataType")
        if column.get("isBucketed") is not (op in BUCKET_OPERATIONS):
            self.add("K14", cwhere, f"isBucketed must be {op in BUCKET_OPERATIONS} for {op}")
        for ref in column.get("references", []) if op in REFERENCE_OPERATIONS else []:
            if ref not in columns:
                self.add("K10", cwhere, f"references column {ref!r}, which the layer does not have")
        if op in REFERENCE_OPERATIONS and not column.get("references"):
            self.add("K10", cwhere, f"a {op} column needs references")
        params = column.get("params", {})
        if op == "math":
            for arg in params.get("tinymathAst", {}).get("args", []):
                if isinstance(arg, str) and arg not in columns:
                    self.add("K10", cwhere, f"math names column {arg!r}, which the layer does not have")
        if index is None:
            return
        if op in FIELD_OPERATIONS and FIELD_OPERATIONS[op] is not None:
            self.check_field(index, column.get("sourceField"), cwhere, need=FIELD_OPERATIONS[op])
        if op == "count" and column.get("sourceField") not in ("___records___", None):
            self.check_field(index, column.get("sourceField"), cwhere)
        if op == "last_value":
            self.check_field(index, params.get("sortField"), cwhere + " sortField", need=DATES)
        if op == "terms":
            for extra in params.get("secondaryFields", []):
                self.check_field(index, extra, cwhere + " secondaryFields", need=FIELD_OPERATIONS["terms"])
            order = params.get("orderBy", {})
            if order.get("type") == "column" and order.get("columnId") not in columns:
                self.add(
                    "K10",
                    cwhere,
                    f"orderBy names column {order.get('columnId')!r}, which the layer does not have",
                )
            if order.get("type") == "custom":
                agg = params.get("orderAgg")
                if not isinstance(agg, dict) or agg.get("operationType") not in FIELD_OPERATIONS:
                    self.add("K14", cwhere, "orderBy custom needs an orderAgg with a field operation")
                elif FIELD_OPERATIONS[agg["operationType"]] is not None:
                    self.check_field(
                        index,
                        agg.get("sourceField"),
                        cwhere + " orderAgg",
                        need=FIELD_OPERATIONS[agg["operationType"]],
                    )
        if "filter" in column:
            self.check_kql(index, column["filter"], cwhere + " filter")

    def check_lens_visualization(
        self, where: str, vis_type: Any, vis: Any, layers: dict[str, dict[str, dict[str, Any]]]
    ) -> None:
        if not isinstance(vis, dict):
            self.add("K14", where, "state.visualization must be an object")
            return

        def column(layer_id: Any, accessor: Any, what: str, bucketed: bool | None) -> None:
            columns = layers.get(layer_id) if isinstance(layer_id, str) else None
            if columns is None:
                self.add("K10", where, f"{what}: layer {layer_id!r} is not a datasource layer")
            elif accessor not in columns:
                self.add("K10", where, f"{what} {accessor!r} is not a column of layer {layer_id}")
            elif bucketed is not None and columns[accessor].get("isBucketed") is not bucketed:
                kind = "a bucket (split) column" if bucketed else "a metric column"
                self.add("K10", where, f"{what} {accessor!r} must be {kind}")

        if vis_type == "lnsDatatable":
            for col in vis.get("columns", []):
                column(vis.get("layerId"), col.get("columnId"), "datatable column", None)
            sorting = vis.get("sorting")
            if sorting:
                column(vis.get("layerId"), sorting.get("columnId"), "datatable sorting", None)
        elif vis_type == "lnsXY":
            for layer in vis.get("layers", []):
                if layer.get("layerType") != "data":
                    continue
                lid = layer.get("layerId")
                if "xAccessor" in layer:
                    column(lid, layer["xAccessor"], "xAccessor", True)
                if not layer.get("accessors"):
                    self.add("K10", where, f"XY layer {lid!r} has no accessors")
                for accessor in layer.get("accessors", []):
                    column(lid, accessor, "accessor", False)
                if "splitAccessor" in layer:
                    column(lid, layer["splitAccessor"], "splitAccessor", True)
                for split in layer.get("splitAccessors", []):
                    column(lid, split, "splitAccessors", True)
        elif vis_type == "lnsMetric":
            for key in ("metricAccessor", "secondaryMetricAccessor", "maxAccessor"):
                if key in vis:
                    column(vis.get("layerId"), vis[key], key, False)
            if "breakdownByAccessor" in vis:
                column(vis.get("layerId"), vis["breakdownByAccessor"], "breakdownByAccessor", True)

    def check_vega(self, key: tuple[str, str], vis_state: dict[str, Any]) -> None:
        where = f"visualization/{key[1]}"
        spec_text = vis_state.get("params", {}).get("spec")
        try:
            spec = json.loads(spec_text) if isinstance(spec_text, str) else None
        except ValueError as exc:
            self.add("K13", where, f"the Vega spec does not parse: {exc}")
            return
        if not isinstance(spec, dict):
            self.add("K13", where, "params.spec must be the spec's text")
            return
        schema = spec.get("$schema", "")
        if "vega" not in schema:
            self.add("K13", where, f"$schema {schema!r} names neither Vega nor Vega-Lite")
        titles = {
            o["attributes"].get("title"): o["id"]
            for (t, _), o in self.objects.items()
            if t == "index-pattern"
        }
        for url in _vega_urls(spec):
            if not isinstance(url, dict):
                continue  # an inline or external URL: not a query of ours
            index_name = url.get("index")
            if index_name not in titles:
                self.add(
                    "K13", where, f"data.url.index {index_name!r} is not the title of a data view in the set"
                )
                continue
            fields = self.mappings.get(index_name)
            body = url.get("body", {})
            context = url.get("%context%")
            if context is True and isinstance(body, dict) and "query" in body:
                self.add("K13", where, "data.url has both %context% and body.query; Kibana refuses that")
            timefield = url.get("%timefield%")
            if timefield is not None:
                if context is not True:
                    self.add("K13", where, "%timefield% needs %context%: true")
                if fields is not None:
                    self.check_field(fields, timefield, where + " %timefield%", need=DATES)
            if context is not True and not (isinstance(body, dict) and "query" in body):
                self.add(
                    "K13",
                    where,
                    "data.url has neither %context%: true nor a query: the dashboard would not filter it",
                )
            if fields is not None:
                for field in _agg_fields(body.get("aggs", {}) if isinstance(body, dict) else {}):
                    self.check_field(fields, field, where + " aggs")
        data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
        prop = data.get("format", {}).get("property", "")
        parts = prop.split(".") if isinstance(prop, str) else []
        if parts[:1] == ["aggregations"]:
            url = data.get("url", {})
            aggs = url.get("body", {}).get("aggs", {}) if isinstance(url, dict) else {}
            if len(parts) < 2 or parts[1] not in aggs:
                self.add("K13", where, f"format.property {prop!r} names no aggregation of the body")

    def check_dashboard(
        self, key: tuple[str, str], attributes: dict[str, Any], refs: dict[str, dict[str, Any]]
    ) -> None:
        where = f"dashboard/{key[1]}"
        panels = attributes.get("panelsJSON")
        if not isinstance(panels, list):
            self.add("K04", where, "panelsJSON must decode to a list")
            return
        seen: dict[str, dict[str, int]] = {}
        for panel in panels:
            pid = panel.get("panelIndex")
            pwhere = f"{where} panel {pid}"
            grid = panel.get("gridData", {})
            if not isinstance(pid, str) or pid in seen:
                self.add("K11", pwhere, "panelIndex must be a unique string")
                continue
            numbers = [grid.get(k) for k in ("x", "y", "w", "h")]
            if not all(isinstance(n, int) for n in numbers) or grid.get("i") != pid:
                self.add(
                    "K11", pwhere, f"gridData needs integer x, y, w, h and i == panelIndex, got {grid!r}"
                )
                continue
            x, y, w, h = numbers
            if x < 0 or y < 0 or w < 1 or h < 1 or x + w > GRID_COLUMNS:
                self.add(
                    "K11", pwhere, f"x={x} w={w} does not fit the {GRID_COLUMNS}-column grid (or y/h < 0)"
                )
            for other, box in seen.items():
                if (
                    x < box["x"] + box["w"]
                    and box["x"] < x + w
                    and y < box["y"] + box["h"]
                    and box["y"] < y + h
                ):
                    self.add("K11", pwhere, f"overlaps panel {other}")
            seen[pid] = {"x": x, "y": y, "w": w, "h": h}
            ref_name = panel.get("panelRefName")
            if ref_name is not None:
                ref = refs.get(f"{pid}:{ref_name}")
                if ref is None:
                    self.add(
                        "K06", pwhere, f"panelRefName {ref_name!r} has no reference named {pid}:{ref_name}"
                    )
                elif ref["type"] != panel.get("type"):
                    self.add(
                        "K06",
                        pwhere,
                        f"panel type {panel.get('type')!r} but its reference is a {ref['type']}",
                    )
            elif "savedVis" not in panel.get("embeddableConfig", {}) and "attributes" not in panel.get(
                "embeddableConfig", {}
            ):
                self.add(
                    "K06", pwhere, "a panel needs a panelRefName (by reference) or its saved state (by value)"
                )
            markdown = panel.get("embeddableConfig", {}).get("savedVis", {}).get("params", {}).get("markdown")
            for target in re.findall(
                r"\]\(#/view/([^)\s]+)\)", markdown if isinstance(markdown, str) else ""
            ):
                if ("dashboard", target) not in self.objects:
                    self.add(
                        "K05", pwhere, f"markdown links to dashboard {target!r}, which is not in the set"
                    )
        controls = attributes.get("controlGroupInput", {}).get("panelsJSON", {})
        if not isinstance(controls, dict):
            self.add("K04", where, "controlGroupInput.panelsJSON must decode to an object")
            return
        for cid, control in controls.items():
            cwhere = f"{where} control {cid}"
            ref = refs.get(f"controlGroup_{cid}:optionsListDataView")
            if ref is None:
                self.add("K06", cwhere, f"no reference named controlGroup_{cid}:optionsListDataView")
                continue
            resolved = self.data_view_fields(ref["id"], cwhere)
            if resolved is not None:
                field = control.get("explicitInput", {}).get("fieldName")
                self.check_field(resolved[1], field, cwhere, need=FIELD_OPERATIONS["terms"])


def _vega_urls(spec: Any) -> Iterator[Any]:
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key == "url":
                yield value
            else:
                yield from _vega_urls(value)
    elif isinstance(spec, list):
        for item in spec:
            yield from _vega_urls(item)


def _agg_fields(aggs: Any) -> Iterator[str]:
    if isinstance(aggs, dict):
        for key, value in aggs.items():
            if key == "field" and isinstance(value, str):
                yield value
            elif key == "sort" and isinstance(value, list):
                for entry in value:
                    if isinstance(entry, dict):
                        yield from (k for k in entry if k != "_score")
            else:
                yield from _agg_fields(value)
    elif isinstance(aggs, list):
        for item in aggs:
            yield from _agg_fields(item)


def verify(text: str, mappings: dict[str, FieldIndex] | None = None) -> list[Problem]:
    """Every problem of an NDJSON set of saved objects (empty when it is sound)."""
    checker = _Checker(mappings if mappings is not None else installed_mappings())
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            checker.add("K01", f"line {number}", f"not JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            checker.add("K01", f"line {number}", "not a JSON object")
            continue
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            checker.add("K02", f"line {number}", f"missing {missing}")
            continue
        key = (obj["type"], obj["id"])
        where = f"{key[0]}/{key[1]}"
        if key in checker.objects:
            checker.add("K12", where, "the id is used twice")
            continue
        checker.objects[key] = obj
        pin = PINS.get(obj["type"])
        if pin is None:
            checker.add("K03", where, f"type {obj['type']!r} is not one of {sorted(PINS)}")
        else:
            type_version = _version_tuple(obj["typeMigrationVersion"])
            if type_version is None or type_version > _version_tuple(pin):  # type: ignore[operator]
                checker.add(
                    "K03",
                    where,
                    f"typeMigrationVersion {obj['typeMigrationVersion']!r} is newer than 9.5's {pin}",
                )
        unknown = sorted(set(obj["attributes"]) - ATTRIBUTES.get(obj["type"], set(obj["attributes"])))
        if unknown:
            checker.add("K02", where, f"attributes {unknown} are not in the {obj['type']} schema")
        core = _version_tuple(obj["coreMigrationVersion"])
        if core is None or core > _version_tuple(CORE_MIGRATION_VERSION):  # type: ignore[operator]
            checker.add(
                "K03",
                where,
                f"coreMigrationVersion {obj['coreMigrationVersion']!r} is newer than "
                f"{CORE_MIGRATION_VERSION}",
            )
        decoded = json.loads(json.dumps(obj))
        for dotted in JSON_STRINGS.get(obj["type"], ()):
            present, value = _lookup(obj["attributes"], dotted)
            if not present:
                continue
            if not isinstance(value, str):
                checker.add(
                    "K04", where, f"attributes.{dotted} must be JSON text, got {type(value).__name__}"
                )
                continue
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                checker.add("K04", where, f"attributes.{dotted} does not parse: {exc}")
                continue
            parent = decoded["attributes"]
            *path, leaf = dotted.split(".")
            for part in path:
                parent = parent[part]
            parent[leaf] = parsed
        checker.decoded[key] = decoded
    for key, obj in checker.decoded.items():
        refs = checker.check_references(key, obj)
        attributes = obj["attributes"]
        if key[0] == "lens":
            checker.check_lens(key, attributes, refs)
        elif key[0] == "dashboard":
            checker.check_dashboard(key, attributes, refs)
        elif key[0] == "index-pattern":
            checker.check_data_view(key, attributes)
        elif key[0] == "visualization":
            vis = attributes.get("visState")
            if isinstance(vis, dict) and vis.get("type") == "vega":
                checker.check_vega(key, vis)
    return checker.problems
