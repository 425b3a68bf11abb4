"""Webhook authentication: shared secrets (rotation, query or header, constant-time comparison) and
Microsoft Entra ID bearer tokens, checked against keys served over real HTTP by a local JWKS
endpoint (the test's own RSA key standing in for the tenant's)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from shipper.webhook import auth as auth_module
from shipper.webhook.auth import Authenticator, AuthUnavailable, EntraVerifier

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUDIENCE = "api://shipper-webhook"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"


def secrets(*values: str) -> list[SecretStr]:
    return [SecretStr(v) for v in values]


def test_refuses_to_exist_without_a_way_to_authenticate() -> None:
    with pytest.raises(ValueError, match="SHIPPER_WEBHOOK_SECRET"):
        Authenticator([])
    assert Authenticator([], insecure_no_auth=True).check({}, {}).ok


def test_secret_from_query_or_header_and_rotation() -> None:
    auth = Authenticator(secrets("old-secret", "new-secret"))
    assert auth.check({}, {"code": "old-secret"}).ok
    assert auth.check({"x-shipper-secret": "new-secret"}, {}).method == "secret"
    refused = auth.check({}, {"code": "wrong"})
    assert not refused.ok and "does not match" in refused.reason
    missing = auth.check({}, {})
    assert not missing.ok and "no credential" in missing.reason
    # The reason never repeats what was offered.
    assert "wrong" not in refused.reason


def test_every_secret_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = auth_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    auth = Authenticator(secrets("first", "second", "third"))
    assert auth.check({}, {"code": "first"}).ok
    assert len(calls) == 3  # no early exit on the first match


# -- Entra ID ------------------------------------------------------------------------------------


class Keys:
    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {"keys": [jwk | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "roles": ["EventSender"],
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def jwks_url(keys: Keys) -> Iterator[str]:
    body = orjson.dumps(keys.jwks())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{TENANT}/discovery/v2.0/keys"
    server.shutdown()
    server.server_close()


@pytest.fixture
def entra(jwks_url: str) -> Authenticator:
    verifier = EntraVerifier(TENANT, [AUDIENCE], jwks_url=jwks_url, required_role="EventSender")
    return Authenticator(secrets("s3cret"), verifier)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_valid_entra_token(entra: Authenticator, keys: Keys) -> None:
    result = entra.check(bearer(keys.token()), {})
    assert result.ok and result.method == "entra"
    # The v1 issuer form is accepted by default too.
    assert entra.check(bearer(keys.token(iss=f"https://sts.windows.net/{TENANT}/")), {}).ok


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "api://someone-else"}, "InvalidAudienceError"),
        ({"iss": "https://login.microsoftonline.com/other-tenant/v2.0"}, "InvalidIssuerError"),
        ({"exp": int(time.time()) - 3600}, "ExpiredSignatureError"),
        ({"roles": ["Reader"]}, "role"),
        ({"exp": None}, "MissingRequiredClaimError"),
    ],
)
def test_refused_entra_tokens(
    entra: Authenticator, keys: Keys, overrides: dict[str, Any], reason: str
) -> None:
    result = entra.check(bearer(keys.token(**overrides)), {})
    assert not result.ok and reason in result.reason


def test_token_signed_by_another_key(entra: Authenticator, keys: Keys) -> None:
    stranger = Keys()
    stranger.kid = keys.kid  # same key id, wrong key
    result = entra.check(bearer(stranger.token()), {})
    assert not result.ok and "InvalidSignatureError" in result.reason
    assert not entra.check(bearer("not-a-jwt"), {}).ok


def test_secret_still_works_beside_entra(entra: Authenticator) -> None:
    assert entra.check({"authorization": "Bearer junk"}, {"code": "s3cret"}).ok


def test_unreachable_key_set_is_not_the_senders_fault(keys: Keys) -> None:
    verifier = EntraVerifier(TENANT, [AUDIENCE], jwks_url="http://127.0.0.1:9/keys")
    with pytest.raises(AuthUnavailable):
        Authenticator([], verifier).check(bearer(keys.token()), {})
