"""`shipper check` and `shipper setup --kibana` end to end: the real Elasticsearch and MLflow of the
test stack, and for Kibana the local server of tests/support/kibana_server.py (Kibana cannot run
here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from tests.support.kibana_server import KibanaState, running

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "support" / "kibana-objects.ndjson"
API_KEY = "a2liYW5hLXRlc3Qta2V5LWlkOnNlY3JldC12YWx1ZQ=="  # test value


@pytest.fixture
def kibana(es_url: str, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[KibanaState]:
    state = KibanaState(api_keys={API_KEY})
    with running(state) as (url, _):
        monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", es_url)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        monkeypatch.setenv("SHIPPER_KIBANA_URL", url)
        monkeypatch.setenv("SHIPPER_KIBANA_API_KEY", API_KEY)
        yield state


def test_check_reports_kibana(kibana: KibanaState) -> None:
    result = CliRunner().invoke(main_group, ["check"])
    assert result.exit_code == 0, result.output
    assert "elasticsearch: 9.5.4" in result.output
    assert "answers; version 9.5.4; status available" in result.output
    assert API_KEY not in result.output


def test_check_warns_about_an_older_kibana(kibana: KibanaState) -> None:
    kibana.version = "9.4.0"
    result = CliRunner().invoke(main_group, ["check"])
    assert result.exit_code == 0, result.output
    assert "warning: Kibana 9.4.0 is older than the 9.5.4" in result.output


def test_check_fails_when_kibana_refuses(kibana: KibanaState, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_KIBANA_API_KEY", "d3Jvbmc=")
    result = CliRunner().invoke(main_group, ["check"])
    assert result.exit_code == 3
    assert "Kibana refused the credentials" in result.output


def test_setup_with_kibana_installs_both(kibana: KibanaState, es: Any) -> None:
    result = CliRunner().invoke(main_group, ["setup", "--kibana-objects", str(FIXTURE)])
    assert result.exit_code == 0, result.output
    assert es.indices.exists_index_template(name="mlops-models")
    assert "kibana: imported 3 saved objects" in result.output
    assert len(kibana.objects) == 3
    again = CliRunner().invoke(main_group, ["setup", "--kibana", "--kibana-objects", str(FIXTURE)])
    assert again.exit_code == 0, again.output
    assert "nothing changed" in again.output
    assert "(3 replaced existing ones)" in again.output
