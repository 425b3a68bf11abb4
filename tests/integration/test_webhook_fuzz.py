"""schemathesis against the webhook's own OpenAPI description, over real HTTP into the real
Elasticsearch, with the shared secret: every operation, valid and invalid inputs, a fixed budget.

Asserted: no server error (5xx other than the documented 503), and every answer conforms to the
description (status codes, content types, headers, bodies). The budget (examples per operation and
media type) keeps this to about a minute in CI; `SHIPPER_FUZZ_EXAMPLES` raises it for a longer run.
Generation is derandomised, so a failure reproduces.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as budget
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration import test_webhook as webhook_tests
from tests.integration.test_webhook import Hook, call

pytestmark = pytest.mark.integration

# The fixtures of test_webhook.py: a real server per test over the shared, installed cluster.
installed = webhook_tests.installed
settings = webhook_tests.settings
start_hook = webhook_tests.start_hook

EXAMPLES = int(os.environ.get("SHIPPER_FUZZ_EXAMPLES", "60"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_the_webhook_keeps_to_its_own_openapi_description(start_hook: Callable[..., Hook]) -> None:
    hook = start_hook()
    description = call("GET", f"{hook.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(description)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("POST", "/events"),
        ("OPTIONS", "/events"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    secret = {"x-shipper-secret": hook.secret}
    tried: list[str] = []
    written_before = accepted()
    for operation in operations:
        fuzz(operation, hook.url, secret, tried)
    assert set(tried) == {op.label for op in operations}
    # The secret got the cases past authentication: generated deliveries were written.
    assert accepted() > written_before


def accepted() -> float:
    return sum(
        REGISTRY.get_sample_value("shipper_webhook_deliveries_total", {"outcome": outcome}) or 0.0
        for outcome in ("accepted", "partial")
    )


def fuzz(operation: Any, url: str, headers: dict[str, str], tried: list[str]) -> None:
    """Run the operation's generated cases; hypothesis shrinks and reports the first failure."""

    @budget(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
        case = data.draw(operation.as_strategy(generation_mode=mode))
        case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)
        tried.append(operation.label)

    run()
