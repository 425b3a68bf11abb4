"""Bounds on what one client can hold of `shipper serve`: time, connections and memory.

    header timeout     a request's line and headers must arrive within N s of its first byte (a
                       new connection must send one within N s): slowloris clients are cut off
    body timeout       its body must arrive within N s after the headers: slow bodies are cut off
    header size        a request line and headers beyond N bytes are answered 431 and closed
    connections        uvicorn answers 503 beyond `limit_concurrency` connections or requests
    deliveries         `DeliveryLimits`: POST /events handled at once, and the bytes of request
                       bodies held at once; beyond either a delivery is answered 503 (Retry-After),
                       which Event Grid retries

A connection cut off by a timeout gets `408 Request Timeout` when no answer was started, and is
closed. The timeouts live in the HTTP protocol (`bounded_protocol`, uvicorn's h11 protocol with
a deadline per request phase), so they hold on every path, whether or not the app reads the body
(a 401 does not, for example).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from shipper import telemetry as metrics

log = logging.getLogger(__name__)

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 34\r\n"
    b"\r\n"
    b"the request did not arrive in time"
)


_TOO_LARGE_ANSWER = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 29\r\n"
    b"\r\n"
    b"the request headers are large"
)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers and on its body."""

    header_timeout: float = 10.0
    body_timeout: float = 20.0
    max_header_bytes: int = 16 * 1024

    _deadline: asyncio.TimerHandle | None = None
    _phase: str = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers")  # a new connection must start a request in time

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            if self._deadline is None:
                self._arm("headers")  # the first byte of the next request on a kept-alive connection
            # h11 bounds only headers still incomplete; a complete oversized block is refused here.
            pending = self.conn.trailing_data[0] + data
            end = pending.find(b"\r\n\r\n")
            if (end + 4 if end >= 0 else len(pending)) > self.max_header_bytes:
                self._refuse(_TOO_LARGE_ANSWER, f"its headers are larger than {self.max_header_bytes} bytes")
                return
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Move the deadline along with the peer's side of the request."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body")
        elif state is h11.IDLE:
            # Between requests: a started one keeps its header deadline; none started, none needed
            # (uvicorn's keep-alive timeout closes idle connections).
            if self._phase == "body" or (self._phase and not self.conn.trailing_data[0]):
                self._disarm()
        else:  # DONE, MUST_CLOSE, CLOSED, ERROR: nothing more to wait for from the peer
            self._disarm()

    def _arm(self, phase: str) -> None:
        self._disarm()
        seconds = self.header_timeout if phase == "headers" else self.body_timeout
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, ""

    def _expired(self, phase: str) -> None:
        self._deadline, self._phase = None, ""
        if self.transport.is_closing():
            return
        if phase == "headers" and self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            # An idle connection that never started a request: closed quietly.
            self.transport.close()
            return
        seconds = self.header_timeout if phase == "headers" else self.body_timeout
        self._log(f"its request {phase} did not arrive within {seconds:g} s", "timed_out")
        cycle = self.cycle
        if phase == "headers" or (cycle is not None and not cycle.response_started):
            self.transport.write(_TIMEOUT_ANSWER)  # a request begun and not answered yet
        if phase == "body" and cycle is not None and not cycle.response_complete:
            # The app's next receive() says the client is gone; its answer is not sent.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _refuse(self, answer: bytes, why: str) -> None:
        self._disarm()
        self._log(why, "refused")
        self.transport.write(answer)
        self.transport.close()

    def _log(self, why: str, outcome: str) -> None:
        peer = self.client[0] if self.client else "unknown"
        log.warning("closed a connection from %s: %s", peer, why)
        metrics.DELIVERIES.labels(outcome=outcome).inc()


def bounded_protocol(header_timeout: float, body_timeout: float, max_header_bytes: int) -> type[H11Protocol]:
    """The protocol class uvicorn is given (`uvicorn.Config(http=...)`), with these bounds."""
    return type(
        "BoundedH11Protocol",
        (BoundedH11Protocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_header_bytes": max_header_bytes,
        },
    )


@dataclass
class DeliveryLimits:
    """How many deliveries, and how many body bytes, the app holds at once. Used from the event
    loop only, so no lock is needed."""

    max_deliveries: int = 32
    max_bytes: int = 64 * 1024 * 1024
    deliveries: int = 0
    held_bytes: int = 0

    def enter(self) -> bool:
        if self.deliveries >= self.max_deliveries:
            return False
        self.deliveries += 1
        return True

    def leave(self) -> None:
        self.deliveries -= 1

    def take(self, size: int) -> bool:
        if self.held_bytes + size > self.max_bytes:
            return False
        self.held_bytes += size
        return True

    def give(self, size: int) -> None:
        self.held_bytes -= size
