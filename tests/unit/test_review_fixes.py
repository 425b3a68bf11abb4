"""Bugs found in review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shipper import telemetry
from shipper.config import Settings
from shipper.sources.mlflow_tracking import UNKNOWN, run_id_list, run_record
from shipper.sync.engine import SyncEngine

REPO = Path(__file__).resolve().parents[2]


def test_azure_ml_run_ids_are_searched_for() -> None:
    ids = [
        "0f3c9a2be4d54a7f8f0c1d2e3f405162",
        "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5",
        "sharp_tomato_3xk",
    ]
    assert run_id_list(ids) == ", ".join(f"'{run_id}'" for run_id in ids)
    # An id that cannot be quoted in a filter is left to a request of its own, never spliced in.
    assert run_id_list(["it's", "a) OR (1=1"]) == ""


def _client_run(data: Any) -> Any:
    info = SimpleNamespace(
        run_id="r1",
        run_name="n",
        experiment_id="1",
        status="RUNNING",
        start_time=1,
        end_time=None,
        user_id="u",
        lifecycle_stage="active",
        artifact_uri=None,
    )
    return SimpleNamespace(info=info, data=data)


def test_latest_metrics_without_their_time_are_marked_unknown_not_zero() -> None:
    data = SimpleNamespace(params={}, tags={}, metrics={"loss": 0.5})  # no _metric_objs
    run = run_record(_client_run(data))
    assert run.latest_exact is False
    assert (run.latest_metrics["loss"].timestamp, run.latest_metrics["loss"].step) == (UNKNOWN, UNKNOWN)
    metric = SimpleNamespace(key="loss", value=0.5, timestamp=1700000000000, step=7)
    exact = run_record(_client_run(SimpleNamespace(params={}, tags={}, metrics={}, _metric_objs=[metric])))
    assert exact.latest_exact is True
    assert exact.latest_metrics["loss"].timestamp == 1700000000000


class _BrokenSource:
    def experiments(self) -> Any:
        raise ConnectionError("tracking server went away")


def test_a_failed_pass_is_counted() -> None:
    failed = telemetry.SYNC_PASSES.labels(outcome="failed")
    before = failed._value.get()
    engine = SyncEngine(_BrokenSource(), None, None, Settings())  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        engine.run_pass(full=True)
    assert failed._value.get() == before + 1


def test_no_handler_lists_exception_beside_its_own_subclasses() -> None:
    """`except (ShipperError, Exception)` reads as if the two were handled differently."""
    found = []
    for path in (REPO / "shipper").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ExceptHandler) and isinstance(node.type, ast.Tuple):
                names = [getattr(e, "id", getattr(e, "attr", "")) for e in node.type.elts]
                if "Exception" in names and len(names) > 1:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []


def test_the_suite_collects_without_the_azure_extra(tmp_path: Path) -> None:
    """`pip install '.[test]'` has no marshmallow unless the test extra brings it: a warning filter
    naming marshmallow's class made pytest end in INTERNALERROR. Simulated by hiding marshmallow."""
    hidden = tmp_path / "hide"
    (hidden / "marshmallow").mkdir(parents=True)
    (hidden / "marshmallow" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hidden), str(REPO)]))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_azureml_jobs.py",
            "-k",
            "classify",  # tests that need azure-core only
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "INTERNALERROR" not in result.stdout + result.stderr, textwrap.shorten(result.stdout, 2000)
    assert result.returncode == 0, result.stdout[-2000:]


def test_the_test_extra_installs_what_the_tests_import() -> None:
    from importlib.metadata import requires

    test_extra = [r for r in requires("shipper") or [] if 'extra == "test"' in r]
    assert any(r.startswith(("azure-ai-ml", "shipper[azure]")) for r in test_extra), test_extra


def test_commands_import_only_what_they_need() -> None:
    """Start-up: `validate` imports no client library; the sync path reads a plain tracking server
    without importing `mlflow` (seconds of start-up). Measured by bench/startup.py."""
    probe = textwrap.dedent(
        """
        import sys
        from shipper.cli import main_group
        try:
            main_group(["validate"], standalone_mode=False)
        except SystemExit:
            pass
        heavy = {"mlflow", "elasticsearch", "fastapi"}
        after_validate = sorted({m.split(".")[0] for m in sys.modules} & heavy)
        from shipper.sources.mlflow_tracking import MlflowSource
        from shipper.sync.engine import SyncEngine
        MlflowSource("http://127.0.0.1:9")
        print(after_validate, "mlflow" in sys.modules)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPPER_", "MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert result.stdout.split("\n")[-2] == "[] False", result.stdout + result.stderr
