"""The Logstash pipeline, read by a real parser of the Logstash configuration language (lscl)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from shipper.assets.scoring import pipeline as p
from tests.support.logstash_config import Plugin, load_plugins

REPO = Path(__file__).resolve().parents[2]
CONFS = sorted((REPO / "logstash" / "pipeline" / "scoring").glob("*.conf"))


@pytest.fixture(scope="module")
def plugins() -> list[Plugin]:
    return load_plugins(CONFS)


def test_stage_files_are_numbered() -> None:
    assert [c.name for c in CONFS] == sorted(c.name for c in CONFS)
    assert all(re.fullmatch(r"\d\d-[a-z]+\.conf", c.name) for c in CONFS)


def test_every_plugin_has_a_unique_id(plugins: list[Plugin]) -> None:
    ids = [pl.options.get("id") for pl in plugins]
    assert all(isinstance(i, str) and i.startswith("mlops_scoring_") for i in ids), ids
    assert len(ids) == len(set(ids))


def test_sections(plugins: list[Plugin]) -> None:
    assert [pl.name for pl in plugins if pl.section == "input"] == ["beats"]
    (out,) = [pl for pl in plugins if pl.section == "output"]
    assert out.name == "elasticsearch"
    assert out.options["data_stream"] == "true"
    assert out.options["data_stream_type"] == "logs"
    assert out.options["data_stream_dataset"] == "mlops.scoring"
    assert out.options["api_key"] == "${ES_API_KEY}"


def test_grok_uses_the_shared_patterns(plugins: list[Plugin]) -> None:
    shared = p.parse_pattern_file(
        (REPO / "logstash" / "patterns" / "mlops_scoring").read_text(encoding="utf-8")
    )
    groks = [pl for pl in plugins if pl.name == "grok"]
    assert len(groks) == 2
    used = []
    for grok in groks:
        (patterns_dir,) = grok.options["patterns_dir"]
        assert patterns_dir.rstrip("}").endswith("/patterns")
        assert grok.options["patterns_files_glob"] == "mlops_scoring"
        ((_field, patterns),) = grok.options["match"].items()
        names = [re.fullmatch(r"%\{([A-Z0-9_]+)\}", x).group(1) for x in patterns]  # type: ignore[union-attr]
        assert all(n in shared for n in names)
        used.append(tuple(names))
    assert used == [p.HEADER_PATTERNS, p.MESSAGE_PATTERNS]  # same order as the ingest pipeline


def test_json_fields_match_the_ingest_pipeline(plugins: list[Plugin]) -> None:
    (renames,) = [pl.options["rename"] for pl in plugins if pl.options["id"] == "mlops_scoring_json_fields"]
    for field in p.JSON_FIELDS:
        target = "".join(f"[{x}]" for x in field.split(".")) if "." in field else field
        assert renames[f"[_tmp][json][{field}]"] == target
        if "." in field:
            assert renames["[_tmp][json]" + target] == target


def test_model_labels_match_the_ingest_pipeline(plugins: list[Plugin]) -> None:
    copies = {
        k: v
        for pl in plugins
        if pl.name == "mutate" and "copy" in pl.options
        for k, v in pl.options["copy"].items()
        if "labels" in k
    }
    for target, sources in p.MODEL_LABELS.items():
        for source in sources:
            assert copies["".join(f"[{x}]" for x in source.split("."))] == "".join(
                f"[{x}]" for x in target.split(".")
            )


def test_no_secrets_and_queue_settings() -> None:
    text = "\n".join(c.read_text(encoding="utf-8") for c in CONFS)
    assert not re.search(r"(password|api_key)\s*=>\s*\"(?!\$\{)", text)
    settings = yaml.safe_load((REPO / "logstash" / "config" / "logstash.yml").read_text(encoding="utf-8"))
    assert settings["queue.type"] == "persisted"
    assert settings["dead_letter_queue.enable"] is True
    (pipe,) = yaml.safe_load((REPO / "logstash" / "pipelines.yml").read_text(encoding="utf-8"))
    assert pipe["path.config"].endswith("/pipeline/scoring/*.conf")
