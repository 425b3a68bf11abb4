"""The documentation stands alone and stays in step with the code.

- docs/configuration.md's table is exactly what scripts/config_reference.py generates from the settings.
- README.md and docs/*.md link only to files that exist inside the repository, and to no web
  address other than example hosts.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGURATION = REPO / "docs" / "configuration.md"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# [text](target) and ![alt](target), the target up to whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# Hosts reserved for examples (RFC 2606) and the local machine.
EXAMPLE_HOSTS = re.compile(r"(^|\.)(example(\.com|\.org|\.net)?|localhost|127\.0\.0\.1)$")


def generated_rows() -> list[str]:
    rows: list[str] = runpy.run_path(str(REPO / "scripts" / "config_reference.py"))["rows"]()
    return rows


def table_in(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("| variable | default | meaning |")
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def test_configuration_table_is_exactly_the_generated_one() -> None:
    table = table_in(CONFIGURATION.read_text(encoding="utf-8"))
    expected = generated_rows()
    assert table == expected, (
        "docs/configuration.md's configuration table is out of date; regenerate it with "
        "`.venv/bin/python scripts/config_reference.py` and paste it over the table. Missing rows:\n"
        + "\n".join(row for row in expected if row not in table)
        + "\nRows no setting produces:\n"
        + "\n".join(row for row in table if row not in expected)
    )


def test_table_in_reads_only_the_table() -> None:
    text = "intro\n\n| variable | default | meaning |\n| --- | --- | --- |\n| `A` | 1 | a |\n\nafter\n| x |\n"
    assert table_in(text) == ["| variable | default | meaning |", "| --- | --- | --- |", "| `A` | 1 | a |"]


def test_readme_links_the_configuration_instead_of_copying_it() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/configuration.md)" in readme
    assert "| variable | default | meaning |" not in readme, (
        "the configuration table lives in docs/configuration.md"
    )


def test_readme_quickstart_commands_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for command in ("scripts/demo", "scripts/test"):
        assert command in readme
        assert (REPO / command).is_file()
    assert "bash scripts/test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def anchors(text: str) -> set[str]:
    """The anchors of a Markdown page's headings, as GitHub makes them (lower case, punctuation
    dropped, spaces to hyphens; a repeated heading gets -1, -2...)."""
    seen: dict[str, int] = {}
    found = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def link_problems(document: Path, text: str) -> list[str]:
    """Every link of `text` (the content of `document`) that leaves the repository, names a missing
    file, or points at a web address other than an example host."""
    problems = []
    for target in LINK.findall(text):
        parts = urlsplit(target)
        if parts.scheme in ("http", "https"):
            if not EXAMPLE_HOSTS.search(parts.hostname or ""):
                problems.append(f"{target}: a web address; link only inside the repository")
            continue
        if parts.scheme:
            problems.append(f"{target}: a {parts.scheme}: link; link a file of the repository instead")
            continue
        resolved = (document.parent / unquote(parts.path)).resolve() if parts.path else document
        if not resolved.is_relative_to(REPO):
            problems.append(f"{target}: points outside the repository")
        elif parts.path and not resolved.exists():
            problems.append(f"{target}: no such file in the repository")
        elif parts.fragment and resolved.suffix == ".md":
            page = text if resolved == document else resolved.read_text(encoding="utf-8")
            if parts.fragment not in anchors(page):
                problems.append(f"{target}: no heading makes the anchor #{parts.fragment}")
    if "../shared" in text:
        problems.append("mentions ../shared, which is outside the repository")
    return problems


@pytest.mark.parametrize("document", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_stay_inside_the_repository(document: Path) -> None:
    problems = link_problems(document, document.read_text(encoding="utf-8"))
    assert not problems, f"{document.relative_to(REPO)}:\n" + "\n".join(problems)


def test_anchors_are_githubs() -> None:
    text = (
        "# Comparing model versions: `shipper compare`\n"
        "```\n# not a heading\n```\n## Exit codes\n## Exit codes\n"
    )
    assert anchors(text) == {"comparing-model-versions-shipper-compare", "exit-codes", "exit-codes-1"}


def test_link_checker_refuses_what_it_should() -> None:
    page = REPO / "docs" / "page.md"
    text = (
        "# Top\n[ok](configuration.md) [ok](../README.md#quickstart) [anchor](#top) [bad](#nowhere) "
        "![img](images/kibana-versions-parallel-coordinates.png) [host](https://es.example.com:9200) "
        "[out](../../shared/DESIGN.md) [missing](nothing-here.md) [web](https://github.com/elastic/kibana) "
        "[mail](mailto:someone@example.com)"
    )
    problems = link_problems(page, text)
    assert [p.split(":")[0] for p in problems] == [
        "#nowhere",
        "../../shared/DESIGN.md",
        "nothing-here.md",
        "https",
        "mailto",
        "mentions ../shared, which is outside the repository",
    ]
