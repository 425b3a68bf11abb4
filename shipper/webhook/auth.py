"""Who may deliver events: a shared secret, Microsoft Entra ID bearer tokens, or both.

- Shared secret: `SHIPPER_WEBHOOK_SECRET` (several, comma-separated, during a rotation), given as
  the query parameter `code` (as Azure Functions take theirs; put it in the subscription's endpoint
  URL) or the header `x-shipper-secret` (a delivery attribute of the subscription). Compared with
  `hmac.compare_digest` against every configured secret, so timing tells nothing.
- Entra ID: Event Grid's "Microsoft Entra authentication" sends `Authorization: Bearer <JWT>`.
  Its signature is checked against the tenant's published keys (JWKS, cached), and its issuer,
  audience, expiry and optionally a role claim are checked.

A delivery passes when any configured method accepts it. A bad or missing credential is 401. A key
set that cannot be fetched is not the sender's fault: that is `AuthUnavailable`, answered 503 so
Event Grid retries instead of dropping the delivery.

Nothing here logs or returns a credential's value.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
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


class EntraVerifier:
    """Checks Entra ID access tokens. The key set is fetched lazily and cached by PyJWT."""

    def __init__(
        self,
        tenant_id: str,
        audiences: Sequence[str],
        issuers: Sequence[str] = (),
        jwks_url: str | None = None,
        required_role: str | None = None,
        leeway_seconds: int = 60,
    ) -> None:
        import jwt

        self.tenant_id = tenant_id
        self.audiences = list(audiences)
        self.issuers = list(issuers) or [
            f"{ENTRA_LOGIN_HOST}/{tenant_id}/v2.0",
            f"https://sts.windows.net/{tenant_id}/",
        ]
        self.jwks_url = jwks_url or f"{ENTRA_LOGIN_HOST}/{tenant_id}/discovery/v2.0/keys"
        self.required_role = required_role
        self.leeway = leeway_seconds
        self._jwks = jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=3600, timeout=10)

    def verify(self, token: str) -> AuthResult:
        import jwt

        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthUnavailable(
                f"cannot fetch the token signing keys from {self.jwks_url}: {exc}"
            ) from None
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            return AuthResult(False, "", f"bearer token refused: {type(exc).__name__}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "RS512", "PS256"],
                audience=self.audiences,
                issuer=self.issuers,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            return AuthResult(False, "", f"bearer token refused: {type(exc).__name__}")
        if self.required_role is not None:
            roles = claims.get("roles") or []
            if self.required_role not in roles:
                return AuthResult(False, "", "bearer token refused: the required role is missing")
        return AuthResult(True, "entra")


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
