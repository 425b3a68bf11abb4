"""Kibana's Vega-Lite panels, replayed and rendered offline.

Kibana resolves a spec's Elasticsearch `url` itself: with `%context%: true` it puts the dashboard's
query and filters (and, with `%timefield%`, the time range on that field) into the body's `query`,
searches the data view's index, and hands the answer to Vega. `context_body` does the same with
the filters given; `inline` replaces the url by the values the search returned, so vl-convert (the
Vega-Lite compiler and renderer, no browser) draws exactly what Kibana would be given.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.support.kibana_replay import _path


def context_body(
    url: dict[str, Any], filters: list[dict[str, Any]], time_range: tuple[str, str] | None = None
) -> dict[str, Any]:
    body = copy.deepcopy(url.get("body", {}))
    must = list(filters)
    if time_range is not None and "%timefield%" in url:
        must.append({"range": {url["%timefield%"]: {"gte": time_range[0], "lte": time_range[1]}}})
    if url.get("%context%") is True:
        body["query"] = {"bool": {"filter": must or [{"match_all": {}}]}}
    return dict(body)


def values(spec: dict[str, Any], response: dict[str, Any]) -> Any:
    """What the spec's `format.property` selects from the search response."""
    prop = spec["data"].get("format", {}).get("property")
    return _path(response, prop) if prop else response


def inline(spec: dict[str, Any], data: Any, width: int = 640, height: int = 360) -> dict[str, Any]:
    """The spec with its Elasticsearch url replaced by inline values and a fixed size."""
    out = copy.deepcopy(spec)
    out["data"] = {"values": data}
    out["width"], out["height"] = width, height
    out.pop("autosize", None)
    return dict(out)


def render_png(spec: dict[str, Any], scale: float = 1.5) -> bytes:
    import vl_convert

    return bytes(vl_convert.vegalite_to_png(vl_spec=json.dumps(spec), scale=scale))


def compile_to_vega(spec: dict[str, Any]) -> dict[str, Any]:
    """The Vega spec vl-convert compiles from a Vega-Lite spec (its transforms evaluated at render)."""
    import vl_convert

    return dict(vl_convert.vegalite_to_vega(vl_spec=json.dumps(spec)))
