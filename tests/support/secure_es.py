"""A second, secured Elasticsearch for tests: TLS on HTTP and transport, a file-realm superuser.

It runs from the same cached minimal distribution (integ-test-zip) that `scripts/stack` starts,
with the same JDK choice and, when we are root, as the same unprivileged user; those parts are
imported from scripts/local_stack, the package behind `scripts/stack`. What differs lives here: its
own directory under the system temp dir, free loopback ports, a CA and node certificate made with
`cryptography`, and security configured explicitly (the launcher's auto-configuration writes
keystore secrets this build then rejects, so it must not run; passing `xpack.security.enabled`
explicitly keeps it from running).

What this build can and cannot do, measured on 9.5.4 (see tests/integration/test_secured_cluster.py):
- file realm (users hashed by the distribution's own `bin/elasticsearch-users`): works;
- HTTP and transport TLS from PEM files under the config dir: works;
- API keys: cannot be created. They live in the `.security` system index, whose mapping uses the
  `pattern_capture` token filter of the analysis-common module, which the minimal build lacks
  (`POST /_security/api_key` answers 400 "Unknown filter type [pattern_capture]");
- OAuth2 access tokens (bearer): work, but the token service needs a trial (or higher) license,
  hence `xpack.license.self_generated.type=trial` (a basic license answers 403 "current license is
  non-compliant for [security tokens]");
- `GET /_xpack` (any category that includes `features`): HTTP 500 "failed to find action
  [cluster:monitor/xpack/info/monitoring]", with or without security.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.local_stack import elasticsearch, jdk, processes
from scripts.local_stack import state as stack_state
from scripts.local_stack.common import StackError
from scripts.local_stack.ports import ephemeral_port

REPO = Path(__file__).resolve().parents[2]

USERNAME = "shipper-admin"
HEAP = "512m"
LOG_TAIL_LINES = 60


class SecureNodeError(RuntimeError):
    """The secured node could not be started; the message carries the reason and the log tail."""


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(dest: Path, extra_names: tuple[str, ...] = ()) -> Certificates:
    """A throwaway CA and a node certificate for localhost/127.0.0.1 signed by it (PEM files).

    `extra_names` adds subject alternative names (host names or IP addresses), e.g. the network
    alias other containers reach the node by."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipper test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    node = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                + [_alt_name(name) for name in extra_names if name not in ("localhost", "127.0.0.1")]
            ),
            critical=False,
        )
        # Server auth for HTTP; client auth too, because transport TLS uses it in both directions.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    dest.mkdir(parents=True, exist_ok=True)
    out = Certificates(ca=dest / "ca.crt", cert=dest / "node.crt", key=dest / "node.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(node.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        node_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    out.key.chmod(0o600)  # chown_tree hands it to the node's user
    return out


def _alt_name(name: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


# --------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------


def secure_settings(workdir: Path, http_port: int, transport_port: int) -> dict[str, str]:
    """The -E settings of the secured node. SSL file paths are relative to its config dir."""
    tls = {
        "certificate": "certs/node.crt",
        "key": "certs/node.key",
        "certificate_authorities": "certs/ca.crt",
    }
    settings = {
        "cluster.name": "shipper-secure-test",
        "node.name": "shipper-secure-test",
        "network.host": "127.0.0.1",  # loopback keeps the node in development mode
        "http.port": str(http_port),
        "transport.port": str(transport_port),
        "discovery.type": "single-node",
        "path.data": str(workdir / "data"),
        "path.logs": str(workdir / "logs"),
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        "action.destructive_requires_name": "false",
        "xpack.security.enabled": "true",
        # The token service (bearer tokens) is not in the basic license.
        "xpack.license.self_generated.type": "trial",
        "xpack.security.http.ssl.enabled": "true",
        # Only a warning in development mode for a single node, but production needs it: keep it on.
        "xpack.security.transport.ssl.enabled": "true",
        "xpack.security.transport.ssl.verification_mode": "certificate",
    }
    for key, value in tls.items():
        settings[f"xpack.security.http.ssl.{key}"] = value
        settings[f"xpack.security.transport.ssl.{key}"] = value
    return settings


@dataclass
class SecureNode:
    url: str
    ca_certs: Path
    username: str
    password: str = field(repr=False)
    version: str
    workdir: Path
    log_file: Path
    proc: subprocess.Popen[bytes] = field(repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    bearer_error: str | None = None
    api_key: str | None = field(default=None, repr=False)  # the encoded form
    api_key_error: str | None = None
    startup_seconds: float = 0.0

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of the console log without Java stack frames, which would push the cause
        (e.g. "unknown setting [...]") out of view."""
        text = str(stack_state.log_tail(self.log_file, 20 * lines))
        kept = [line for line in text.splitlines() if not line.lstrip().startswith(("at ", "... "))]
        return "\n".join(kept[-lines:])

    def request(
        self, method: str, path: str, body: Any = None, *, authorization: str | None = None
    ) -> tuple[int | None, Any]:
        auth = authorization or basic_header(self.username, self.password)
        return https_request(self.url + path, self.ca_certs, method=method, body=body, authorization=auth)

    def stop(self, grace: float = 60.0, *, remove: bool = True) -> None:
        """SIGTERM the node's process group and wait (SIGKILL after `grace` seconds)."""
        if self.proc.poll() is None or processes.group_pids(self.proc.pid):
            processes.stop_group(self.proc.pid, grace, self.proc)
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def https_request(
    url: str,
    ca_certs: Path,
    *,
    method: str = "GET",
    body: Any = None,
    authorization: str | None = None,
    timeout: float = 10.0,
) -> tuple[int | None, Any]:
    """One request verified against `ca_certs` -> (status, parsed JSON or text); (None, reason)
    when nothing answered. No proxies: the node is on loopback."""
    context = ssl.create_default_context(cafile=str(ca_certs))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    headers = {"Authorization": authorization} if authorization else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with opener.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except (urllib.error.URLError, OSError) as err:
        return None, str(getattr(err, "reason", err))
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = ephemeral_port()
        if port not in ports:
            ports.append(port)
    return ports


def _add_user(home: Path, conf: Path, java_home: Path, username: str, password: str) -> None:
    """Hash the password with the distribution's own tool (bcrypt, the file realm's default)."""
    tool = home / "bin" / "elasticsearch-users"
    env = dict(os.environ, ES_JAVA_HOME=str(java_home), ES_PATH_CONF=str(conf))
    env.pop("ES_JAVA_OPTS", None)
    r = subprocess.run(
        [str(tool), "useradd", username, "-p", password, "-r", "superuser"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if r.returncode != 0:
        output = (r.stdout + r.stderr).replace(password, "***")
        raise SecureNodeError(f"{tool} useradd failed (exit {r.returncode}):\n{output[-3000:]}")


def start_secure_node(*, heap: str = HEAP, timeout: float | None = None) -> SecureNode:
    """Start the secured node in a new temp dir and wait until the superuser is served over TLS.

    Raises SecureNodeError (with the log tail) when it does not come up; the node is stopped then,
    and its directory is kept for a post-mortem.
    """
    began = time.monotonic()
    try:
        version = elasticsearch.stack_version()
        home = elasticsearch.es_distribution(version)
        java_home, _java = jdk.pick_jdk(version)
        run_as = processes.ensure_service_user() if os.geteuid() == 0 else None
        if run_as is not None:
            with stack_state.state_lock():  # es_home_for may build the copy `scripts/stack up` also uses
                home = elasticsearch.es_home_for(home, version, run_as)
    except StackError as exc:
        raise SecureNodeError(f"cannot prepare Elasticsearch: {exc}") from None

    workdir = Path(tempfile.mkdtemp(prefix="shipper-secure-es-"))
    workdir.chmod(0o755)
    if run_as is not None and not run_as.can("-x", workdir):
        raise SecureNodeError(
            f"user {run_as.name} cannot enter {workdir}; set TMPDIR to a world-searchable directory"
        )
    conf = workdir / "config"
    shutil.copytree(home / "config", conf)
    for sub in ("data", "logs", "tmp"):
        (workdir / sub).mkdir()
    certs = make_certificates(conf / "certs")
    password = secrets.token_urlsafe(18)
    try:
        _add_user(home, conf, java_home, USERNAME, password)
    except SecureNodeError as exc:
        raise SecureNodeError(f"{exc}\n(directory kept: {workdir})") from None
    if run_as is not None:
        processes.chown_tree(workdir, run_as)

    http_port, transport_port = _free_ports(2)
    env = dict(
        os.environ,
        ES_JAVA_HOME=str(java_home),
        ES_JAVA_OPTS=f"-Xms{heap} -Xmx{heap}",
        ES_PATH_CONF=str(conf),
        ES_TMPDIR=str(workdir / "tmp"),
    )
    extra: dict[str, Any] = {}
    if run_as is not None:
        env.update(HOME=str(workdir / "tmp"), USER=run_as.name, LOGNAME=run_as.name)
        extra = run_as.popen_kwargs()
    cmd = [str(home / "bin" / "elasticsearch")]
    for key, value in secure_settings(workdir, http_port, transport_port).items():
        cmd += ["-E", f"{key}={value}"]
    log_file = workdir / "console.log"
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir / "logs",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals the launcher and the JVM
            **extra,
        )
    node = SecureNode(
        url=f"https://127.0.0.1:{http_port}",
        ca_certs=certs.ca,
        username=USERNAME,
        password=password,
        version=version,
        workdir=workdir,
        log_file=log_file,
        proc=proc,
    )
    try:
        _wait_healthy(node, timeout if timeout is not None else float(elasticsearch.ES.timeout))
        _make_bearer_token(node)
        _make_api_key(node)
    except BaseException as exc:
        tail = node.log_tail()
        with contextlib.suppress(Exception):
            node.stop(grace=20, remove=False)
        if isinstance(exc, SecureNodeError):
            raise SecureNodeError(
                f"{exc}\n(directory kept: {workdir})\n----- last lines of {log_file} -----\n{tail}"
            ) from None
        raise
    node.startup_seconds = time.monotonic() - began
    return node


def _wait_healthy(node: SecureNode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    detail: Any = "not checked yet"
    while True:
        if node.proc.poll() is not None:
            raise SecureNodeError(f"the secured node exited with code {node.proc.returncode} ({detail})")
        status, detail = node.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=1s")
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise SecureNodeError(
                f"the secured node at {node.url} was not healthy after {timeout:.0f}s "
                f"(last answer: {status} {str(detail)[:500]})"
            )
        time.sleep(0.5)


def _make_bearer_token(node: SecureNode) -> None:
    status, body = node.request("POST", "/_security/oauth2/token", {"grant_type": "client_credentials"})
    if status == 200 and isinstance(body, dict) and body.get("access_token"):
        node.bearer_token = str(body["access_token"])
    else:
        node.bearer_error = f"HTTP {status}: {str(body)[:500]}"


def _make_api_key(node: SecureNode) -> None:
    status, body = node.request("POST", "/_security/api_key", {"name": "shipper-test"})
    if status == 200 and isinstance(body, dict) and body.get("encoded"):
        node.api_key = str(body["encoded"])
    else:
        node.api_key_error = f"HTTP {status}: {str(body)[:500]}"
