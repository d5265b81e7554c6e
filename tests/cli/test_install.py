"""The tool is a console script of the project, and its id rules hold at the edges."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cli import dlq

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_declares_the_console_script_and_packages_only_the_tool_and_the_contract() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"batch-lifecycle": "cli.__main__:main"}
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["tool"]["setuptools"]["packages"] == ["cli", "shared"]


def test_make_installs_the_project_in_editable_mode() -> None:
    assert "\t$(BIN)/pip install -q --no-deps -e .\n" in (ROOT / "Makefile").read_text()


def test_the_installed_script_runs_from_anywhere(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "batch-lifecycle"
    if not script.exists():
        pytest.skip("not installed in this virtual environment: `make venv` installs it (pip install --no-deps -e .)")
    done = subprocess.run(
        [str(script), "send", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage: batch-lifecycle send" in done.stdout


def test_python_dash_m_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "dlq", "redrive", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--rate" in done.stdout


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("cmd-1", "cmd-1#redrive-1"),
        ("cmd-1#redrive-1", "cmd-1#redrive-2"),
        ("cmd-1#3", "cmd-1#3#redrive-1"),
        ("cmd-1#redrive-9#redrive-41", "cmd-1#redrive-9#redrive-42"),
        (None, "seq-7#redrive-1"),
    ],
)
def test_redrive_ids(original: str | None, expected: str) -> None:
    assert dlq.redrive_id(original, 7) == expected


def test_redrive_ids_stay_within_128_characters_and_apart() -> None:
    long_a, long_b = "a" * 120 + "-1", "a" * 120 + "-2"
    first, second = dlq.redrive_id(long_a, 1), dlq.redrive_id(long_b, 2)
    assert len(first) <= 128 and len(second) <= 128
    assert first != second
    assert first.endswith("#redrive-1")
    assert dlq.redrive_id(first, 1) != first and len(dlq.redrive_id(first, 1)) <= 128


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"action":"terminateJob","jobId":"j"}', b'{"action":"terminateJob","jobId":"j","commandId":"m-1"}'),
        (b'{ "jobId": "j" }\n', b'{ "jobId": "j","commandId":"m-1"}'),
        (b"{}", b'{"commandId":"m-1"}'),
        (b'{"commandId":"other"}', b'{"commandId":"other"}'),  # it has one: byte for byte
        (b"not json", b"not json"),
        (b"[1]", b"[1]"),
    ],
)
def test_a_body_keeps_its_command_id(body: bytes, expected: bytes) -> None:
    assert dlq.keep_command_id(body, "m-1") == expected
    if expected != body:
        assert json.loads(expected)["commandId"] == "m-1"


def test_an_unusable_message_id_is_not_written_into_the_body() -> None:
    assert dlq.keep_command_id(b"{}", "x" * 101) == b"{}"
    assert dlq.keep_command_id(b"{}", None) == b"{}"
