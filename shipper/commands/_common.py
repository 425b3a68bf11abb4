"""What the core commands share: the context decorator, the final error, the Elasticsearch probe."""

from __future__ import annotations

from typing import Any

import click

from shipper.config import Settings
from shipper.context import Context
from shipper.errors import ShipperError

pass_context = click.make_pass_decorator(Context)


def fail(exc: ShipperError) -> None:
    from shipper import logs

    logs.fail(exc, exc.exit_code, type(exc).__name__)


def client_and_capabilities(settings: Settings) -> tuple[Any, Any]:
    from shipper.sink.client import build_client, probe

    client = build_client(settings)
    return client, probe(client)
