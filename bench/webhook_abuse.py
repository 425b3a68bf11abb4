#!/usr/bin/env python3
"""`/healthz` latency of the webhook while it is being abused: the Entra ID key endpoint hangs while
bearer-token deliveries wait on it, and slowloris clients hold connections.

    .venv/bin/python bench/webhook_abuse.py [--probes 200] [--bearers 16] [--slowloris 100]

It starts `shipper serve` as its own process (the real command) with a shared secret and Entra ID
configured, the key endpoint being a local HTTP server that accepts connections and never answers.
Three phases, `--probes` sequential `GET /healthz` each, new connection per probe:

    quiet      nothing else happening
    jwks hang  `--bearers` deliveries with well-formed tokens for our issuer wait on the hanging
               key fetch (`SHIPPER_WEBHOOK_ENTRA_JWKS_TIMEOUT_SECONDS`, 5 s by default); probes
               run while they wait
    slowloris  `--slowloris` connections send a header byte every 0.5 s (cut off by
               `SHIPPER_WEBHOOK_HEADER_TIMEOUT_SECONDS`, 10 s by default, and reopened)

Target (issue 14): `/healthz` answers within 100 ms throughout (p99 and max reported). The tests
(tests/integration/test_webhook_hardening.py) assert that it answers; durations live here.

Elasticsearch: ES_URL if set, else `scripts/stack up --only es` (only `/readyz` at start uses it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import http.server
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUDIENCE = "api://shipper-webhook"
TARGET_MS = 100.0


def _webhook_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_webhook", REPO / "bench" / "webhook.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HangingKeys:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                outer.release.wait(600)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keys"


def token() -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})


def probe(port: int) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"/healthz answered {response.status}")
    return (time.perf_counter() - started) * 1000


def probes(port: int, count: int, until: threading.Event | None = None) -> list[float]:
    found = []
    for _ in range(count):
        if until is not None and until.is_set():
            break
        found.append(probe(port))
    return found


def summary(name: str, values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    return {
        "phase": name,
        "probes": len(values),
        "p50_ms": round(statistics.median(values), 2) if values else None,
        "p99_ms": round(p99, 2),
        "max_ms": round(max(values), 2) if values else None,
        "within_target": bool(values) and max(values) <= TARGET_MS,
    }


def bearer_delivery(port: int, secretless_token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        "/events",
        body=b"[]",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secretless_token}"},
    )
    status = conn.getresponse().status
    conn.close()
    return status


def slowloris(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                while not stop.is_set():
                    sock.sendall(b"X")
                    time.sleep(0.5)
        except OSError:
            continue  # cut off by the header timeout: come back, as an attacker would


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probes", type=int, default=200)
    p.add_argument("--bearers", type=int, default=16)
    p.add_argument("--slowloris", type=int, default=100)
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/webhook_abuse.json")
    args = p.parse_args()

    hook_bench = _webhook_bench()
    es = hook_bench.es_url()
    keys = HangingKeys()
    port = hook_bench.free_port()
    secret = "bench-abuse-" + os.urandom(8).hex()
    os.environ.update(
        {
            "SHIPPER_WEBHOOK_ENTRA_TENANT_ID": TENANT,
            "SHIPPER_WEBHOOK_ENTRA_AUDIENCE": AUDIENCE,
            "SHIPPER_WEBHOOK_ENTRA_JWKS_URL": keys.url,
        }
    )
    server: subprocess.Popen[bytes] = hook_bench.start_server(port, es, secret)
    phases = []
    try:
        c.say("quiet")
        phases.append(summary("quiet", probes(port, args.probes)))

        c.say(f"jwks hang: {args.bearers} bearer deliveries waiting on a key endpoint that never answers")
        good = token()
        with concurrent.futures.ThreadPoolExecutor(args.bearers) as pool:
            waiting = [pool.submit(bearer_delivery, port, good) for _ in range(args.bearers)]
            done = threading.Event()
            threading.Thread(
                target=lambda: (concurrent.futures.wait(waiting), done.set()), daemon=True
            ).start()
            during = probes(port, args.probes, until=done)
            statuses = sorted({w.result() for w in waiting})
        hang = summary("jwks hang", during)
        hang["delivery_statuses"] = statuses
        hang["key_fetches"] = keys.hits
        phases.append(hang)

        c.say(f"slowloris: {args.slowloris} connections trickling header bytes")
        stop = threading.Event()
        for _ in range(args.slowloris):
            threading.Thread(target=slowloris, args=(port, stop), daemon=True).start()
        time.sleep(1.0)
        phases.append(summary("slowloris", probes(port, args.probes)))
        stop.set()
    finally:
        server.terminate()
        server.wait(30)
        keys.release.set()

    print(
        c.table(
            [
                [
                    ph["phase"],
                    ph["probes"],
                    ph["p50_ms"],
                    ph["p99_ms"],
                    ph["max_ms"],
                    c.verdict(ph["within_target"]),
                ]
                for ph in phases
            ],
            ["phase", "probes", "p50 ms", "p99 ms", "max ms", f"max <= {TARGET_MS:g} ms"],
        )
    )
    hang = phases[1]
    statuses, fetches = hang["delivery_statuses"], hang["key_fetches"]
    print(f"jwks hang: deliveries answered {statuses}; key fetches started: {fetches}")
    c.save(
        "webhook_abuse",
        {"machine": c.machine(es), "target_ms": TARGET_MS, "phases": phases, "args": vars(args)},
        args,
    )


if __name__ == "__main__":
    main()
