"""Downloads with Maven (`mvn`), and unpacking the zips it brings.

Elasticsearch's minimal distribution and the ingest modules are Maven artifacts; `mvn` knows the
user's repository, mirror and proxy settings (~/.m2/settings.xml), so it fetches them.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path

from .common import StackError, log

ES_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
_MVN = ["-B", "-q", "-Dstyle.color=never"]

_MODULE_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.shipper-stack</groupId>
  <artifactId>fetch-{artifact}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def es_artifact(version: str) -> str:
    """The Maven coordinate of Elasticsearch's minimal distribution (the integ-test-zip)."""
    return ES_ARTIFACT.format(version=version)


def local_repository_file(artifact: str, repository: Path) -> Path:
    """Where `mvn dependency:get` leaves group:artifact:version:packaging in a local repository."""
    group, artifact_id, version, packaging = artifact.split(":")[:4]
    return (
        repository / Path(*group.split(".")) / artifact_id / version / f"{artifact_id}-{version}.{packaging}"
    )


def module_pom(group: str, artifact: str, version: str) -> str:
    """A pom whose only dependency is the module, for `mvn dependency:copy-dependencies`."""
    return _MODULE_POM.format(group=group, artifact=artifact, version=version)


def download_es_zip(version: str, dest: Path) -> None:
    mvn = shutil.which("mvn")
    artifact = es_artifact(version)
    if mvn is None:
        raise StackError(
            f"Maven (mvn) is needed to download {artifact}; install it, or put the zip at {dest} yourself"
        )
    log(f"downloading {artifact} with mvn (about 130 MB, once per version)")
    # A scratch working directory keeps mvn from picking up some pom.xml in the caller's cwd;
    # a partial download never lands under the final name.
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        out_dir = Path(tmp) / "out"
        base = [mvn, *_MVN]
        r = subprocess.run(
            [*base, "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={out_dir}"],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        found = sorted(out_dir.glob("*.zip")) if out_dir.is_dir() else []
        if r.returncode != 0 or not found:
            # Older maven-dependency-plugin versions insist on a pom for `copy`; `get` never
            # does, and leaves the file in the local repository.
            log("mvn dependency:copy did not work; trying dependency:get")
            r = subprocess.run(
                [*base, "dependency:get", f"-Dartifact={artifact}", "-Dtransitive=false"],
                cwd=tmp,
                capture_output=True,
                text=True,
            )
            local = local_repository_file(artifact, Path.home() / ".m2" / "repository")
            found = [local] if r.returncode == 0 and local.is_file() else []
        if not found:
            raise StackError(
                f"mvn could not fetch {artifact} (exit {r.returncode}). Check that "
                f"Maven can reach its repository (~/.m2/settings.xml).\n"
                f"{(r.stdout + r.stderr).strip()[-3000:]}"
            )
        shutil.copyfile(found[0], Path(tmp) / "es.zip")
        os.replace(Path(tmp) / "es.zip", dest)


def fetch_module_jars(group: str, name: str, version: str, work: Path) -> list[Path]:
    """A module's jar and its dependencies, via `mvn dependency:copy-dependencies` on a one-line pom."""
    mvn = shutil.which("mvn")
    coordinate = f"{group}:{name}:{version}"
    if mvn is None:
        raise StackError(f"Maven (mvn) is needed to download {coordinate}; install it")
    work.mkdir(parents=True)
    (work / "pom.xml").write_text(module_pom(group, name, version))
    log(f"downloading {coordinate} and its dependencies with mvn (once)")
    r = subprocess.run(
        [mvn, *_MVN, "dependency:copy-dependencies", "-DoutputDirectory=jars"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    jars = sorted((work / "jars").glob("*.jar"))
    if r.returncode != 0 or not any(j.name.startswith(f"{name}-") for j in jars):
        raise StackError(
            f"mvn could not fetch {coordinate} (exit {r.returncode}). Check that Maven can reach "
            f"its repository (~/.m2/settings.xml).\n{(r.stdout + r.stderr).strip()[-3000:]}"
        )
    return jars


def unpack_zip(zip_path: Path, home: Path) -> None:
    """Unpack keeping the Unix modes (zipfile drops them; bin/elasticsearch must stay executable)."""
    with tempfile.TemporaryDirectory(dir=home.parent, prefix=".unpack-") as tmp:
        root = Path(tmp).resolve()
        dir_modes: list[tuple[Path, int]] = []
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                target = (root / info.filename).resolve()
                if not target.is_relative_to(root):
                    raise StackError(f"{zip_path}: refusing entry outside the archive: {info.filename}")
                mode = info.external_attr >> 16
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    dir_modes.append((target, stat.S_IMODE(mode) | 0o700))
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if stat.S_ISLNK(mode):
                    os.symlink(zf.read(info).decode(), target)
                    continue
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                target.chmod(stat.S_IMODE(mode) or 0o644)
        for path, mode in reversed(dir_modes):  # last, so restrictive modes don't block writes
            path.chmod(mode)
        top = [p for p in root.iterdir()]
        if len(top) != 1 or not (top[0] / "bin" / "elasticsearch").is_file():
            raise StackError(
                f"{zip_path} does not look like an Elasticsearch distribution; delete it to download again"
            )
        try:
            top[0].rename(home)
        except OSError:
            if not (home / "bin" / "elasticsearch").is_file():  # else a parallel run won the race
                raise
