"""Messages in our own words: pure functions, hand-written expected output."""

from __future__ import annotations

import pytest

from shipper import config
from shipper.config import mlflow_uri_problem
from shipper.errors import summarise_body
from shipper.logs import final_error


def test_an_html_answer_is_summarised_by_its_title() -> None:
    page = b"<!doctype html>\n<html><head><title>502 Bad\n Gateway</title></head><body>nginx</body></html>"
    assert summarise_body(page) == "an HTML page titled '502 Bad Gateway'"
    assert summarise_body("<html><body>no title</body></html>") == "an HTML page"
    assert summarise_body('{"error": "x"}') == '\'{"error": "x"}\''
    assert summarise_body("a" * 300) == repr("a" * 200 + "...")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://mlflow:5000", None),
        ("https://mlflow.example/prefix", None),
        ("databricks", None),
        ("file:///tmp/mlruns", None),
        ("/tmp/mlruns", None),
        ("http://mlflow:port", "MLFLOW_TRACKING_URI='http://mlflow:port' has a port that is not a number"),
        ("htps://mlflow", "did you mean https://?"),
        ("ftp://mlflow", "no tracking store for the scheme 'ftp'"),
    ],
)
def test_tracking_uri_problems(uri: str, expected: str | None) -> None:
    problem = mlflow_uri_problem(uri)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_azureml_uri_with_and_without_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    good = (
        "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/g/providers/"
        "Microsoft.MachineLearningServices/workspaces/w"
    )
    monkeypatch.setattr(config, "_plugin_schemes", lambda: set())
    assert "pip install 'shipper[azure]'" in (mlflow_uri_problem(good) or "")
    monkeypatch.setattr(config, "_plugin_schemes", lambda: {"azureml"})
    assert mlflow_uri_problem(good) is None
    assert "not a workspace's MLflow URI" in (mlflow_uri_problem("azureml://nope") or "")


def test_the_final_error_line() -> None:
    assert final_error("it broke; fix it", "text", 3, "ConnectivityError") == "error: it broke; fix it"
    line = final_error("it broke; fix it", "json", 3, "ConnectivityError")
    assert '"message":"it broke; fix it"' in line and '"process.exit_code":3' in line


def test_client_library_warnings_stay_below_the_default_level(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from shipper import logs

    logs.configure("text", "INFO")
    logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=6)) after connection broken")
    logging.getLogger("mlflow.utils.rest_utils").warning("a client's own warning")
    logging.getLogger("py.warnings").warning("a library's deprecation")  # where captured warnings go
    logging.getLogger("shipper.sync").warning("ours")
    err = capsys.readouterr().err
    assert "ours" in err
    assert "Retrying" not in err and "client's own" not in err and "deprecation" not in err
    logs.configure("text", "DEBUG")  # and all of them where asked for
    logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=5))")
    assert "Retrying" in capsys.readouterr().err
    logs.configure("text", "INFO")
    logging.captureWarnings(False)


def test_a_password_in_a_uri_is_never_printed() -> None:
    assert config.redact_uri("https://ann:s3cret@mlflow:5000/x") == "https://ann:***@mlflow:5000/x"
    assert config.redact_uri("https://mlflow:5000") == "https://mlflow:5000"
    problem = mlflow_uri_problem("htp://ann:s3cret@mlflow")
    assert problem is not None and "s3cret" not in problem
