"""`shipper validate`: the configuration, checked offline."""

from __future__ import annotations

import click

from shipper.commands._common import fail, pass_context
from shipper.config import Settings, env_name, mlflow_tracking_uri_given, mlflow_uri_problem, redact_uri
from shipper.context import Context
from shipper.errors import ConfigError, ShipperError


@click.command()
@pass_context
def validate(ctx: Context) -> None:
    """Check the configuration offline: every problem is listed with its fix.

    Also checks MLflow's MLFLOW_TRACKING_URI (scheme, shape, plugin installed). Exit 0 when
    valid, 2 otherwise. Contacts nothing.
    """
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = ctx.settings
    except ConfigError as exc:
        problems += exc.problems
    except ShipperError as exc:
        fail(exc)
        return
    uri = mlflow_tracking_uri_given()
    uri_problem = mlflow_uri_problem(uri) if uri else None
    if uri_problem:
        problems.append(uri_problem)
    if problems or settings is None:
        fail(ConfigError(problems))
        return
    click.echo("configuration is valid")
    # model_dump keeps SecretStr values, whose str() is masked: secrets never print.
    for name, value in settings.model_dump().items():
        click.echo(f"  {env_name(name)}={'' if value is None else value}")
    click.echo(f"  MLFLOW_TRACKING_URI={redact_uri(uri)}")
    if not uri:
        click.echo(
            "note: MLFLOW_TRACKING_URI is not set: `check`, `sync` and `run` will refuse to start "
            "(`serve` runs without it, with no sync on run end); set it with "
            "export MLFLOW_TRACKING_URI=https://mlflow.example:5000"
        )
    serve_refuses = not (
        settings.webhook_secrets() or settings.webhook_entra_tenant_id or settings.webhook_insecure_no_auth
    )
    if serve_refuses:
        click.echo(
            "note: `shipper serve` will refuse to start: set SHIPPER_WEBHOOK_SECRET or "
            "SHIPPER_WEBHOOK_ENTRA_TENANT_ID (other commands do not need them)"
        )
