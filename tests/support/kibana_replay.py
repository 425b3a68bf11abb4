"""Replay a Lens panel's query on Elasticsearch: the data view's index, the panel's KQL query and
column filters, the dashboard's filters and time range, and the aggregations Lens builds from its
form-based layer, translated into one search whose answer is read back as the panel's table.

What Lens does is followed for the operations our panels use: terms (ordered alphabetically, by a
custom aggregation or by a column; a second field splits further), date_histogram, histogram
ranges, count, min, max, average, sum, percentile, unique_count, last_value (newest document by the
sort field, as Lens' top_hits, read from doc values) and formula/math (computed from their
parts, as Lens does after the search). The test Elasticsearch is the minimal distribution, so
`multi_terms` (x-pack) is replayed as nested terms, which yields the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tests.support import kql


@dataclass
class Panel:
    """One Lens layer's query, ready to send."""

    index: str
    body: dict[str, Any]
    buckets: list[tuple[str, dict[str, Any]]]
    metrics: dict[str, dict[str, Any]]
    formulas: dict[str, dict[str, Any]] = field(default_factory=dict)


def _path(source: Any, dotted: str) -> Any:
    """A field's value in `_source`, whether stored dotted or nested."""
    if not isinstance(source, dict):
        return None
    if dotted in source:
        return source[dotted]
    head, _, rest = dotted.partition(".")
    while rest:
        if head in source:
            return _path(source[head], rest)
        nxt, _, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return source.get(head)


def _name(column_id: str) -> str:
    """Aggregation names apart from bucket fields: a column `key` must not hide a bucket's key."""
    return f"c-{column_id}"


def _metric_agg(column: dict[str, Any]) -> dict[str, Any] | None:
    op, source = column["operationType"], column.get("sourceField")
    params = column.get("params", {})
    if op == "count":
        return None
    if op in ("min", "max", "sum"):
        return {op: {"field": source}}
    if op == "average":
        return {"avg": {"field": source}}
    if op == "median":
        return {"percentiles": {"field": source, "percents": [50]}}
    if op == "percentile":
        return {"percentiles": {"field": source, "percents": [params["percentile"]]}}
    if op == "unique_count":
        return {"cardinality": {"field": source}}
    if op == "last_value":
        return {
            "top_hits": {
                "size": 1,
                "sort": [{params["sortField"]: {"order": "desc"}}],
                "_source": False,
                "docvalue_fields": [source],
            }
        }
    raise ValueError(f"operation {op!r} is not replayed")


def _bucket_agg(
    column: dict[str, Any], columns: dict[str, dict[str, Any]], date_interval: str
) -> list[dict[str, Any]]:
    """The aggregation(s) of one bucket column (two nested ones for terms with a second field)."""
    op, source, params = column["operationType"], column.get("sourceField"), column.get("params", {})
    if op == "date_histogram":
        interval = params.get("interval", "auto")
        interval = date_interval if interval == "auto" else interval
        key = "calendar_interval" if interval in ("1d", "1w", "1M", "1y") else "fixed_interval"
        return [{"date_histogram": {"field": source, key: interval, "min_doc_count": 1}}]
    if op == "range":
        return [{"histogram": {"field": source, "interval": 1, "min_doc_count": 1}}]
    if op != "terms":
        raise ValueError(f"bucket operation {op!r} is not replayed")
    direction = params.get("orderDirection", "desc")
    order_by = params.get("orderBy", {"type": "alphabetical"})
    terms: dict[str, Any] = {"field": source, "size": params.get("size", 10)}
    sub: dict[str, Any] = {}
    if order_by["type"] == "alphabetical":
        terms["order"] = {"_key": direction}
    elif order_by["type"] == "custom":
        sub["order"] = _metric_agg(params["orderAgg"])
        terms["order"] = {"order": direction}
    elif order_by["type"] == "column":
        target = columns[order_by["columnId"]]
        if target["operationType"] == "count":
            terms["order"] = {"_count": direction}
        else:
            sub["order"] = _metric_agg(target)
            terms["order"] = {"order": direction}
    if params.get("missingBucket"):
        terms["missing"] = "__missing__"
    aggs = [{"terms": terms, "aggs": sub}]
    for extra in params.get("secondaryFields", []):
        aggs.append(
            {"terms": {"field": extra, "size": params.get("size", 10), "order": {"_key": "asc"}}, "aggs": {}}
        )
    return aggs


def lens_panel(
    lens: dict[str, Any],
    data_views: dict[str, dict[str, Any]],
    *,
    filters: list[dict[str, Any]] = (),  # type: ignore[assignment]
    time_range: tuple[str, str] | None = None,
    date_interval: str = "1m",
) -> Panel:
    """The search a Lens object's (single) layer makes. `data_views`: id -> attributes."""
    state = lens["attributes"]["state"]
    ((layer_id, layer),) = state["datasourceStates"]["formBased"]["layers"].items()
    ref = next(r for r in lens["references"] if r["name"] == f"indexpattern-datasource-layer-{layer_id}")
    view = data_views[ref["id"]]
    columns: dict[str, dict[str, Any]] = layer["columns"]
    must: list[dict[str, Any]] = [kql.to_query(state["query"]["query"]), *filters]
    if time_range is not None:
        must.append({"range": {view["timeFieldName"]: {"gte": time_range[0], "lte": time_range[1]}}})
    buckets = [(cid, columns[cid]) for cid in layer["columnOrder"] if columns[cid]["isBucketed"]]
    metrics = {
        cid: c
        for cid, c in columns.items()
        if not c["isBucketed"] and c["operationType"] not in ("formula", "math")
    }
    formulas = {cid: c for cid, c in columns.items() if c["operationType"] in ("formula", "math")}
    leaf: dict[str, Any] = {}
    for cid, column in metrics.items():
        agg = _metric_agg(column)
        if "filter" in column:
            leaf[_name(cid)] = {"filter": kql.to_query(column["filter"]["query"])}
            if agg is not None:
                leaf[_name(cid)]["aggs"] = {"value": agg}
        elif agg is not None:
            leaf[_name(cid)] = agg
    aggs = leaf
    levels: list[tuple[str, dict[str, Any]]] = []
    for cid, column in buckets:
        for n, agg in enumerate(_bucket_agg(column, columns, date_interval)):
            levels.append((_name(cid) if n == 0 else f"{_name(cid)}#{n}", agg))
    for name, agg in reversed(levels):
        agg = dict(agg)
        agg["aggs"] = {**agg.get("aggs", {}), **aggs}
        if not agg["aggs"]:
            del agg["aggs"]
        aggs = {name: agg}
    body = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": must}}, "aggs": aggs}
    return Panel(view["title"], body, [(name, {}) for name, _ in levels], metrics, formulas)


def _metric_value(column: dict[str, Any], node: dict[str, Any], count: int) -> Any:
    op = column["operationType"]
    if "filter" in column:
        if op == "count":
            return node["doc_count"]
        node = node["value"]
    if op == "count":
        return count
    if op in ("percentile", "median"):
        (value,) = node["values"].values()
        return value
    if op == "last_value":
        hits = node["hits"]["hits"]
        found = hits[0].get("fields", {}).get(column["sourceField"]) if hits else None
        if not found:
            return None
        return found[0] if len(found) == 1 else found
    return node.get("value")


def rows(panel: Panel, response: dict[str, Any]) -> list[dict[str, Any]]:
    """The panel's table: one dict per row, keyed by column id (bucket keys, metric values)."""
    out: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], level: int, row: dict[str, Any]) -> None:
        if level == len(panel.buckets):
            full = dict(row)
            count = node.get("doc_count", response["hits"]["total"]["value"])
            for cid, column in panel.metrics.items():
                full[cid] = _metric_value(column, node.get(_name(cid), {}), count)
            for cid, column in panel.formulas.items():
                if column["operationType"] == "math":
                    a, b = column["params"]["tinymathAst"]["args"]
                    full[cid] = full[a] / full[b] if full[b] else math.nan
            for cid, column in panel.formulas.items():
                if column["operationType"] == "formula":
                    (ref,) = column["references"]
                    full[cid] = full[ref]
            out.append(full)
            return
        name = panel.buckets[level][0]
        column_id = name.split("#")[0].removeprefix("c-")
        for bucket in node[name]["buckets"]:
            key = bucket.get("key_as_string", bucket["key"]) if "key_as_string" in bucket else bucket["key"]
            value = key if "#" not in name else (row[column_id], key)
            walk(bucket, level + 1, {**row, column_id: value})

    walk(response["aggregations"] if panel.buckets else response.get("aggregations", {}), 0, {})
    return out


def run(es: Any, panel: Panel) -> list[dict[str, Any]]:
    es.indices.refresh(index=panel.index, allow_no_indices=True, ignore_unavailable=True)
    response = es.search(index=panel.index, body=panel.body, allow_no_indices=True, ignore_unavailable=True)
    return rows(panel, dict(response))
