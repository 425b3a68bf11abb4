"""Pure parts of the sink and setup: entity merging, retention, pipeline processor discovery."""

from __future__ import annotations

from datetime import UTC, datetime

from shipper.core.entities import EntityWrite, merge
from shipper.core.names import metrics_index, month_start_ms
from shipper.setup.assets import ASSET_VERSION, build_assets
from shipper.setup.installer import content_hash, processor_types
from shipper.sync.retention import expired


def test_newer_view_wins_and_other_sources_fields_survive() -> None:
    stored = merge(
        None, EntityWrite("mlops-runs", "r1", "azureml", 200, {"azureml": {"run": {"status": "Running"}}})
    )
    assert stored is not None
    after = merge(
        stored, EntityWrite("mlops-runs", "r1", "mlflow", 100, {"mlflow": {"run": {"status": "RUNNING"}}})
    )
    assert after is not None
    assert after["azureml"] == {"run": {"status": "Running"}}
    assert after["mlops"]["versions"] == {"azureml": 200, "mlflow": 100}
    # An older view from the same source is a no-op, whatever the arrival order.
    assert merge(after, EntityWrite("mlops-runs", "r1", "azureml", 150, {"azureml": {"run": {}}})) is None
    newer = merge(
        after, EntityWrite("mlops-runs", "r1", "azureml", 300, {"azureml": {"run": {"status": "Completed"}}})
    )
    assert newer is not None and newer["azureml"]["run"]["status"] == "Completed"


def test_none_removes_a_field() -> None:
    stored = merge(None, EntityWrite("i", "1", "mlflow", 1, {"ml": {"model": {"name": "m"}}}))
    after = merge(stored, EntityWrite("i", "1", "mlflow", 2, {"ml": None}))
    assert after is not None and "ml" not in after


def test_retention_deletes_only_whole_expired_months() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert expired("mlops-metrics-2024.01", 365, now)
    assert not expired("mlops-metrics-2025.11", 365, now)  # its last day is within a year
    assert not expired("mlops-runs", 1, now)
    assert not expired("mlops-metrics-garbage", 1, now)


def test_partition_names() -> None:
    assert metrics_index(month_start_ms("2024.05")) == "mlops-metrics-2024.05"
    assert metrics_index(month_start_ms("2024.06") - 1) == "mlops-metrics-2024.05"


def test_processor_types_include_nested() -> None:
    body = {
        "processors": [
            {"grok": {"field": "m", "patterns": ["x"], "on_failure": [{"append": {}}]}},
            {"foreach": {"field": "f", "processor": {"trim": {"field": "_ingest._value"}}}},
        ],
        "on_failure": [{"set": {"field": "error.message", "value": "x"}}],
    }
    assert processor_types(body) == {"grok", "append", "foreach", "trim", "set"}


def test_assets_are_versioned_and_custom_templates_are_users() -> None:
    assets = build_assets(30, 7, has_ilm=True)
    names = {(a.kind, a.name) for a in assets}
    assert ("ilm_policy", "mlops-metrics") in names
    assert ("index_template", "mlops-runs") in names
    customs = [a for a in assets if a.name.endswith("@custom")]
    assert customs and all(a.user_owned for a in customs)
    for asset in assets:
        if asset.kind in ("component_template", "index_template") and not asset.user_owned:
            assert asset.body["version"] == ASSET_VERSION
    without_ilm = build_assets(30, 7, has_ilm=False)
    assert not [a for a in without_ilm if a.kind == "ilm_policy"]
    assert content_hash(assets[0].body) == content_hash(dict(assets[0].body))
