"""docs/reliability.md and the tests it names stay in step: every row names tests that exist, the
rows are numbered 1..n without gaps, there are at least 40, and every case of the configuration table
of tests/integration/test_bad_input.py has its row."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.test_bad_input import CASES

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"
ROW = re.compile(r"^\| (\d+) \|")
REF = re.compile(r"`((?:unit|integration)/[\w/]+\.py)::(\w+)(?:\[([^\]]+)\])?`")


def rows() -> list[tuple[int, str]]:
    found = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            found.append((int(match.group(1)), line))
    return found


def test_rows_are_numbered_and_there_are_at_least_40() -> None:
    numbers = [n for n, _ in rows()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 40


def test_every_row_names_tests_that_exist() -> None:
    case_names = {c.name for c in CASES}
    for number, line in rows():
        test_cell = line.rstrip(" |").rsplit(" | ", 1)[-1]
        refs = REF.findall(test_cell)
        assert refs, f"row {number} names no test: {line}"
        for path, name, param in refs:
            source = (REPO / "tests" / path).read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.M), f"row {number}: {path} has no {name}"
            if param:
                assert name == "test_bad_input" and param in case_names, f"row {number}: no case {param!r}"


def test_every_configuration_case_has_its_row() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [c.name for c in CASES if f"test_bad_input[{c.name}]" not in text]
    assert not missing
