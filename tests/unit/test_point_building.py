"""The fast paths of point building give what the plain ones give: the per-run action builder the
golden documents, the integer timestamp formatter datetime's own text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from shipper.sources.records import Experiment, MetricPoint, Run
from shipper.transforms.mlflow_docs import (
    ModelLink,
    iso,
    metric_point_actions,
    metric_point_id,
    model_links,
)
from tests.unit.test_mlflow_transforms import GOLDEN, _load


def _datetime_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# From 1900 to 2100: where a float of seconds still holds every millisecond exactly.
@given(st.integers(min_value=-2_208_988_800_000, max_value=4_102_444_800_000))
def test_iso_is_datetimes_text(ms: int) -> None:
    assert iso(ms) == _datetime_iso(ms)


def test_iso_edges() -> None:
    for ms in (0, -1, -999, -1000, -1001, 86_399_999, 86_400_000, 951_782_400_000, 1_700_000_000_123):
        assert iso(ms) == _datetime_iso(ms), ms
    assert iso(None) is None


def test_actions_of_a_run_at_once_are_the_golden_documents() -> None:
    g = _load()
    link = model_links(g["versions"])[g["run"].id]
    actions = metric_point_actions(g["run"], g["experiment"], link, g["points"])
    expected = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))["metric_points"]
    assert json.loads(json.dumps(actions, ensure_ascii=False)) == expected


def test_actions_share_only_what_is_the_same() -> None:
    run = Run(id="r1", name="one", experiment_id="1", status="FINISHED", start_time=0, end_time=1)
    points = [MetricPoint("loss", 0.5, 1000 * i, i) for i in range(3)] + [MetricPoint("acc", 1.0, 5, 0)]
    actions = metric_point_actions(run, Experiment("1", "exp"), ModelLink(), points)
    assert [a["_id"] for a in actions] == [metric_point_id("r1", p) for p in points]
    assert len({a["_id"] for a in actions}) == 4
    metrics = [a["_source"]["mlflow"]["metric"] for a in actions]
    assert metrics[0] is not metrics[1] and metrics[3] == {"key": "acc", "step": 0, "value": 1.0}
    assert "ml" not in actions[0]["_source"]
