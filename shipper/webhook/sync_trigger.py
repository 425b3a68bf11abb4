"""An MLflow sync pass as soon as an Azure ML run ends.

An Azure ML job's name is its MLflow run id, and its metrics live in the workspace's MLflow
tracking server (MLFLOW_TRACKING_URI). When a run event with a terminal status (Completed, Failed,
Canceled) is written, `SyncTrigger.request` asks for a pass; one background thread runs them, one
at a time, and requests that arrive during a pass are coalesced into the next one. The final
metrics and status of the run then land in the same `mlops-runs` document as the events (one
`_id`), without waiting for `shipper run`'s next poll.

The pass is an ordinary `SyncEngine.run_pass()` with the configured experiment filters, not one
restricted to the run's experiment: the models checkpoint is shared by all experiments, so a
restricted pass would take the other experiments' logged models for deleted. A pass that finds
nothing changed costs a listing of runs (see shipper.sync.engine's cost model).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from shipper import telemetry as metrics

log = logging.getLogger(__name__)


class SyncTrigger:
    def __init__(self, make_engine: Callable[[], Any]) -> None:
        self._make_engine = make_engine
        self._engine: Any = None
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.reasons: list[str] = []
        self.passes = 0

    def request(self, run_id: str, experiment: str | None = None) -> None:
        with self._lock:
            self.reasons.append(run_id)
            self._idle.clear()
            self._wanted.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="sync-trigger", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float = 60.0) -> bool:
        return self._idle.wait(timeout)

    def _work(self) -> None:
        while True:
            self._wanted.wait()
            if self._stop.is_set():
                return
            with self._lock:
                self._wanted.clear()
                runs, self.reasons = self.reasons, []
            try:
                if self._engine is None:
                    self._engine = self._make_engine()
                summary = self._engine.run_pass(stop=self._stop)
                self.passes += 1
                metrics.SYNC_TRIGGERS.labels(outcome="ok").inc()
                log.info("sync pass for ended runs %s: %s", ", ".join(runs[:5]), summary.line())
            except Exception as exc:
                metrics.SYNC_TRIGGERS.labels(outcome="failed").inc()
                log.error("sync pass for ended runs %s failed: %s", ", ".join(runs[:5]), exc)
                self._engine = None  # rebuilt next time (e.g. MLflow came back)
            with self._lock:
                if not self._wanted.is_set():
                    self._idle.set()
