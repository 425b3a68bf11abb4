"""The webhook under abuse, over real sockets into the real Elasticsearch: slow and stalled clients,
floods, a hanging Entra key endpoint, and the small leaks of issue 14 (redirects, mixed handshakes,
binary-mode dead letters).

The server is the one `shipper serve` runs (uvicorn with `uvicorn_config`, the bounded h11
protocol), started from a thread as in test_webhook.py. Timeouts are short here so the tests are
quick; the assertions are about what happens (cut off, answered, written), never about how long
it took: the generous client-side timeouts only turn a hang into a failure.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.server
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from shipper.core.names import DEAD_LETTER_INDEX
from tests.integration import test_webhook as webhook_tests
from tests.integration.test_webhook import NOW, WS, Hook, call, count_events, refresh, status_event, unique

pytestmark = pytest.mark.integration

# The fixtures of test_webhook.py: a real server per test over the shared, installed cluster.
installed = webhook_tests.installed
settings = webhook_tests.settings
start_hook = webhook_tests.start_hook
hook = webhook_tests.hook

# A hang turns into a failure after this long; nothing is asserted about shorter durations.
PATIENCE = 30.0


def connect(hook: Hook) -> socket.socket:
    sock = socket.create_connection((hook.server.host, hook.server.port), timeout=PATIENCE)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a hang fails the test)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


class Trickle:
    """Sends `head` at once, then `tail` one byte every `pause` seconds, until the server closes the
    connection: the slow client that keeps a naive server's idle timeouts from ever firing."""

    def __init__(self, hook: Hook, head: bytes, tail: bytes = b"x" * 10_000, pause: float = 0.2) -> None:
        self.sock = connect(hook)
        self.sock.sendall(head)
        self.tail, self.pause = tail, pause
        self.answer = b""
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        for byte in self.tail:
            if self.closed.is_set():
                break
            try:
                self.sock.send(bytes([byte]))
            except OSError:
                break
            time.sleep(self.pause)

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            self.answer = read_until_closed(self.sock)
        self.closed.set()

    def wait_closed(self) -> bytes:
        assert self.closed.wait(PATIENCE), "the server never closed the slow connection"
        self.sock.close()
        return self.answer


def post_head(hook: Hook, length: int, secret: str | None = None) -> bytes:
    code = hook.secret if secret is None else secret
    return (
        f"POST /events?code={code} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


BOUNDED = {"webhook_header_timeout_seconds": 1.0, "webhook_body_timeout_seconds": 2.0}


# -- item 3: connections are bounded ---------------------------------------------------------------


def test_slow_and_stalled_clients_cannot_hold_the_server(
    es: Elasticsearch, start_hook: Callable[..., Hook]
) -> None:
    hook = start_hook(BOUNDED)
    # Slowloris: headers one byte at a time, forever; and connections that never say anything.
    slow_headers = [Trickle(hook, b"POST /events HTTP/1.1\r\n", tail=b"X-A: b\r\n" * 2000) for _ in range(20)]
    silent = [connect(hook) for _ in range(20)]
    # Slow bodies: headers at once, then the body one byte at a time, with and without the secret.
    slow_bodies = [Trickle(hook, post_head(hook, 5000)) for _ in range(5)]
    slow_unauthorised = [
        Trickle(hook, post_head(hook, 5000, secret="wrong-" + hook.secret)) for _ in range(5)
    ]

    # While they all hang on, the service answers everyone else.
    assert call("GET", f"{hook.url}/healthz").status == 200
    event = status_event(unique("beside-slowloris"), "Running", NOW)
    assert hook.post([event]).status == 200
    assert count_events(es, [event["id"]]) == 1

    # And each of them is cut off: 408 where a request had begun, closed either way.
    for trickle in slow_headers + slow_bodies:
        answer = trickle.wait_closed()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    for trickle in slow_unauthorised:
        answer = trickle.wait_closed()  # answered 401 at once, then cut off for the body it never ended
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    for sock in silent:
        assert read_until_closed(sock) == b""
        sock.close()
    assert call("GET", f"{hook.url}/healthz").status == 200


def test_oversized_headers_are_refused(start_hook: Callable[..., Hook]) -> None:
    hook = start_hook({"webhook_max_header_bytes": 8192})
    sock = connect(hook)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")
    sock.close()


def test_deliveries_beyond_the_cap_are_503_and_come_back(
    es: Elasticsearch, start_hook: Callable[..., Hook]
) -> None:
    hook = start_hook(BOUNDED | {"webhook_max_concurrent_deliveries": 1, "webhook_body_timeout_seconds": 5.0})
    holder = Trickle(hook, post_head(hook, 5000))  # a delivery whose body never ends holds the one slot
    event = status_event(unique("over-the-cap"), "Running", NOW)
    deadline = time.monotonic() + PATIENCE
    busy = hook.post([event])
    while busy.status == 200 and time.monotonic() < deadline:  # the holder may not have started yet
        busy = hook.post([status_event(unique("race"), "Running", NOW)])
    assert busy.status == 503, busy.raw
    assert busy.headers["retry-after"] == "7" and busy.headers["x-shipper-outcome"] == "unavailable"
    holder.wait_closed()
    # Event Grid's retry, once the slot is free, is written.
    assert hook.post([event]).status == 200
    assert count_events(es, [event["id"]]) == 1


def test_request_memory_is_bounded(es: Elasticsearch, start_hook: Callable[..., Hook]) -> None:
    limit = 64 * 1024
    hook = start_hook(
        BOUNDED
        | {
            "webhook_max_body_bytes": limit,
            "webhook_max_request_memory_bytes": limit,
            "webhook_body_timeout_seconds": 5,
        }
    )
    # One delivery holds 60 KB of the 64 KB and stalls.
    holder = Trickle(hook, post_head(hook, 62_000) + b" " * 60_000, tail=b" " * 2000, pause=0.5)
    events = [status_event(unique("memory"), "Running", NOW, experiment="x" * 200) for _ in range(10)]
    assert len(orjson.dumps(events)) > 5000
    deadline = time.monotonic() + PATIENCE
    reply = hook.post(events)
    while reply.status == 200 and time.monotonic() < deadline:  # until the holder's bytes are read
        reply = hook.post([status_event(unique("race"), "Running", NOW, experiment="x" * 4000)])
    assert reply.status == 503 and "MAX_REQUEST_MEMORY_BYTES" in reply.json()["message"]
    holder.wait_closed()
    assert hook.post(events).status == 200
    assert count_events(es, [e["id"] for e in events]) == 10


# -- item 4: Entra ID cannot be turned against availability ----------------------------------------


class StalledKeys:
    """A JWKS endpoint that takes connections and never answers (until released)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                outer.release.wait(PATIENCE)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/keys"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stalled_keys() -> Iterator[StalledKeys]:
    keys = StalledKeys()
    yield keys
    keys.close()


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUDIENCE = "api://shipper-webhook"


def token(**overrides: Any) -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = overrides.pop("kid", "k1")
    now = int(time.time())
    claims = {
        "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    } | overrides
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def test_healthz_answers_while_the_key_fetch_hangs(
    stalled_keys: StalledKeys, start_hook: Callable[..., Hook]
) -> None:
    hook = start_hook(
        {
            "webhook_entra_tenant_id": TENANT,
            "webhook_entra_audience": [AUDIENCE],
            "webhook_entra_jwks_url": stalled_keys.url,
            "webhook_entra_jwks_timeout_seconds": 3.0,
        }
    )
    # Tokens not meant for us never make the service fetch anything.
    for wrong in (
        token(iss="https://login.microsoftonline.com/someone-else/v2.0"),
        token(aud="api://x"),
        "a.b.c",
    ):
        reply = hook.post([], secret=None, headers={"Authorization": f"Bearer {wrong}"})
        assert reply.status == 401
    assert stalled_keys.hits == 0

    good = token()
    event = status_event(unique("entra-stall"), "Running", NOW)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        deliveries = [
            pool.submit(hook.post, [event], secret=None, headers={"Authorization": f"Bearer {good}"})
            for _ in range(16)
        ]
        # While every one of them waits on the stalled key endpoint, liveness answers.
        answered = 0
        while not all(d.done() for d in deliveries):
            assert call("GET", f"{hook.url}/healthz").status == 200
            answered += 1
        replies = [d.result(PATIENCE) for d in deliveries]
    assert answered > 0
    # Not the sender's fault: 503 with Retry-After, so Event Grid retries.
    assert {r.status for r in replies} == {503}
    assert all("retry-after" in r.headers for r in replies)
    # One fetch for all of them, and none again while it backs off.
    assert stalled_keys.hits == 1
    assert hook.post([event], secret=None, headers={"Authorization": f"Bearer {good}"}).status == 503
    assert stalled_keys.hits == 1
    # The shared secret keeps working all along.
    assert hook.post([event]).status == 200


# -- item 5: small leaks ---------------------------------------------------------------------------


def test_events_with_a_trailing_slash_is_not_redirected(hook: Hook) -> None:
    event = status_event(unique("slash"), "Running", NOW)
    reply = call(
        "POST",
        f"{hook.url}/events/?code={hook.secret}",
        orjson.dumps([event]),
        {"Content-Type": "application/json", "Host": "attacker.example"},
    )
    assert reply.status == 404
    assert "location" not in reply.headers
    assert hook.secret.encode() not in reply.raw


def test_a_validation_event_beside_real_events_costs_them_nothing(es: Elasticsearch, hook: Hook) -> None:
    validation: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "topic": WS,
        "subject": "",
        "data": {"validationCode": "0bd1c21e-3b7e-4d2c-9d38-0d4d3d0c5f11"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": NOW.isoformat(),
        "metadataVersion": "1",
        "dataVersion": "1",
    }
    real = [status_event(unique("beside-validation"), "Running", NOW) for _ in range(3)]
    reply = hook.post([real[0], validation, *real[1:]])
    assert reply.status == 200, reply.raw
    assert reply.json() == {
        "accepted": 3,
        "runs": 3,
        "validationResponse": "0bd1c21e-3b7e-4d2c-9d38-0d4d3d0c5f11",
    }
    assert count_events(es, [e["id"] for e in real]) == 3
    assert count_events(es, [validation["id"]]) == 0


def test_binary_cloudevent_dead_letters_keep_their_attributes(es: Elasticsearch, hook: Hook) -> None:
    ids = [unique("ce-bin"), unique("ce-bin")]
    letters = []
    for ce_id in ids:
        reply = call(
            "POST",
            f"{hook.url}/events?code={hook.secret}",
            b"{this is not json",
            {
                "Content-Type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": ce_id,
                "ce-source": WS,
                "ce-type": "Microsoft.MachineLearningServices.RunStatusChanged",
            },
        )
        assert reply.status == 400, reply.raw
        letters.append(reply.json()["dead_letter_id"])
    assert letters[0] != letters[1]  # the same body, two events: two letters
    refresh(es)
    for ce_id, letter_id in zip(ids, letters, strict=True):
        letter = es.get(index=DEAD_LETTER_INDEX, id=letter_id)["_source"]["mlops"]["dead_letter"]
        assert letter["attributes"] == {
            "specversion": "1.0",
            "id": ce_id,
            "source": WS,
            "type": "Microsoft.MachineLearningServices.RunStatusChanged",
        }
        assert letter["original"] == "{this is not json"
