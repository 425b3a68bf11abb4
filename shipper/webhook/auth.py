"""Who may deliver events: a shared secret, Microsoft Entra ID bearer tokens, or both.

- Shared secret: `SHIPPER_WEBHOOK_SECRET` (several, comma-separated, during a rotation), given as
  the query parameter `code` (as Azure Functions take theirs; put it in the subscription's endpoint
  URL) or the header `x-shipper-secret` (a delivery attribute of the subscription). Compared with
  `hmac.compare_digest` against every configured secret, so timing tells nothing.
- Entra ID: Event Grid's "Microsoft Entra authentication" sends `Authorization: Bearer <JWT>`.
  Its signature is checked against the tenant's published keys (JWKS), and its issuer, audience,
  expiry, and optionally a role and the calling application (`azp`/`appid`) are checked.

The key set cannot be turned against availability:
- a token is looked at without any I/O first: only one well-formed for our issuer, audience and
  tenant (and allowed application, when an allow-list is set), not expired, signed with an RS/PS
  algorithm and naming a key id, can cause a fetch; anything else is 401 at once;
- `KeySet` fetches in a thread of its own, one fetch at a time, and waits at most a few seconds
  for it; the keys are cached for an hour, kept (stale) while a refresh fails, and after a failure
  no fetch is tried again before a back-off (10 s, doubling up to five minutes; requests in between
  get 503 at once, unless a cached key still fits); an unknown key id refetches at most every
  five minutes;
- the web app checks bearer tokens in its worker threads, never on the event loop, so `/healthz`
  answers while a fetch hangs.

A delivery passes when any configured method accepts it. A bad or missing credential is 401. A key
set that cannot be fetched is not the sender's fault: that is `AuthUnavailable`, answered 503 so
Event Grid retries instead of dropping the delivery.

Nothing here logs or returns a credential's value.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

log = logging.getLogger(__name__)

SECRET_HEADER = "x-shipper-secret"
SECRET_QUERY = "code"
ENTRA_LOGIN_HOST = "https://login.microsoftonline.com"


class AuthUnavailable(Exception):
    """The credentials could not be checked right now (e.g. the signing keys are unreachable)."""


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    method: str  # "secret", "entra", "none" (insecure mode) or "" when refused
    reason: str = ""


ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
MAX_TOKEN_CHARS = 16 * 1024


class KeySet:
    """A JWKS endpoint's keys, fetched off the caller's thread with a deadline, cached, refreshed
    at most once at a time, and backed off after failures. Thread-safe."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        lifespan: float = 3600.0,
        unknown_kid_refresh: float = 300.0,
        first_backoff: float = 10.0,
        max_backoff: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import jwt

        self.url = url
        self.timeout = timeout
        self.lifespan = lifespan
        self.unknown_kid_refresh = unknown_kid_refresh
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False, timeout=timeout)
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._fetching: threading.Event | None = None
        self._fetch_started = 0.0
        self._retry_at = 0.0
        self._backoff = first_backoff
        self._last_error = ""
        self.fetches = 0  # how many fetches were started (tests, metrics)

    def signing_key(self, kid: str) -> Any | None:
        """The key with this id, or None when the fresh key set has no such key. Raise
        AuthUnavailable when the keys cannot be had now."""
        with self._lock:
            now = self.clock()
            if self._fresh(now) and kid in self._keys:
                return self._keys[kid]
            if self._fresh(now) and now - (self._fetched_at or 0.0) < self.unknown_kid_refresh:
                return None  # fetched recently: an unknown key id is the token's problem
            if self._fetching is not None and now >= self._fetch_started + self.timeout:
                self._failed(now, f"no answer within {self.timeout:g} s")
            if now < self._retry_at:
                return self._stale_or_unavailable(kid, now)
            if self._fetching is None:
                self._start_fetch(now)
            waiter = self._fetching
            wait = self._fetch_started + self.timeout - now
        assert waiter is not None
        done = waiter.wait(max(0.0, wait))
        with self._lock:
            now = self.clock()
            if not done:
                self._failed(now, f"no answer within {self.timeout:g} s")
            if kid in self._keys:
                return self._keys[kid]
            if self._fresh(now):
                return None
            return self._stale_or_unavailable(kid, now)

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self.lifespan

    def _stale_or_unavailable(self, kid: str, now: float) -> Any:
        if kid in self._keys:
            return self._keys[kid]  # a stale key beats no key while the endpoint is down
        wait = max(0.0, self._retry_at - now)
        raise AuthUnavailable(
            f"cannot fetch the token signing keys from {self.url} ({self._last_error or 'in progress'}); "
            f"next try in {wait:.0f} s"
        )

    def _start_fetch(self, now: float) -> None:
        self._fetching = threading.Event()
        self._fetch_started = now
        self.fetches += 1
        threading.Thread(target=self._fetch, args=(self._fetching,), name="jwks-fetch", daemon=True).start()

    def _fetch(self, finished: threading.Event) -> None:
        import jwt

        try:
            keys = {k.key_id: k for k in self._client.get_jwk_set().keys if k.key_id}
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, OSError, ValueError) as exc:
            with self._lock:
                self._failed(self.clock(), type(exc).__name__)
        else:
            with self._lock:
                self._keys, self._fetched_at = keys, self.clock()
                self._retry_at, self._backoff, self._last_error = 0.0, self.first_backoff, ""
        finally:
            with self._lock:
                self._fetching = None
            finished.set()

    def _failed(self, now: float, reason: str) -> None:
        if now < self._retry_at:
            return  # this failure is already backed off
        self._last_error = reason
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)
        log.warning(
            "cannot fetch the token signing keys from %s (%s); next try in %.0f s",
            self.url,
            reason,
            self._retry_at - now,
        )


class EntraVerifier:
    """Checks Entra ID access tokens: a look at the claims without I/O, then the signature against
    the tenant's keys (`KeySet`), then the claims for real."""

    def __init__(
        self,
        tenant_id: str,
        audiences: Sequence[str],
        issuers: Sequence[str] = (),
        jwks_url: str | None = None,
        required_role: str | None = None,
        leeway_seconds: int = 60,
        allowed_applications: Sequence[str] = (),
        jwks_timeout_seconds: float = 5.0,
    ) -> None:
        self.tenant_id = tenant_id
        self.audiences = list(audiences)
        self.issuers = list(issuers) or [
            f"{ENTRA_LOGIN_HOST}/{tenant_id}/v2.0",
            f"https://sts.windows.net/{tenant_id}/",
        ]
        self.jwks_url = jwks_url or f"{ENTRA_LOGIN_HOST}/{tenant_id}/discovery/v2.0/keys"
        self.required_role = required_role
        self.allowed_applications = {a.strip().lower() for a in allowed_applications if a.strip()}
        self.leeway = leeway_seconds
        self.keys = KeySet(self.jwks_url, timeout=jwks_timeout_seconds)

    def verify(self, token: str) -> AuthResult:
        """Raise AuthUnavailable when the signing keys cannot be had now."""
        import jwt

        problem, kid = self._precheck(token)
        if problem:
            return AuthResult(False, "", f"bearer token refused: {problem}")
        key = self.keys.signing_key(kid)
        if key is None:
            return AuthResult(False, "", "bearer token refused: its signing key is not the tenant's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=self.audiences,
                issuer=self.issuers,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            return AuthResult(False, "", f"bearer token refused: {type(exc).__name__}")
        problem = self._claims_problem(claims)
        if problem:
            return AuthResult(False, "", f"bearer token refused: {problem}")
        return AuthResult(True, "entra")

    def _precheck(self, token: str) -> tuple[str, str]:
        """(why the token cannot be one of ours, "") or ("", its key id), without any I/O."""
        import jwt

        if len(token) > MAX_TOKEN_CHARS:
            return "longer than any access token", ""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            return type(exc).__name__, ""
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS:
            return "InvalidAlgorithmError", ""
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            return "no key id", ""
        if claims.get("iss") not in self.issuers:
            return "InvalidIssuerError", ""
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(a, str) and a in self.audiences for a in audiences):
            return "InvalidAudienceError", ""
        expiry = claims.get("exp")
        if not isinstance(expiry, int | float) or isinstance(expiry, bool):
            return "MissingRequiredClaimError", ""
        if expiry + self.leeway < time.time():
            return "ExpiredSignatureError", ""
        tenant = claims.get("tid")
        if tenant is not None and str(tenant).lower() != self.tenant_id.lower():
            return "issued for another tenant", ""
        problem = self._claims_problem(claims)
        return (problem, "") if problem else ("", kid)

    def _claims_problem(self, claims: Mapping[str, Any]) -> str:
        if self.allowed_applications:
            caller = claims.get("azp") or claims.get("appid")
            if not isinstance(caller, str) or caller.lower() not in self.allowed_applications:
                return "the calling application (azp/appid) is not allowed"
        if self.required_role is not None:
            roles = claims.get("roles")
            # A list of role names compared whole: never a substring of a string claim.
            if not isinstance(roles, list) or not any(
                isinstance(r, str) and r == self.required_role for r in roles
            ):
                return "the required role is missing"
        return ""


class Authenticator:
    def __init__(
        self,
        secrets: Sequence[SecretStr],
        entra: EntraVerifier | None = None,
        insecure_no_auth: bool = False,
    ) -> None:
        self._secrets = [s.get_secret_value().encode() for s in secrets if s.get_secret_value()]
        self.entra = entra
        self.insecure = insecure_no_auth
        if not self._secrets and entra is None and not insecure_no_auth:
            raise ValueError(
                "the webhook has no way to authenticate deliveries: set SHIPPER_WEBHOOK_SECRET "
                "(and put it in the subscription's endpoint as ?code=...), or configure Entra ID with "
                "SHIPPER_WEBHOOK_ENTRA_TENANT_ID and SHIPPER_WEBHOOK_ENTRA_AUDIENCE; "
                "`--insecure-no-auth` turns authentication off for a loopback test only"
            )

    @property
    def methods(self) -> list[str]:
        methods = []
        if self._secrets:
            methods.append(f"shared secret ({len(self._secrets)} accepted)")
        if self.entra is not None:
            methods.append(f"Entra ID (tenant {self.entra.tenant_id})")
        return methods or ["none (insecure)"]

    def may_block(self, headers: Mapping[str, str]) -> bool:
        """Whether checking these headers can wait on the network (a bearer token, whose signing
        keys may have to be fetched): run such checks off the event loop."""
        return self.entra is not None and bool(headers.get("authorization"))

    def _secret_matches(self, given: str) -> bool:
        candidate = given.encode()
        matched = False
        for secret in self._secrets:  # no early exit: every secret is compared
            matched |= hmac.compare_digest(candidate, secret)
        return matched

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> AuthResult:
        """Raise AuthUnavailable when the credential cannot be checked now."""
        if self.insecure:
            return AuthResult(True, "none")
        reasons = []
        offered = [v for v in (query.get(SECRET_QUERY), headers.get(SECRET_HEADER)) if v]
        if offered and self._secrets:
            if any(self._secret_matches(value) for value in offered):
                return AuthResult(True, "secret")
            reasons.append("the shared secret does not match")
        authorization = headers.get("authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip() and self.entra is not None:
            result = self.entra.verify(token.strip())
            if result.ok:
                return result
            reasons.append(result.reason)
        if not reasons:
            reasons.append("no credential (expected ?code=, x-shipper-secret or a bearer token)")
        return AuthResult(False, "", "; ".join(reasons))
