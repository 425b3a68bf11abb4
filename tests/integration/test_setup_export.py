"""`shipper setup --export DIR`: the exact request bodies of every asset, and nothing changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shipper.assets.scoring import pipeline as scoring
from shipper.cli import main_group
from shipper.setup.assets import build_assets
from shipper.setup.installer import export, request_body
from shipper.sink.client import Capabilities

pytestmark = pytest.mark.integration


def _state(es: Any) -> dict[str, Any]:
    """Everything `setup` could change, as the cluster reports it."""
    templates = es.indices.get_index_template()["index_templates"]
    components = es.cluster.get_component_template()["component_templates"]
    return {
        "index_templates": sorted((t["name"], json.dumps(t, sort_keys=True)) for t in templates),
        "component_templates": sorted((c["name"], json.dumps(c, sort_keys=True)) for c in components),
        "indices": sorted(es.indices.get(index="*", expand_wildcards="all").body),
    }


def test_export_writes_every_request_body_and_changes_nothing(
    es: Any, es_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
    before = _state(es)
    out = tmp_path / "assets"
    result = CliRunner().invoke(main_group, ["setup", "--export", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Elasticsearch unchanged" in result.output
    assert _state(es) == before

    # this cluster (minimal 9.5.4): no ILM, no ingest processors
    assets = build_assets(730, 90, has_ilm=False, scoring=scoring, ingest=False)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert files == sorted(f"{a.kind}/{a.name}.json" for a in assets)
    for asset in assets:
        written = json.loads((out / asset.kind / f"{asset.name}.json").read_text(encoding="utf-8"))
        assert written == request_body(asset)
    settings = json.loads((out / "component_template" / "logs-mlops.scoring@settings.json").read_text())
    assert "default_pipeline" not in settings["template"]["settings"]["index"]
    assert not (out / "ingest_pipeline").exists()


def test_export_for_a_cluster_with_ilm_and_ingest(tmp_path: Path) -> None:
    caps = Capabilities(
        version="9.5.4", ilm=True, security=True, ingest_processors=frozenset(scoring.required_processors())
    )
    written = export(caps, 730, 90, tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {
        "ingest_pipeline/logs-mlops.scoring.json",
        "ingest_pipeline/logs-mlops.scoring@parse.json",
        "ingest_pipeline/logs-mlops.scoring@custom.json",
        "ilm_policy/mlops-metrics.json",
        "ilm_policy/logs-mlops.scoring.json",
    } <= names
    policy = json.loads((tmp_path / "ilm_policy" / "logs-mlops.scoring.json").read_text())
    assert set(policy) == {"policy"} and "phases" in policy["policy"]
    parse = json.loads((tmp_path / "ingest_pipeline" / "logs-mlops.scoring@parse.json").read_text())
    assert parse["_meta"]["managed_by"] == "shipper" and parse["_meta"]["hash"]
    grok = next(p["grok"] for p in parse["processors"] if "grok" in p)
    assert grok["pattern_definitions"] == scoring.load_pattern_definitions()
    settings = json.loads((tmp_path / "component_template" / "logs-mlops.scoring@settings.json").read_text())
    assert settings["template"]["settings"]["index"]["default_pipeline"] == "logs-mlops.scoring"
