"""Test support for the scoring-log path: golden files, Elasticsearch's grok engine, _simulate.

Golden files follow elastic/integrations' `_dev/test/pipeline`: `tests/golden/scoring/test-*.log`
holds raw lines; `test-*.log-config.json` (optional) holds `fields` merged into every input event
(what Filebeat adds: `@timestamp`, container labels); multi-line records are joined with the
`multiline.pattern` of `filebeat/filebeat.docker.yml`, as Filebeat joins them. Each record's expected
result is in `test-*.log-expected.json`: the grok captures (from Elasticsearch's grok engine) and
the document `_simulate` returns on the ingest node (tests/support/ingest_node.py).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "scoring"

#: Fields that change on every run, removed before comparing (declared, as in elastic/integrations).
VOLATILE_FIELDS = ("event.ingested",)


def multiline_pattern() -> re.Pattern[str]:
    """The continuation-line pattern Filebeat uses (filebeat/filebeat.docker.yml)."""
    config = yaml.safe_load((REPO / "filebeat" / "filebeat.docker.yml").read_text(encoding="utf-8"))
    for parser in config["filebeat.inputs"][0]["parsers"]:
        if "multiline" in parser:
            return re.compile(parser["multiline"]["pattern"])
    raise AssertionError("filebeat.docker.yml has no multiline parser")


def join_records(lines: list[str]) -> list[str]:
    """Join continuation lines to the line before, as Filebeat's multiline (negate false, after)."""
    pattern = multiline_pattern()
    records: list[str] = []
    for line in lines:
        if records and pattern.match(line):
            records[-1] += "\n" + line
        else:
            records.append(line)
    return [record.rstrip("\n") for record in records]


@dataclass
class GoldenCase:
    log: Path
    records: list[str]
    fields: dict[str, Any]

    @property
    def expected_path(self) -> Path:
        return self.log.with_name(self.log.name + "-expected.json")

    def input_docs(self) -> list[dict[str, Any]]:
        return [{**json.loads(json.dumps(self.fields)), "message": record} for record in self.records]


def golden_cases() -> list[GoldenCase]:
    cases = []
    for path in sorted(GOLDEN.glob("test-*.log")):
        config_path = path.with_name(path.name + "-config.json")
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        records = join_records(lines) if config.get("multiline", True) else lines
        cases.append(GoldenCase(path, records, config.get("fields", {})))
    return cases


# --- Elasticsearch's grok engine ----------------------------------------------------------------


@dataclass
class GrokEngine:
    """Elasticsearch's grok library, run from the jars of the Elasticsearch node under test."""

    java: str
    classpath: str

    @classmethod
    def from_node(cls, es: Any) -> GrokEngine:
        info = es.nodes.info(node_id="_local", metric="settings,process")
        (node,) = info["nodes"].values()
        home = Path(node["settings"]["path"]["home"])
        jars = [
            p
            for name in ("elasticsearch-grok", "joni", "jcodings", "elasticsearch-core")
            for p in glob.glob(str(home / "lib" / f"{name}-*.jar"))
        ]
        if not any("elasticsearch-grok" in j for j in jars):
            raise AssertionError(f"no elasticsearch-grok jar under {home}/lib: is Elasticsearch local?")
        java = os.path.realpath(f"/proc/{node['process']['id']}/exe")
        if not os.access(java, os.X_OK) or not java.endswith("java"):
            java = os.environ.get("JAVA", "java")
        return cls(java=java, classpath=os.pathsep.join(jars))

    def run(
        self, definitions: dict[str, str], patterns: tuple[str, ...], texts: list[str]
    ) -> list[tuple[str | None, dict[str, str]]]:
        """(matching pattern or None, captures) for each text, first matching pattern wins."""
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", encoding="utf-8", delete=False) as f:
            for name, pattern in definitions.items():
                f.write(f"{name}\t{pattern}\n")
            defs = f.name
        try:
            stdin = "".join(base64.b64encode(t.encode()).decode() + "\n" for t in texts)
            proc = subprocess.run(
                [
                    self.java,
                    "-cp",
                    self.classpath,
                    str(Path(__file__).with_name("EsGrok.java")),
                    defs,
                    ",".join(patterns),
                ],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        finally:
            os.unlink(defs)
        if proc.returncode != 0:
            raise AssertionError(f"EsGrok failed ({proc.returncode}): {proc.stderr[-3000:]}")
        results: list[tuple[str | None, dict[str, str]]] = []
        for line in proc.stdout.splitlines():
            index, *pairs = line.split("\t")
            captures = {}
            for pair in pairs:
                key, _, value = pair.partition(":")
                captures[base64.b64decode(key).decode()] = base64.b64decode(value).decode()
            results.append((patterns[int(index)] if int(index) >= 0 else None, captures))
        assert len(results) == len(texts), proc.stderr[-2000:]
        return results


def grok_record(engine_results: tuple[Any, Any]) -> dict[str, Any]:
    name, captures = engine_results
    return {"pattern": name, "fields": dict(sorted(captures.items()))}


# --- _simulate ----------------------------------------------------------------------------------


def strip_volatile(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for dotted in VOLATILE_FIELDS:
        *parents, leaf = dotted.split(".")
        node = doc
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return doc
