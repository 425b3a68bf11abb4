"""Elasticsearch: the version pinned in .env, from its minimal distribution, on a JDK of the machine.

The distribution is the Maven artifact integ-test-zip (see maven.ES_ARTIFACT), fetched once into
the cache and unpacked there. That zip is the server without most modules: no painless, no ingest
processors, no _reindex/_delete_by_query, no ILM, no /_data_stream API, and no `GET /` (the node
version is at GET /_nodes/_local). It does ship x-pack-core and x-pack-security, see es_settings().
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .common import StackError, log
from .component import Component, Started
from .fetch import fetch
from .identity import ES_IDENTITY_PATH, es_cluster_name, es_identity
from .jdk import pick_jdk
from .maven import download_es_zip, unpack_zip
from .processes import RunAs, chown_tree, ensure_service_user, linked_copy
from .state import CACHE, REPO, STATE, rel

ES_DIR = STATE / "es"  # config, data, logs and tmp of the Elasticsearch node
ES_DATA = ES_DIR / "data"
ES_TMP = ES_DIR / "tmp"
ES_DEFAULT_JAVA_OPTS = "-Xms512m -Xmx512m"
# The file in our config dir that names the version its files were copied from.
CONFIG_STAMP = ".shipper-stack-version"

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?$")


def env_file_version(text: str) -> str:
    """ELASTIC_STACK_VERSION from the text of a .env file ("" when it has none)."""
    value = ""
    for line in text.splitlines():
        m = re.match(r"\s*(?:export\s+)?ELASTIC_STACK_VERSION\s*=\s*(.*)$", line)
        if m:  # the last assignment wins, as with docker compose
            value = re.sub(r"\s+#.*$", "", m.group(1)).strip().strip("'\"")
    return value


def stack_version() -> str:
    """The Elastic Stack version: $ELASTIC_STACK_VERSION, else the pin in <repo>/.env."""
    value = os.environ.get("ELASTIC_STACK_VERSION", "").strip()
    source = "the ELASTIC_STACK_VERSION environment variable"
    if not value:
        env_file = REPO / ".env"
        source = str(env_file)
        try:
            text = env_file.read_text()
        except FileNotFoundError:
            raise StackError(
                f"{env_file} is missing; it must hold a line ELASTIC_STACK_VERSION=x.y.z"
            ) from None
        value = env_file_version(text)
    if not _VERSION_RE.match(value):
        raise StackError(f"no usable ELASTIC_STACK_VERSION in {source} (found {value!r})")
    return value


def es_health(url: str, *, direct: bool = True) -> tuple[bool, str]:
    status, body = fetch(f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=5, direct=direct)
    if status is None:
        return False, f"no answer ({body})"
    try:
        color = json.loads(body).get("status", "?")
    except ValueError:
        color = "?"
    if status != 200:
        return False, f"HTTP {status}, cluster status {color}"
    return True, f"cluster status {color}"


def es_version(url: str) -> str | None:
    # The integ-test-zip lacks the rest-root module, so `GET /` is a 405: ask the nodes API.
    status, body = fetch(f"{url}/_nodes/_local?filter_path=nodes.*.version", timeout=5)
    if status != 200:
        return None
    with contextlib.suppress(ValueError, AttributeError, StopIteration):
        return str(next(iter(json.loads(body)["nodes"].values()))["version"])
    return None


def es_node_identity(url: str, pids: Collection[int]) -> tuple[bool, str]:
    """Asked over HTTP: the cluster name unique to the state dir, and the node's pid."""
    status, body = fetch(url + ES_IDENTITY_PATH, timeout=5)
    if status != 200:
        return False, f"/_nodes/_local answers {f'HTTP {status}' if status else body}"
    return es_identity(body, es_cluster_name(), pids)


def es_restart_reason(url: str) -> str | None:
    want, have = stack_version(), es_version(url)
    if have != want:
        return f"running Elasticsearch is {have}, but the pin is {want}"
    return None


def es_distribution(version: str) -> Path:
    """The unpacked integ-test-zip for `version`, downloaded and unpacked on first use only."""
    home = CACHE / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").is_file():  # only ever renamed into place when complete
        return home
    CACHE.mkdir(parents=True, exist_ok=True)
    zip_path = CACHE / f"elasticsearch-{version}.zip"
    if not zip_path.is_file():
        download_es_zip(version, zip_path)
    log(f"unpacking {zip_path}")
    unpack_zip(zip_path, home)
    return home


def es_home_for(home: Path, version: str, run_as: RunAs) -> Path:
    """A copy of the distribution that `run_as` can read.

    The cache usually sits under /root (mode 700) when we are root, which the ES user cannot
    enter. A hard-linked copy under the state dir costs no disk space (falls back to a real
    copy across filesystems). ES never writes into its home, so sharing inodes is safe.
    """
    if run_as.can("-x", home / "bin" / "elasticsearch") and run_as.can("-r", home / "lib"):
        return home
    target = ES_DIR / f"home-{version}"
    if not (target / "bin" / "elasticsearch").is_file():
        log(f"user {run_as.name} cannot read {home}; making a hard-linked copy in {rel(target)}")
        linked_copy(home, target)
    for old in ES_DIR.glob("home-*"):  # copies for versions no longer pinned
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def es_settings(home: Path, port: int, state: Path = STATE) -> dict[str, str]:
    """The node's settings (passed as -E key=value): what it needs in the modules `home` has."""
    es_dir = state / "es"
    settings = {
        "cluster.name": es_cluster_name(state),  # unique to the state dir: see identity.py
        "node.name": "shipper-stack",
        "network.host": "127.0.0.1",  # loopback only; this also keeps ES in "development mode",
        "http.port": str(port),  # so production bootstrap checks (vm.max_map_count...) are off
        "discovery.type": "single-node",
        "path.data": str(es_dir / "data"),
        "path.logs": str(es_dir / "logs"),
        # Test machines often have nearly full disks; the watermarks would make indices read-only.
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        # Tests clean up with wildcard deletes (DELETE /shipper-test-*).
        "action.destructive_requires_name": "false",
    }
    # ES refuses to start on a setting whose module is missing, and the integ-test-zip lacks most
    # modules, so settings for optional modules are only passed when the module is there.
    if (home / "modules" / "ingest-geoip").is_dir():
        settings["ingest.geoip.downloader.enabled"] = "false"  # it would try to reach the internet
    if (home / "modules" / "x-pack-security").is_dir():
        # The integ-test-zip does contain x-pack-security. Left at its default, the launcher's
        # security auto-configuration writes cluster.state.encryption.* secrets into the keystore
        # that this server then rejects ("unknown secure setting"), and even without that, HTTP
        # would demand TLS and credentials. Tests want plain http on loopback.
        settings["xpack.security.enabled"] = "false"
    return settings


def settings_args(settings: dict[str, str]) -> list[str]:
    """Settings as the command-line arguments of bin/elasticsearch."""
    args: list[str] = []
    for key, value in settings.items():
        args += ["-E", f"{key}={value}"]
    return args


def prepare_config(home: Path, conf: Path, version: str) -> None:
    """Our own config dir (ES_PATH_CONF), copied from `home` once per version.

    ES writes its keystore into the config dir, and the cached distribution must stay pristine
    and shareable between checkouts.
    """
    stamp = conf / CONFIG_STAMP
    if not stamp.is_file() or stamp.read_text().strip() != version:
        shutil.rmtree(conf, ignore_errors=True)
        shutil.copytree(home / "config", conf)
        stamp.write_text(f"{version}\n")


def es_start(port: int) -> Started:
    version = stack_version()
    home = es_distribution(version)
    java_home, java = pick_jdk(version)
    run_as = ensure_service_user() if os.geteuid() == 0 else None
    if run_as is not None:
        if not run_as.can("-x", STATE):
            raise StackError(
                f"Elasticsearch runs as user {run_as.name} (it refuses root), but that user cannot "
                f"enter {STATE} (a parent directory is not world-searchable, e.g. /root is 700). "
                "Set SHIPPER_STACK_STATE_DIR to a place it can reach, e.g. /var/tmp/shipper-stack."
            )
        if not run_as.can("-x", java_home / "bin" / "java"):
            raise StackError(
                f"user {run_as.name} cannot run {java_home}/bin/java; set ES_JAVA_HOME "
                "to a JDK outside private home directories"
            )
        home = es_home_for(home, version, run_as)

    for sub in ("data", "logs", "tmp"):
        (ES_DIR / sub).mkdir(parents=True, exist_ok=True)
    conf = ES_DIR / "config"
    prepare_config(home, conf, version)
    if run_as is not None:
        ES_DIR.chmod(0o755)
        for sub in ("config", "data", "logs", "tmp"):
            chown_tree(ES_DIR / sub, run_as)

    java_opts = os.environ.get("ES_JAVA_OPTS") or ES_DEFAULT_JAVA_OPTS
    env = dict(
        os.environ,
        ES_JAVA_HOME=str(java_home),
        ES_JAVA_OPTS=java_opts,
        ES_PATH_CONF=str(conf),
        ES_TMPDIR=str(ES_TMP),
    )
    extra: dict[str, Any] = {}
    if run_as is not None:
        # HOME=/root would be unwritable for the ES user; give it a home of its own.
        env.update(HOME=str(ES_TMP), USER=run_as.name, LOGNAME=run_as.name)
        extra = run_as.popen_kwargs()
    cmd = [str(home / "bin" / "elasticsearch"), *settings_args(es_settings(home, port))]

    who = f" as user {run_as.name}" if run_as else ""
    log(
        f"starting Elasticsearch {version} on 127.0.0.1:{port}{who} (Java {java} from {java_home}, "
        f"ES_JAVA_OPTS={java_opts})"
    )
    proc = ES.spawn(cmd, cwd=ES_DIR / "logs", env=env, port=port, extra=extra)
    hints = (
        f"Check {rel(ES.log_file)} and {rel(ES_DIR / 'logs')}/; JDK {java_home} (Java {java}); "
        f"ES_JAVA_OPTS={java_opts}; port {port}. If the data was written by another version, "
        "`scripts/stack down --purge` starts from scratch."
    )
    return Started(proc, port, hints)


ES = Component(
    key="es",
    title="Elasticsearch",
    url_var="ES_URL",
    default_port=9200,
    port_var="SHIPPER_STACK_ES_PORT",
    timeout_var="SHIPPER_STACK_ES_TIMEOUT",
    default_timeout=180,
    grace=60,
    marker=f"path.data={ES_DATA}",
    health=es_health,
    start=es_start,
    data_paths=[ES_DIR],
    identity=es_node_identity,
    restart_reason=es_restart_reason,
)
