"""Outgoing notifications to a real local HTTP receiver: the body chat tools take, filters,
de-duplication, retries, and failures counted in the metrics."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from shipper.webhook.notify import Notifier, model_notification, run_notification


class Receiver:
    """An incoming-webhook endpoint: answers `failures` 500s first, then 200s; keeps the bodies."""

    def __init__(self, failures: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.failures = failures
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                receiver.attempts += 1
                if receiver.attempts <= receiver.failures:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(orjson.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def notifier(urls: list[str], **kwargs: Any) -> Notifier:
    n = Notifier(
        urls,
        kinds=kwargs.pop("kinds", ["started", "completed", "failed", "model_registered"]),
        initial_wait=0.01,
        max_wait=0.05,
        timeout=2,
        **kwargs,
    )
    n.start()
    return n


def count(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("shipper_notifications_total", {"kind": kind, "outcome": outcome}) or 0.0


def test_run_and_model_notifications_reach_the_receiver(receiver: Receiver) -> None:
    n = notifier([receiver.url])
    n.submit(
        run_notification(
            "completed", "run-1", "churn", "ws", "Completed", studio_url="https://ml.azure.com/runs/run-1"
        ),
        "churn",
    )
    n.submit(model_notification("churn-model", "7", "ws"))
    assert n.wait_idle(10)
    n.stop()
    texts = [b["text"] for b in receiver.bodies]
    assert texts[0].startswith("✅ Azure ML run `run-1` in experiment `churn` completed (workspace ws).")
    assert "https://ml.azure.com/runs/run-1" in texts[0]
    assert "Model `churn-model` version 7 registered" in texts[1]
    assert receiver.bodies[0]["shipper"] == {
        "kind": "completed",
        "run_id": "run-1",
        "experiment": "churn",
        "workspace": "ws",
        "status": "Completed",
    }


def test_filters_and_duplicates(receiver: Receiver) -> None:
    n = notifier([receiver.url], experiments=["churn"], kinds=["started", "completed", "failed"])
    assert not n.submit(run_notification("completed", "r", "other-exp", None, "Completed"), "other-exp")
    assert not n.submit(
        run_notification("canceled", "r", "churn", None, "Canceled"), "churn"
    )  # not asked for
    assert n.submit(run_notification("completed", "r", "churn", None, "Completed"), "churn")
    # RunCompleted and RunStatusChanged(Completed) of one run, or a redelivery: one notification.
    assert not n.submit(run_notification("completed", "r", "churn", None, "Completed"), "churn")
    # A late "Running" after the end says nothing new.
    assert not n.submit(run_notification("started", "r", "churn", None, "Running"), "churn")
    assert n.wait_idle(10)
    n.stop()
    assert len(receiver.bodies) == 1


def test_retried_then_delivered() -> None:
    flaky = Receiver(failures=2)
    try:
        before = count("failed", "sent")
        n = notifier([flaky.url])
        n.submit(run_notification("failed", "run-f", None, None, "Failed"))
        assert n.wait_idle(10)
        n.stop()
        assert flaky.attempts == 3 and len(flaky.bodies) == 1
        assert count("failed", "sent") == before + 1
    finally:
        flaky.close()


def test_a_receiver_that_stays_down_is_counted_and_the_url_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = Receiver(failures=1000)
    try:
        before = count("started", "failed")
        n = notifier([down.url], attempts=3)
        n.submit(run_notification("started", "run-d", None, None, "Running"))
        assert n.wait_idle(10)
        n.stop()
        assert down.attempts == 3
        assert count("started", "failed") == before + 1
        assert "receiver #1" in caplog.text and "XXXX" not in caplog.text and "127.0.0.1" not in caplog.text
    finally:
        down.close()
