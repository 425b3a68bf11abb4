"""Build the Kibana saved objects that users import from their readable sources, and back.

Sources: ``kibana/<type>/<id>.json``, one saved object per file, as a person reads it: the JSON that
Kibana keeps inside strings (``panelsJSON``, ``visState``, a Vega spec...) decoded into objects, keys
sorted, volatile fields (``updated_at``, ``version``, ``namespaces``...) left out.

    scripts/kibana-build            # write both NDJSON copies from the sources
    scripts/kibana-build --check    # exit 1 when a copy differs from what the sources build
    scripts/kibana-build --decode export.ndjson   # an export from Kibana -> readable sources

The built file is written twice, byte-identical: ``kibana/mlops-saved-objects.ndjson`` (what users
and docker compose import) and ``shipper/assets/kibana/mlops-saved-objects.ndjson`` (package data
for ``shipper setup --kibana``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "kibana"
OUTPUTS = (
    REPO / "kibana" / "mlops-saved-objects.ndjson",
    REPO / "shipper" / "assets" / "kibana" / "mlops-saved-objects.ndjson",
)

#: Saved-object types, in the order they are written (what others refer to comes first).
TYPES = ("index-pattern", "lens", "visualization", "dashboard")

#: Attributes that Kibana stores as JSON text, per type (dotted paths under `attributes`).
ENCODED: dict[str, tuple[str, ...]] = {
    "index-pattern": (
        "fieldFormatMap",
        "fields",
        "runtimeFieldMap",
        "sourceFilters",
        "fieldAttrs",
        "typeMeta",
    ),
    "lens": (),
    "visualization": ("visState", "uiStateJSON", "kibanaSavedObjectMeta.searchSourceJSON"),
    "dashboard": (
        "panelsJSON",
        "optionsJSON",
        "kibanaSavedObjectMeta.searchSourceJSON",
        "controlGroupInput.panelsJSON",
        "controlGroupInput.ignoreParentSettingsJSON",
    ),
}

#: Fields an export carries that say when and where an object was saved, not what it is.
VOLATILE = (
    "updated_at",
    "updated_by",
    "created_at",
    "created_by",
    "version",
    "namespaces",
    "originId",
    "managed",
)


class BuildError(Exception):
    """A source that cannot be built; the message names the file and the fix."""


def _get(obj: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str] | None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = obj.get(key)
        if not isinstance(child, dict):
            return None
        obj = child
    return (obj, leaf) if leaf in obj else None


def _vega_spec_text(spec: Any) -> str:
    # Kibana reads a Vega spec as HJSON; JSON is HJSON, indented so that it stays readable in Kibana.
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False)


def encode(source: dict[str, Any]) -> dict[str, Any]:
    """A readable source -> the saved object Kibana imports."""
    obj = copy.deepcopy(source)
    attributes = obj["attributes"]
    if obj["type"] == "visualization":
        vis = attributes.get("visState")
        if isinstance(vis, dict) and vis.get("type") == "vega" and not isinstance(vis["params"]["spec"], str):
            vis["params"]["spec"] = _vega_spec_text(vis["params"]["spec"])
    for dotted in ENCODED[obj["type"]]:
        found = _get(attributes, dotted)
        if found is not None and not isinstance(found[0][found[1]], str):
            parent, leaf = found
            parent[leaf] = json.dumps(parent[leaf], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return obj


def decode(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved object from an export -> its readable source (the inverse of `encode`)."""
    obj = {k: v for k, v in copy.deepcopy(saved).items() if k not in VOLATILE}
    attributes = obj["attributes"]
    for dotted in ENCODED.get(obj["type"], ()):
        found = _get(attributes, dotted)
        if found is not None and isinstance(found[0][found[1]], str) and found[0][found[1]]:
            parent, leaf = found
            parent[leaf] = json.loads(parent[leaf])
    vis = attributes.get("visState")
    if obj["type"] == "visualization" and isinstance(vis, dict) and vis.get("type") == "vega":
        vis["params"]["spec"] = json.loads(vis["params"]["spec"])
    return obj


def source_text(obj: dict[str, Any]) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_sources(root: Path = SOURCES) -> list[dict[str, Any]]:
    """Every source object, in build order. Raises BuildError naming the file when one is wrong."""
    objects: list[dict[str, Any]] = []
    for type_ in TYPES:
        for path in sorted((root / type_).glob("*.json")):
            try:
                obj = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise BuildError(f"{path}: not JSON ({exc}); fix the file") from None
            if obj.get("type") != type_ or obj.get("id") != path.stem:
                raise BuildError(
                    f"{path}: type {obj.get('type')!r} and id {obj.get('id')!r} must match the folder "
                    f"({type_!r}) and the file name ({path.stem!r}); rename the file or fix the object"
                )
            objects.append(obj)
    return objects


def build_text(root: Path = SOURCES) -> str:
    """The NDJSON Kibana imports: one object per line, keys sorted, no spaces."""
    lines = [
        json.dumps(encode(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        for obj in load_sources(root)
    ]
    return "\n".join(lines) + "\n"


def stale_outputs(root: Path = SOURCES, outputs: tuple[Path, ...] = OUTPUTS) -> list[Path]:
    """The built copies that differ from what the sources build."""
    text = build_text(root)
    return [path for path in outputs if not path.exists() or path.read_text(encoding="utf-8") != text]


def write_decoded(export: Path, root: Path = SOURCES) -> list[Path]:
    written = []
    for number, line in enumerate(export.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        saved = json.loads(line)
        if "exportedCount" in saved:  # the summary line Kibana appends to an export
            continue
        if saved.get("type") not in TYPES:
            raise BuildError(f"{export}:{number}: type {saved.get('type')!r} is not one of {TYPES}")
        path = root / saved["type"] / f"{saved['id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source_text(decode(saved)), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the built copies are current")
    parser.add_argument("--decode", type=Path, metavar="EXPORT", help="turn a Kibana export into sources")
    args = parser.parse_args(argv)
    try:
        if args.decode:
            for path in write_decoded(args.decode):
                print(f"wrote {path.relative_to(REPO)}")
            return 0
        if args.check:
            stale = stale_outputs()
            for path in stale:
                print(f"{path.relative_to(REPO)} differs from kibana/<type>/*.json: run scripts/kibana-build")
            return 1 if stale else 0
        text = build_text()
    except BuildError as exc:
        print(f"kibana-build: {exc}", file=sys.stderr)
        return 2
    for path in OUTPUTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)} ({text.count(chr(10))} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
