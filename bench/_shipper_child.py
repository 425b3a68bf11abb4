"""`shipper <args>`, exactly the CLI, plus a report for the benchmarks.

    .venv/bin/python bench/_shipper_child.py sync --full --json

Runs `shipper.cli.main` unchanged; it only wraps `SyncEngine.run_pass` to note the pass's own wall
time and CPU time (resource.getrusage of this process: the shipper's CPU alone, not Elasticsearch's
or MLflow's) and the MLflow requests by kind (`source.requests`), and writes them as JSON to the file
named by BENCH_SHIPPER_REPORT. Startup (imports, client construction) is outside the pass and is
reported separately by the parent from the whole process (os.wait4).

Two more figures, for the report only:
- `chain_cpu_seconds`: the CPU that other processes spent during the pass, read from
  /proc/<pid>/stat (utime + stime) of each pid in BENCH_CHAIN_PIDS (JSON: {"mlflow": [pids],
  "elasticsearch": [pids]}) at the pass's start and end: the whole chain's cost, not the shipper's alone.
- `vmhwm_mb`: this process's peak resident memory, VmHWM of /proc/self/status read at exit. It belongs
  to this process's own address space, which exec started afresh; `ru_maxrss` (os.wait4) instead
  keeps the peak of the process that forked it (Linux carries it across exec), i.e. the benchmark's.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _chain(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of processes (those gone since are left out)."""
    found = {}
    for group, members in pids.items():
        total = 0
        for pid in members:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        found[group] = total / TICKS
    return found


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    started_cpu = _cpu()
    from shipper.sync import engine

    original = engine.SyncEngine.run_pass
    path = os.environ.get("BENCH_SHIPPER_REPORT")
    chain_pids = json.loads(os.environ.get("BENCH_CHAIN_PIDS") or "{}")
    if os.environ.get("BENCH_GC_YOUNG"):  # measuring the collector's setting
        engine.GC_YOUNG_THRESHOLD = int(os.environ["BENCH_GC_YOUNG"])
    report: dict[str, Any] = {}

    def measured(self: Any, *args: Any, **kwargs: Any) -> Any:
        chain0 = _chain(chain_pids)
        cpu0, wall0 = _cpu(), time.monotonic()
        summary = original(self, *args, **kwargs)
        cpu1, wall1 = _cpu(), time.monotonic()
        chain1 = _chain(chain_pids)
        report.update(
            {
                "pass_wall_seconds": wall1 - wall0,
                "pass_cpu_seconds": cpu1 - cpu0,
                "startup_cpu_seconds": cpu0 - started_cpu,
                "chain_cpu_seconds": {group: chain1[group] - chain0[group] for group in chain0},
                "requests": dict(self.source.requests),
                "summary": summary.as_dict(),
            }
        )
        _write()
        return summary

    def _write() -> None:
        if path:
            with open(path, "w") as handle:
                json.dump(report, handle)

    def at_exit() -> None:
        report["vmhwm_mb"] = _vmhwm_mb()
        _write()

    atexit.register(at_exit)

    engine.SyncEngine.run_pass = measured  # type: ignore[method-assign]
    from shipper.cli import main as cli_main

    sys.argv = ["shipper", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
