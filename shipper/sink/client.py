"""The one factory of Elasticsearch clients and bulk writers built from settings; probe the cluster.

Every command, the webhook and the benchmarks build their client with `build_client` and their bulk
writers with `build_writer`, so a new setting is honoured everywhere at once."""

from __future__ import annotations

from dataclasses import dataclass

from elastic_transport import TlsError
from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch.serializer import JsonSerializer

from shipper.config import Settings
from shipper.errors import ConnectivityError, summarise_body
from shipper.sink.bulk import BulkWriter

try:  # orjson is a declared dependency; the fallback only keeps odd installs working
    from elasticsearch.serializer import OrjsonSerializer as _Serializer
except ImportError:  # pragma: no cover
    _Serializer = JsonSerializer  # type: ignore[misc,assignment]


def build_client(settings: Settings) -> Elasticsearch:
    hosts = [url.strip() for url in settings.elasticsearch_url.split(",") if url.strip()]
    kwargs: dict[str, object] = {
        "request_timeout": settings.elasticsearch_request_timeout,
        "verify_certs": settings.elasticsearch_verify_certs,
        "serializer": _Serializer(),
        # Retries with backoff live in the bulk writer (tenacity); keep the transport's own short.
        "max_retries": 0,
    }
    if settings.elasticsearch_ca_certs is not None:
        kwargs["ca_certs"] = str(settings.elasticsearch_ca_certs)
    if not settings.elasticsearch_verify_certs:
        kwargs["ssl_show_warn"] = False
    if settings.elasticsearch_api_key is not None:
        kwargs["api_key"] = settings.elasticsearch_api_key.get_secret_value()
    elif settings.elasticsearch_username is not None and settings.elasticsearch_password is not None:
        kwargs["basic_auth"] = (
            settings.elasticsearch_username,
            settings.elasticsearch_password.get_secret_value(),
        )
    elif settings.elasticsearch_bearer_token is not None:
        kwargs["bearer_auth"] = settings.elasticsearch_bearer_token.get_secret_value()
    return Elasticsearch(hosts, **kwargs)  # type: ignore[arg-type]


def build_writer(
    client: Elasticsearch,
    settings: Settings,
    *,
    ilm: bool = False,
    max_retry_seconds: float | None = None,
) -> BulkWriter:
    """A bulk writer with the settings' batch limits; `max_retry_seconds` overrides the settings'
    retry budget (the webhook answers within its write budget)."""
    return BulkWriter(
        client,
        max_actions=settings.bulk_max_actions,
        max_bytes=settings.bulk_max_bytes,
        max_retry_seconds=(
            settings.bulk_max_retry_seconds if max_retry_seconds is None else max_retry_seconds
        ),
        ilm=ilm,
    )


@dataclass(frozen=True)
class Capabilities:
    version: str
    ilm: bool
    security: bool
    ingest_processors: frozenset[str] = frozenset()

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def lacks_processors(self, needed: set[str]) -> set[str]:
        return needed - self.ingest_processors


def _connectivity(exc: Exception) -> ConnectivityError:
    if isinstance(exc, ApiError) and exc.meta.status in (401, 403):
        return ConnectivityError(
            f"Elasticsearch refused the credentials (HTTP {exc.meta.status}); check "
            "SHIPPER_ELASTICSEARCH_API_KEY, SHIPPER_ELASTICSEARCH_USERNAME/PASSWORD or the bearer token"
        )
    if isinstance(exc, ApiError):
        said = summarise_body(exc.body if exc.body is not None else exc.message)
        if said.startswith("an HTML page"):
            return ConnectivityError(
                f"the server at SHIPPER_ELASTICSEARCH_URL answered HTTP {exc.meta.status} with {said}: it "
                "is not Elasticsearch (a web server, proxy or another service); point "
                "SHIPPER_ELASTICSEARCH_URL at Elasticsearch's HTTP port (9200 by default)"
            )
        return ConnectivityError(f"Elasticsearch answered HTTP {exc.meta.status}: {said}")
    if isinstance(exc, TlsError) and any(
        sign in str(exc.message) for sign in ("WRONG_VERSION_NUMBER", "record layer failure", "packet length")
    ):
        return ConnectivityError(
            "SHIPPER_ELASTICSEARCH_URL asks for TLS (https), but the server at that address answers in "
            "plain HTTP; write it with http://, or turn on TLS on Elasticsearch "
            "(xpack.security.http.ssl)"
        )
    if isinstance(exc, TlsError):
        return ConnectivityError(
            f"TLS with Elasticsearch failed ({exc.message}); set SHIPPER_ELASTICSEARCH_CA_CERTS to the PEM "
            "file of the CA that signed its certificate (SHIPPER_ELASTICSEARCH_VERIFY_CERTS=false only for "
            "a throwaway cluster)"
        )
    return ConnectivityError(
        f"cannot reach Elasticsearch ({exc}); check SHIPPER_ELASTICSEARCH_URL, the CA certificate "
        "(SHIPPER_ELASTICSEARCH_CA_CERTS) and that the cluster is up"
    )


def _ingest_processors(client: Elasticsearch) -> frozenset[str]:
    """The processor types every node with the ingest role has (pipelines run on any of them);
    empty when no node has the role."""
    try:
        nodes = client.nodes.info(node_id="ingest:true", metric="ingest")["nodes"]
    except (ApiError, ESConnectionError, TransportError) as exc:
        raise _connectivity(exc) from None
    common: frozenset[str] | None = None
    for node in nodes.values():
        types = frozenset(p["type"] for p in node.get("ingest", {}).get("processors", []))
        common = types if common is None else common & types
    return common or frozenset()


def connectivity_error(exc: Exception) -> ConnectivityError:
    """An Elasticsearch client error as a sentence with the fix."""
    return _connectivity(exc)


def probe(client: Elasticsearch) -> Capabilities:
    """What this cluster offers, asked through APIs every distribution has (the minimal one lacks
    even `GET /`, and its `_xpack` answers 500): node info for version, modules and ingest
    processors; `_security/_authenticate` for security."""
    try:
        nodes = client.nodes.info(node_id="_local", metric=["ingest", "plugins"])["nodes"]
    except (ApiError, ESConnectionError, TransportError) as exc:
        raise _connectivity(exc) from None
    node = next(iter(nodes.values()))
    processors = _ingest_processors(client)
    modules = {m["name"] for m in node.get("modules", [])}
    try:
        client.security.authenticate()
        security = True
    except ApiError:
        # No handler (module absent) or "security must be explicitly enabled": either way, off.
        security = False
    return Capabilities(
        version=str(node["version"]),
        ilm="x-pack-ilm" in modules,
        security=security,
        ingest_processors=processors,
    )
