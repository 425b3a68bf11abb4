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


# -- Entra ID cannot be turned against availability ----------------------------------------------


def test_roles_are_compared_as_a_list_never_as_a_substring(entra: Authenticator, keys: Keys) -> None:
    for roles in ("EventSenderX", "NotEventSender", "EventSender", ["EventSender-Admin"], [["EventSender"]]):
        result = entra.check(bearer(keys.token(roles=roles)), {})
        assert not result.ok and "role" in result.reason, roles
    assert entra.check(bearer(keys.token(roles=["Reader", "EventSender"])), {}).ok


def test_calling_application_allow_list(jwks_url: str, keys: Keys) -> None:
    event_grid = "4962773b-9cdb-44cf-a8bf-237846a00ab7"
    verifier = EntraVerifier(TENANT, [AUDIENCE], jwks_url=jwks_url, allowed_applications=[event_grid.upper()])
    auth = Authenticator([], verifier)
    assert auth.check(bearer(keys.token(azp=event_grid)), {}).ok  # v2 tokens
    assert auth.check(bearer(keys.token(iss=f"https://sts.windows.net/{TENANT}/", appid=event_grid)), {}).ok
    for claims in ({"azp": "00000000-0000-0000-0000-000000000001"}, {}, {"azp": ["x", event_grid]}):
        result = auth.check(bearer(keys.token(**claims)), {})
        assert not result.ok and "calling application" in result.reason


class CountingKeys:
    """A JWKS endpoint that counts its fetches and can be made to fail."""

    def __init__(self, keys: Keys) -> None:
        self.body = orjson.dumps(keys.jwks())
        self.fetches = 0
        self.failing = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                if outer.failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keys"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def counting(keys: Keys) -> Iterator[CountingKeys]:
    served = CountingKeys(keys)
    yield served
    served.close()


def test_only_tokens_meant_for_us_can_cause_a_fetch(counting: CountingKeys, keys: Keys) -> None:
    auth = Authenticator([], EntraVerifier(TENANT, [AUDIENCE], jwks_url=counting.url))
    not_ours = [
        "not-a-jwt",
        "a.b.c",
        keys.token(iss="https://login.microsoftonline.com/someone-else/v2.0"),
        keys.token(aud="api://someone-else"),
        keys.token(exp=int(time.time()) - 3600),
        keys.token(exp=None),
        keys.token(tid="00000000-0000-0000-0000-000000000000"),
        jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600}, "k" * 32, algorithm="HS256"
        ),
        jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600}, keys.private, algorithm="RS256"
        ),
        "x" * 20_000,
    ]
    for token in not_ours:
        assert not auth.check(bearer(token), {}).ok
    assert counting.fetches == 0
    assert auth.check(bearer(keys.token()), {}).ok
    assert auth.check(bearer(keys.token()), {}).ok
    assert counting.fetches == 1  # cached


def test_unknown_key_ids_refetch_rarely(counting: CountingKeys, keys: Keys) -> None:
    clock = [1000.0]
    verifier = EntraVerifier(TENANT, [AUDIENCE], jwks_url=counting.url)
    verifier.keys.clock = lambda: clock[0]
    auth = Authenticator([], verifier)
    stranger = Keys()
    stranger.kid = "someone-elses-key"
    for _ in range(5):
        assert "signing key" in auth.check(bearer(stranger.token()), {}).reason
    assert counting.fetches == 1
    clock[0] += 301  # after five minutes one more look, in case the tenant rolled its keys
    assert not auth.check(bearer(stranger.token()), {}).ok
    assert counting.fetches == 2


def test_failed_fetches_back_off_and_cached_keys_outlive_them(counting: CountingKeys, keys: Keys) -> None:
    clock = [1000.0]
    verifier = EntraVerifier(TENANT, [AUDIENCE], jwks_url=counting.url)
    verifier.keys.clock = lambda: clock[0]
    auth = Authenticator([], verifier)
    counting.failing = True
    with pytest.raises(AuthUnavailable):
        auth.check(bearer(keys.token()), {})
    for _ in range(5):  # within the back-off: no fetch, 503 at once
        with pytest.raises(AuthUnavailable, match="next try in"):
            auth.check(bearer(keys.token()), {})
    assert counting.fetches == 1
    clock[0] += 11
    counting.failing = False
    assert auth.check(bearer(keys.token()), {}).ok
    assert counting.fetches == 2
    # An hour later the keys are stale; the endpoint fails; the cached key still serves.
    clock[0] += 3601
    counting.failing = True
    assert auth.check(bearer(keys.token()), {}).ok
    assert counting.fetches == 3
    assert auth.check(bearer(keys.token()), {}).ok
    assert counting.fetches == 3  # backed off
