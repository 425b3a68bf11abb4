"""Plain HTTP JSON to the Elasticsearch 7.10.2 ingest node of `scripts/stack up --ingest`.

The elasticsearch-py 9.x client refuses a 7.x server, so this speaks the REST API directly. The
node runs Elasticsearch's own ingest code (ingest-common, lang-painless, lang-mustache); it is
only used to execute pipelines.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from shipper.assets.scoring import pipeline as scoring
from shipper.setup.assets import build_assets
from shipper.setup.installer import _stamped

#: Pipeline `_meta` came with Elasticsearch 7.14; the shipper needs 8.x or newer, so it writes one.
#: On the 7.10.2 node this is the only part of the installed bodies left out.
KEYS_7_10_LACKS = ("_meta",)


class IngestNodeError(AssertionError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {json.dumps(body)[:3000]}")
        self.status = status
        self.body = body


@dataclass
class IngestNode:
    url: str

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=120) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raise IngestNodeError(err.code, json.loads(err.read() or b"null")) from None

    def version(self) -> str:
        nodes = self.request("GET", "/_nodes/_local?filter_path=nodes.*.version")["nodes"]
        return str(next(iter(nodes.values()))["version"])

    def processors(self) -> set[str]:
        nodes = self.request("GET", "/_nodes/_local/ingest")["nodes"]
        return {p["type"] for node in nodes.values() for p in node["ingest"]["processors"]}

    def put_pipeline(self, name: str, body: dict[str, Any]) -> None:
        self.request("PUT", f"/_ingest/pipeline/{name}", body)

    def simulate(self, pipeline: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each doc through a stored pipeline (and the pipelines it calls); each resulting _source."""
        response = self.request(
            "POST",
            f"/_ingest/pipeline/{pipeline}/_simulate",
            {"docs": [{"_index": "logs-mlops.scoring-test", "_source": d} for d in docs]},
        )
        out = []
        for item in response["docs"]:
            if "error" in item:
                raise AssertionError(f"_simulate error (the document was dropped): {item['error']}")
            out.append(item["doc"]["_source"])
        return out


def installed_pipeline_bodies() -> dict[str, dict[str, Any]]:
    """The ingest pipelines exactly as `shipper setup` writes them (stamped), in install order."""
    assets = build_assets(730, 90, has_ilm=False, scoring=scoring, ingest=True)
    return {a.name: _stamped(a) for a in assets if a.kind == "ingest_pipeline"}


def install_pipelines(node: IngestNode) -> dict[str, dict[str, Any]]:
    bodies = installed_pipeline_bodies()
    for name, body in bodies.items():
        node.put_pipeline(name, {k: v for k, v in body.items() if k not in KEYS_7_10_LACKS})
    return bodies
