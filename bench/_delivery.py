"""A stand-in for Event Grid in the fault benchmarks: paced, parallel, retrying, duplicating.

Event Grid delivers at least once: a batch not answered 200 is delivered again later, a batch may
arrive twice, and batches of one run may arrive in any order. `deliver()` does the same against a
running `shipper serve`, with Event Grid's retry schedule shortened (1, 2, 4, 8, then every 10 s
instead of 10 s, 30 s, 1 min, 5 min, ... for 24 h) so a benchmark ends in minutes, and records every
attempt so the caller can say what load was held while Elasticsearch was away.

Written by hand: this is the sender's side of the webhook contract, which no library provides.
"""

from __future__ import annotations

import heapq
import http.client
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

RETRY_SCHEDULE = (1.0, 2.0, 4.0, 8.0, 10.0)


@dataclass
class Attempt:
    at: float  # seconds since the start of the delivery, when the request was sent
    seconds: float  # until the answer (or the connection error)
    status: int  # 0: no answer (connection refused, reset, timed out)


@dataclass
class Outcome:
    events: int
    batches: int  # distinct batches (duplicates not counted)
    copies: int  # deliveries made, duplicates included
    offered_seconds: float  # the span over which the batches were first offered
    attempts: list[Attempt] = field(default_factory=list)
    acked: int = 0  # copies answered 200
    unacked: int = 0  # copies never answered 200 before give_up_s
    acks: list[tuple[float, float]] = field(default_factory=list)  # (first offered, acknowledged) per copy
    wall_seconds: float = 0.0

    def statuses(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(Counter(a.status for a in self.attempts).items())}

    def latencies(self, start: float, end: float) -> list[float]:
        """Latencies of the 200 answers to requests sent between start and end."""
        return [a.seconds for a in self.attempts if a.status == 200 and start <= a.at < end]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def reordered_batches(
    events: list[dict[str, Any]], size: int, window: int, rng: random.Random
) -> list[bytes]:
    """Batches of `size` after shuffling the events within windows of `window`: a run's statuses
    land in different batches in any order (Completed may come before Running)."""
    shuffled: list[dict[str, Any]] = []
    for i in range(0, len(events), window):
        part = events[i : i + window]
        rng.shuffle(part)
        shuffled.extend(part)
    return [json.dumps(shuffled[i : i + size]).encode() for i in range(0, len(shuffled), size)]


def deliver(
    port: int,
    secret: str,
    bodies: list[bytes],
    *,
    batches_per_second: float,
    duplicate_share: float,
    rng: random.Random,
    parallel: int = 16,
    give_up_s: float = 600.0,
) -> Outcome:
    """Offer `bodies` at a steady rate from `parallel` keep-alive connections; every copy not
    answered 200 is tried again on RETRY_SCHEDULE until it is, or until `give_up_s` after its first
    offer. `duplicate_share` of the batches are offered a second time, 0-5 s after the first."""
    start = time.monotonic()
    spacing = 1.0 / batches_per_second
    queue: list[tuple[float, int, int, int]] = []  # (due, sequence, body index, attempt)
    first_due: dict[int, float] = {}
    sequence = 0
    for index in range(len(bodies)):
        due = index * spacing
        queue.append((due, sequence, index, 0))
        first_due[sequence] = due
        sequence += 1
        if rng.random() < duplicate_share:
            again = due + rng.uniform(0.0, 5.0)
            queue.append((again, sequence, index, 0))
            first_due[sequence] = again
            sequence += 1
    heapq.heapify(queue)
    events = sum(len(json.loads(b)) for b in bodies)
    outcome = Outcome(events, len(bodies), sequence, offered_seconds=len(bodies) * spacing)
    lock = threading.Condition()
    outstanding = [sequence]

    def post(conn: http.client.HTTPConnection, body: bytes) -> int:
        conn.request(
            "POST",
            f"/events?code={secret}",
            body,
            {"Content-Type": "application/json", "aeg-event-type": "Notification"},
        )
        response = conn.getresponse()
        response.read()
        return response.status

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                while True:
                    if outstanding[0] == 0:
                        lock.notify_all()
                        conn.close()
                        return
                    now = time.monotonic() - start
                    if queue and queue[0][0] <= now:
                        _due, seq, index, attempt = heapq.heappop(queue)
                        break
                    lock.wait(min(0.5, queue[0][0] - now) if queue else 0.5)
            sent = time.monotonic() - start
            try:
                status = post(conn, bodies[index])
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            answered = time.monotonic() - start
            with lock:
                outcome.attempts.append(Attempt(round(sent, 3), answered - sent, status))
                if status == 200:
                    outcome.acked += 1
                    outcome.acks.append((first_due[seq], answered))
                    outstanding[0] -= 1
                elif answered - first_due[seq] > give_up_s:
                    outcome.unacked += 1
                    outstanding[0] -= 1
                else:
                    delay = RETRY_SCHEDULE[min(attempt, len(RETRY_SCHEDULE) - 1)]
                    heapq.heappush(queue, (answered + delay, seq, index, attempt + 1))
                lock.notify_all()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcome.wall_seconds = time.monotonic() - start
    return outcome


class Prober:
    """GET /healthz every `every` seconds on its own connection, to show the service stays up."""

    def __init__(self, port: int, every: float = 0.5) -> None:
        self.port = port
        self.every = every
        self.samples: list[Attempt] = []
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except (OSError, http.client.HTTPException):
                status = 0
            self.samples.append(Attempt(round(sent - self._start, 3), time.monotonic() - sent, status))
            self._stop.wait(self.every)

    def stop(self) -> list[Attempt]:
        self._stop.set()
        self._thread.join()
        return self.samples
