"""`shipper check`: connectivity and capabilities of Elasticsearch, MLflow and Kibana."""

from __future__ import annotations

import click

from shipper.commands._common import client_and_capabilities, fail, pass_context
from shipper.config import mlflow_tracking_uri
from shipper.context import Context
from shipper.errors import ConnectivityError, ShipperError


@click.command()
@pass_context
def check(ctx: Context) -> None:
    """Check connectivity and capabilities: Elasticsearch version, ILM, security, credentials, MLflow,
    and Kibana's status and version when SHIPPER_KIBANA_URL is set.

    Exit 0 when everything answers, 3 when something does not.
    """
    try:
        settings = ctx.settings
        tracking_uri = mlflow_tracking_uri()
        _client, caps = client_and_capabilities(settings)
        click.echo(
            f"elasticsearch: {caps.version}; ILM: {'yes' if caps.ilm else 'no'}; "
            f"security: {'on' if caps.security else 'off'}; "
            f"ingest processors: {len(caps.ingest_processors)}"
        )
        if caps.major < 8:
            raise ConnectivityError(f"Elasticsearch {caps.version} is too old; 8.x or newer is needed")
        from shipper.sources.mlflow_tracking import MlflowSource

        source = MlflowSource(tracking_uri)
        source.ping(settings.mlflow_connect_timeout_seconds)
        click.echo(f"mlflow: {source.tracking_uri} answers")
        if settings.kibana_url:
            from shipper.kibana.setup import check_kibana

            for line in check_kibana(settings):
                click.echo(line)
    except ShipperError as exc:
        fail(exc)
