"""Kibana: import the packaged saved objects (`shipper setup --kibana`) and report Kibana's status
(`shipper check`).

The saved objects are built from `kibana/` into the package as
`shipper/assets/kibana/mlops-saved-objects.ndjson`; `OBJECTS_STACK_VERSION` is the Elastic Stack
release they are written for (their `typeMigrationVersion`s are that Kibana's). It must equal
`ELASTIC_STACK_VERSION` in `.env`, which the installed package cannot read; a test keeps the two in
step.
"""

from __future__ import annotations

from pathlib import Path

#: The Kibana release the packaged saved objects are written for (= `.env`'s ELASTIC_STACK_VERSION).
OBJECTS_STACK_VERSION = "9.5.4"

#: The packaged saved objects, as Kibana's import API takes them.
OBJECTS_FILE = Path(__file__).resolve().parent.parent / "assets" / "kibana" / "mlops-saved-objects.ndjson"


def version_tuple(version: str) -> tuple[int, ...]:
    """`9.5.4` -> (9, 5, 4); a suffix such as `-SNAPSHOT` is ignored; non-numbers count as 0."""
    parts = []
    for part in version.split("-", 1)[0].split("."):
        parts.append(int(part) if part.isascii() and part.isdigit() else 0)
    return tuple(parts)
