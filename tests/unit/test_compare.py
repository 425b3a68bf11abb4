"""`shipper compare`'s pure part: hits of `mlops-models` in, the comparison table out (golden files
under tests/golden/compare/, written by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from shipper.compare import comparison, dataset_names, metric_keys, query, render_text, version_key

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "compare"


def hits() -> list[dict[str, object]]:
    return list(json.loads((GOLDEN / "hits.json").read_text()))


def test_table_of_every_metric_in_numeric_version_order() -> None:
    expected = json.loads((GOLDEN / "expected.json").read_text())
    assert comparison("churn", hits()) == expected


def test_chosen_metrics_in_their_order_with_nulls_where_a_version_lacks_one() -> None:
    table = comparison("churn", hits(), ["grad_norm", "accuracy"])
    assert table == json.loads((GOLDEN / "expected-accuracy-grad.json").read_text())
    assert list(table["versions"][0]["metrics"]) == ["grad_norm", "accuracy"]


def test_json_output_is_strict_json_with_nonfinite_values_as_strings() -> None:
    text = orjson.dumps(comparison("churn", hits())).decode()
    assert "NaN" not in text.replace('"NaN"', "")  # no bare NaN token, which JSON does not allow
    assert json.loads(text)["versions"][1]["metrics"]["grad_norm"] == "NaN"
    assert json.loads(text)["versions"][3]["metrics"]["grad_norm"] == "Infinity"
    assert json.loads(text)["versions"][0]["metrics"]["val.loss"] == "-Infinity"


def test_float_nonfinite_values_in_source_become_strings() -> None:
    table = comparison(
        "m",
        [
            {
                "_source": {
                    "ml": {"model": {"name": "m", "version": "1"}},
                    "mlflow": {"metrics": {"a": float("nan"), "b": float("-inf")}},
                }
            }
        ],
    )
    assert table["versions"][0]["metrics"] == {"a": "NaN", "b": "-Infinity"}


def test_versions_sort_as_numbers_then_other_strings() -> None:
    assert sorted(["10", "9", "b", "1", "a", "100"], key=version_key) == ["1", "9", "10", "100", "a", "b"]


def test_text_table() -> None:
    assert render_text(comparison("churn", hits())) + "\n" == (GOLDEN / "expected.txt").read_text()


def test_query_excludes_logged_models_and_sorts_by_the_numeric_version() -> None:
    body = query("churn")
    assert body["query"]["bool"]["filter"] == [{"term": {"ml.model.name": "churn"}}]
    assert body["query"]["bool"]["must_not"] == [{"term": {"ml.model.kind": "logged"}}]
    assert list(body["sort"][0]) == ["ml.model.version_number"]


def test_one_dataset_per_version_with_empty_values_where_a_version_was_not_evaluated() -> None:
    table = comparison("churn", hits(), dataset="eval-a")
    assert table == json.loads((GOLDEN / "expected-eval-a.json").read_text())
    # the source run's metrics are there as before
    assert table["versions"][1]["metrics"] == comparison("churn", hits())["versions"][1]["metrics"]


def test_text_table_of_one_dataset() -> None:
    table = comparison("churn", hits(), dataset="eval-a")
    assert render_text(table, dataset="eval-a") + "\n" == (GOLDEN / "expected-eval-a.txt").read_text()


def test_dataset_names_and_their_metric_keys() -> None:
    table = comparison("churn", hits())
    assert dataset_names(table) == ["eval-a", "eval-b"]
    assert metric_keys(table, "eval-b") == ["accuracy", "grad_norm"]
    assert dataset_names(comparison("churn", hits(), dataset="nowhere")) == []
