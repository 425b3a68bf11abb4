"""`shipper compare`: a registered model's versions side by side, from Elasticsearch."""

from __future__ import annotations

import sys

import click
import orjson

from shipper.context import Context
from shipper.errors import ConfigError, ConnectivityError, ShipperError


class UnknownModelError(ShipperError):
    """The model has no registered version in `mlops-models`."""

    exit_code = 2


def _table(model: str, metrics: tuple[str, ...], dataset: str | None = None) -> dict[str, object]:
    from elasticsearch import ApiError, NotFoundError, TransportError

    from shipper.compare import comparison, dataset_names, fetch, metric_keys, model_names
    from shipper.core.names import MODELS_INDEX
    from shipper.sink.client import _connectivity, build_client

    ctx = click.get_current_context().find_object(Context)
    assert ctx is not None
    client = build_client(ctx.settings)
    try:
        try:
            hits = fetch(client, model)
        except NotFoundError:
            raise ConnectivityError(
                f"index {MODELS_INDEX} does not exist; run `shipper setup` and `shipper sync` first"
            ) from None
        if not hits:
            names = model_names(client)
            known = ", ".join(names) if names else "none yet (run `shipper sync`)"
            raise UnknownModelError(
                f"no registered model {model!r} in {MODELS_INDEX}; the models there: {known}"
            )
        table = comparison(model, hits, list(metrics) or None, dataset)
        if dataset is not None:
            evaluated = dataset_names(comparison(model, hits))
            if dataset not in evaluated:
                raise ConfigError(
                    [
                        f"--dataset {dataset!r}: no version of {model!r} has metrics logged for it; "
                        f"its evaluation datasets: {', '.join(evaluated) or 'none'}"
                    ]
                )
        if metrics:
            present = set(metric_keys(comparison(model, hits, None, dataset), dataset))
            where = f" on dataset {dataset!r}" if dataset is not None else ""
            missing = [m for m in metrics if m not in present]
            if missing:
                raise ConfigError(
                    [
                        f"--metric {m!r}: no version of {model!r} has it{where}; its metrics{where}: "
                        f"{', '.join(sorted(present)) or 'none'}"
                        for m in missing
                    ]
                )
        return table
    except (ApiError, TransportError) as exc:
        raise _connectivity(exc) from None
    finally:
        client.close()


@click.command()
@click.option("--model", required=True, help="Registered model name (as in the MLflow registry).")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="Only this metric; repeat for several (default: every metric of the versions).",
)
@click.option(
    "--dataset",
    default=None,
    help="The values logged for this evaluation dataset (MLflow 3: metrics logged against the "
    "version's logged model with `dataset=`), instead of the source run's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def compare(model: str, metrics: tuple[str, ...], dataset: str | None, as_json: bool) -> None:
    """Compare a registered model's versions: aliases, stage, source run and the final value of
    each metric, one row per version in version order, read from Elasticsearch (`mlops-models`).

    --json prints {"model": NAME, "versions": [{"version": "1", "aliases": [...], "stage": ...,
    "run_id": ..., "metrics": {KEY: VALUE}, "datasets": {DATASET: {KEY: VALUE}}}]}; non-finite
    values are "NaN", "Infinity", "-Infinity". With --dataset, "datasets" holds that dataset only
    and the table shows its values.
    Exit 2 when the model or a metric is unknown, 3 when Elasticsearch cannot be read.
    """
    from shipper.compare import render_text

    try:
        table = _table(model, metrics, dataset)
    except ShipperError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(orjson.dumps(table).decode())
    else:
        click.echo(render_text(table, list(metrics) or None, dataset))
