"""Build the Elasticsearch client from settings; probe what the cluster can do."""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch.serializer import JsonSerializer

from shipper.config import Settings
from shipper.errors import ConnectivityError

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


@dataclass(frozen=True)
class Capabilities:
    version: str
    distribution: str
    ilm: bool
    security: bool
    data_stream_lifecycle: bool

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def probe(client: Elasticsearch) -> Capabilities:
    """What this cluster offers. Minimal (non-x-pack) builds have no ILM and no security."""
    try:
        info = client.info()
    except ESConnectionError as exc:
        raise ConnectivityError(
            f"cannot reach Elasticsearch ({exc.message}); check SHIPPER_ELASTICSEARCH_URL and that the "
            "cluster is up"
        ) from None
    except ApiError as exc:
        if exc.meta.status in (401, 403):
            raise ConnectivityError(
                f"Elasticsearch refused the credentials (HTTP {exc.meta.status}); check "
                "SHIPPER_ELASTICSEARCH_API_KEY or SHIPPER_ELASTICSEARCH_USERNAME/PASSWORD"
            ) from None
        raise ConnectivityError(f"Elasticsearch answered HTTP {exc.meta.status}: {exc.message}") from None
    version = str(info["version"]["number"])
    features: set[str] = set()
    try:
        xpack = client.xpack.info(categories="features")
        features = {name for name, f in xpack.get("features", {}).items() if f.get("available")}
        security = bool(xpack["features"].get("security", {}).get("enabled"))
    except ApiError:
        # No x-pack plugin at all (the minimal distribution): no ILM, no security.
        security = False
    return Capabilities(
        version=version,
        distribution=str(info["version"].get("build_flavor", "default")),
        ilm="ilm" in features,
        security=security,
        data_stream_lifecycle=True,
    )
