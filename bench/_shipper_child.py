"""`shipper <args>`, exactly the CLI, plus a report for the benchmarks.

    .venv/bin/python bench/_shipper_child.py sync --full --json

Runs `shipper.cli.main` unchanged; it only wraps `SyncEngine.run_pass` to note the pass's own wall
time and CPU time (resource.getrusage of this process: the shipper's CPU alone, not Elasticsearch's
or MLflow's) and the MLflow requests by kind (`source.requests`), and writes them as JSON to the file
named by BENCH_SHIPPER_REPORT. Startup (imports, client construction) is outside the pass and is
reported separately by the parent from the whole process (os.wait4).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    started_cpu = _cpu()
    from shipper.sync import engine

    original = engine.SyncEngine.run_pass
    path = os.environ.get("BENCH_SHIPPER_REPORT")

    def measured(self: Any, *args: Any, **kwargs: Any) -> Any:
        cpu0, wall0 = _cpu(), time.monotonic()
        summary = original(self, *args, **kwargs)
        report = {
            "pass_wall_seconds": time.monotonic() - wall0,
            "pass_cpu_seconds": _cpu() - cpu0,
            "startup_cpu_seconds": cpu0 - started_cpu,
            "requests": dict(self.source.requests),
            "summary": summary.as_dict(),
        }
        if path:
            with open(path, "w") as handle:
                json.dump(report, handle)
        return summary

    engine.SyncEngine.run_pass = measured  # type: ignore[method-assign]
    from shipper.cli import main as cli_main

    sys.argv = ["shipper", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
