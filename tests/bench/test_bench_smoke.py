"""The benchmark scripts run (tiny iteration counts) and return results of the documented shape.

No timing is asserted: benchmarks are never part of ``make test``; ``make bench`` runs them for real.
"""

from __future__ import annotations

from pathlib import Path

from bench import client_cost, cold_start, end_to_end, report, retention_scale


def test_client_cost_shape() -> None:
    result = client_cost.run(calls=3, runs=1)
    assert set(result["actions"]) == set(client_cost.ACTIONS)
    for figures in result["actions"].values():
        for client in client_cost.CLIENTS:
            assert figures[client]["per_second"] > 0
            assert figures[client]["cpu_us_per_command"] >= 0
        assert figures["throughput_vs_sdk"] > 0 and figures["throughput_vs_requests"] > 0


def test_cold_start_shape() -> None:
    result = cold_start.run(runs=1)
    assert result["network_at_import"] is False
    assert result["function_app_ms"] > 0 and result["dependencies_ms"] > 0
    assert result["importtime"]["top_own"] and result["importtime"]["top_deps"]


def test_end_to_end_shape() -> None:
    result = end_to_end.run(commands=4, runs=1)
    assert result["decisions"].get("succeeded", 0) >= 4
    assert result["bound_by"] in ("servicebus-peer", "batch-emulator")
    assert result["system_per_second"] > 0 and result["ratio_vs_bound"] > 0


def test_retention_scale_shape(tmp_path: Path) -> None:
    result = retention_scale.run(jobs=2, tasks_per_job=5, runs=1)
    assert result["tasks"] == 10
    assert result["retention_s"] > 0 and result["listing_s"] > 0
    assert "retention_rss_growth_mib" in result
    results = {
        "environment": report.environment(),
        "elapsed_s": 1.0,
        "retention_scale": result,
    }
    document = tmp_path / "doc.md"
    document.write_text("intro\n<!-- bench-results:start -->\nold\n<!-- bench-results:end -->\nend\n")
    report.write(results, tmp_path, documents=(document,))
    assert (tmp_path / "results.json").exists()
    assert "retention" in (tmp_path / "results.md").read_text()
    table = report.summary_table(results)
    assert document.read_text() == f"intro\n<!-- bench-results:start -->\n{table}\n<!-- bench-results:end -->\nend\n"
