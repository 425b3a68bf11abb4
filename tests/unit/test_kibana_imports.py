"""The pure part of `shipper setup --kibana`: reading the NDJSON file and turning Kibana's import
answer (the documented shapes of each error type) into what failed, why, and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipper.errors import ConfigError
from shipper.kibana import OBJECTS_FILE, OBJECTS_STACK_VERSION, version_tuple
from shipper.kibana.imports import ImportFailure, interpret_import, read_objects_file

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "support" / "kibana-objects.ndjson"


def test_objects_version_is_the_pinned_stack_version() -> None:
    pinned = re.search(r"^ELASTIC_STACK_VERSION=(\S+)$", (REPO / ".env").read_text(), re.M)
    assert pinned is not None
    assert pinned.group(1) == OBJECTS_STACK_VERSION


def test_packaged_file_location() -> None:
    assert OBJECTS_FILE == REPO / "shipper" / "assets" / "kibana" / "mlops-saved-objects.ndjson"


def test_version_tuple() -> None:
    assert version_tuple("9.5.4") == (9, 5, 4)
    assert version_tuple("9.10.0-SNAPSHOT") == (9, 10, 0)
    assert version_tuple("9.4.3") < version_tuple("9.5.4") < version_tuple("9.10.0")


def test_reads_the_fixture_and_skips_the_export_summary() -> None:
    objects = read_objects_file(FIXTURE)
    assert objects.objects == (
        ("index-pattern", "test-data-view-models"),
        ("lens", "test-lens-versions"),
        ("dashboard", "test-dashboard-versions"),
    )
    assert objects.upload_name == "kibana-objects.ndjson"


def test_upload_name_always_ends_in_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "objects.json"
    path.write_bytes(FIXTURE.read_bytes())
    assert read_objects_file(path).upload_name == "objects.ndjson"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"type": "lens", "id": "a"}\nnot json\n', "line 2 is not JSON"),
        (b"[1, 2]\n", "line 1 is not a JSON object"),
        (b'{"type": "lens"}\n', "line 1 has no string `type` and `id`"),
        (b"\n\n", "holds no saved objects"),
    ],
)
def test_broken_files_are_named_with_the_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "objects.ndjson"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        read_objects_file(path)
    assert message in str(caught.value)


def test_missing_file_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_objects_file(tmp_path / "absent.ndjson")
    assert "does not exist" in str(caught.value)
    assert "--kibana-objects" in str(caught.value)


def test_success_with_overwrites() -> None:
    outcome = interpret_import(
        {
            "success": True,
            "successCount": 2,
            "successResults": [
                {"type": "index-pattern", "id": "a", "meta": {"title": "A"}, "overwrite": True},
                {"type": "lens", "id": "b", "meta": {"title": "B"}},
            ],
            "warnings": [{"type": "simple", "message": "Reload the page"}],
        }
    )
    assert (outcome.success, outcome.success_count, outcome.overwritten) == (True, 2, 1)
    assert outcome.failures == ()
    assert outcome.warnings == ("Reload the page",)


def test_every_documented_error_type_gets_a_reason_and_a_fix() -> None:
    body = {
        "success": False,
        "successCount": 1,
        "successResults": [{"type": "index-pattern", "id": "dv", "meta": {}}],
        "warnings": [],
        "errors": [
            {
                "id": "lens-1",
                "type": "lens",
                "meta": {"title": "Accuracy"},
                "error": {
                    "type": "missing_references",
                    "references": [{"type": "index-pattern", "id": "gone"}],
                },
            },
            {
                "id": "dash-1",
                "type": "dashboard",
                "meta": {},
                "error": {"type": "conflict", "destinationId": "x1"},
            },
            {
                "id": "dash-2",
                "type": "dashboard",
                "meta": {"title": "D2"},
                "error": {"type": "ambiguous_conflict", "destinations": [{"id": "c1"}, {"id": "c2"}]},
            },
            {
                "id": "wp",
                "type": "canvas-workpad",
                "title": "Old title field",
                "meta": {},
                "error": {"type": "unsupported_type"},
            },
            {
                "id": "lens-2",
                "type": "lens",
                "meta": {"title": "Newer"},
                "error": {
                    "type": "unknown",
                    "message": 'Document "lens-2" belongs to a more recent version of Kibana [10.9.0] '
                    "when the last known version is [10.1.0].",
                    "statusCode": 400,
                },
            },
            {
                "id": "s",
                "type": "search",
                "meta": {},
                "error": {"type": "unknown", "message": "boom", "status_code": 500},
            },
        ],
    }
    outcome = interpret_import(body)
    assert not outcome.success
    assert outcome.success_count == 1
    assert [f.describe() for f in outcome.failures] == [
        "lens lens-1 ('Accuracy'): missing_references: it references index-pattern gone, which is neither in "
        "the file nor in this Kibana space; fix: import the complete file (the packaged one holds every data "
        "view its dashboards use), or create the missing objects in this space first",
        "dashboard dash-1: conflict: an object with this id exists and could not be overwritten (destination "
        "x1); fix: it may belong to another space or be managed by Kibana; delete it in Stack Management > "
        "Saved objects, or import into another space with SHIPPER_KIBANA_SPACE",
        "dashboard dash-2 ('D2'): ambiguous_conflict: several objects in this space were copied from it (c1, "
        "c2), so Kibana cannot pick one; fix: delete the copies in Stack Management > Saved objects, then "
        "import again",
        "canvas-workpad wp ('Old title field'): unsupported_type: this Kibana has no saved-object type "
        f"'canvas-workpad' (or does not allow importing it); fix: use Kibana {OBJECTS_STACK_VERSION} or "
        "later with its default plugins enabled, and a user allowed to manage that type",
        "lens lens-2 ('Newer'): unknown: Document \"lens-2\" belongs to a more recent version of Kibana "
        "[10.9.0] when the last known version is [10.1.0]. (HTTP 400); fix: the objects are written for a "
        f"newer Kibana than this one (the packaged ones for Kibana {OBJECTS_STACK_VERSION}); upgrade Kibana "
        f"to {OBJECTS_STACK_VERSION} or later, which migrates them on import",
        "search s: unknown: boom (HTTP 500); fix: see Kibana's log for this object; re-run `shipper setup "
        "--kibana` once it is fixed",
    ]
    assert all(isinstance(f, ImportFailure) for f in outcome.failures)


def test_success_false_with_errors_is_never_a_success_even_if_flagged() -> None:
    outcome = interpret_import(
        {
            "success": True,
            "successCount": 0,
            "errors": [{"id": "a", "type": "lens", "error": {"type": "conflict"}}],
        }
    )
    assert not outcome.success


def test_not_an_import_answer() -> None:
    with pytest.raises(ValueError):
        interpret_import({"statusCode": 200})
