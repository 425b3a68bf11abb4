"""What a saved-objects import file holds, and what Kibana's answer to an import means.

Pure functions, no I/O but reading the file. Kibana's import API (`POST /api/saved_objects/_import`)
answers 200 with `{"success": bool, "successCount": n, "successResults": [...], "errors": [...],
"warnings": [...]}`; each entry of `errors` names an object (`type`, `id`, `meta.title`) and an
`error` whose `type` is one of `conflict`, `ambiguous_conflict`, `missing_references`,
`unsupported_type` or `unknown` (this last one carries Kibana's `message` and `statusCode`). An
object written for a newer Kibana than the one importing it is refused as a whole request (HTTP 4xx,
"belongs to a more recent version of Kibana"); older Kibanas reported it per object as `unknown`.
Every failure is turned into what failed, why, and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shipper.errors import ConfigError
from shipper.kibana import OBJECTS_STACK_VERSION

NEWER_VERSION_MARK = "belongs to a more recent version of Kibana"


@dataclass(frozen=True)
class SavedObjectsFile:
    path: Path
    content: bytes
    objects: tuple[tuple[str, str], ...]  # (type, id), in file order

    @property
    def upload_name(self) -> str:
        """Kibana refuses an upload whose file name does not end in `.ndjson`."""
        return self.path.name if self.path.suffix == ".ndjson" else f"{self.path.stem}.ndjson"


def read_objects_file(path: Path) -> SavedObjectsFile:
    """Read and check an NDJSON export: every line a JSON object with `type` and `id` (the
    trailing export summary line, which Kibana skips, is allowed)."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [
                f"saved objects file {path} does not exist; build it (the saved objects under kibana/ "
                "are built into it) or pass another file with --kibana-objects PATH"
            ]
        ) from None
    except OSError as exc:
        raise ConfigError([f"saved objects file {path} cannot be read ({exc.strerror})"]) from None
    objects: list[tuple[str, str]] = []
    problems: list[str] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(f"{path} line {number} is not JSON ({exc}); rebuild or re-export the file")
            continue
        if not isinstance(item, dict):
            problems.append(f"{path} line {number} is not a JSON object; each line holds one saved object")
            continue
        if "exportedCount" in item:  # the summary line of a Kibana export
            continue
        if not isinstance(item.get("type"), str) or not isinstance(item.get("id"), str):
            problems.append(f"{path} line {number} has no string `type` and `id`; it is not a saved object")
            continue
        objects.append((item["type"], item["id"]))
    if not objects and not problems:
        problems.append(f"{path} holds no saved objects; rebuild it or pass another file")
    if problems:
        raise ConfigError(problems)
    return SavedObjectsFile(path=path, content=content, objects=tuple(objects))


@dataclass(frozen=True)
class ImportFailure:
    object_type: str
    object_id: str
    title: str | None
    kind: str
    why: str
    fix: str

    def describe(self) -> str:
        name = f"{self.object_type} {self.object_id}" + (f" ({self.title!r})" if self.title else "")
        return f"{name}: {self.kind}: {self.why}; fix: {self.fix}"


@dataclass(frozen=True)
class ImportOutcome:
    success: bool
    success_count: int
    overwritten: int
    failures: tuple[ImportFailure, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def newer_version_fix() -> str:
    return (
        f"the objects are written for a newer Kibana than this one (the packaged ones for Kibana "
        f"{OBJECTS_STACK_VERSION}); upgrade Kibana to {OBJECTS_STACK_VERSION} or later, which migrates "
        "them on import"
    )


def _refs(refs: Any) -> str:
    if not isinstance(refs, list) or not refs:
        return "(none listed)"
    return ", ".join(f"{r.get('type', '?')} {r.get('id', '?')}" for r in refs if isinstance(r, dict))


def _failure(entry: dict[str, Any]) -> ImportFailure:
    error = entry.get("error") if isinstance(entry.get("error"), dict) else {}
    assert isinstance(error, dict)
    kind = str(error.get("type", "unknown"))
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    title = meta.get("title") or entry.get("title")
    object_type, object_id = str(entry.get("type", "?")), str(entry.get("id", "?"))
    if kind == "missing_references":
        why = (
            f"it references {_refs(error.get('references'))}, which is neither in the file nor in "
            "this Kibana space"
        )
        fix = (
            "import the complete file (the packaged one holds every data view its dashboards use), "
            "or create the missing objects in this space first"
        )
    elif kind == "conflict":
        where = error.get("destination_id") or error.get("destinationId")
        why = "an object with this id exists and could not be overwritten" + (
            f" (destination {where})" if where else ""
        )
        fix = (
            "it may belong to another space or be managed by Kibana; delete it in Stack Management > "
            "Saved objects, or import into another space with SHIPPER_KIBANA_SPACE"
        )
    elif kind == "ambiguous_conflict":
        destinations = error.get("destinations") or []
        ids = ", ".join(str(d.get("id")) for d in destinations if isinstance(d, dict)) or "several"
        why = f"several objects in this space were copied from it ({ids}), so Kibana cannot pick one"
        fix = "delete the copies in Stack Management > Saved objects, then import again"
    elif kind == "unsupported_type":
        why = f"this Kibana has no saved-object type {object_type!r} (or does not allow importing it)"
        fix = (
            f"use Kibana {OBJECTS_STACK_VERSION} or later with its default plugins enabled, and a user "
            "allowed to manage that type"
        )
    else:
        message = str(error.get("message") or error.get("error") or "no message")
        status = error.get("status_code") or error.get("statusCode")
        why = message + (f" (HTTP {status})" if status else "")
        if NEWER_VERSION_MARK in message:
            fix = newer_version_fix()
        elif status in (401, 403):
            fix = "give the Kibana user the privilege to write this type (e.g. the kibana_admin role)"
        else:
            fix = "see Kibana's log for this object; re-run `shipper setup --kibana` once it is fixed"
    return ImportFailure(object_type, object_id, str(title) if title else None, kind, why, fix)


def interpret_import(body: Any) -> ImportOutcome:
    """Kibana's 200 answer to an import -> what succeeded and what failed, with fixes."""
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        raise ValueError(f"not an import response: {str(body)[:200]}")
    results = body.get("successResults") or body.get("success_results") or []
    count = body.get("successCount", body.get("success_count"))
    if not isinstance(count, int):
        count = len(results)
    overwritten = sum(1 for r in results if isinstance(r, dict) and r.get("overwrite"))
    failures = tuple(_failure(e) for e in body.get("errors") or [] if isinstance(e, dict))
    warnings = tuple(
        str(w.get("message")) for w in body.get("warnings") or [] if isinstance(w, dict) and w.get("message")
    )
    return ImportOutcome(
        success=bool(body["success"]) and not failures,
        success_count=int(count),
        overwritten=overwritten,
        failures=failures,
        warnings=warnings,
    )
