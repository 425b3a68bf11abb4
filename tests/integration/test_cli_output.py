"""What the CLI prints on the real Elasticsearch: each change once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner

from shipper.cli import main_group

pytestmark = pytest.mark.integration


def test_setup_reports_each_change_once(es_url: str, es: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
    assert CliRunner().invoke(main_group, ["setup"]).exit_code == 0
    es.indices.delete_index_template(name="mlops-runs")  # one asset to create again
    result = CliRunner().invoke(main_group, ["setup"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "mlops-runs" in line and "index_template" in line]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("create")
    repeated = [line for line, n in Counter(result.output.splitlines()).items() if n > 1]
    assert repeated == [], result.output
