"""Send a bounded mix of requests to one or more scoring servers (loopback or compose services).

    python traffic.py --url http://127.0.0.1:5001 --url http://127.0.0.1:5002 --requests 200

Mix: scoring requests (some with missing values), a few bad ones (500 + traceback), health probes.
Stops by itself after --requests requests or --seconds seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import urllib.error
import urllib.request


def send(url: str, method: str, path: str, body: dict[str, object] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "shipper-traffic/1.0")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds
    counts: dict[int, int] = {}
    for i in range(args.requests):
        if time.monotonic() > deadline:
            break
        url = args.url[i % len(args.url)]
        roll = rng.random()
        if roll < 0.1:
            status = send(url, "GET", rng.choice(["/", "/health"]))
        elif roll < 0.17:
            status = send(url, "POST", "/score", {"fail": "unknown feature 'tenure'"})
        else:
            rows = [
                [rng.random() if rng.random() > 0.05 else None for _ in range(3)]
                for _ in range(rng.randint(1, 4))
            ]
            status = send(url, "POST", "/score?verbose=true" if roll > 0.95 else "/score", {"data": rows})
        counts[status] = counts.get(status, 0) + 1
    print(json.dumps({"sent": sum(counts.values()), "by_status": counts}))


if __name__ == "__main__":
    main()
