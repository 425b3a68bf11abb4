"""kibana/mlops-saved-objects.ndjson in a real Kibana: imported by `shipper setup --kibana`, read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.docker_stack import REPO, Decision, E2EStack

OBJECTS = REPO / "kibana" / "mlops-saved-objects.ndjson"


def _objects() -> list[dict[str, Any]]:
    lines = OBJECTS.read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines if line.strip()]
    return [o for o in objects if "exportedCount" not in o]  # an export's summary line is no object


def test_shipper_setup_imports_every_saved_object(docker_backend: Decision, e2e: E2EStack) -> None:
    result = e2e.shipper("setup", "--kibana")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"kibana: imported {len(_objects())} saved objects" in result.stdout, result.stdout
    assert e2e.passwords.elastic not in result.stdout + result.stderr


def test_kibana_import_api_reports_success_for_every_object(docker_backend: Decision, e2e: E2EStack) -> None:
    """The same file through Kibana's own import API: `success: true`, no errors, every object."""
    response = e2e.kibana(
        "POST",
        "/api/saved_objects/_import?overwrite=true",
        files={"file": (Path(OBJECTS).name, OBJECTS.read_bytes(), "application/ndjson")},
    )
    body = response.json()
    assert body.get("errors", []) == [], body["errors"]
    assert body["success"] is True
    assert body["successCount"] == len(_objects())


def test_every_dashboard_reads_back_and_its_panels_resolve(docker_backend: Decision, e2e: E2EStack) -> None:
    """Each dashboard exported back with its references (Kibana's export API, which reports any
    reference it cannot resolve), and each by-reference panel's reference among them."""
    setup = e2e.shipper("setup", "--kibana-only")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    dashboards = [o for o in _objects() if o["type"] == "dashboard"]
    assert dashboards, f"{OBJECTS} has no dashboard"
    for wanted in dashboards:
        response = e2e.kibana(
            "POST",
            "/api/saved_objects/_export",
            json={
                "objects": [{"type": "dashboard", "id": wanted["id"]}],
                "includeReferencesDeep": True,
                "excludeExportDetails": False,
            },
        )
        lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        details = lines[-1]
        exported = {(o["type"], o["id"]): o for o in lines[:-1]}
        assert details["missingRefCount"] == 0, (wanted["id"], details["missingReferences"])
        got = exported[("dashboard", wanted["id"])]
        assert got["attributes"]["title"] == wanted["attributes"]["title"]
        for ref in got["references"]:
            assert (ref["type"], ref["id"]) in exported, (wanted["id"], ref)
        references = {ref["name"] for ref in got["references"]}
        panels = json.loads(got["attributes"]["panelsJSON"])
        assert panels, f"dashboard {wanted['id']} has no panels"
        for panel in panels:
            index = panel["panelIndex"]
            if "panelRefName" in panel:
                names = {panel["panelRefName"], f"{index}:{panel['panelRefName']}"}
            elif {"attributes", "savedVis"} & panel.get("embeddableConfig", {}).keys():
                continue  # a by-value panel carries its own saved state
            else:  # Kibana names a by-reference panel's reference "<panelIndex>:panel_<panelIndex>"
                names = {f"{index}:panel_{index}"}
            assert names & references, (wanted["id"], index, sorted(references))
