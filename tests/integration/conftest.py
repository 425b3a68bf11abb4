"""Fixtures shared by the integration tests on the real stack."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def env(es_url: str, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, es: Any) -> dict[str, str]:
    """A clean Elasticsearch (only the shipper's own indices go) per test, and the shipper pointed at
    the stack's Elasticsearch and MLflow. A module may define its own `env` instead."""
    names = list(es.indices.get(index="mlops-*", expand_wildcards="all", allow_no_indices=True))
    if names:
        es.indices.delete(index=names)
    values = {"SHIPPER_ELASTICSEARCH_URL": es_url, "MLFLOW_TRACKING_URI": mlflow_uri}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values
