"""The ingest node: Elasticsearch 7.10.2 with its own ingest code, only to execute pipelines.

No 8.x/9.x ingest module is published where Maven reaches, so `up --ingest` assembles the newest
engine that is: the 7.10.2 integ-test-zip plus the modules lang-painless, lang-mustache
(templates such as {{{_ingest.timestamp}}}) and ingest-common, built from Elastic's source and
published as bare jars under INGEST_MODULE_GROUP. Each module gets the descriptor and security
policy the real distribution has. It runs on Java 17 at most (7.10 sets a security manager, which
Java 18+ deprecates and 24+ refuses). Assembled once into the cache; later starts reuse it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .common import StackError, log
from .component import Component, Started
from .elasticsearch import ES_DEFAULT_JAVA_OPTS, es_health, settings_args
from .jdk import pick_ingest_jdk
from .maven import download_es_zip, fetch_module_jars, unpack_zip
from .processes import RunAs, chown_tree, ensure_service_user, linked_copy
from .state import CACHE, STATE, make_state_dir, rel

INGEST_VERSION = "7.10.2"
INGEST_DIR = STATE / "ingest"  # config, data, logs, tmp of the ingest node
INGEST_MODULE_GROUP = "org.codelibs.elasticsearch.module"
INGEST_MAX_JAVA = 17

# name -> (plugin class, extended plugin, description, security policy grants)
INGEST_MODULES: dict[str, tuple[str, str, str, list[str]]] = {
    "lang-painless": (
        "org.elasticsearch.painless.PainlessPlugin",
        "",
        "An easy, safe and fast scripting language for Elasticsearch",
        [
            'permission java.lang.RuntimePermission "createClassLoader";',
            'permission java.lang.RuntimePermission "getClassLoader";',
        ],
    ),
    "lang-mustache": (
        "org.elasticsearch.script.mustache.MustachePlugin",
        "",
        "Mustache scripting integration for Elasticsearch",
        ['permission java.lang.reflect.ReflectPermission "suppressAccessChecks";'],
    ),
    "ingest-common": (
        "org.elasticsearch.ingest.common.IngestCommonPlugin",
        "lang-painless",
        "Module for ingest processors that need no extra permissions or large dependencies",
        [],
    ),
}


def plugin_descriptor(name: str, classname: str, extends: str, description: str) -> str:
    """A module's plugin-descriptor.properties, as the 7.10.2 distribution has it."""
    return (
        f"description={description}\nversion={INGEST_VERSION}\nname={name}\n"
        f"classname={classname}\njava.version=1.8\nelasticsearch.version={INGEST_VERSION}\n"
        f"extended.plugins={extends}\nhas.native.controller=false\n"
    )


def security_policy(grants: list[str]) -> str:
    """A module's plugin-security.policy."""
    return "grant {\n" + "".join(f"  {g}\n" for g in grants) + "};\n"


def jvm_options(text: str, ingest_dir: Path) -> str:
    """The distribution's jvm.options with the GC log, error file and heap dumps in our directories.

    7.10's launcher runs from its home, where the service user may not write.
    """
    text = re.sub(r"(?<=[=:])logs/", f"{ingest_dir}/logs/", text)
    return text.replace("HeapDumpPath=data", f"HeapDumpPath={ingest_dir}/tmp")


def ingest_settings(port: int, state: Path = STATE) -> dict[str, str]:
    ingest_dir = state / "ingest"
    return {
        "cluster.name": "shipper-stack-ingest",
        "node.name": "shipper-stack-ingest",
        "network.host": "127.0.0.1",
        "http.port": str(port),
        # a range, so it never collides with the 9.5 node's transport port
        "transport.port": "9350-9399",
        "discovery.type": "single-node",
        "path.data": str(ingest_dir / "data"),
        "path.logs": str(ingest_dir / "logs"),
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }


def ingest_distribution() -> Path:
    """The assembled 7.10.2 node with its ingest modules, built on first use only."""
    home = CACHE / f"elasticsearch-{INGEST_VERSION}-ingest"
    if (home / "modules" / "ingest-common" / "plugin-descriptor.properties").is_file():
        return home  # only ever renamed into place when complete
    CACHE.mkdir(parents=True, exist_ok=True)
    zip_path = CACHE / f"elasticsearch-{INGEST_VERSION}.zip"
    if not zip_path.is_file():
        download_es_zip(INGEST_VERSION, zip_path)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".assemble-") as tmp:
        staged = Path(tmp) / "home"
        log(f"unpacking {zip_path}")
        unpack_zip(zip_path, staged)
        taken = {jar.name for jar in (staged / "lib").glob("*.jar")}
        for name, (classname, extends, description, grants) in INGEST_MODULES.items():
            jars = fetch_module_jars(INGEST_MODULE_GROUP, name, INGEST_VERSION, Path(tmp) / f"m2-{name}")
            target = staged / "modules" / name
            target.mkdir(parents=True)
            # Jars the server (lib/) or an extended module already has would be jar hell.
            extended = (
                {jar.name for jar in (staged / "modules" / extends).glob("*.jar")} if extends else set()
            )
            for jar in jars:
                if jar.name not in taken and jar.name not in extended:
                    shutil.copyfile(jar, target / jar.name)
            (target / "plugin-descriptor.properties").write_text(
                plugin_descriptor(name, classname, extends, description)
            )
            if grants:
                (target / "plugin-security.policy").write_text(security_policy(grants))
        try:
            staged.rename(home)
        except OSError:
            if not (home / "modules" / "ingest-common").is_dir():  # else a parallel run won
                raise
    log(f"assembled Elasticsearch {INGEST_VERSION} with {', '.join(INGEST_MODULES)} in {home}")
    return home


def ingest_home_for(home: Path, run_as: RunAs) -> Path:
    """A hard-linked copy of the node that `run_as` can read (see elasticsearch.es_home_for)."""
    if run_as.can("-x", home / "bin" / "elasticsearch") and run_as.can("-r", home / "lib"):
        return home
    target = INGEST_DIR / f"home-{INGEST_VERSION}"
    if not (target / "modules" / "ingest-common").is_dir():
        log(f"user {run_as.name} cannot read {home}; making a hard-linked copy in {rel(target)}")
        linked_copy(home, target)
    return target


def ingest_start(port: int) -> Started:
    home = ingest_distribution()
    java_home, java = pick_ingest_jdk(INGEST_VERSION, INGEST_MAX_JAVA)
    run_as = ensure_service_user() if os.geteuid() == 0 else None
    make_state_dir()
    INGEST_DIR.mkdir(exist_ok=True)
    if run_as is not None:
        if not run_as.can("-x", STATE):
            raise StackError(
                f"the ingest node runs as user {run_as.name}, which cannot enter {STATE}; set "
                "SHIPPER_STACK_STATE_DIR to a place it can reach, e.g. /var/tmp/shipper-stack."
            )
        home = ingest_home_for(home, run_as)
    for sub in ("data", "logs", "tmp"):
        (INGEST_DIR / sub).mkdir(parents=True, exist_ok=True)
    conf = INGEST_DIR / "config"
    if not (conf / "elasticsearch.yml").is_file():
        shutil.copytree(home / "config", conf, dirs_exist_ok=True)
        options = conf / "jvm.options"
        options.write_text(jvm_options(options.read_text(), INGEST_DIR))
    if run_as is not None:
        INGEST_DIR.chmod(0o755)
        for sub in ("config", "data", "logs", "tmp"):
            chown_tree(INGEST_DIR / sub, run_as)
    java_opts = os.environ.get("ES_JAVA_OPTS") or ES_DEFAULT_JAVA_OPTS
    # 7.10 reads JAVA_HOME (ES_JAVA_HOME came in 7.12).
    env = dict(
        os.environ,
        JAVA_HOME=str(java_home),
        ES_JAVA_OPTS=java_opts,
        ES_PATH_CONF=str(conf),
        ES_TMPDIR=str(INGEST_DIR / "tmp"),
    )
    env.pop("ES_JAVA_HOME", None)
    extra: dict[str, Any] = {}
    if run_as is not None:
        env.update(HOME=str(INGEST_DIR / "tmp"), USER=run_as.name, LOGNAME=run_as.name)
        extra = run_as.popen_kwargs()
    cmd = [str(home / "bin" / "elasticsearch"), *settings_args(ingest_settings(port))]
    who = f" as user {run_as.name}" if run_as else ""
    log(
        f"starting the ingest node, Elasticsearch {INGEST_VERSION} ({', '.join(INGEST_MODULES)}), on "
        f"127.0.0.1:{port}{who} (Java {java} from {java_home})"
    )
    proc = INGEST.spawn(cmd, cwd=INGEST_DIR / "logs", env=env, port=port, extra=extra)
    hints = (
        f"Check {rel(INGEST.log_file)} and {rel(INGEST_DIR / 'logs')}/; JDK {java_home} (Java {java}); "
        f"port {port}. `scripts/stack down --only ingest --purge` starts it from scratch."
    )
    return Started(proc, port, hints)


INGEST = Component(
    key="ingest",
    title="Ingest node",
    url_var="ES_INGEST_URL",
    default_port=9201,
    port_var="SHIPPER_STACK_INGEST_PORT",
    timeout_var="SHIPPER_STACK_INGEST_TIMEOUT",
    default_timeout=180,
    grace=30,
    marker=f"path.data={INGEST_DIR / 'data'}",
    health=es_health,
    start=ingest_start,
    data_paths=[INGEST_DIR],
)
