"""Registered model versions as numbers, the same for MLflow's registry and Azure ML's events."""

from __future__ import annotations


def version_number(version: str | None) -> int | None:
    """ "7" -> 7; None for anything else. ASCII digits only: str.isdigit() also accepts "²" and "①",
    which int() refuses. Under 19 digits, so the number fits the `long` it is stored in."""
    if version and version.isascii() and version.isdigit() and len(version) < 19:
        return int(version)
    return None
