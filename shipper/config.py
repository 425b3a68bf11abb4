"""Every setting of the shipper, in one typed place.

Each field is read from an environment variable ``SHIPPER_<FIELD NAME IN UPPER CASE>`` or from an
optional TOML file (``--config`` / ``SHIPPER_CONFIG_FILE``); the environment wins over the file.
Unknown keys are errors in both places, so a typo never silently falls back to a default.
Secrets are ``SecretStr``: they never print, log or appear in ``repr``.

MLflow's own ``MLFLOW_TRACKING_URI`` (and its auth variables) configure the MLflow source; they are
read by the MLflow client, not here.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from shipper.errors import ConfigError

ENV_PREFIX = "SHIPPER_"
# Variables with these prefixes belong to scripts/stack and to the test suite, not to the shipper.
_FOREIGN_PREFIXES = ("SHIPPER_STACK_", "SHIPPER_TEST_")
CONFIG_FILE_ENV = "SHIPPER_CONFIG_FILE"
# What Kibana accepts as a space id (lower case, digits, `_`, `-`).
_SPACE_ID = re.compile(r"[a-z0-9_-]+")


# An Azure ML workspace's resource id, as the portal's "JSON view" and `az ml workspace show` give it.
WORKSPACE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/[^/]+/?$",
    re.IGNORECASE,
)


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def split_csv(text: str) -> list[str]:
    """`a, b,,c` -> ["a", "b", "c"]: how every list setting is written in the environment."""
    return [part.strip() for part in text.split(",") if part.strip()]


_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: owns the experiments whose stable hash modulo `count` is `index`."""

    index: int
    count: int

    def owns(self, experiment_id: str) -> bool:
        return shard_of_experiment(experiment_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of_experiment(experiment_id: str, count: int) -> int:
    """Which of `count` shards owns an experiment: the same answer in every process and on every
    machine (a digest of the id, not Python's salted hash())."""
    digest = hashlib.sha1(experiment_id.encode("utf-8"), usedforsecurity=False).hexdigest()
    return int(digest[:8], 16) % count


def parse_shard(text: str) -> Shard:
    """`i/n` -> Shard(i, n); ValueError naming the value and the fix."""
    match = _SHARD.fullmatch(text)
    fix = "write it as i/n with 0 <= i < n, e.g. 0/3 for the first of three pollers"
    if match is None:
        raise ValueError(f"{text!r} is not of the form i/n; {fix}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ValueError(f"{text!r} has n = {count}; n must be at least 1; {fix}")
    if index >= count:
        raise ValueError(f"{text!r} has i = {index}, not below n = {count}; {fix}")
    return Shard(index, count)


# The shortest shared secret the webhook takes (a short one can be guessed over the network).
MIN_WEBHOOK_SECRET_CHARS = 16


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Settings(BaseSettings):
    """The shipper's configuration. Field docs are the configuration reference."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        case_sensitive=False,
        validate_default=True,
        env_parse_none_str="",
    )

    # --- Elasticsearch -------------------------------------------------------------------------
    elasticsearch_url: str = Field(
        default="http://localhost:9200",
        description="Elasticsearch URL; several may be given comma-separated.",
    )
    elasticsearch_api_key: SecretStr | None = Field(
        default=None, description="API key (the encoded form Kibana shows, or id:key)."
    )
    elasticsearch_username: str | None = Field(default=None, description="Basic-auth user.")
    elasticsearch_password: SecretStr | None = Field(default=None, description="Basic-auth password.")
    elasticsearch_bearer_token: SecretStr | None = Field(
        default=None, description="OAuth2/Entra bearer token for Elasticsearch."
    )
    elasticsearch_ca_certs: Path | None = Field(
        default=None, description="PEM file of the CA that signed Elasticsearch's certificate."
    )
    elasticsearch_verify_certs: bool = Field(
        default=True,
        description="Verify Elasticsearch's TLS certificate. Turn off only for a throwaway test cluster.",
    )
    elasticsearch_request_timeout: float = Field(default=60.0, gt=0, description="Seconds per request.")

    # --- Kibana --------------------------------------------------------------------------------
    kibana_url: str | None = Field(
        default=None,
        description="Kibana URL (with its base path, if any), for `shipper setup --kibana` and "
        "`shipper check`.",
    )
    kibana_space: str | None = Field(
        default=None,
        description="Kibana space id to import the saved objects into. Empty: the default space.",
    )
    kibana_api_key: SecretStr | None = Field(
        default=None,
        description="Kibana API key (the encoded form, or id:key). When no Kibana credentials are set, "
        "the Elasticsearch ones (API key, user and password, or bearer token) are used, as one Elastic "
        "Stack login usually works for both.",
    )
    kibana_username: str | None = Field(
        default=None, description="Kibana basic-auth user (falls back to the Elasticsearch credentials)."
    )
    kibana_password: SecretStr | None = Field(default=None, description="Kibana basic-auth password.")
    kibana_ca_certs: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed Kibana's certificate (not taken from the "
        "Elasticsearch settings). Empty: the system's trusted CAs.",
    )
    kibana_verify_certs: bool = Field(
        default=True,
        description="Verify Kibana's TLS certificate. Turn off only for a throwaway test setup.",
    )
    kibana_request_timeout: float = Field(
        default=120.0, gt=0, description="Seconds per Kibana request (an import can take a while)."
    )

    # --- Webhook -------------------------------------------------------------------------------
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret(s) of the Event Grid webhook; comma-separated to accept several "
        "during a rotation.",
    )

    # --- MLflow source -------------------------------------------------------------------------
    mlflow_experiments: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Only these experiments (names or ids, comma-separated). Empty: all.",
    )
    mlflow_exclude_experiments: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Never these experiments (names or ids, comma-separated)."
    )
    mlflow_since: datetime | None = Field(
        default=None, description="Only runs started at or after this time (ISO 8601)."
    )
    sync_interval_seconds: float = Field(
        default=60.0, gt=0, description="Pause between passes of `shipper run`."
    )
    shard: str | None = Field(
        default=None,
        description="`i/n`: this poller is shard i of n (0 <= i < n) and ships only the experiments "
        "whose id hashes to i, with its own checkpoints; registered model versions and the retention "
        "pass are left to shard 0. Empty: one poller ships everything.",
    )
    mlflow_connect_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="How long `check`, `sync` and `run` wait for the MLflow tracking server's first "
        "answer (one try, no retries) before exiting 3. Later requests follow MLflow's own "
        "MLFLOW_HTTP_REQUEST_TIMEOUT and MLFLOW_HTTP_REQUEST_MAX_RETRIES.",
    )
    # Backfill speed (issue 15): metric-history reads in flight.
    mlflow_reads_in_flight: int = Field(
        default=4,
        ge=1,
        le=16,  # the REST reader's connection pool
        description="Metric-history requests to the MLflow tracking server at a time. A server reads "
        "one request per worker at once: about twice its workers (`mlflow server --workers N`) keeps "
        "every worker busy; more only queues. See docs/benchmarks.md for the measured effect.",
    )

    # --- Writing -------------------------------------------------------------------------------
    bulk_max_actions: int = Field(default=5000, ge=1, description="Documents per bulk request.")
    bulk_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Upper bound of one bulk request body, bytes."
    )
    bulk_max_retry_seconds: float = Field(
        default=600.0,
        ge=0,
        description="How long a bulk request is retried on 429/5xx/connection errors before the pass "
        "fails (checkpoints stay where they were, so nothing is lost).",
    )
    retention_days: int = Field(
        default=730,
        ge=1,
        description="Age after which time-partitioned indices (metrics, events) are deleted: by ILM "
        "where the cluster has it, else by `shipper run`'s retention pass.",
    )
    logs_retention_days: int = Field(default=90, ge=1, description="Retention of the scoring-log stream.")

    # --- Service -------------------------------------------------------------------------------
    log_format: LogFormat = Field(default=LogFormat.TEXT, description="`text` or `json`.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="`DEBUG`, `INFO`, `WARNING` or `ERROR`."
    )

    # --- Azure ML: Event Grid webhook (`shipper serve`), enrichment, notifications, reconcile ----
    webhook_host: str = Field(default="0.0.0.0", description="Address `shipper serve` listens on.")
    webhook_port: int = Field(default=8080, ge=1, le=65535, description="Port `shipper serve` listens on.")
    webhook_insecure_no_auth: bool = Field(
        default=False,
        description="Accept deliveries without any credential. Only for a loopback test setup; "
        "`shipper serve` refuses to start without SHIPPER_WEBHOOK_SECRET or Entra ID otherwise.",
    )
    webhook_max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest request body taken. Event Grid sends at most 1 MB per delivery; a bigger "
        "body is answered 400 after a summary of it is dead-lettered.",
    )
    webhook_max_events: int = Field(
        default=5000, ge=1, description="Most events taken in one delivery (Event Grid's limit is 5,000)."
    )
    webhook_write_budget_seconds: float = Field(
        default=8.0,
        gt=0,
        le=20,
        description="How long one delivery may retry its Elasticsearch writes before it is answered 503 "
        "(Event Grid waits 30 s for an answer, then retries for up to 24 h).",
    )
    webhook_retry_after_seconds: int = Field(
        default=10, ge=1, description="Retry-After of a 503 answer, seconds."
    )
    webhook_allowed_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Only events from these topics (workspace resource ids, comma-separated; case does "
        "not matter). Empty: any topic. Events from other topics are answered 403.",
    )
    webhook_entra_tenant_id: str | None = Field(
        default=None,
        description="Accept Microsoft Entra ID bearer tokens issued by this tenant (Event Grid's "
        "'Microsoft Entra authentication' on the subscription).",
    )
    webhook_entra_audience: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted token audiences (the application id URI and/or client id), comma-separated.",
    )
    webhook_entra_issuers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted token issuers. Empty: the tenant's v1 and v2 issuers.",
    )
    webhook_entra_jwks_url: str | None = Field(
        default=None,
        description="Where the token signing keys are published. Empty: the tenant's "
        "`/discovery/v2.0/keys` on the Microsoft Entra login host.",
    )
    webhook_entra_required_role: str | None = Field(
        default=None, description="A role (app role value) the token must carry, if set."
    )
    webhook_sync_on_terminal: bool = Field(
        default=True,
        description="When a run reaches Completed, Failed or Canceled, run an MLflow sync pass at once "
        "(needs MLFLOW_TRACKING_URI).",
    )
    # -- webhook: the event-time window (events outside it go to the dead-letter index) --
    webhook_event_max_age_days: int = Field(
        default=400,
        ge=1,
        description="Events dated more than this many days before their receipt are dead-lettered "
        "instead of opening an `mlops-events-*` index for their month (Event Grid retries for 24 h).",
    )
    webhook_event_max_future_days: int = Field(
        default=1,
        ge=0,
        description="Events dated more than this many days after their receipt (a sender's clock "
        "ahead, a forged time) are dead-lettered instead of opening an index for their month.",
    )
    azureml_enrichment: bool = Field(
        default=True,
        description="Add job details (`azureml.job.*`) from azure-ai-ml after each run event is written.",
    )
    azureml_enrichment_max_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long one enrichment is retried (throttling, outages) before it is recorded as "
        "failed on the run document.",
    )
    azureml_enrichment_workers: int = Field(default=4, ge=1, le=64, description="Parallel enrichments.")
    azureml_enrichment_queue_size: int = Field(
        default=10_000, ge=1, description="Runs waiting for enrichment; beyond it enrichment is skipped."
    )
    azureml_workspaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Workspace resource ids (comma-separated) that `shipper reconcile` lists jobs of.",
    )
    azureml_reconcile_interval_seconds: float = Field(
        default=0.0,
        ge=0,
        description="`shipper serve` runs a reconcile pass this often (0: never).",
    )
    azureml_reconcile_lookback_hours: float = Field(
        default=24.0, gt=0, description="Reconcile looks at jobs created this recently."
    )
    notify_urls: SecretStr | None = Field(
        default=None,
        description="Incoming-webhook URLs (Slack, Teams, ...) to notify, comma-separated. They carry "
        "tokens, so they are secrets.",
    )
    notify_on: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["started", "completed", "failed", "model_registered"],
        description="Which notifications to send: started, completed, failed, canceled, "
        "model_registered (comma-separated).",
    )
    notify_experiments: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Only runs of these experiments (comma-separated). Empty: all."
    )

    # --- Webhook hardening: connection bounds, Entra ID key fetches and callers, notification size ---
    webhook_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="A request's headers must arrive within this many seconds of its first byte (and a "
        "new connection must start one within it); otherwise the connection is closed. Stops slow or "
        "stalled clients (slowloris) from holding connections.",
    )
    webhook_body_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        le=120,
        description="A request's whole body must arrive within this many seconds after its headers; "
        "otherwise the connection is closed. Event Grid sends at most 1 MB and waits 30 s for the answer.",
    )
    webhook_max_header_bytes: int = Field(
        default=16 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="Largest request line plus headers taken; a bigger one is answered 400 and the "
        "connection closed.",
    )
    webhook_max_connections: int = Field(
        default=256,
        ge=2,
        description="Open connections and requests served at once; beyond it uvicorn answers 503 (Event "
        "Grid retries). Bounds the memory of connections.",
    )
    webhook_max_concurrent_deliveries: int = Field(
        default=32,
        ge=1,
        description="`POST /events` requests handled at once; beyond it a delivery is answered 503 with "
        "Retry-After at once (Event Grid retries), so a flood queues at the sender, not here.",
    )
    webhook_max_request_memory_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        description="Request bodies held in memory at once, all deliveries together; a delivery that "
        "would go beyond it is answered 503 with Retry-After. At least SHIPPER_WEBHOOK_MAX_BODY_BYTES.",
    )
    webhook_entra_allowed_applications: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Only tokens requested by these applications (client ids in the token's `azp` or "
        "`appid` claim, comma-separated). Empty: any application the tenant issued a token to for our "
        "audience. The id Event Grid uses is in the `azp`/`appid` claim of the tokens it sends (or under "
        "Enterprise applications, Microsoft.EventGrid, in the tenant).",
    )
    webhook_entra_jwks_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=30,
        description="How long a delivery waits for the token signing keys to be fetched before it is "
        "answered 503; failed fetches are retried after a back-off that grows to 5 minutes.",
    )
    notify_coalesce_above: int = Field(
        default=5,
        ge=1,
        description="One delivery that would send more notifications than this sends one summary "
        "(counts and the first names) instead.",
    )

    @field_validator(
        "mlflow_experiments",
        "mlflow_exclude_experiments",
        "webhook_allowed_topics",
        "webhook_entra_audience",
        "webhook_entra_issuers",
        "webhook_entra_allowed_applications",
        "azureml_workspaces",
        "notify_on",
        "notify_experiments",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        return split_csv(value) if isinstance(value, str) else value

    # --- Webhook hardening: shared secrets long enough not to be guessed ---------------------------
    @field_validator("webhook_secret")
    @classmethod
    def _check_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        short = [part for part in split_csv(value.get_secret_value()) if len(part) < MIN_WEBHOOK_SECRET_CHARS]
        if short:
            # Never the value itself, nor which of several it was.
            raise ValueError(
                f"a secret shorter than {MIN_WEBHOOK_SECRET_CHARS} characters could be guessed; give each "
                f"one at least {MIN_WEBHOOK_SECRET_CHARS} random characters, e.g. `openssl rand -hex 32`"
            )
        return value

    @field_validator("elasticsearch_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        for url in value.split(","):
            url = url.strip()
            if not _is_http_url(url):
                raise ValueError(
                    f"{url!r} is not an http(s) URL with a host; write it as https://host:9200 (scheme "
                    "included)"
                )
        return value

    @field_validator("kibana_url", "webhook_entra_jwks_url")
    @classmethod
    def _check_optional_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_http_url(value.strip()):
            raise ValueError(
                f"{value!r} is not an http(s) URL with a host; write it as https://host:5601 (scheme "
                "included)"
            )
        return value

    @field_validator("shard")
    @classmethod
    def _check_shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_shard(value)  # raises ValueError naming the value and the fix
        return value.strip()

    def shard_of(self) -> Shard | None:
        """This poller's shard, or None when one poller ships everything."""
        return None if self.shard is None else parse_shard(self.shard)

    def leads_pollers(self) -> bool:
        """Whether this poller does the work that is not per experiment (registered model versions,
        retention): the only poller, or shard 0 of several."""
        shard = self.shard_of()
        return shard is None or shard.index == 0

    @field_validator("azureml_workspaces")
    @classmethod
    def _check_workspaces(cls, value: list[str]) -> list[str]:
        wrong = [v for v in value if not WORKSPACE_ID.match(v)]
        if wrong:
            raise ValueError(
                f"{wrong[0]!r} is not a workspace resource id; write it as /subscriptions/<id>/"
                "resourceGroups/<group>/providers/Microsoft.MachineLearningServices/workspaces/<name>"
            )
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        given = [
            name
            for name, present in (
                ("SHIPPER_ELASTICSEARCH_API_KEY", self.elasticsearch_api_key is not None),
                ("SHIPPER_ELASTICSEARCH_USERNAME", self.elasticsearch_username is not None),
                ("SHIPPER_ELASTICSEARCH_BEARER_TOKEN", self.elasticsearch_bearer_token is not None),
            )
            if present
        ]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} are mutually exclusive; set only one way to log in")
        if (self.elasticsearch_username is None) != (self.elasticsearch_password is None):
            raise ValueError(
                "SHIPPER_ELASTICSEARCH_USERNAME and SHIPPER_ELASTICSEARCH_PASSWORD go together; set both"
            )
        if self.elasticsearch_ca_certs is not None and not self.elasticsearch_ca_certs.is_file():
            raise ValueError(
                f"SHIPPER_ELASTICSEARCH_CA_CERTS={self.elasticsearch_ca_certs} is not a readable file; "
                "point it at the PEM file of the CA"
            )
        self._check_kibana()
        overlap = set(self.mlflow_experiments) & set(self.mlflow_exclude_experiments)
        if overlap:
            raise ValueError(
                f"experiments {sorted(overlap)} are both included and excluded; "
                "remove them from one of SHIPPER_MLFLOW_EXPERIMENTS / SHIPPER_MLFLOW_EXCLUDE_EXPERIMENTS"
            )
        return self

    def _check_kibana(self) -> None:
        if self.kibana_url is not None and not self.kibana_url.startswith(("http://", "https://")):
            raise ValueError(
                f"SHIPPER_KIBANA_URL={self.kibana_url!r} is not an http(s) URL; write it as "
                "https://host:5601 (scheme included, plus Kibana's base path if it has one)"
            )
        if self.kibana_api_key is not None and self.kibana_username is not None:
            raise ValueError(
                "SHIPPER_KIBANA_API_KEY and SHIPPER_KIBANA_USERNAME are mutually exclusive; "
                "set only one way to log in to Kibana"
            )
        if (self.kibana_username is None) != (self.kibana_password is None):
            raise ValueError("SHIPPER_KIBANA_USERNAME and SHIPPER_KIBANA_PASSWORD go together; set both")
        if self.kibana_space is not None and not _SPACE_ID.fullmatch(self.kibana_space):
            raise ValueError(
                f"SHIPPER_KIBANA_SPACE={self.kibana_space!r} is not a Kibana space id; space ids are "
                "lower-case letters, digits, '_' and '-' (the id in the space's URL /s/<id>/, not its name)"
            )
        if self.kibana_ca_certs is not None and not self.kibana_ca_certs.is_file():
            raise ValueError(
                f"SHIPPER_KIBANA_CA_CERTS={self.kibana_ca_certs} is not a readable file; "
                "point it at the PEM file of the CA that signed Kibana's certificate"
            )

    # --- Azure ML: validators and helpers ------------------------------------------------------
    @field_validator("notify_on")
    @classmethod
    def _check_notify_on(cls, value: list[str]) -> list[str]:
        known = ("started", "completed", "failed", "canceled", "model_registered")
        wrong = [v for v in value if v not in known]
        if wrong:
            raise ValueError(f"{wrong} are not notifications; use some of {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _check_azureml(self) -> Settings:
        if self.webhook_entra_tenant_id and not self.webhook_entra_audience:
            raise ValueError(
                "SHIPPER_WEBHOOK_ENTRA_TENANT_ID needs SHIPPER_WEBHOOK_ENTRA_AUDIENCE: set it to the "
                "application id URI (or client id) the Event Grid subscription requests tokens for"
            )
        if self.webhook_entra_audience and not self.webhook_entra_tenant_id:
            raise ValueError(
                "SHIPPER_WEBHOOK_ENTRA_AUDIENCE needs SHIPPER_WEBHOOK_ENTRA_TENANT_ID (the tenant that "
                "issues the tokens)"
            )
        if self.webhook_max_request_memory_bytes < self.webhook_max_body_bytes:
            raise ValueError(
                "SHIPPER_WEBHOOK_MAX_REQUEST_MEMORY_BYTES is smaller than SHIPPER_WEBHOOK_MAX_BODY_BYTES, so "
                "the largest delivery could never be taken; raise it to at least "
                f"{self.webhook_max_body_bytes}"
            )
        for url in self.notify_url_list():
            if not url.startswith(("http://", "https://")):
                raise ValueError(
                    "SHIPPER_NOTIFY_URLS holds a value that is not an http(s) URL; give the full "
                    "incoming-webhook URL (scheme included)"
                )
        return self

    def notify_url_list(self) -> list[str]:
        if self.notify_urls is None:
            return []
        return split_csv(self.notify_urls.get_secret_value())

    def webhook_secrets(self) -> list[SecretStr]:
        if self.webhook_secret is None:
            return []
        return [SecretStr(part) for part in split_csv(self.webhook_secret.get_secret_value())]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (the config file, passed in by load_settings) is weakest, the environment strongest.
        return (env_settings, init_settings)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _unknown_env_keys(environ: dict[str, str]) -> list[str]:
    known = {env_name(name) for name in Settings.model_fields} | {CONFIG_FILE_ENV}
    problems = []
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(_FOREIGN_PREFIXES) or upper in known:
            continue
        hint = difflib.get_close_matches(upper, sorted(known), n=1)
        fix = f"did you mean {hint[0]}?" if hint else "remove it; `shipper validate --help` lists them"
        problems.append(f"{key}: unknown setting; {fix}")
    return problems


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"config file {path} does not exist; fix the path or unset it"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path} is not valid TOML: {exc}"]) from None
    # The file may use either `elasticsearch_url` or the environment spelling.
    normalised: dict[str, Any] = {}
    for key, value in data.items():
        name = key.lower()
        if name.startswith(ENV_PREFIX.lower()):
            name = name[len(ENV_PREFIX) :]
        normalised[name] = value
    return normalised


def load_settings(config_file: Path | None = None) -> Settings:
    """Read settings from the environment (and a TOML file); raise ConfigError listing every
    problem, each with its fix."""
    environ = dict(os.environ)
    problems = _unknown_env_keys(environ)
    file_path = config_file or (Path(environ[CONFIG_FILE_ENV]) if environ.get(CONFIG_FILE_ENV) else None)
    file_values = _read_file(file_path) if file_path else {}
    for key in sorted(set(file_values) - set(Settings.model_fields)):
        hint = difflib.get_close_matches(key, sorted(Settings.model_fields), n=1)
        problems.append(
            f"{key} (in {file_path}): unknown setting; "
            + (f"did you mean {hint[0]}?" if hint else "remove it")
        )
        file_values.pop(key)
    try:
        settings = Settings(**file_values)
    except SettingsError as exc:
        raise ConfigError([*problems, str(exc)]) from None
    except ValidationError as exc:
        problems += [describe_error(error) for error in exc.errors()]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return settings


def log_format_asked(environ: dict[str, str] | None = None) -> LogFormat | None:
    """The format SHIPPER_LOG_FORMAT asks for, read on its own (None when unset or unknown).

    The final error line must come out in the asked format even when the settings as a whole do
    not validate (that error is the one being printed), or before any command has read them; so
    this one setting is read alone, here, without the validation of everything else."""
    environ = dict(os.environ) if environ is None else environ
    value = environ.get(env_name("log_format"), "").strip().lower()
    return LogFormat(value) if value in set(LogFormat) else None


def mlflow_tracking_uri_given(environ: dict[str, str] | None = None) -> str:
    """MLFLOW_TRACKING_URI as given, unchecked ("" when unset), for `validate` to report on."""
    environ = dict(os.environ) if environ is None else environ
    return environ.get("MLFLOW_TRACKING_URI", "").strip()


_EXAMPLES = {
    "int": "a whole number such as 5000",
    "float": "a number such as 60 or 0.5",
    "bool": "true or false",
    "datetime": "an ISO 8601 time such as 2025-01-31T00:00:00Z",
}


def _is_secret(field: str) -> bool:
    info = Settings.model_fields.get(field)
    return info is not None and "SecretStr" in str(info.annotation)


def describe_error(error: Any) -> str:
    """One pydantic error -> `SHIPPER_X='value': what is wrong; what to write instead`, in our words.

    Secret settings never show their value."""
    loc = [str(part) for part in error.get("loc", ())]
    field = loc[0] if loc else ""
    label = env_name(field) if field else ""
    given = error.get("input")
    if field and not _is_secret(field) and isinstance(given, str | int | float | bool):
        label += f"={given!r}"
    ctx = error.get("ctx") or {}
    kind = error.get("type", "")
    bounds = {
        "greater_than": ("more than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind == "value_error":
        text = str(ctx.get("error", error.get("msg", "")))
    elif kind in bounds:
        words, key = bounds[kind]
        text = f"must be {words} {ctx.get(key)}; change the value"
    elif kind in ("int_parsing", "int_from_float", "int_type"):
        text = f"is not a whole number; write {_EXAMPLES['int']}"
    elif kind in ("float_parsing", "float_type"):
        text = f"is not a number; write {_EXAMPLES['float']}"
    elif kind in ("bool_parsing", "bool_type"):
        text = f"is not a yes/no value; write {_EXAMPLES['bool']}"
    elif kind.startswith(("datetime", "date_")):
        text = f"is not a time; write {_EXAMPLES['datetime']}"
    elif kind in ("literal_error", "enum"):
        text = f"is not one of {ctx.get('expected', 'the allowed values')}; use one of those"
    elif kind in ("string_too_short", "too_short"):
        text = "is empty; give a value or unset the variable"
    elif kind == "missing":
        text = "is required; set it"
    else:  # a kind this table does not know yet: pydantic's words, with the place and the way out
        text = f"{error.get('msg', 'is not valid')}; see `shipper validate --help` and docs/configuration.md"
    return f"{label}: {text}" if label else text


# Tracking store schemes the MLflow client knows without plugins; plugins add theirs through the
# `mlflow.tracking_store` entry point group (azureml-mlflow adds `azureml`).
_MLFLOW_SCHEMES = ("http", "https", "file", "databricks", "databricks-uc", "uc")
_MLFLOW_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
MLFLOW_URI_HELP = (
    "export MLFLOW_TRACKING_URI=https://mlflow.example:5000 (your tracking server), or the "
    "workspace's azureml://... URI (`az ml workspace show --query mlflow_tracking_uri`, with "
    "pip install 'shipper[azure]')"
)


def redact_uri(uri: str) -> str:
    """A URI as it may be printed: a password in it (`https://user:secret@host`) becomes `***`."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="mlflow.tracking_store")}


def mlflow_tracking_uri(environ: dict[str, str] | None = None) -> str:
    """MLflow's own MLFLOW_TRACKING_URI, checked offline; raise ConfigError naming what is wrong.

    The MLflow client would fall back to a local store (creating ./mlflow.db) when it is unset,
    and fails late, with its own traceback, on a scheme it cannot serve: both are caught here."""
    environ = dict(os.environ) if environ is None else environ
    uri = environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        raise ConfigError(
            [f"MLFLOW_TRACKING_URI is not set: the shipper reads MLflow there; {MLFLOW_URI_HELP}"]
        )
    problem = mlflow_uri_problem(uri)
    if problem:
        raise ConfigError([problem])
    return uri


def mlflow_uri_problem(uri: str) -> str | None:
    """What is wrong with a tracking URI, offline, or None."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    named = f"MLFLOW_TRACKING_URI={redact_uri(uri)!r}"
    if not scheme or (len(scheme) == 1 and os.name == "nt"):  # a bare path: a local file store
        return None
    if scheme in ("http", "https"):
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            return f"{named} has a port that is not a number; write it as https://host:5000"
        if not parts.hostname:
            return f"{named} has no host; write it as https://host:5000"
        return None
    if scheme in _MLFLOW_SCHEMES:
        return None
    if scheme.split("+", 1)[0] in _MLFLOW_SQL_SCHEMES:
        if importlib.util.find_spec("sqlalchemy") is None:
            return (
                f"{named} is a database store, which needs SQLAlchemy; point the shipper at the "
                "tracking server's http(s) URL instead (or pip install sqlalchemy)"
            )
        return None
    plugins = _plugin_schemes()
    if scheme == "azureml":
        if scheme not in plugins:
            return (
                f"{named} needs the azureml-mlflow plugin, which is not installed; "
                "pip install 'shipper[azure]'"
            )
        if not parts.hostname or not re.search(
            r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
            r"Microsoft\.MachineLearningServices/workspaces/[^/]+",
            parts.path,
            re.IGNORECASE,
        ):
            return (
                f"{named} is not a workspace's MLflow URI; it looks like azureml://<region>.api.azureml.ms/"
                "mlflow/v1.0/subscriptions/<id>/resourceGroups/<group>/providers/"
                "Microsoft.MachineLearningServices/workspaces/<name> "
                "(`az ml workspace show --query mlflow_tracking_uri` prints it)"
            )
        return None
    if scheme in plugins:
        return None
    known = sorted({*_MLFLOW_SCHEMES, *_MLFLOW_SQL_SCHEMES, "azureml", *plugins})
    hint = difflib.get_close_matches(scheme, known, n=1)
    fix = f"did you mean {hint[0]}://?" if hint else f"use one of {', '.join(known)}"
    return f"{named}: the MLflow client has no tracking store for the scheme {scheme!r}; {fix}"
