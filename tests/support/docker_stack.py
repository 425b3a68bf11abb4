"""The Docker backend of the end-to-end tests: the official Elastic images, through testcontainers.

Where a Docker engine answers (contributors' laptops, hosted CI) and `SHIPPER_TEST_BACKEND=docker`
asks for it, `tests/e2e/` starts on one private network, at the version pinned in `.env`:
- Elasticsearch, single node, security on, TLS on HTTP (a throwaway CA made here, whose certificate
  also names the `elasticsearch` network alias and the Docker host), the `elastic` password random;
- Kibana, talking to it as `kibana_system` over TLS;
- Logstash with this repository's `logstash/` settings, pipelines and patterns, writing with an API
  key of the `mlops-logstash-writer` role (`docker/elastic/roles/`), as docker-compose.yml does;
- two Filebeats with `filebeat/filebeat.docker.yml`: one as written (to Logstash), one switched to
  the file's documented Elasticsearch option (straight to the data stream's ingest pipeline).
Each path writes its own namespace of `logs-mlops.scoring-*`, so both can be compared line by line.

Without Docker nothing here runs: `decide()` turns the request and the engine's answer into one
decision (run, skip with one reason, or fail loudly), and `tests/e2e/conftest.py` applies it.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import requests
import yaml
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from tests.support.secure_es import Certificates, make_certificates

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

REPO = Path(__file__).resolve().parents[2]

#: The request: `local` (the default: no Docker tests), `auto` (run them if Docker answers),
#: `docker` (run them; fail when Docker does not answer).
BACKEND_ENV = "SHIPPER_TEST_BACKEND"
BACKENDS = ("local", "auto", "docker")
#: Where container logs are written when the session ends (CI uploads this directory on failure).
#: Read on import: tests/conftest.py hides SHIPPER_* variables from each test while it runs.
LOG_DIR_ENV = "SHIPPER_TEST_E2E_LOGS"
LOG_DIR: Path | None = Path(os.environ[LOG_DIR_ENV]) if os.environ.get(LOG_DIR_ENV) else None

ES_ALIAS = "elasticsearch"
LOGSTASH_ALIAS = "logstash"
#: The namespaces of logs-mlops.scoring-<namespace> each path writes.
NAMESPACE_LOGSTASH = "e2elogstash"
NAMESPACE_DIRECT = "e2edirect"
ROLE_FILE = REPO / "docker" / "elastic" / "roles" / "mlops-logstash-writer.json"
SCORING_IMAGE_TAG = "mlops-scoring-demo:e2e"


class E2EError(RuntimeError):
    """A container of the end-to-end stack did not come up; the message says which and why."""


def stack_version(env_file: Path = REPO / ".env") -> str:
    """ELASTIC_STACK_VERSION from `.env`, the one place the stack version is pinned."""
    for line in env_file.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ELASTIC_STACK_VERSION" and value.strip():
            return value.strip()
    raise E2EError(f"{env_file} pins no ELASTIC_STACK_VERSION")


def image(product: Literal["elasticsearch", "kibana", "logstash", "filebeat"]) -> str:
    """The official image of `product` at the pinned version."""
    path = {
        "elasticsearch": "elasticsearch/elasticsearch",
        "kibana": "kibana/kibana",
        "logstash": "logstash/logstash",
        "filebeat": "beats/filebeat",
    }[product]
    return f"docker.elastic.co/{path}:{stack_version()}"


# --------------------------------------------------------------------------------------------
# Is there a Docker engine, and do we use it?
# --------------------------------------------------------------------------------------------


def docker_problem() -> str | None:
    """None when a Docker engine answers a ping; otherwise one line saying why not."""
    # imported by name: a checkout's own docker/ folder would shadow the package for mypy
    docker: Any = importlib.import_module("docker")
    DockerException: type[Exception] = importlib.import_module("docker.errors").DockerException

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return "no Docker engine here (DOCKER_HOST is unset and /var/run/docker.sock does not exist)"
    try:
        client = docker.from_env(timeout=5)
    except DockerException as exc:
        return f"no Docker engine answers at {where} ({_first_line(exc)})"
    try:
        client.ping()
    except (DockerException, requests.RequestException) as exc:
        return f"the Docker engine at {where} does not answer a ping ({_first_line(exc)})"
    finally:
        client.close()
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


@dataclass(frozen=True)
class Decision:
    action: Literal["run", "skip", "fail"]
    reason: str


def decide(requested: str | None, problem: Callable[[], str | None]) -> Decision:
    """What the end-to-end tests do, from SHIPPER_TEST_BACKEND and the Docker engine's answer."""
    value = (requested or "local").strip().lower()
    if value not in BACKENDS:
        return Decision(
            "fail", f"{BACKEND_ENV}={requested!r} is not one of {', '.join(BACKENDS)}; unset it or pick one"
        )
    issue = problem()
    what = f"real Elasticsearch, Kibana, Logstash and Filebeat {stack_version()}"
    if value == "docker":
        if issue:
            return Decision(
                "fail",
                f"{BACKEND_ENV}=docker asks for the end-to-end tests against {what}, but {issue}; "
                f"start Docker (or point DOCKER_HOST at it), or unset {BACKEND_ENV}",
            )
        return Decision("run", f"{BACKEND_ENV}=docker")
    if issue:
        return Decision(
            "skip",
            f"end-to-end tests against {what} need Docker, and {issue}; "
            f"where Docker runs, set {BACKEND_ENV}=docker",
        )
    if value == "auto":
        return Decision("run", f"{BACKEND_ENV}=auto and Docker answers")
    return Decision(
        "skip",
        f"Docker answers, but {BACKEND_ENV} is unset (local): set {BACKEND_ENV}=docker (or auto) to run "
        f"the end-to-end tests against {what}",
    )


# --------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------


def _wait(what: str, seconds: float, probe: Callable[[], None], logs: Callable[[], str]) -> None:
    """Call `probe` until it stops raising AssertionError/requests errors, or fail after `seconds`."""
    try:
        for attempt in Retrying(
            stop=stop_after_delay(seconds),
            wait=wait_fixed(3),
            retry=retry_if_exception_type((AssertionError, requests.RequestException)),
            reraise=True,
        ):
            with attempt:
                probe()
    except (AssertionError, requests.RequestException) as exc:
        raise E2EError(
            f"{what} was not ready after {seconds:.0f} s: {exc}\n--- its log (tail):\n{logs()}"
        ) from exc


def container_logs(container: DockerContainer, lines: int = 80) -> str:
    try:
        out, err = container.get_logs()
    except Exception as exc:  # the container may be gone: say so instead of hiding the first error
        return f"(no logs: {exc})"
    text = (out + err).decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def shipper_env(**settings: str) -> dict[str, str]:
    """The environment of a `shipper` process: ours without any SHIPPER_* (the shipper refuses
    unknown SHIPPER_* names, such as SHIPPER_TEST_BACKEND), plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")}
    env.update(settings)
    return env


@dataclass
class Passwords:
    """Random per session; they only live in the containers' environment and this process."""

    elastic: str = field(default_factory=lambda: secrets.token_hex(16))
    kibana_system: str = field(default_factory=lambda: secrets.token_hex(16))
    encryption_key: str = field(default_factory=lambda: secrets.token_hex(32))


@dataclass
class E2EStack:
    workdir: Path
    network: Network
    certs: Certificates
    passwords: Passwords = field(default_factory=Passwords)
    containers: dict[str, DockerContainer] = field(default_factory=dict)
    es_url: str = ""
    kibana_url: str = ""
    writer_api_key: str = ""  # "id:api_key", as Logstash and Filebeat take it

    # --- clients -------------------------------------------------------------------------------

    def es(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        response = requests.request(
            method,
            self.es_url + path,
            json=body,
            auth=("elastic", self.passwords.elastic),
            verify=str(self.certs.ca),
            timeout=60,
        )
        if response.status_code not in ok:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None

    def kibana(
        self, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> requests.Response:
        response = requests.request(
            method,
            self.kibana_url + path,
            auth=("elastic", self.passwords.elastic),
            headers={"kbn-xsrf": "shipper-e2e", **kwargs.pop("headers", {})},
            timeout=120,
            **kwargs,
        )
        if response.status_code not in ok:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code}: {response.text[:1000]}")
        return response

    def shipper(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The shipper's own CLI, as `elastic` (setting up needs more than a writer role)."""
        settings = {
            "SHIPPER_ELASTICSEARCH_URL": self.es_url,
            "SHIPPER_ELASTICSEARCH_USERNAME": "elastic",
            "SHIPPER_ELASTICSEARCH_PASSWORD": self.passwords.elastic,
            "SHIPPER_ELASTICSEARCH_CA_CERTS": str(self.certs.ca),
        }
        if self.kibana_url:
            settings["SHIPPER_KIBANA_URL"] = self.kibana_url
        return subprocess.run(
            [sys.executable, "-m", "shipper", *args],
            capture_output=True,
            text=True,
            env=shipper_env(**settings),
            timeout=600,
            check=False,
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def save_logs(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for name, container in self.containers.items():
            (dest / f"{name}.log").write_text(container_logs(container, lines=5000), encoding="utf-8")

    def stop(self) -> None:
        for container in reversed(list(self.containers.values())):
            try:
                container.stop()
            except Exception as exc:  # keep stopping the others; say what was left behind
                print(f"e2e: could not remove container {container.image}: {exc}", file=sys.stderr)
        self.containers.clear()
        self.network.remove()

    def _add(self, name: str, container: DockerContainer) -> DockerContainer:
        self.containers[name] = container
        container.start()
        return container

    def _url(self, container: DockerContainer, port: int, scheme: str) -> str:
        return f"{scheme}://{container.get_container_host_ip()}:{container.get_exposed_port(port)}"


def _certs_into(container: DockerContainer, certs: Certificates, directory: str, key: bool = False) -> None:
    container.with_copy_into_container(certs.ca, f"{directory}/ca.crt")
    if key:
        container.with_copy_into_container(certs.cert, f"{directory}/node.crt")
        container.with_copy_into_container(certs.key, f"{directory}/node.key")


def start_stack(workdir: Path) -> E2EStack:
    """Start Elasticsearch (ready, secured, assets installed by `shipper setup`), then Kibana,
    Logstash and both Filebeats, and wait until each answers. Stops what it started on failure."""
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.network import Network

    host = DockerClient().host()
    certs = make_certificates(workdir / "certs", extra_names=(ES_ALIAS, host))
    network = Network().create()
    stack = E2EStack(workdir=workdir, network=network, certs=certs)
    try:
        _start_elasticsearch(stack)
        setup = stack.shipper("setup")
        if setup.returncode != 0:
            raise E2EError(f"shipper setup failed (exit {setup.returncode}):\n{setup.stdout}\n{setup.stderr}")
        kibana = _start_kibana(stack)
        logstash = _start_logstash(stack)
        filebeats = [_start_filebeat(stack, direct=False), _start_filebeat(stack, direct=True)]
        _wait_kibana(stack, kibana)
        _wait_logstash(stack, logstash)
        for filebeat in filebeats:
            _wait_filebeat(filebeat)
    except BaseException:
        if LOG_DIR is not None:
            stack.save_logs(LOG_DIR)
        stack.stop()
        raise
    return stack


def _start_elasticsearch(stack: E2EStack) -> None:
    from testcontainers.core.container import DockerContainer

    certs_dir = "/usr/share/elasticsearch/config/certs"
    es = (
        DockerContainer(image("elasticsearch"))
        .with_network(stack.network)
        .with_network_aliases(ES_ALIAS)
        .with_exposed_ports(9200)
        .with_envs(
            **{
                "discovery.type": "single-node",
                "ES_JAVA_OPTS": "-Xms1g -Xmx1g",
                "ELASTIC_PASSWORD": stack.passwords.elastic,
                "xpack.security.enabled": "true",
                "xpack.security.http.ssl.enabled": "true",
                "xpack.security.http.ssl.certificate": "certs/node.crt",
                "xpack.security.http.ssl.key": "certs/node.key",
                "xpack.security.http.ssl.certificate_authorities": "certs/ca.crt",
                "xpack.license.self_generated.type": "basic",
            }
        )
    )
    _certs_into(es, stack.certs, certs_dir, key=True)
    stack._add("elasticsearch", es)
    stack.es_url = stack._url(es, 9200, "https")

    def healthy() -> None:
        stack.es("GET", "/_cluster/health?wait_for_status=yellow&timeout=5s")

    _wait("Elasticsearch", 240, healthy, lambda: container_logs(es))
    stack.es("POST", "/_security/user/kibana_system/_password", {"password": stack.passwords.kibana_system})
    role = json.loads(ROLE_FILE.read_text(encoding="utf-8"))
    role.pop("description", None)
    key = stack.es(
        "POST",
        "/_security/api_key",
        {"name": "mlops-e2e-scoring-writer", "role_descriptors": {ROLE_FILE.stem: role}},
    )
    stack.writer_api_key = f"{key['id']}:{key['api_key']}"


def _start_kibana(stack: E2EStack) -> DockerContainer:
    from testcontainers.core.container import DockerContainer

    kibana = (
        DockerContainer(image("kibana"))
        .with_network(stack.network)
        .with_exposed_ports(5601)
        .with_envs(
            SERVER_NAME="kibana",
            ELASTICSEARCH_HOSTS=f'["https://{ES_ALIAS}:9200"]',
            ELASTICSEARCH_USERNAME="kibana_system",
            ELASTICSEARCH_PASSWORD=stack.passwords.kibana_system,
            ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES="/usr/share/kibana/config/certs/ca.crt",
            XPACK_ENCRYPTEDSAVEDOBJECTS_ENCRYPTIONKEY=stack.passwords.encryption_key,
            XPACK_SECURITY_ENCRYPTIONKEY=stack.passwords.encryption_key,
            XPACK_REPORTING_ENCRYPTIONKEY=stack.passwords.encryption_key,
        )
    )
    _certs_into(kibana, stack.certs, "/usr/share/kibana/config/certs")
    stack._add("kibana", kibana)
    stack.kibana_url = stack._url(kibana, 5601, "http")
    return kibana


def _wait_kibana(stack: E2EStack, kibana: DockerContainer) -> None:
    def available() -> None:
        status = stack.kibana("GET", "/api/status").json()
        level = status.get("status", {}).get("overall", {}).get("level")
        assert level == "available", f"Kibana status {level}"

    _wait("Kibana", 360, available, lambda: container_logs(kibana))


def _start_logstash(stack: E2EStack) -> DockerContainer:
    from testcontainers.core.container import DockerContainer

    home = "/usr/share/logstash"
    logstash = (
        DockerContainer(image("logstash"))
        .with_network(stack.network)
        .with_network_aliases(LOGSTASH_ALIAS)
        .with_exposed_ports(9600)
        .with_envs(
            ES_HOSTS=f"https://{ES_ALIAS}:9200",
            ES_API_KEY=stack.writer_api_key,
            ES_CA_CERT=f"{home}/config/certs/ca.crt",
            MLOPS_SCORING_NAMESPACE=NAMESPACE_LOGSTASH,
            LS_JAVA_OPTS="-Xms512m -Xmx512m",
        )
    )
    logstash.with_copy_into_container(
        REPO / "logstash" / "config" / "logstash.yml", f"{home}/config/logstash.yml"
    )
    logstash.with_copy_into_container(REPO / "logstash" / "pipelines.yml", f"{home}/config/pipelines.yml")
    for conf in sorted((REPO / "logstash" / "pipeline" / "scoring").glob("*.conf")):
        logstash.with_copy_into_container(conf, f"{home}/pipeline/scoring/{conf.name}")
    for patterns in sorted((REPO / "logstash" / "patterns").iterdir()):
        logstash.with_copy_into_container(patterns, f"{home}/patterns/{patterns.name}")
    _certs_into(logstash, stack.certs, f"{home}/config/certs")
    stack._add("logstash", logstash)
    return logstash


def _wait_logstash(stack: E2EStack, logstash: DockerContainer) -> None:
    url = stack._url(logstash, 9600, "http") + "/_node/pipelines/mlops-scoring"

    def running() -> None:
        response = requests.get(url, timeout=10)
        assert response.status_code == 200 and "mlops-scoring" in response.text, response.text[:300]

    _wait("Logstash", 300, running, lambda: container_logs(logstash))


def filebeat_config(direct: bool) -> dict[str, Any]:
    """filebeat/filebeat.docker.yml; with `direct`, switched to its documented Elasticsearch option
    (the commented `output.elasticsearch` block), plus the CA and this test's namespace."""
    config: dict[str, Any] = yaml.safe_load((REPO / "filebeat" / "filebeat.docker.yml").read_text("utf-8"))
    if direct:
        del config["output.logstash"]
        config["output.elasticsearch"] = {
            "hosts": [f"https://{ES_ALIAS}:9200"],
            "api_key": "${ES_API_KEY}",
            "index": f"logs-mlops.scoring-{NAMESPACE_DIRECT}",
            "pipeline": "logs-mlops.scoring",
            "ssl.certificate_authorities": ["/usr/share/filebeat/certs/ca.crt"],
        }
    return config


def _docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"


def _start_filebeat(stack: E2EStack, direct: bool) -> DockerContainer:
    from testcontainers.core.container import DockerContainer

    name = "filebeat-direct" if direct else "filebeat-logstash"
    config = yaml.safe_dump(filebeat_config(direct), sort_keys=False).encode()
    filebeat = (
        DockerContainer(image("filebeat"), user="root")
        .with_network(stack.network)
        .with_command(["filebeat", "-e", "--strict.perms=false"])
        .with_envs(LOGSTASH_HOSTS=f"{LOGSTASH_ALIAS}:5044", ES_API_KEY=stack.writer_api_key)
        # the Docker host's container logs and socket, as docker-compose.yml mounts them
        .with_volume_mapping("/var/lib/docker/containers", "/var/lib/docker/containers", "ro")
        .with_volume_mapping(_docker_socket(), "/var/run/docker.sock", "ro")
    )
    filebeat.with_copy_into_container(config, "/usr/share/filebeat/filebeat.yml")
    _certs_into(filebeat, stack.certs, "/usr/share/filebeat/certs")
    stack._add(name, filebeat)
    return filebeat


def _wait_filebeat(filebeat: DockerContainer) -> None:
    def connected() -> None:
        result = filebeat.exec(["filebeat", "test", "output", "--strict.perms=false"])
        assert result.exit_code == 0, result.output.decode("utf-8", "replace")[-500:]

    _wait("Filebeat", 180, connected, lambda: container_logs(filebeat))


def build_scoring_image() -> None:
    """examples/scoring's image, tagged SCORING_IMAGE_TAG (the real Azure ML inference server)."""
    from testcontainers.core.image import DockerImage

    DockerImage(path=REPO / "examples" / "scoring", tag=SCORING_IMAGE_TAG, clean_up=False).build()


def start_scoring_container(
    stack: E2EStack,
    name: str,
    labels: dict[str, str],
    command: list[str] | None = None,
    files: dict[str, bytes] | None = None,
    env: dict[str, str] | None = None,
) -> DockerContainer:
    """A container of the scoring image with these Docker labels (what Filebeat selects on)."""
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(SCORING_IMAGE_TAG, labels=labels).with_exposed_ports(5001)
    if command is not None:
        container.with_command(command)
    for path, content in (files or {}).items():
        container.with_copy_into_container(content, path)
    for key, value in (env or {}).items():
        container.with_env(key, value)
    return stack._add(name, container)


def scoring_documents(stack: E2EStack, namespace: str) -> list[dict[str, Any]]:
    """Every document of logs-mlops.scoring-<namespace> (refreshed first), as _source."""
    index = f"logs-mlops.scoring-{namespace}"
    stack.es("POST", f"/{index}/_refresh", ok=(200, 404))
    body = {"size": 10000, "query": {"match_all": {}}, "sort": ["_doc"]}
    found = stack.es("POST", f"/{index}/_search?ignore_unavailable=true", body)
    return [hit["_source"] for hit in found["hits"]["hits"]]
