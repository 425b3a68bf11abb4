"""Filebeat configurations checked against an allow-list of the documented options they use."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FILES = ["filebeat.docker.yml", "filebeat.kubernetes.yml"]

TOP = {
    "filebeat.inputs",
    "filebeat.autodiscover",
    "processors",
    "output.logstash",
    "output.elasticsearch",
    "setup.template.enabled",
    "setup.ilm.enabled",
    "logging.level",
    "logging.to_stderr",
}
FILESTREAM = {"type", "id", "paths", "prospector.scanner.symlinks", "parsers", "processors"}
CONTAINER = {"stream", "format"}
MULTILINE = {"type", "pattern", "negate", "match", "max_lines", "timeout"}
PROVIDER = {"type", "node", "scope", "labels.dedot", "annotations.dedot", "templates", "hints.enabled"}
PROCESSORS = {"add_docker_metadata", "drop_event", "add_host_metadata", "add_cloud_metadata"}


def _check_input(conf: dict[str, Any]) -> None:
    assert conf["type"] == "filestream" and set(conf) <= FILESTREAM, conf
    kinds = [next(iter(p)) for p in conf["parsers"]]
    assert kinds == ["container", "multiline"]
    assert set(conf["parsers"][0]["container"]) <= CONTAINER
    multi = conf["parsers"][1]["multiline"]
    assert set(multi) <= MULTILINE and multi["negate"] is False and multi["match"] == "after"
    re.compile(multi["pattern"])
    for proc in conf.get("processors", []):
        assert set(proc) <= PROCESSORS


@pytest.mark.parametrize("name", FILES)
def test_options_are_known(name: str) -> None:
    config = yaml.safe_load((REPO / "filebeat" / name).read_text(encoding="utf-8"))
    assert set(config) <= TOP, set(config) - TOP
    assert set(config["output.logstash"]) == {"hosts"}
    assert config["setup.template.enabled"] is False
    for proc in config.get("processors", []):
        assert set(proc) <= PROCESSORS
    for conf in config.get("filebeat.inputs", []):
        _check_input(conf)
    for provider in config.get("filebeat.autodiscover", {}).get("providers", []):
        assert set(provider) <= PROVIDER
        for template in provider["templates"]:
            assert set(template) == {"condition", "config"}
            for conf in template["config"]:
                _check_input(conf)


def test_both_files_join_tracebacks_alike() -> None:
    def pattern(name: str) -> str:
        text = (REPO / "filebeat" / name).read_text(encoding="utf-8")
        return re.findall(r"pattern: '(.+)'", text)[0]

    assert pattern(FILES[0]) == pattern(FILES[1])


def test_model_labels_and_elasticsearch_option() -> None:
    for name in FILES:
        text = (REPO / "filebeat" / name).read_text(encoding="utf-8")
        assert "labels.ml_model_name" in text and "labels.azureml_model_name" in text
        assert '#  pipeline: "logs-mlops.scoring"' in text and "${ES_API_KEY}" in text
    docker = yaml.safe_load((REPO / "filebeat" / FILES[0]).read_text(encoding="utf-8"))
    (docker_input,) = docker["filebeat.inputs"]
    assert docker_input["processors"][0]["add_docker_metadata"]["labels.dedot"] is True
