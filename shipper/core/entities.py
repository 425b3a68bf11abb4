"""Entity writes: the part of a run or model version document one source owns, and how it merges.

Each source owns some top-level fields of an entity and stamps its view with a source time in
`mlops.versions.<source>`; `merge` applies a write only when its stamp is not older than the stored
one. Pure; `shipper.sink.entities.upsert_entities` does the reading and writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EntityWrite:
    index: str
    id: str
    owner: str
    stamp: int
    # Top-level fields this source owns; a None value removes the field.
    doc: dict[str, Any] = field(default_factory=dict)


def merge(current: dict[str, Any] | None, write: EntityWrite) -> dict[str, Any] | None:
    """The stored document after `write`, or None when the stored view is newer (a no-op)."""
    stored = dict(current or {})
    mlops = dict(stored.get("mlops") or {})
    versions = dict(mlops.get("versions") or {})
    previous = versions.get(write.owner)
    if previous is not None and previous > write.stamp:
        return None
    for key, value in write.doc.items():
        if value is None:
            stored.pop(key, None)
        else:
            stored[key] = value
    versions[write.owner] = write.stamp
    mlops["versions"] = versions
    stored["mlops"] = mlops
    return stored
