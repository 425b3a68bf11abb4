"""The pure parts of scripts/stack (the package scripts/local_stack): how it tells its own servers
from someone else's, picks a port and a JDK, where it keeps its state, what it fetches with Maven,
and the settings and files it writes for its servers. Expected values are written by hand."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from scripts.local_stack import elasticsearch, identity, ingest, jdk, maven, mlflow_server, ports, state
from scripts.local_stack.common import StackError

REPO = Path(__file__).resolve().parents[2]


# --- Elasticsearch: GET /_nodes/_local/process?filter_path=cluster_name,nodes.*.name,nodes.*.process.id


def nodes_answer(cluster: str, pid: int) -> str:
    return json.dumps(
        {"cluster_name": cluster, "nodes": {"t1P1cHMsQnWH5hEZMpNTJA": {"name": "n", "process": {"id": pid}}}}
    )


def test_es_node_with_our_cluster_name_and_a_pid_of_our_group_is_ours() -> None:
    ours, why = identity.es_identity(
        nodes_answer("shipper-stack-abc", 4242), "shipper-stack-abc", {4200, 4242}
    )
    assert ours
    assert why == "cluster shipper-stack-abc, node pid 4242"


def test_es_node_of_another_cluster_is_not_ours() -> None:
    ours, why = identity.es_identity(nodes_answer("docker-cluster", 4242), "shipper-stack-abc", {4242})
    assert not ours
    assert why == "its cluster is named 'docker-cluster', this stack's is 'shipper-stack-abc'"


def test_es_node_with_our_name_but_another_process_is_not_ours() -> None:
    # e.g. a second checkout whose state dir has the same path, or a server left over by a lost pid file
    ours, why = identity.es_identity(
        nodes_answer("shipper-stack-abc", 999), "shipper-stack-abc", {4200, 4242}
    )
    assert not ours
    assert why == (
        "it has this stack's cluster name, but its process [999] is not one this stack started "
        "(ours: [4200, 4242])"
    )


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "green"}',  # a health-only impostor
        '{"cluster_name": "shipper-stack-abc", "nodes": {"x": {"name": "n"}}}',  # no process section
        "<html><body>It works!</body></html>",
        "",
    ],
)
def test_an_answer_that_is_not_a_nodes_response_is_not_ours(body: str) -> None:
    ours, why = identity.es_identity(body, "shipper-stack-abc", {4242})
    assert not ours
    assert why.startswith("its /_nodes/_local answer is not an Elasticsearch node's: ")


def test_cluster_name_is_stable_per_state_dir_and_differs_between_them() -> None:
    a = identity.es_cluster_name(Path("/var/tmp/shipper-stack-1"))
    assert a == identity.es_cluster_name(Path("/var/tmp/shipper-stack-1"))
    assert a != identity.es_cluster_name(Path("/var/tmp/shipper-stack-2"))
    assert a.startswith("shipper-stack-")
    assert len(a) == len("shipper-stack-") + 12


# --- Others (MLflow): the socket listening on the port must be held by our process group

# Hand-written in the kernel's format: an IPv4 listener on 127.0.0.1:5000 (inode 47794), one on
# 0.0.0.0:2024, an established connection from port 5000 (not a listener), and a listener on
# 127.0.0.2:5000, which does not receive connections to 127.0.0.1.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 666 1 0 100 0 0 10 0
   1: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 47794 1 0 100 0 0 10 0
   2: 0100007F:1388 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 51000 1 0 20 4 30 10 -1
   3: 0200007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51001 1 0 100 0 0 10 0
"""  # noqa: E501
# IPv6 forms as Java binds them: ::ffff:127.0.0.1 port 9200 (inode 43723) and :: port 5000
# (inode 43724); ::1 port 5000 does not receive connections to 127.0.0.1.
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:23F0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 43723 1 0 100 0 0 10 0
   1: 00000000000000000000000000000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 43724 1 0 100 0 0 10 0
   2: 00000000000000000000000001000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 43725 1 0 100 0 0 10 0
"""  # noqa: E501


def test_listeners_for_loopback_are_found_in_both_tables() -> None:
    assert identity.listening_inodes(TCP, 5000) == {47794}
    assert identity.listening_inodes(TCP6, 5000) == {43724}
    assert identity.listening_inodes(TCP6, 9200) == {43723}
    assert identity.listening_inodes(TCP, 9200) == set()
    assert identity.listening_inodes(TCP, 2024) == {666}


def test_port_held_by_our_processes_is_ours() -> None:
    ours, why = identity.listener_verdict(5000, {47794}, {47794, 51000, 12}, [])
    assert ours
    assert why == "the socket listening on 127.0.0.1:5000 is held by a process this stack started"


def test_port_held_by_another_process_is_not_ours() -> None:
    ours, why = identity.listener_verdict(5000, {47794}, {12, 13}, [])
    assert not ours
    assert why == "the socket listening on 127.0.0.1:5000 belongs to a process this stack did not start"


def test_a_second_listener_sharing_the_port_makes_it_not_ours() -> None:
    # SO_REUSEPORT lets two servers listen on one port; the kernel would split connections
    assert not identity.listener_verdict(5000, {47794, 43724}, {47794}, [])[0]


def test_nothing_listening_or_unreadable_descriptors_are_not_ours() -> None:
    assert identity.listener_verdict(5000, set(), {47794}, []) == (False, "nothing listens on 127.0.0.1:5000")
    ours, why = identity.listener_verdict(5000, {47794}, set(), [31337])
    assert not ours
    assert why == "cannot tell who listens on 127.0.0.1:5000: /proc/<pid>/fd of [31337] is not readable"


# --- Port choice


def pick(
    *,
    forced: int | None = None,
    previous: int | None = None,
    busy: Collection[int] = (),
    avoid: Collection[int] = (),
    handed_out: list[int] | None = None,
) -> int:
    pool = iter(handed_out or [40001])
    return int(
        ports.pick_port(
            forced=forced,
            previous=previous,
            default=9200,
            is_free=lambda port: port not in busy,
            any_port=lambda: next(pool),
            avoid=avoid,
        )
    )


def test_port_previous_first_then_default_then_any() -> None:
    assert pick(previous=41000) == 41000
    assert pick(previous=41000, busy={41000}) == 9200
    assert pick() == 9200
    assert pick(previous=41000, busy={41000, 9200}) == 40001


def test_port_taken_from_us_is_never_chosen_again() -> None:
    # Another server took 41000 after our check; even if it looks free a moment later, move on.
    assert pick(previous=41000, avoid={41000}) == 9200
    assert pick(previous=41000, avoid={41000}, busy={9200}, handed_out=[41000, 40002]) == 40002


def test_forced_port_is_used_or_refused_never_replaced() -> None:
    assert pick(forced=9999, previous=41000) == 9999
    with pytest.raises(StackError, match=r"^127\.0\.0\.1:9999 is already in use$"):
        pick(forced=9999, busy={9999})
    with pytest.raises(StackError, match=r"^127\.0\.0\.1:9999 is already in use$"):
        pick(forced=9999, avoid={9999})


def test_a_real_port_in_use_is_not_free() -> None:
    port = ports.ephemeral_port()
    assert ports.port_free(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not ports.port_free(port)


# --- JDK choice: `java -version` output, and the newest JDK that fits among those found

JAVA_17 = """openjdk version "17.0.13" 2024-10-15
OpenJDK Runtime Environment (build 17.0.13+11-Debian-2deb12u1)
OpenJDK 64-Bit Server VM (build 17.0.13+11-Debian-2deb12u1, mixed mode, sharing)
"""
JAVA_8 = """openjdk version "1.8.0_392"
OpenJDK Runtime Environment (Temurin)(build 1.8.0_392-b08)
"""
JAVA_25 = """openjdk version "25" 2025-09-16 LTS
OpenJDK Runtime Environment Temurin-25+36 (build 25+36-LTS)
"""


@pytest.mark.parametrize(
    ("output", "major"),
    [(JAVA_17, 17), (JAVA_8, 8), (JAVA_25, 25), ("sh: 1: java: not found\n", None), ("", None)],
)
def test_java_major_version_is_read_from_java_version_output(output: str, major: int | None) -> None:
    assert jdk.parse_java_major(output) == major


@pytest.mark.parametrize(("version", "need"), [("9.5.4", 21), ("10.0.0", 21), ("8.17.0", 17), ("7.10.2", 11)])
def test_oldest_java_each_elasticsearch_runs_on(version: str, need: int) -> None:
    assert jdk.min_java(version) == need


J11 = Path("/usr/lib/jvm/java-11-openjdk-amd64")
J17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
J21 = Path("/opt/jdk-21")
J25 = Path("/usr/lib/jvm/temurin-25-jdk-amd64")


def test_elasticsearch_gets_the_newest_jdk_that_is_new_enough() -> None:
    assert jdk.choose_es_jdk("9.5.4", [(17, J17), (25, J25), (21, J21)]) == (J25, 25)
    assert jdk.choose_es_jdk("8.17.0", [(11, J11), (17, J17)]) == (J17, 17)


def test_no_jdk_new_enough_for_elasticsearch_names_what_was_found_and_what_to_install() -> None:
    with pytest.raises(StackError) as err:
        jdk.choose_es_jdk("9.5.4", [(17, J17), (11, J11)])
    assert str(err.value) == (
        "Elasticsearch 9.5.4 needs Java 21 or newer; found Java 17 at /usr/lib/jvm/java-17-openjdk-amd64, "
        "Java 11 at /usr/lib/jvm/java-11-openjdk-amd64. Install a JDK 21+ "
        "(e.g. apt-get install openjdk-21-jdk-headless) or point ES_JAVA_HOME at one."
    )
    with pytest.raises(StackError, match=r"; found no JDK at all\. Install a JDK 21\+"):
        jdk.choose_es_jdk("9.5.4", [])


def test_the_ingest_node_gets_the_newest_jdk_from_11_to_17() -> None:
    # 7.10 sets a security manager, which Java 18+ deprecates and 24+ refuses: 25 is never chosen.
    assert jdk.choose_ingest_jdk("7.10.2", 17, {J25: 25, J11: 11, J17: 17}) == (J17, 17)
    assert jdk.choose_ingest_jdk("7.10.2", 17, {J25: 25, J11: 11}) == (J11, 11)


def test_no_jdk_for_the_ingest_node_names_what_was_found_and_what_to_install() -> None:
    with pytest.raises(StackError) as err:
        jdk.choose_ingest_jdk("7.10.2", 17, {J25: 25, Path("/usr/lib/jvm/java-8"): 8})
    assert str(err.value) == (
        "the ingest node (Elasticsearch 7.10.2) needs Java 11 to 17; found Java 25 at "
        "/usr/lib/jvm/temurin-25-jdk-amd64, Java 8 at /usr/lib/jvm/java-8. Install one "
        "(e.g. apt-get install openjdk-17-jdk-headless) or set SHIPPER_STACK_INGEST_JAVA_HOME."
    )
    with pytest.raises(StackError, match=r"; found no JDK under /usr/lib/jvm\. Install one"):
        jdk.choose_ingest_jdk("7.10.2", 17, {})


# --- State and cache directories


def test_state_dir_is_the_repo_s_dot_stack_unless_the_environment_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Path("/src/shipper")
    assert state.state_dir({}, repo) == Path("/src/shipper/.stack")
    assert state.state_dir({"SHIPPER_STACK_STATE_DIR": ""}, repo) == Path("/src/shipper/.stack")
    assert state.state_dir({"SHIPPER_STACK_STATE_DIR": "/var/tmp/st"}, repo) == Path("/var/tmp/st")
    monkeypatch.chdir(tmp_path)  # a relative one is taken from where scripts/stack runs
    assert state.state_dir({"SHIPPER_STACK_STATE_DIR": "st/a"}, repo) == tmp_path / "st" / "a"


def test_cache_dir_follows_xdg_and_ignores_a_relative_xdg_cache_home() -> None:
    home = Path("/home/ann")
    assert state.cache_dir({}, home) == Path("/home/ann/.cache/shipper-stack")
    assert state.cache_dir({"XDG_CACHE_HOME": "/var/cache/ann"}, home) == Path("/var/cache/ann/shipper-stack")
    assert state.cache_dir({"XDG_CACHE_HOME": "cache"}, home) == Path("/home/ann/.cache/shipper-stack")


def test_files_in_the_state_dir_keep_the_layout_existing_stacks_have() -> None:
    # Servers started before are found (and told apart from recycled pids) by these names and
    # command-line markers; renaming any of them would orphan a running stack.
    from scripts.local_stack.cli import COMPONENTS

    st = state.STATE
    assert {key: (c.pid_file, c.port_file, c.log_file, c.data_paths) for key, c in COMPONENTS.items()} == {
        "es": (st / "es.pid", st / "es.port", st / "es.log", [st / "es"]),
        "mlflow": (st / "mlflow.pid", st / "mlflow.port", st / "mlflow.log", [st / "mlflow"]),
        "ingest": (st / "ingest.pid", st / "ingest.port", st / "ingest.log", [st / "ingest"]),
    }
    assert {key: c.marker for key, c in COMPONENTS.items()} == {
        "es": f"path.data={st}/es/data",
        "mlflow": f"sqlite:///{st}/mlflow/mlflow.db",
        "ingest": f"path.data={st}/ingest/data",
    }


def lib_sh_state_dir(cwd: Path, **env: str) -> str:
    """SHIPPER_STACK_STATE_DIR after scripts/lib.sh's stack_state_dir_for_root, run in `cwd`."""
    script = f'. "{REPO}/scripts/lib.sh"; stack_state_dir_for_root; '
    script += 'printf %s "${SHIPPER_STACK_STATE_DIR:-}"'
    base = {k: v for k, v in os.environ.items() if k != "SHIPPER_STACK_STATE_DIR"}
    r = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env={**base, "PWD": str(cwd), **env}, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def world_searchable_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="shipper-stack-unit-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    path.rmdir()


def test_lib_sh_moves_the_state_to_var_tmp_only_for_root_in_a_private_checkout(
    tmp_path: Path, world_searchable_dir: Path
) -> None:
    private = tmp_path / "clone"  # pytest's base temp dir is mode 700: the ES user cannot enter
    private.mkdir()
    tmp_path.chmod(0o700)
    if os.geteuid() == 0:
        tag = hashlib.md5(str(private).encode()).hexdigest()[:8]
        assert lib_sh_state_dir(private) == f"/var/tmp/shipper-stack-{tag}"
    else:
        assert lib_sh_state_dir(private) == ""
    assert lib_sh_state_dir(world_searchable_dir) == ""
    assert lib_sh_state_dir(private, SHIPPER_STACK_STATE_DIR="/srv/st") == "/srv/st"


def test_scripts_stack_runs_from_any_directory_with_the_standard_library_only(tmp_path: Path) -> None:
    # -I: no user site, no PYTHON* variables, no script dir on sys.path; -S: no site-packages.
    r = subprocess.run(
        ["python3", "-I", "-S", str(REPO / "scripts" / "stack"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: scripts/stack [-h] {up,down,status} ...\n")


# --- Maven coordinates


def test_maven_coordinates_of_the_distribution_and_where_mvn_leaves_it() -> None:
    artifact = maven.es_artifact("9.5.4")
    assert artifact == "org.elasticsearch.distribution.integ-test-zip:elasticsearch:9.5.4:zip"
    assert maven.local_repository_file(artifact, Path("/home/ann/.m2/repository")) == Path(
        "/home/ann/.m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch/9.5.4/"
        "elasticsearch-9.5.4.zip"
    )


def test_pom_that_fetches_one_ingest_module() -> None:
    assert maven.module_pom("org.codelibs.elasticsearch.module", "ingest-common", "7.10.2") == (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>local.shipper-stack</groupId>\n"
        "  <artifactId>fetch-ingest-common</artifactId>\n"
        "  <version>1</version>\n"
        "  <packaging>pom</packaging>\n"
        "  <dependencies>\n"
        "    <dependency>\n"
        "      <groupId>org.codelibs.elasticsearch.module</groupId>\n"
        "      <artifactId>ingest-common</artifactId>\n"
        "      <version>7.10.2</version>\n"
        "    </dependency>\n"
        "  </dependencies>\n"
        "</project>\n"
    )


# --- Elasticsearch: the pinned version, settings and config dir


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("ELASTIC_STACK_VERSION=9.5.4\n", "9.5.4"),
        ("# pin\nexport ELASTIC_STACK_VERSION = '9.5.4'  # the one place\n", "9.5.4"),
        ('ELASTIC_STACK_VERSION="8.17.0"\nELASTIC_STACK_VERSION=9.5.4\n', "9.5.4"),  # the last wins
        ("KIBANA_PORT=5601\n", ""),
    ],
)
def test_version_pin_in_the_env_file(text: str, version: str) -> None:
    assert elasticsearch.env_file_version(text) == version


ES_SETTINGS = {
    "cluster.name": "shipper-stack-53faef19d028",
    "node.name": "shipper-stack",
    "network.host": "127.0.0.1",
    "http.port": "9200",
    "discovery.type": "single-node",
    "path.data": "/var/tmp/shipper-stack-1/es/data",
    "path.logs": "/var/tmp/shipper-stack-1/es/logs",
    "cluster.routing.allocation.disk.threshold_enabled": "false",
    "action.destructive_requires_name": "false",
}


def test_es_settings_for_the_minimal_distribution(tmp_path: Path) -> None:
    home = tmp_path / "elasticsearch-9.5.4"
    (home / "modules" / "x-pack-core").mkdir(parents=True)
    assert elasticsearch.es_settings(home, 9200, Path("/var/tmp/shipper-stack-1")) == ES_SETTINGS


def test_es_settings_switch_off_what_optional_modules_would_do(tmp_path: Path) -> None:
    home = tmp_path / "elasticsearch-9.5.4"
    (home / "modules" / "ingest-geoip").mkdir(parents=True)
    (home / "modules" / "x-pack-security").mkdir(parents=True)
    assert elasticsearch.es_settings(home, 9200, Path("/var/tmp/shipper-stack-1")) == {
        **ES_SETTINGS,
        "ingest.geoip.downloader.enabled": "false",
        "xpack.security.enabled": "false",
    }
    assert elasticsearch.settings_args({"http.port": "9200", "node.name": "n"}) == [
        "-E",
        "http.port=9200",
        "-E",
        "node.name=n",
    ]


def test_config_dir_is_copied_once_per_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "elasticsearch.yml").write_text("# from the distribution\n")
    conf = tmp_path / "es" / "config"
    elasticsearch.prepare_config(home, conf, "9.5.4")
    assert (conf / ".shipper-stack-version").read_text() == "9.5.4\n"
    assert (conf / "elasticsearch.yml").read_text() == "# from the distribution\n"
    (conf / "elasticsearch.keystore").write_text("written by the node")
    elasticsearch.prepare_config(home, conf, "9.5.4")  # same version: the node's files stay
    assert (conf / "elasticsearch.keystore").read_text() == "written by the node"
    elasticsearch.prepare_config(home, conf, "9.5.5")  # another version: a fresh copy
    assert sorted(p.name for p in conf.iterdir()) == [".shipper-stack-version", "elasticsearch.yml"]
    assert (conf / ".shipper-stack-version").read_text() == "9.5.5\n"


# --- The ingest node: settings, module descriptors and policies, jvm.options


def test_ingest_node_settings() -> None:
    assert ingest.ingest_settings(9201, Path("/var/tmp/shipper-stack-1")) == {
        "cluster.name": "shipper-stack-ingest",
        "node.name": "shipper-stack-ingest",
        "network.host": "127.0.0.1",
        "http.port": "9201",
        "transport.port": "9350-9399",
        "discovery.type": "single-node",
        "path.data": "/var/tmp/shipper-stack-1/ingest/data",
        "path.logs": "/var/tmp/shipper-stack-1/ingest/logs",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }


def test_module_descriptor_and_security_policy() -> None:
    classname, extends, description, grants = ingest.INGEST_MODULES["ingest-common"]
    assert ingest.plugin_descriptor("ingest-common", classname, extends, description) == (
        "description=Module for ingest processors that need no extra permissions or large dependencies\n"
        "version=7.10.2\n"
        "name=ingest-common\n"
        "classname=org.elasticsearch.ingest.common.IngestCommonPlugin\n"
        "java.version=1.8\n"
        "elasticsearch.version=7.10.2\n"
        "extended.plugins=lang-painless\n"
        "has.native.controller=false\n"
    )
    assert grants == []
    assert ingest.security_policy(ingest.INGEST_MODULES["lang-painless"][3]) == (
        "grant {\n"
        '  permission java.lang.RuntimePermission "createClassLoader";\n'
        '  permission java.lang.RuntimePermission "getClassLoader";\n'
        "};\n"
    )


def test_jvm_options_write_logs_and_dumps_into_the_state_dir() -> None:
    options = (
        "-Xms1g\n"
        "-XX:+HeapDumpOnOutOfMemoryError\n"
        "-XX:HeapDumpPath=data\n"
        "-XX:ErrorFile=logs/hs_err_pid%p.log\n"
        "9-:-Xlog:gc*,gc+age=trace,safepoint:file=logs/gc.log:utctime,pid,tags:filecount=32,filesize=64m\n"
        "# see logs/ for more\n"
    )
    assert ingest.jvm_options(options, Path("/var/tmp/st/ingest")) == (
        "-Xms1g\n"
        "-XX:+HeapDumpOnOutOfMemoryError\n"
        "-XX:HeapDumpPath=/var/tmp/st/ingest/tmp\n"
        "-XX:ErrorFile=/var/tmp/st/ingest/logs/hs_err_pid%p.log\n"
        "9-:-Xlog:gc*,gc+age=trace,safepoint:file=/var/tmp/st/ingest/logs/gc.log:utctime,pid,tags:"
        "filecount=32,filesize=64m\n"
        "# see logs/ for more\n"
    )


# --- MLflow


def test_mlflow_command_proxies_artifacts_from_1_24_on() -> None:
    db, artifacts = Path("/st/mlflow/mlflow.db"), Path("/st/mlflow/artifacts")
    base = ["py", "-m", "mlflow", "server", "--backend-store-uri", "sqlite:////st/mlflow/mlflow.db"]
    base += ["--host", "127.0.0.1", "--port", "5000", "--workers", "1"]
    assert mlflow_server.mlflow_command("py", "3.1.0", 5000, db, artifacts) == [
        *base,
        "--serve-artifacts",
        "--artifacts-destination",
        "/st/mlflow/artifacts",
    ]
    assert mlflow_server.mlflow_command("py", "1.23.1", 5000, db, artifacts) == [
        *base,
        "--default-artifact-root",
        "/st/mlflow/artifacts",
    ]
