"""Which JDK runs each Elasticsearch: the distributions we use bundle none.

The choice itself (choose_es_jdk, choose_ingest_jdk) is pure: it gets the JDKs found, as
(major version, home) pairs, and returns the one to use or the error that says what to install.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .common import StackError

JVM_DIR = Path("/usr/lib/jvm")


def parse_java_major(output: str) -> int | None:
    """The major version in `java -version` output; "1.8.0_x" is Java 8."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def java_major(java: Path) -> int | None:
    try:
        r = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_major(r.stderr + r.stdout)


def min_java(version: str) -> int:
    """The oldest Java that Elasticsearch `version` runs on."""
    major = int(version.split(".")[0])
    return 21 if major >= 9 else 17 if major == 8 else 11


def choose_es_jdk(version: str, found: Sequence[tuple[int, Path]]) -> tuple[Path, int]:
    """The newest of the JDKs found, as (major, home), if it is good enough for `version`."""
    need = min_java(version)
    good = [f for f in found if f[0] >= need]
    if not good:
        have = ", ".join(f"Java {m} at {h}" for m, h in found) or "no JDK at all"
        raise StackError(
            f"Elasticsearch {version} needs Java {need} or newer; found {have}. "
            f"Install a JDK {need}+ (e.g. apt-get install openjdk-{need}-jdk-headless) "
            "or point ES_JAVA_HOME at one."
        )
    major, home = max(good, key=lambda f: f[0])
    return home, major


def choose_ingest_jdk(version: str, max_java: int, found: Mapping[Path, int]) -> tuple[Path, int]:
    """The newest of the JDKs found, as home -> major, between Java 11 and `max_java`."""
    good = [(major, home) for home, major in found.items() if 11 <= major <= max_java]
    if not good:
        have = ", ".join(f"Java {m} at {h}" for h, m in found.items()) or f"no JDK under {JVM_DIR}"
        raise StackError(
            f"the ingest node (Elasticsearch {version}) needs Java 11 to {max_java}; found "
            f"{have}. Install one (e.g. apt-get install openjdk-17-jdk-headless) or set "
            "SHIPPER_STACK_INGEST_JAVA_HOME."
        )
    major, home = max(good, key=lambda g: g[0])
    return home, major


def pick_jdk(version: str) -> tuple[Path, int]:
    """A JDK home for Elasticsearch `version`: $ES_JAVA_HOME, else the newest one good enough."""
    need = min_java(version)
    explicit = os.environ.get("ES_JAVA_HOME")
    if explicit:
        major = java_major(Path(explicit) / "bin" / "java")
        if major is None:
            raise StackError(f"ES_JAVA_HOME={explicit} has no working bin/java")
        if major < need:
            raise StackError(
                f"ES_JAVA_HOME={explicit} is Java {major}, but Elasticsearch "
                f"{version} needs Java {need} or newer"
            )
        return Path(explicit), major

    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        r = subprocess.run(
            ["update-alternatives", "--list", "java"], capture_output=True, text=True, timeout=10
        )
        candidates += [Path(line.strip()) for line in r.stdout.splitlines() if line.strip()]
    if JVM_DIR.is_dir():
        candidates += [d / "bin" / "java" for d in sorted(JVM_DIR.iterdir())]
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path))

    seen: set[Path] = set()
    found: list[tuple[int, Path]] = []
    for java in candidates:
        try:
            real = java.resolve(strict=True)  # /usr/bin/java -> /etc/alternatives -> the JDK
        except OSError:
            continue
        if real in seen or not os.access(real, os.X_OK):
            continue
        seen.add(real)
        major = java_major(real)
        if major is not None:
            found.append((major, real.parent.parent))
    return choose_es_jdk(version, found)


def pick_ingest_jdk(version: str, max_java: int) -> tuple[Path, int]:
    """A JDK for the ingest node: $SHIPPER_STACK_INGEST_JAVA_HOME, else the newest 11..max found."""
    explicit = os.environ.get("SHIPPER_STACK_INGEST_JAVA_HOME")
    if explicit:
        major = java_major(Path(explicit) / "bin" / "java")
        if major is None or not 11 <= major <= max_java:
            raise StackError(
                f"SHIPPER_STACK_INGEST_JAVA_HOME={explicit} is Java {major}; Elasticsearch "
                f"{version} needs Java 11 to {max_java}"
            )
        return Path(explicit), major
    found: dict[Path, int] = {}
    homes = sorted(JVM_DIR.iterdir()) if JVM_DIR.is_dir() else []
    for home in homes:
        with contextlib.suppress(OSError):
            real = (home / "bin" / "java").resolve(strict=True).parent.parent
            if real not in found:
                major = java_major(real / "bin" / "java")
                if major is not None:
                    found[real] = major
    return choose_ingest_jdk(version, max_java, found)
