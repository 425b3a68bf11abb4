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

from shipper.webhook.notify import MAX_VALUE_CHARS, Notifier, code, model_notification, run_notification


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
    assert texts[0].startswith("✅ Azure ML run `run-1` in experiment `churn` completed (workspace `ws`).")
    assert "https://ml.azure.com/runs/run-1" in texts[0]
    assert "Model `churn-model` version `7` registered" in texts[1]
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


# -- what an event can put into a chat message ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<!channel> deploy now", "`&lt;!channel&gt; deploy now`"),
        ("<@U024BE7LH>", "`&lt;@U024BE7LH&gt;`"),
        ("<at>Finance</at>", "`&lt;at&gt;Finance&lt;/at&gt;`"),
        ("<https://evil.example|click>", "`&lt;https://evil.example|click&gt;`"),
        ("[click](https://evil.example)", "`[click](https://evil.example)`"),
        ("run` <!here> `", "`run' &lt;!here&gt; '`"),
        ("a\nb\r\n*bold*", "`a b *bold*`"),
        ("x & y", "`x &amp; y`"),
        ("", "`-`"),
    ],
)
def test_values_are_inert_in_chat(value: str, expected: str) -> None:
    assert code(value) == expected


def test_run_and_model_texts_escape_every_value() -> None:
    note = run_notification("failed", "r`<!channel>", "exp\n<@U1>", "ws<at>x</at>", "Failed")
    assert note.text == (
        "❌ Azure ML run `r'&lt;!channel&gt;` in experiment `exp &lt;@U1&gt;` failed "
        "(workspace `ws&lt;at&gt;x&lt;/at&gt;`)."
    )
    model = model_notification("m<https://x|y>", "1`", None)
    assert model.text == "📦 Model `m&lt;https://x|y&gt;` version `1'` registered."
    # A link that is not https, or one that would smuggle a Slack label, is not linked as given.
    assert (
        "javascript" not in run_notification("failed", "r", None, None, None, studio_url="javascript:x").text
    )
    linked = run_notification("failed", "r", None, None, None, studio_url="https://ml.azure.com/a|b c")
    assert linked.text.endswith(" https://ml.azure.com/a%7Cb%20c")
    assert len(code("x" * 5000)) == MAX_VALUE_CHARS + 2


def test_a_large_batch_is_one_summary(receiver: Receiver) -> None:
    n = notifier([receiver.url], coalesce_above=5)
    batch = [
        (run_notification("completed", f"run-{i}", "churn", "ws", "Completed"), "churn") for i in range(40)
    ]
    batch += [(run_notification("failed", "run-x<!channel>", "churn", "ws", "Failed"), "churn")]
    batch += [(model_notification("churn-model", "3", "ws"), None)]
    assert n.submit_many(batch) == 42
    # The same batch again (a redelivery) tells nothing new.
    assert n.submit_many(batch) == 0
    small = [(run_notification("started", f"small-{i}", "churn", None, "Running"), "churn") for i in range(3)]
    assert n.submit_many(small) == 3
    assert n.wait_idle(10)
    n.stop()
    assert len(receiver.bodies) == 4
    summary = receiver.bodies[0]
    assert summary["text"].startswith(
        "📣 42 Azure ML notifications from one delivery: 40 runs completed, 1 runs failed, "
        "1 model versions registered. `run-0`, `run-1`,"
    )
    assert summary["text"].endswith(" and 32 more.")
    assert "<!channel>" not in summary["text"]
    assert summary["shipper"]["count"] == 42
    assert summary["shipper"]["kinds"] == {"completed": 40, "failed": 1, "model_registered": 1}
    assert [b["shipper"]["run_id"] for b in receiver.bodies[1:]] == ["small-0", "small-1", "small-2"]
