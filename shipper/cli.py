"""The `shipper` command line: the root group and its options; the commands are in `shipper.commands`.

Exit codes: 0 success; 1 unexpected error; 2 configuration invalid; 3 Elasticsearch or MLflow
unreachable or refusing; 4 an asset of someone else's is in the way of `setup`; 5 a write failed
after all retries (nothing was checkpointed; run again); 6 Kibana refused some saved objects.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from shipper import __version__
from shipper.commands import all_commands
from shipper.config import log_format_asked
from shipper.context import Context
from shipper.errors import ShipperError

log = logging.getLogger("shipper")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="shipper")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file of settings (environment variables SHIPPER_* win over it).",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Overrides SHIPPER_LOG_FORMAT.")
@click.pass_context
def main_group(ctx: click.Context, config_file: Path | None, log_format: str | None) -> None:
    """Ship MLflow and Azure Machine Learning telemetry into Elasticsearch.

    Typical use: `shipper validate`, `shipper check`, `shipper setup`, then `shipper sync` once or
    `shipper run` as a service. MLflow is read from MLFLOW_TRACKING_URI.
    """
    ctx.obj = Context(config_file, log_format)
    from shipper import logs

    logs.quiet_libraries()


for _command in all_commands():  # the one registration point
    main_group.add_command(_command)


def _format_asked(argv: list[str]) -> str | None:
    for position, arg in enumerate(argv):
        if arg == "--log-format" and position + 1 < len(argv):
            return argv[position + 1]
        if arg.startswith("--log-format="):
            return arg.split("=", 1)[1]
    asked = log_format_asked()  # the settings may be what fails: this one is read alone
    return asked.value if asked else None


def main() -> None:
    from shipper import logs

    fmt = _format_asked(sys.argv[1:])
    try:
        main_group(prog_name="shipper")
    except ShipperError as exc:  # raised outside a command's own handling
        logs.fail(exc, exc.exit_code, type(exc).__name__, fmt)
    except Exception as exc:  # a bug: one sentence, and the traceback only where asked for
        log.debug("unexpected error", exc_info=True)
        logs.fail(
            RuntimeError(
                f"unexpected {type(exc).__name__}: {str(exc)[:500]}; this is a bug in the shipper: "
                "run again with SHIPPER_LOG_LEVEL=DEBUG for the traceback and report it"
            ),
            1,
            type(exc).__name__,
            fmt,
        )
