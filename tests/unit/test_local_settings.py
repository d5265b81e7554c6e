"""local.settings.sample.json names every setting a local run reads, with values that load."""

from __future__ import annotations

import json
from pathlib import Path

from shared.config import AZURE_ONLY, LOCAL_ONLY, SETTINGS, load_settings

SAMPLE = Path(__file__).resolve().parents[2] / "local.settings.sample.json"


def _values() -> dict[str, str]:
    values: dict[str, str] = json.loads(SAMPLE.read_text())["Values"]
    return values


def test_the_sample_names_every_setting_but_the_azure_only_ones() -> None:
    values = _values()
    assert SETTINGS.keys() - AZURE_ONLY <= values.keys()
    assert not AZURE_ONLY & values.keys()


def test_the_one_environment_lists_name_real_settings() -> None:
    assert SETTINGS.keys() >= AZURE_ONLY | LOCAL_ONLY
    assert not AZURE_ONLY & LOCAL_ONLY


def test_the_sample_values_load_and_point_at_the_local_stand_ins() -> None:
    settings = load_settings(_values())
    assert settings.accounts == {"local": "http://127.0.0.1:8091"}
    assert settings.servicebus.namespace is None
    assert "127.0.0.1:5672" in (settings.servicebus.connection_string or "")


def test_the_sample_holds_no_secret_beyond_the_well_known_emulator_key() -> None:
    text = SAMPLE.read_text()
    assert "SharedAccessKey=SAS_KEY_VALUE" in text
    assert "AccountKey=" not in text
    assert "eyJ" not in text  # no token
