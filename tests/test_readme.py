"""The README's generated tables must stay equal to the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from shared import config, policies, policy

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", README.read_text(), re.DOTALL)
    assert match, f"README.md lacks the {name} markers"
    return match.group(1)


def test_policy_table_matches_code() -> None:
    assert _section("policy-table") == policy.markdown_table()


def test_settings_table_matches_code() -> None:
    assert _section("settings-table") == config.markdown_table()


def test_first_screen_gives_exactly_the_two_commands() -> None:
    first_screen = README.read_text().split("---", 1)[0]
    commands = re.findall(r"^make \w+", first_screen, re.MULTILINE)
    assert commands == ["make run", "make test"]


def test_benchmark_results_live_outside_the_readme() -> None:
    """`make bench` writes bench/results.*, `make bench-docs` docs/benchmarks.md; the README only points there."""
    text = README.read_text()
    assert "bench-results:start" not in text
    assert "(docs/benchmarks.md)" in text


def test_policy_templates_match_code() -> None:
    assert _section("policy-templates") == policies.templates_markdown()
