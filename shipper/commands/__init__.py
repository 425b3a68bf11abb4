"""The `shipper` commands that live beside their layer, gathered in one place for the command line.

`shipper.cli` defines the group and the core commands (validate, check, setup, sync, run) and adds
these right after the group: `serve` and `reconcile` (shipper.webhook.cli) and `compare`
(shipper.compare_cli). A new command of another layer is added here, and nowhere else.
"""

from __future__ import annotations

import click


def layer_commands() -> tuple[click.Command, ...]:
    from shipper.compare_cli import compare
    from shipper.webhook.cli import reconcile, serve

    return (serve, reconcile, compare)
