"""infra/check.sh, the offline gate CI runs: it passes on infra/ and fails on what it must catch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest

from tests.infra.bicep import INFRA, REPO, checkov_missing_reason

CHECK: Final = INFRA / "check.sh"


@pytest.fixture(autouse=True)
def _needs_checkov() -> None:
    reason = checkov_missing_reason()
    if reason is not None:
        pytest.skip(reason)


def _run(infra: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CHECK)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "INFRA_DIR": str(infra)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "infra"
    shutil.copytree(INFRA, target, ignore=shutil.ignore_patterns("checks", "*.sh"))
    return target


def test_infra_passes_the_gate() -> None:
    result = _run(INFRA)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "infra: OK" in result.stdout
    assert "failed 0" in result.stdout and "parsing errors 0" in result.stdout


def test_gate_fails_on_the_service_bus_rules(tmp_path: Path) -> None:
    infra = _copy(tmp_path)
    messaging = infra / "app" / "messaging.bicep"
    text = messaging.read_text(encoding="utf-8")
    for good, bad in (
        ("disableLocalAuth: true", "disableLocalAuth: false"),
        ("minimumTlsVersion: '1.2'", "minimumTlsVersion: '1.0'"),
        ("requiresDuplicateDetection: true", "requiresDuplicateDetection: false"),
        ("deadLetteringOnMessageExpiration: true", "deadLetteringOnMessageExpiration: false"),
        ("deadLetteringOnFilterEvaluationExceptions: false", "deadLetteringOnFilterEvaluationExceptions: true"),
    ):
        assert good in text
        text = text.replace(good, bad)
    messaging.write_text(text, encoding="utf-8")
    result = _run(infra)
    assert result.returncode == 1
    for check_id in (
        "CKV2_CUSTOM_SB_1",
        "CKV2_CUSTOM_SB_2",
        "CKV2_CUSTOM_SB_3",
        "CKV2_CUSTOM_SB_4",
        "CKV2_CUSTOM_SB_5",
        "CKV2_CUSTOM_SB_6",
    ):
        assert f"FAILED {check_id}" in result.stderr, result.stderr


def test_gate_fails_on_a_parse_error(tmp_path: Path) -> None:
    infra = _copy(tmp_path)
    (infra / "broken.bicep").write_text("param qs string[]\nresource x 'A/b@1' = {\n", encoding="utf-8")
    result = _run(infra)
    assert result.returncode == 1
    assert "PARSE ERROR" in result.stderr and "broken.bicep" in result.stderr


def test_gate_fails_when_a_skip_has_no_reason(tmp_path: Path) -> None:
    infra = _copy(tmp_path)
    storage = infra / "app" / "storage.bicep"
    text = storage.read_text(encoding="utf-8")
    storage.write_text(text.replace("  name: name\n", "  // checkov:skip=CKV_AZURE_3: x\n  name: name\n", 1))
    result = _run(infra)
    assert result.returncode == 1
    assert "no real justification" in result.stderr


def test_gate_fails_on_an_empty_scan(tmp_path: Path) -> None:
    empty = tmp_path / "infra"
    empty.mkdir()
    result = _run(empty)
    assert result.returncode == 1
