"""The scoring-log assets without any server: patterns, pipeline body, mappings."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shipper.assets.scoring import pipeline as p
from tests.support.scoring_contract import CONTRACT_FIELDS

REPO = Path(__file__).resolve().parents[2]


def test_logstash_patterns_are_a_byte_identical_copy() -> None:
    canonical = (REPO / "shipper" / "assets" / "scoring" / "patterns.grok").read_bytes()
    copy = (REPO / "logstash" / "patterns" / "mlops_scoring").read_bytes()
    assert copy == canonical, (
        "refresh: cp shipper/assets/scoring/patterns.grok logstash/patterns/mlops_scoring"
    )


def test_pattern_definitions_are_complete_and_dotted() -> None:
    defs = p.load_pattern_definitions()
    for name in (*p.HEADER_PATTERNS, *p.MESSAGE_PATTERNS):
        assert name in defs
    for name, pattern in defs.items():
        assert re.fullmatch(r"SCORING_[A-Z0-9_]+", name)
        assert not re.search(r"%\{[A-Z0-9_]+:\[", pattern), (name, pattern)
        for ref in re.findall(r"%\{([A-Z0-9_]+)", pattern):
            assert ref in defs or not ref.startswith("SCORING_"), (name, ref)


def test_field_reference_rewrite() -> None:
    assert p.to_ingest_pattern("%{INT:[http][response][status_code]} [eE][+-]") == (
        "%{INT:http.response.status_code} [eE][+-]"
    )
    assert p.parse_pattern_file("# c\n\nA_B x y\n") == {"A_B": "x y"}


def test_pipeline_bodies() -> None:
    default, parse = p.scoring_pipeline(), p.parse_pipeline()
    json.dumps(p.scoring_pipelines())  # serialisable
    assert list(p.scoring_pipelines()) == [p.PARSE_PIPELINE_ID, p.CUSTOM_PIPELINE_ID, p.SCORING_PIPELINE_ID]
    first = default["processors"][0]["set"]
    assert (first["field"], first["value"]) == ("event.ingested", "{{{_ingest.timestamp}}}")
    calls = [proc["pipeline"] for proc in default["processors"] if "pipeline" in proc]
    assert [c["name"] for c in calls] == [p.PARSE_PIPELINE_ID, p.CUSTOM_PIPELINE_ID]
    assert "ctx.mlops.scoring.parser == 'logstash'" in calls[0]["if"] and "if" not in calls[1]
    processors = parse["processors"]
    kinds = [next(iter(proc)) for proc in processors]
    assert kinds.index("rename") < kinds.index("grok") < kinds.index("convert") < kinds.index("date")
    groks = [proc["grok"] for proc in processors if "grok" in proc]
    assert [g["patterns"] for g in groks] == [
        [f"%{{{n}}}" for n in p.HEADER_PATTERNS],
        [f"%{{{n}}}" for n in p.MESSAGE_PATTERNS],
    ]
    assert all(g["pattern_definitions"] == p.load_pattern_definitions() for g in groks)
    assert all(d["timezone"] == "UTC" for d in (proc["date"] for proc in processors if "date" in proc))
    for body in (default, parse):
        on_failure = json.dumps(body["on_failure"])
        assert "error.message" in on_failure and p.TAG_PIPELINE_ERROR in on_failure
    tags = [proc["tag"] for proc in (next(iter(x.values())) for x in processors)]
    assert len(tags) == len(set(tags))
    text = json.dumps(parse)
    for tag in (p.TAG_UNPARSED, p.TAG_HEALTH_PROBE, p.TAG_BAD_TIMESTAMP, p.TAG_NON_FINITE):
        assert f'"{tag}"' in text
    assert p.custom_pipeline()["processors"] == []


def test_installed_pipelines_carry_version_and_owner() -> None:
    from shipper.setup.assets import ASSET_VERSION, build_assets

    assets = {a.name: a for a in build_assets(30, 7, has_ilm=True, scoring=p) if a.kind == "ingest_pipeline"}
    assert list(assets) == [p.PARSE_PIPELINE_ID, p.CUSTOM_PIPELINE_ID, p.SCORING_PIPELINE_ID]
    for name in (p.PARSE_PIPELINE_ID, p.SCORING_PIPELINE_ID):
        assert assets[name].body["version"] == ASSET_VERSION
        assert assets[name].body["_meta"]["managed_by"] == "shipper"
    assert assets[p.CUSTOM_PIPELINE_ID].user_owned


def test_model_labels_are_mapped() -> None:
    body = json.dumps(p.parse_pipeline())
    for sources in p.MODEL_LABELS.values():
        for source in sources:
            assert source in body


def test_mappings_cover_the_data_contract() -> None:
    props = p.scoring_mappings()["properties"]

    def get(path: str) -> dict[str, object]:
        node: dict[str, object] = {"properties": props}
        for part in path.split("."):
            node = node["properties"][part]  # type: ignore[index]
        return node

    for field in CONTRACT_FIELDS:
        assert "type" in get(field), field
    assert get("event.duration")["type"] == "long"
    assert get("ml.model.version")["type"] == "keyword"
    assert get("mlops.scoring.metric.value")["type"] == "double"


def test_scoring_data_stream_is_installed_with_or_without_ingest() -> None:
    from shipper.setup.assets import build_assets

    def scoring(ingest: bool) -> dict[tuple[str, str], dict[str, object]]:
        assets = build_assets(30, 7, has_ilm=False, scoring=p, ingest=ingest)
        return {(a.kind, a.name): a.body for a in assets if "scoring" in a.name}

    with_ingest, without = scoring(True), scoring(False)
    templates = {
        ("component_template", "logs-mlops.scoring@settings"),
        ("component_template", "logs-mlops.scoring@mappings"),
        ("component_template", "logs-mlops.scoring@custom"),
        ("index_template", "logs-mlops.scoring"),
    }
    assert templates <= without.keys()
    assert set(with_ingest) - set(without) == {
        ("ingest_pipeline", name)
        for name in (p.SCORING_PIPELINE_ID, p.PARSE_PIPELINE_ID, p.CUSTOM_PIPELINE_ID)
    }
    settings = ("component_template", "logs-mlops.scoring@settings")
    assert with_ingest[settings]["template"]["settings"]["index"]["default_pipeline"] == (  # type: ignore[index]
        p.SCORING_PIPELINE_ID
    )
    assert "default_pipeline" not in without[settings]["template"]["settings"]["index"]  # type: ignore[index]
    assert without[settings]["template"]["lifecycle"] == {"data_retention": "7d"}  # type: ignore[index]
    mappings = ("component_template", "logs-mlops.scoring@mappings")
    assert without[mappings] == with_ingest[mappings]
