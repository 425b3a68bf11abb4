"""`shipper setup --kibana` and the Kibana lines of `shipper check`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shipper.config import Settings
from shipper.errors import ConfigError, KibanaImportError
from shipper.kibana import OBJECTS_FILE, OBJECTS_STACK_VERSION
from shipper.kibana.client import KibanaClient, KibanaStatus
from shipper.kibana.imports import read_objects_file


def import_saved_objects(
    settings: Settings, objects_path: Path | None, dry_run: bool, echo: Callable[[str], None]
) -> None:
    """Import the saved objects into Kibana with overwrite (a second import of the same file is a
    success that changes nothing visible). Raises KibanaImportError listing each refused object."""
    if not settings.kibana_url:
        raise ConfigError(
            [
                "SHIPPER_KIBANA_URL is not set, and importing the saved objects needs it; set it to "
                "Kibana's URL, e.g. https://kibana.example:5601"
            ]
        )
    objects = read_objects_file(objects_path or OBJECTS_FILE)
    space = settings.kibana_space or "default"
    target = f"Kibana {settings.kibana_url} (space {space})"
    if dry_run:
        echo(f"would import {len(objects.objects)} saved objects from {objects.path} into {target}")
        return
    with KibanaClient(settings) as client:
        outcome = client.import_objects(objects)
    for warning in outcome.warnings:
        echo(f"kibana warning: {warning}")
    if outcome.failures or not outcome.success:
        lines = [
            f"Kibana imported {outcome.success_count} of {len(objects.objects)} saved objects from "
            f"{objects.path} into {target}; {len(outcome.failures)} failed:"
        ]
        lines += [f"  - {failure.describe()}" for failure in outcome.failures]
        if not outcome.failures:
            lines.append("  - Kibana reported no reason; see Kibana's log")
        raise KibanaImportError("\n".join(lines))
    echo(
        f"kibana: imported {outcome.success_count} saved objects from {objects.path} into {target} "
        f"({outcome.overwritten} replaced existing ones)"
    )


def describe_status(url: str, status: KibanaStatus) -> list[str]:
    """The lines `shipper check` prints for Kibana."""
    level = status.level or "unknown"
    if status.version is None:
        return [
            f"kibana: {url} answers (status {level}); version hidden: Kibana shows it only to an "
            "authenticated user; set SHIPPER_KIBANA_API_KEY or SHIPPER_KIBANA_USERNAME/PASSWORD "
            "(or the Elasticsearch credentials it falls back to)"
        ]
    lines = [f"kibana: {url} answers; version {status.version}; status {level}"]
    if status.older_than_objects():
        lines.append(
            f"warning: Kibana {status.version} is older than the {OBJECTS_STACK_VERSION} the saved objects "
            "are written for; it may refuse them ('belongs to a more recent version of Kibana'); "
            f"upgrade Kibana to {OBJECTS_STACK_VERSION} or later"
        )
    if level not in ("available", "green"):
        lines.append(f"warning: Kibana reports its status as {level}; imports may fail until it is available")
    return lines


def check_kibana(settings: Settings) -> list[str]:
    assert settings.kibana_url
    with KibanaClient(settings) as client:
        return describe_status(client.url, client.status())
