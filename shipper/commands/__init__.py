"""Every `shipper` command, registered in one place.

`shipper.cli` holds only the root group (--config, --log-format, --version) and adds what
`all_commands()` returns. The core commands live here, one module per job (`validate`, `check`,
`setup`, `sync` with `run`); `serve` and `reconcile` live beside the webhook (shipper.webhook.cli)
and `compare` beside its logic (shipper.compare_cli). A new command is added to this list, and
nowhere else.
"""

from __future__ import annotations

import click


def all_commands() -> tuple[click.Command, ...]:
    from shipper.commands.check import check
    from shipper.commands.setup import setup
    from shipper.commands.sync import run, sync
    from shipper.commands.validate import validate
    from shipper.compare_cli import compare
    from shipper.webhook.cli import reconcile, serve

    return (validate, check, setup, sync, run, serve, reconcile, compare)
