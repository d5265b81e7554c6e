"""The local host reads the lock renewal limit from host.json, as the Functions host does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.host import ROOT, _max_lock_renewal, timespan_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:05:00", 300.0), ("00:00:00.80", 0.8), ("1.02:00:30", 93630.0), ("00:01:30.5", 90.5)],
)
def test_timespans_are_read_as_dotnet_writes_them(text: str, seconds: float) -> None:
    assert timespan_seconds(text) == seconds


def test_the_repository_host_json_gives_five_minutes() -> None:
    expected = json.loads((ROOT / "host.json").read_text())["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"]
    assert _max_lock_renewal(ROOT / "host.json") == timespan_seconds(expected) == 300.0


def test_a_missing_setting_falls_back_to_the_hosts_default(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    assert _max_lock_renewal(tmp_path / "host.json") == 300.0
