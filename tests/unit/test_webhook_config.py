"""Settings of the webhook, enrichment and notifications; `shipper serve` refuses an unsafe start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from shipper.config import load_settings
from shipper.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings()
    assert settings.webhook_port == 8080
    assert settings.webhook_max_events == 5000
    assert settings.webhook_write_budget_seconds < 30  # Event Grid waits 30 s for an answer
    assert settings.notify_on == ["started", "completed", "failed", "model_registered"]
    assert settings.notify_url_list() == []


def test_lists_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = "https://hooks.slack.example/services/T0/B0/tokentokentoken"
    monkeypatch.setenv("SHIPPER_NOTIFY_URLS", f"{hook}, https://teams.example/webhook/abc")
    monkeypatch.setenv("SHIPPER_NOTIFY_ON", "completed,failed")
    monkeypatch.setenv("SHIPPER_WEBHOOK_ALLOWED_TOPICS", "/subscriptions/a/x, /subscriptions/b/y")
    settings = load_settings()
    assert settings.notify_url_list()[0] == hook
    assert settings.notify_on == ["completed", "failed"]
    assert settings.webhook_allowed_topics == ["/subscriptions/a/x", "/subscriptions/b/y"]
    assert "tokentoken" not in repr(settings)


def test_unknown_notification_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_NOTIFY_ON", "completed,finished")
    with pytest.raises(ConfigError, match="finished"):
        load_settings()


def test_notify_url_problem_does_not_print_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_NOTIFY_URLS", "hooks.example/services/T0/B0/secrettoken")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SHIPPER_NOTIFY_URLS" in str(caught.value) and "secrettoken" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "needs"),
    [
        ("SHIPPER_WEBHOOK_ENTRA_TENANT_ID", "t", "SHIPPER_WEBHOOK_ENTRA_AUDIENCE"),
        ("SHIPPER_WEBHOOK_ENTRA_AUDIENCE", "api://x", "SHIPPER_WEBHOOK_ENTRA_TENANT_ID"),
    ],
)
def test_entra_settings_go_together(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needs: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=needs):
        load_settings()


def test_validate_masks_the_webhook_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_WEBHOOK_SECRET", "very-secret-value")
    monkeypatch.setenv("SHIPPER_NOTIFY_URLS", "https://hooks.example/services/T/B/secrettoken")
    result = CliRunner().invoke(main_group, ["validate"])
    assert result.exit_code == 0, result.output
    assert "SHIPPER_WEBHOOK_SECRET=**********" in result.output
    assert "very-secret-value" not in result.output and "secrettoken" not in result.output


def test_serve_refuses_to_start_without_credentials() -> None:
    result = CliRunner().invoke(main_group, ["serve", "--port", "1"])
    assert result.exit_code == 2
    assert "SHIPPER_WEBHOOK_SECRET" in result.output and "--insecure-no-auth" in result.output


def test_reconcile_needs_a_workspace() -> None:
    result = CliRunner().invoke(main_group, ["reconcile"])
    assert result.exit_code == 2
    assert "--workspace" in result.output


def test_help_of_the_new_commands() -> None:
    for command in ("serve", "reconcile"):
        result = CliRunner().invoke(main_group, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("value", ["short", "long-enough-secret-1,tooshort"])
def test_validate_refuses_a_short_webhook_secret(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SHIPPER_WEBHOOK_SECRET", value)
    result = CliRunner().invoke(main_group, ["validate"])
    assert result.exit_code == 2, result.output
    assert "SHIPPER_WEBHOOK_SECRET" in result.output and "at least 16" in result.output
    assert "openssl rand -hex 32" in result.output
    assert "short" not in result.output.replace("shorter", "")  # never the value itself


def test_connection_bounds_and_entra_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.webhook_header_timeout_seconds < settings.webhook_body_timeout_seconds < 30
    assert settings.webhook_max_request_memory_bytes >= settings.webhook_max_body_bytes
    monkeypatch.setenv("SHIPPER_WEBHOOK_ENTRA_ALLOWED_APPLICATIONS", "app-1, app-2")
    assert load_settings().webhook_entra_allowed_applications == ["app-1", "app-2"]
    monkeypatch.setenv("SHIPPER_WEBHOOK_MAX_REQUEST_MEMORY_BYTES", str(1024 * 1024))
    with pytest.raises(ConfigError, match="raise it to at least 2097152"):
        load_settings()


def test_an_azure_credential_is_possible_only_where_something_could_give_one(tmp_path: Path) -> None:
    from shipper.webhook.server import AZURE_VM_ASSET_TAG, azure_credential_possible

    nothing = tmp_path / "absent"
    other_vendor = tmp_path / "asset-tag"
    other_vendor.write_text("Default string\n")
    azure_vm = tmp_path / "azure-asset-tag"
    azure_vm.write_text(AZURE_VM_ASSET_TAG + "\n")
    cache = tmp_path / "msal.cache"
    cache.write_text("{}")

    def possible(
        environ: dict[str, str], tools: tuple[str, ...] = (), token_cache: Path = nothing, tag: Path = nothing
    ) -> bool:
        return azure_credential_possible(
            environ, lambda t: f"/usr/bin/{t}" if t in tools else None, token_cache, tag
        )

    assert not possible({})
    assert not possible({"AZURE_CLIENT_ID": " ", "PATH": "/usr/bin"}, tag=other_vendor)
    assert possible({"AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001"})  # a managed identity's
    assert possible({"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"})
    assert possible({"IDENTITY_ENDPOINT": "http://169.254.169.254/metadata/identity/oauth2/token"})
    assert possible({}, tools=("az",))
    assert possible({}, token_cache=cache)
    assert possible({}, tag=azure_vm)


def test_serve_without_any_azure_credential_does_not_import_azure_identity(tmp_path: Path) -> None:
    """azure-identity costs about 0.6 s of CPU to import: a machine that cannot have a credential
    (none of the above) is told so at start without it."""
    script = (
        "import sys\n"
        "from shipper.config import Settings\n"
        "from pathlib import Path\n"
        "from shipper.webhook import server\n"
        "from shipper.webhook.server import build_webhook\n"
        "server.ASSET_TAG_FILE = Path('/nonexistent')  # hosted CI runners are Azure VMs\n"
        "hook = build_webhook(Settings(webhook_secret='a' * 32), sync_on_terminal=False)\n"
        "hook.stop()\n"
        "print(hook.enricher is None, 'azure.identity' in sys.modules, 'azure.ai.ml' in sys.modules)\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "SHIPPER_", "IDENTITY_", "MSI_"))
    }
    env.update(PATH=str(tmp_path), HOME=str(tmp_path))  # no az, azd or pwsh; no token cache
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False"], done.stdout
    assert "job enrichment is off: no Azure credential is configured" in done.stderr
