"""The one helper of every golden suite: expected files are compared, never created by a passing test.

A missing expected file fails the test with the command that writes it (`--update-golden`), to be
reviewed and committed like any other change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def update_command(test_file: str | Path) -> str:
    """The command that rewrites the expected files of the golden suite in `test_file`."""
    return f"scripts/test {Path(test_file).resolve().relative_to(REPO)} --update-golden"


def require(expected_path: Path, test_file: str | Path) -> None:
    """Fail, naming the command that creates it, when `expected_path` does not exist."""
    if not expected_path.exists():
        pytest.fail(
            f"{expected_path.relative_to(REPO)} is missing: create it with `{update_command(test_file)}`, "
            "then review and commit it",
            pytrace=False,
        )


def compare_json(
    expected_path: Path,
    actual: Any,
    update: bool,
    test_file: str | Path,
    render: Callable[[Any], bytes] = _json,
) -> tuple[Any, Any]:
    """(expected, actual) as JSON values, for the caller to assert equal. With `update` the expected
    file is first rewritten from `actual` (rendered by `render`); without it a missing file fails."""
    rendered = render(actual)
    if update:
        expected_path.write_bytes(rendered)
    require(expected_path, test_file)
    return json.loads(expected_path.read_bytes()), json.loads(rendered)
