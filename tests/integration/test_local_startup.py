"""A bad setting stops the local host at start-up with one line and a non-zero exit.

In Azure the same check fails every invocation fast (the settings are read once per process and the
error names the setting); locally ``make run`` must refuse to start instead of failing per message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FREE_PORTS = ["--batch-port", "0", "--identity-port", "0", "--servicebus-port", "0", "--http-port", "0"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("RETRY_MAX_ATTEMPTS", "0", "error: setting RETRY_MAX_ATTEMPTS=0 must be between 1 and 100"),
        ("RETRY_MAX_ATTEMPTS", "many", "error: setting RETRY_MAX_ATTEMPTS='many' must be a whole number"),
        ("DECISION_OVERRIDES", '{"terminateTask:X": "maybe"}', "error: setting DECISION_OVERRIDES: 'terminateTask:X'"),
        ("DECISION_OVERRIDES", "[1]", "error: setting DECISION_OVERRIDES must be a JSON object"),
        ("SERVICEBUS_TIMEOUT_SECONDS", "0", "error: setting SERVICEBUS_TIMEOUT_SECONDS=0.0 must be between 0.5"),
        ("ALERT_MAX_COMMANDS", "-1", "error: setting ALERT_MAX_COMMANDS=-1 must be between 1 and 10000"),
        ("RETENTION_SCHEDULE", "0 3 * * *", "error: setting RETENTION_SCHEDULE='0 3 * * *' must be an NCRONTAB"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line(name: str, value: str, expected: str) -> None:
    env = {**os.environ, name: value}
    done = subprocess.run(
        [sys.executable, "-m", "local", "run", "--no-demo", *FREE_PORTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(expected)
    assert "Traceback" not in done.stdout + done.stderr
