"""Settings: strict, typed, secrets never printed, every problem named with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from shipper.config import LogFormat, load_settings, log_format_asked
from shipper.errors import ConfigError


def test_defaults_are_valid_and_verify_tls() -> None:
    settings = load_settings()
    assert settings.elasticsearch_verify_certs is True
    assert settings.elasticsearch_url == "http://localhost:9200"


def test_fixed_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", "https://es.example:9200")
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_USERNAME", "elastic")
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_PASSWORD", "hunter2")
    monkeypatch.setenv("SHIPPER_KIBANA_URL", "https://kb.example:5601")
    monkeypatch.setenv("SHIPPER_WEBHOOK_SECRET", "first-secret-0001, second-secret-002")
    monkeypatch.setenv("SHIPPER_MLFLOW_EXPERIMENTS", "churn, 12")
    settings = load_settings()
    assert settings.elasticsearch_password is not None
    assert settings.elasticsearch_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert [s.get_secret_value() for s in settings.webhook_secrets()] == [
        "first-secret-0001",
        "second-secret-002",
    ]
    assert settings.mlflow_experiments == ["churn", "12"]


def test_unknown_environment_key_is_named_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSERACH_URL", "http://x:9200")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SHIPPER_ELASTICSERACH_URL: unknown setting; did you mean SHIPPER_ELASTICSEARCH_URL?" in str(
        caught.value
    )


def test_variables_of_the_stack_and_the_test_suite_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_STACK_STATE_DIR", "/tmp/x")
    monkeypatch.setenv("SHIPPER_TEST_BACKEND", "docker")
    load_settings()  # no error: they belong to scripts/stack and the tests
    monkeypatch.setenv("SHIPPER_TESTBACKEND", "docker")
    with pytest.raises(ConfigError, match="SHIPPER_TESTBACKEND: unknown setting"):
        load_settings()


def test_every_problem_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_URL", "es.example:9200")
    monkeypatch.setenv("SHIPPER_BULK_MAX_ACTIONS", "0")
    monkeypatch.setenv("SHIPPER_NOPE", "1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert "SHIPPER_NOPE" in text
    assert "SHIPPER_ELASTICSEARCH_URL" in text and "scheme included" in text
    assert "SHIPPER_BULK_MAX_ACTIONS" in text


def test_log_format_is_read_alone_when_the_rest_does_not_validate() -> None:
    # The final error of a failed validation is printed in this format, so it is read on its own.
    broken = {"SHIPPER_LOG_FORMAT": " JSON ", "SHIPPER_BULK_MAX_ACTIONS": "many", "SHIPPER_NOPE": "1"}
    assert log_format_asked(broken) is LogFormat.JSON
    assert log_format_asked({"SHIPPER_LOG_FORMAT": "text"}) is LogFormat.TEXT
    assert log_format_asked({"SHIPPER_LOG_FORMAT": "xml"}) is None
    assert log_format_asked({}) is None


def test_auth_methods_are_exclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_API_KEY", "abc")
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_USERNAME", "elastic")
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_PASSWORD", "pw")
    with pytest.raises(ConfigError, match="mutually exclusive"):
        load_settings()


def test_username_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_USERNAME", "elastic")
    with pytest.raises(ConfigError, match="go together"):
        load_settings()


def test_missing_ca_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_CA_CERTS", str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="not a readable file"):
        load_settings()


def test_config_file_with_environment_winning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "shipper.toml"
    path.write_text('elasticsearch_url = "http://from-file:9200"\nretention_days = 30\n')
    monkeypatch.setenv("SHIPPER_RETENTION_DAYS", "31")
    settings = load_settings(path)
    assert settings.elasticsearch_url == "http://from-file:9200"
    assert settings.retention_days == 31


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    path = tmp_path / "shipper.toml"
    path.write_text("retension_days = 3\n")
    with pytest.raises(ConfigError, match="did you mean retention_days"):
        load_settings(path)


def test_validate_masks_secrets_and_exits_2_on_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_ELASTICSEARCH_API_KEY", "very-secret-key")
    ok = CliRunner().invoke(main_group, ["validate"])
    assert ok.exit_code == 0, ok.output
    assert "very-secret-key" not in ok.output
    assert "SHIPPER_ELASTICSEARCH_API_KEY=**********" in ok.output
    monkeypatch.setenv("SHIPPER_LOG_LEVEL", "LOUD")
    bad = CliRunner().invoke(main_group, ["validate"])
    assert bad.exit_code == 2
    assert "SHIPPER_LOG_LEVEL" in bad.output


def test_every_command_has_help() -> None:
    for command in ("setup", "sync", "run", "validate", "check"):
        result = CliRunner().invoke(main_group, [command, "--help"])
        assert result.exit_code == 0
        assert "Usage:" in result.output
