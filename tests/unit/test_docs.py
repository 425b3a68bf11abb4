"""The README's configuration reference is generated from the settings and must stay in step."""

from __future__ import annotations

import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting_as_generated() -> None:
    rows = runpy.run_path(str(REPO / "scripts" / "config_reference.py"))["rows"]()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [row for row in rows if row not in readme]
    assert not missing, (
        "README.md's configuration table is out of date; regenerate it with "
        "`.venv/bin/python scripts/config_reference.py`. Missing rows:\n" + "\n".join(missing)
    )


def test_readme_quickstart_commands_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for command in ("scripts/demo", "scripts/test"):
        assert command in readme
        assert (REPO / command).is_file()
    assert "bash scripts/test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
