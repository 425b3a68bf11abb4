"""Print the configuration reference table of docs/configuration.md from shipper.config.Settings.

    .venv/bin/python scripts/config_reference.py   # then paste over the table in docs/configuration.md

tests/unit/test_docs.py fails when docs/configuration.md and the settings drift apart.
"""

from __future__ import annotations

from enum import Enum

from shipper.config import Settings, env_name


def rows() -> list[str]:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        if isinstance(default, Enum):
            default = default.value
        if isinstance(default, bool):
            default = str(default).lower()
        if isinstance(default, list):
            default = ",".join(str(v) for v in default)
        shown = "" if default is None else str(default)
        description = (field.description or "").replace("|", "/")
        lines.append(f"| `{env_name(name)}` | {shown} | {description} |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
