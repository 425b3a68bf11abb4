"""SHIPPER_SHARD: experiments partitioned by a stable hash, the setting parsed strictly."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from shipper.cli import main_group
from shipper.config import Shard, load_settings, parse_shard, shard_of_experiment
from shipper.errors import ConfigError
from shipper.sync.state import models_state_id

# MLflow's numeric ids and the UUID-like ids other stores use.
IDS = [str(n) for n in range(300)] + [f"exp-{n:04x}-a1b2" for n in range(200)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_every_experiment_is_in_exactly_one_shard(count: int) -> None:
    shards = [Shard(i, count) for i in range(count)]
    for experiment_id in IDS:
        owners = [s for s in shards if s.owns(experiment_id)]
        assert len(owners) == 1, (experiment_id, owners)
    if count > 1:  # and no shard is left empty by so many ids
        assert all(any(s.owns(e) for e in IDS) for s in shards)


def test_hash_is_sha1_of_the_id_not_pythons_salted_hash() -> None:
    # sha1("0") = b6589fc6..., sha1("42") = 92cfceb3...: hand-checked with `printf 0 | sha1sum`.
    assert shard_of_experiment("0", 7) == 0xB6589FC6 % 7
    assert shard_of_experiment("42", 5) == 0x92CFCEB3 % 5


def test_partition_is_the_same_in_another_process() -> None:
    here = [shard_of_experiment(e, 3) for e in IDS[:50]]
    code = (
        "from shipper.config import shard_of_experiment as s; import sys; "
        f"print(','.join(str(s(e, 3)) for e in {IDS[:50]!r}))"
    )
    # A different hash seed would change hash(); it must not change the partition.
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert other.stdout.strip() == ",".join(str(i) for i in here)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", Shard(0, 1)), ("1/2", Shard(1, 2)), (" 4 / 5 ", Shard(4, 5)), ("10/12", Shard(10, 12))],
)
def test_parse(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2", "'2' is not of the form i/n"),
        ("a/b", "'a/b' is not of the form i/n"),
        ("-1/2", "'-1/2' is not of the form i/n"),
        ("0/0", "'0/0' has n = 0; n must be at least 1"),
        ("2/2", "'2/2' has i = 2, not below n = 2"),
        ("3/2", "'3/2' has i = 3, not below n = 2"),
    ],
)
def test_bad_values_are_named_with_the_fix(text: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_shard(text)
    assert words in str(caught.value)
    assert "write it as i/n with 0 <= i < n" in str(caught.value)


def test_setting_default_is_one_poller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPPER_SHARD", raising=False)
    assert load_settings().shard_of() is None
    monkeypatch.setenv("SHIPPER_SHARD", "1/3")
    assert load_settings().shard_of() == Shard(1, 3)
    monkeypatch.setenv("SHIPPER_SHARD", "")  # empty means unset
    assert load_settings().shard_of() is None


def test_bad_setting_fails_validate_with_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPPER_SHARD", "3/3")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SHIPPER_SHARD='3/3': '3/3' has i = 3, not below n = 3" in str(caught.value)
    result = CliRunner().invoke(main_group, ["validate"])
    assert result.exit_code == 2
    assert "SHIPPER_SHARD='3/3'" in result.output


def test_models_checkpoint_id_per_shard() -> None:
    assert models_state_id(None) == "models"  # unsharded: the id it always had
    assert models_state_id(Shard(0, 2)) == "models-shard-0-of-2"
    assert models_state_id(Shard(2, 3)) == "models-shard-2-of-3"


@pytest.mark.parametrize(
    ("value", "leads"), [(None, True), ("0/1", True), ("0/3", True), ("1/3", False), ("2/3", False)]
)
def test_only_the_first_shard_leads(monkeypatch: pytest.MonkeyPatch, value: str | None, leads: bool) -> None:
    """The one poller, or shard 0 of several, writes registered versions and runs retention."""
    if value is None:
        monkeypatch.delenv("SHIPPER_SHARD", raising=False)
    else:
        monkeypatch.setenv("SHIPPER_SHARD", value)
    assert load_settings().leads_pollers() is leads
