"""Read Logstash pipeline configuration with lscl, a parser of the Logstash configuration language.

Flattens the tree into the plugins it declares, with the section they sit in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lscl.lang import LsclAttribute, LsclBlock, LsclConditions
from lscl.parser import parse_lscl

SECTIONS = ("input", "filter", "output")


@dataclass
class Plugin:
    section: str
    name: str
    options: dict[str, Any]
    file: str


def _plugins(content: list[Any], section: str, file: str) -> list[Plugin]:
    found: list[Plugin] = []
    for element in content:
        if isinstance(element, LsclConditions):
            for _condition, body in element.conditions:
                found += _plugins(body, section, file)
            if element.default:
                found += _plugins(element.default, section, file)
        elif isinstance(element, LsclBlock):
            options = {a.name: a.content for a in element.content if isinstance(a, LsclAttribute)}
            found.append(Plugin(section, element.name, options, file))
    return found


def load_plugins(paths: list[Path]) -> list[Plugin]:
    """Every plugin of the given .conf files; raises on a syntax error or an unknown section."""
    plugins: list[Plugin] = []
    for path in paths:
        for block in parse_lscl(path.read_text(encoding="utf-8")):
            if not isinstance(block, LsclBlock) or block.name not in SECTIONS:
                raise ValueError(f"{path.name}: top level must be input/filter/output, got {block!r}")
            plugins += _plugins(block.content, block.name, path.name)
    return plugins
