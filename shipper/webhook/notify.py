"""Outgoing notifications: a run started, completed, failed (or was canceled), a model was registered.

Each notification is a JSON object with a `text` field, which Slack and Microsoft Teams incoming
webhooks both take, plus a `shipper` object with the structured facts for other receivers. They
are sent after the delivery is written, from a background thread, retried with backoff (tenacity),
and counted in `/metrics` (`shipper_notifications_total{kind,outcome}`); a receiver that stays
down never holds up event intake.

At-least-once, like the events: duplicates within one process (Event Grid redeliveries, and
Azure ML's RunCompleted beside RunStatusChanged(Completed)) are suppressed by a memory of recently
sent (run, kind) pairs; after a restart a redelivered event can notify again.

Webhook URLs carry tokens: they are never logged (a receiver is named by its position).

Every value in the text comes from an event, so from whoever can send one: it is put in a code
span with its backticks replaced, `&`, `<` and `>` escaped and line breaks flattened, so that no
value can mention (`<!channel>`, `<@U123>`, `<at>`), link (`<https://x|y>`, `[y](https://x)`) or
break out of its code span, in Slack or in Teams. One delivery that would notify more than
`coalesce_above` times sends one summary instead (a 5,000-event batch is one message, not 5,000).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import urllib.error
import urllib.request
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from tenacity import Retrying, stop_after_attempt, wait_exponential_jitter

from shipper import telemetry as metrics

log = logging.getLogger(__name__)

ICONS = {
    "started": "▶️",
    "completed": "✅",
    "failed": "❌",
    "canceled": "⏹️",
    "model_registered": "📦",
}


# What a value may look like in a message: at most this many characters.
MAX_VALUE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def chat_text(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """A value as inert chat text: no mention, link or markup of Slack or Teams survives."""
    text = _CONTROL.sub(" ", str(value)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # Backticks would close the code span; `&<>` open Slack's <...> and Teams' <at>/HTML.
    return text.replace("`", "'").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(value: object) -> str:
    """A value in a code span, where neither Slack nor Teams renders markup."""
    return f"`{chat_text(value) or '-'}`"


@dataclass(frozen=True)
class Notification:
    kind: str
    key: str  # what makes two notifications the same one (run id or model name:version)
    text: str
    facts: dict[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        return orjson.dumps({"text": self.text, "shipper": {"kind": self.kind, **self.facts}})


def run_notification(
    kind: str,
    run_id: str,
    experiment: str | None,
    workspace: str | None,
    status: str | None,
    display_name: str | None = None,
    studio_url: str | None = None,
) -> Notification:
    verb = {"started": "started", "completed": "completed", "failed": "failed", "canceled": "was canceled"}
    name = display_name or run_id
    where = f" in experiment {code(experiment)}" if experiment else ""
    ws = f" (workspace {code(workspace)})" if workspace else ""
    text = f"{ICONS.get(kind, '')} Azure ML run {code(name)}{where} {verb.get(kind, kind)}{ws}."
    if studio_url and studio_url.startswith("https://"):
        text += f" {chat_text(studio_url, 2000).replace('|', '%7C').replace(' ', '%20')}"
    facts = {"run_id": run_id, "experiment": experiment, "workspace": workspace, "status": status}
    return Notification(kind, f"{run_id}/{kind}", text.strip(), {k: v for k, v in facts.items() if v})


def model_notification(name: str | None, version: str | None, workspace: str | None) -> Notification:
    ws = f" in workspace {code(workspace)}" if workspace else ""
    text = f"{ICONS['model_registered']} Model {code(name)} version {code(version)} registered{ws}."
    facts = {"model": name, "version": version, "workspace": workspace}
    return Notification("model_registered", f"{name}:{version}", text, {k: v for k, v in facts.items() if v})


_SUMMARY_WORDS = {
    "started": "runs started",
    "completed": "runs completed",
    "failed": "runs failed",
    "canceled": "runs canceled",
    "model_registered": "model versions registered",
}
SUMMARY_NAMES = 10


def summary_notification(notifications: Sequence[Notification]) -> Notification:
    """One message for many notifications of one delivery: counts per kind and the first names."""
    kinds = Counter(n.kind for n in notifications)
    counts = ", ".join(f"{kinds[k]} {_SUMMARY_WORDS.get(k, k)}" for k in _SUMMARY_WORDS if kinds[k])
    names = [
        n.facts.get("run_id") or f"{n.facts.get('model')}:{n.facts.get('version')}" for n in notifications
    ]
    shown = ", ".join(code(name) for name in names[:SUMMARY_NAMES])
    more = f" and {len(names) - SUMMARY_NAMES} more" if len(names) > SUMMARY_NAMES else ""
    text = f"📣 {len(notifications)} Azure ML notifications from one delivery: {counts}. {shown}{more}."
    facts = {
        "count": len(notifications),
        "kinds": dict(kinds),
        "items": [n.facts for n in notifications[:100]],
    }
    key = "summary/" + ",".join(n.key for n in notifications[:3])
    return Notification("summary", key, text, facts)


class Notifier:
    def __init__(
        self,
        urls: Sequence[str],
        kinds: Sequence[str],
        experiments: Sequence[str] = (),
        attempts: int = 4,
        initial_wait: float = 0.5,
        max_wait: float = 10.0,
        timeout: float = 10.0,
        memory: int = 10_000,
        coalesce_above: int = 5,
    ) -> None:
        self._urls = list(urls)
        self.kinds = set(kinds)
        self.experiments = set(experiments)
        self.attempts = attempts
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        self.timeout = timeout
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._memory = memory
        self.coalesce_above = coalesce_above
        self._queue: queue.Queue[Notification | None] = queue.Queue(maxsize=10_000)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def wanted(self, kind: str, experiment: str | None) -> bool:
        if kind not in self.kinds:
            return False
        return kind == "model_registered" or not self.experiments or experiment in self.experiments

    def submit(self, notification: Notification, experiment: str | None = None) -> bool:
        return self.submit_many([(notification, experiment)]) == 1

    def submit_many(self, notifications: Iterable[tuple[Notification, str | None]]) -> int:
        """Queue the notifications of one delivery (each with its run's experiment); more than
        `coalesce_above` of them go as one summary. Returns how many are to be told."""
        kept = [n for n, experiment in notifications if self._first_time(n, experiment)]
        if len(kept) > self.coalesce_above:
            return len(kept) if self._enqueue(summary_notification(kept)) else 0
        return sum(1 for n in kept if self._enqueue(n))

    def _first_time(self, notification: Notification, experiment: str | None) -> bool:
        if not self.wanted(notification.kind, experiment):
            return False
        with self._lock:
            if notification.key in self._sent:
                return False
            run = notification.facts.get("run_id")
            if notification.kind == "started" and any(
                f"{run}/{end}" in self._sent for end in ("completed", "failed", "canceled")
            ):
                return False  # a late "Running" after the run ended
            self._sent[notification.key] = None
            while len(self._sent) > self._memory:
                self._sent.popitem(last=False)
        return True

    def _enqueue(self, notification: Notification) -> bool:
        try:
            self._idle.clear()
            self._queue.put_nowait(notification)
        except queue.Full:
            metrics.NOTIFICATIONS.labels(kind=notification.kind, outcome="failed").inc()
            log.warning("notification queue full; a %s notification was dropped", notification.kind)
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        return self._idle.wait(timeout)

    def _work(self) -> None:
        while True:
            notification = self._queue.get()
            if notification is None:
                return
            for position, url in enumerate(self._urls):
                try:
                    self._send(notification, position, url)
                except Exception as exc:  # the worker must outlive any one receiver
                    metrics.NOTIFICATIONS.labels(kind=notification.kind, outcome="failed").inc()
                    log.error(
                        "notification %s to receiver #%d failed (%s)",
                        notification.kind,
                        position + 1,
                        type(exc).__name__,
                    )
            if self._queue.empty():
                self._idle.set()

    def _send(self, notification: Notification, position: int, url: str) -> bool:
        body = notification.body()
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential_jitter(multiplier=self.initial_wait, max=self.max_wait),
                reraise=True,
            ):
                with attempt:
                    request = urllib.request.Request(
                        url, data=body, method="POST", headers={"Content-Type": "application/json"}
                    )
                    with urllib.request.urlopen(request, timeout=self.timeout) as response:
                        response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else type(exc).__name__
            metrics.NOTIFICATIONS.labels(kind=notification.kind, outcome="failed").inc()
            log.warning(
                "notification %s to receiver #%d failed after %d attempts (%s)",
                notification.kind,
                position + 1,
                self.attempts,
                reason,
            )
            return False
        metrics.NOTIFICATIONS.labels(kind=notification.kind, outcome="sent").inc()
        return True
