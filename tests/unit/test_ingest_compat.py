"""The scoring pipelines use only processors and options that Elasticsearch 7.10 and 9.5 both have.

7.10 is the engine the tests execute them on (scripts/stack up --ingest); 9.5 is the pinned stack.
The reference is tests/support/ingest_processor_options.yml (reviewed); the 7.10 side is also
checked live by tests/integration/test_scoring_pipeline.py, since 7.10 rejects unknown options.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from shipper.assets.scoring import pipeline as p

REFERENCE = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "support" / "ingest_processor_options.yml").read_text(
        encoding="utf-8"
    )
)
VERSIONS = ("7.10", "9.5")


def used_options(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(processor type, option) for every processor of a pipeline body, nested ones included."""
    for key in ("processors", "on_failure"):
        for processor in body.get(key) or []:
            ((kind, options),) = processor.items()
            for option in options:
                yield kind, option
            yield from used_options(options)


def test_the_pipelines_use_only_what_both_versions_have() -> None:
    used: set[tuple[str, str]] = set()
    for body in p.scoring_pipelines().values():
        used |= set(used_options(body))
    assert used, "no processors found"
    listing = sorted(used)
    unsupported = {
        version: [
            (kind, option)
            for kind, option in listing
            if option not in REFERENCE["common"][version]
            and option not in REFERENCE["processors"].get(kind, {}).get(version, [])
        ]
        for version in VERSIONS
    }
    assert unsupported == {version: [] for version in VERSIONS}
    # what the pipelines use, for the record (and so a new processor type is noticed here)
    assert {kind for kind, _ in listing} == {
        "append", "convert", "date", "grok", "json", "kv", "pipeline", "remove", "rename", "script", "set"
    }  # fmt: skip


def test_pipeline_bodies_use_keys_both_versions_have() -> None:
    for name, body in p.scoring_pipelines().items():
        for version in VERSIONS:
            assert set(body) <= set(REFERENCE["pipeline_keys"][version]), (name, version)


def test_options_given_up_for_7_10_are_the_known_ones() -> None:
    """9.x-only options that would have helped, and what the pipelines do instead (README lists them)."""
    only_9 = {
        (kind, option)
        for kind, versions in REFERENCE["processors"].items()
        for option in set(versions["9.5"]) - set(versions["7.10"])
    }
    assert {
        ("rename", "override"),  # a Painless script moves JSON fields, overwriting
        ("set", "copy_from"),  # a Painless script copies the model labels
        ("grok", "ecs_compatibility"),  # the patterns name their ECS fields themselves
        ("pipeline", "ignore_missing_pipeline"),  # setup creates the empty @custom pipeline
    } <= only_9
