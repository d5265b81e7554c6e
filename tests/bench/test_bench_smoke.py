"""The benchmark scripts run (tiny iteration counts) and return results of the documented shape.

No speed is asserted: benchmarks are never part of ``make test``; ``make bench`` runs them for real and
checks their targets. What is asserted here is behaviour: the shapes, the proxy's ordering and bounds,
and that a missed target makes ``python -m bench`` fail.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as bench_main
from bench import binding_cost, client_cost, cold_start, end_to_end, fan_out, instance_throughput, report
from bench.latency_proxy import LatencyProxy
from shared.messages import Outbound


def test_client_cost_shape() -> None:
    result = client_cost.run(calls=3, runs=1)
    assert set(result["actions"]) == set(client_cost.ACTIONS)
    for figures in result["actions"].values():
        for client in client_cost.CLIENTS:
            assert figures[client]["per_second"] > 0
            assert figures[client]["cpu_us_per_command"] >= 0
            low, high = figures[client]["per_second_range"]
            assert low <= figures[client]["per_second"] <= high
        assert figures["throughput_vs_sdk"] > 0 and figures["throughput_vs_requests"] > 0


def test_cold_start_shape() -> None:
    result = cold_start.run(runs=1)
    assert result["network_at_import"] is False
    assert result["function_app_ms"] > 0 and result["dependencies_ms"] > 0
    assert len(result["ratio_range"]) == 2
    assert result["importtime"]["top_own"] and result["importtime"]["top_deps"]


def test_end_to_end_shape() -> None:
    result = end_to_end.run(commands=4, runs=1)
    assert result["decisions"].get("succeeded", 0) >= 4
    assert result["bound_by"] in ("servicebus-peer", "batch-emulator")
    assert result["system_per_second"] > 0 and result["ratio_vs_bound"] > 0


def test_binding_path_shape() -> None:
    result = binding_cost.run(messages=4, runs=1)
    assert result["encode_us"] > 0 and result["decode_package_us"] > 0
    assert result["settle_grpc_ms"] > 0 and result["settle_direct_ms"] > 0
    assert "extra_per_message_ms" in result


def test_fan_out_shape() -> None:
    result = fan_out.run(jobs=2, tasks_per_job=5, small_jobs=1, runs=1)
    assert (result["tasks"], result["small_tasks"]) == (10, 5)
    for prefix in ("", "small_"):
        for name in ("expansion_s", "baseline_s", "ratio", "expansion_listing_s", "baseline_listing_s"):
            assert result[f"{prefix}{name}"] > 0 and len(result[f"{prefix}{name}_range"]) == 2
        for kind in ("expansion", "baseline"):
            assert result[f"{prefix}{kind}_rss_growth_mib"] >= 0 and result[f"{prefix}{kind}_cpu_s"] > 0
        assert result[f"{prefix}expansion_counts_s"] > 0  # jobSelect budgets come from Get Task Counts
        assert result[f"{prefix}invocations"] > 0 and result[f"{prefix}command_bytes"] > 0
    assert result["expansion_batch_calls"] > result["baseline_batch_calls"]


def test_the_fan_out_queue_stand_in_runs_selectors_and_counts_commands() -> None:
    def message(message_id: str, body: bytes) -> Outbound:
        return Outbound(body, message_id, "deleteTask")

    page = message("sel#p2", b'{"action":"deleteTask","select":{"state":"completed"},"commandId":"sel"}')
    commands = [message(f"sel/j/t{n}", b'{"action":"deleteTask","taskId":"select"}') for n in range(3)]
    queue, other = fan_out.StandInQueue(), fan_out.StandInQueue()
    assert queue.enqueue([page, *commands, page]) == 5
    assert list(queue.waiting) == [page]  # a selector message waits once (duplicate detection)
    assert (queue.commands, queue.batches, queue.body_bytes) == (3, 1, sum(len(c.body) for c in commands))
    other.enqueue(commands[::-1])
    assert other.checksum == queue.checksum  # the same messages in any order
    other.enqueue(commands[:1])
    assert other.checksum != queue.checksum


def test_instance_throughput_shape() -> None:
    result = instance_throughput.run(
        commands=6,
        runs=1,
        probes=2,
        table=(1, 2),
        table_commands_per_slot=2,
        table_min_commands=2,
        table_passes=1,
        local_driver_commands=4,
    )
    for name in ("ratio_to_bound", "commands_per_second", "cpu_ms_per_command", "bound_commands_per_second"):
        assert result[name] > 0 and len(result[f"{name}_range"]) == 2
    latency = result["latency_ms"]
    parts = latency["receive"] + latency["batch_call"] + latency["publish"] + latency["settle"]
    assert latency["per_command"] == pytest.approx(parts)
    # Through the proxies: each part is at least its two one-way delays (a latency floor, not a speed).
    assert latency["batch_call"] >= 2 * instance_throughput.BATCH_DELAY * 1000
    assert latency["publish"] >= 2 * instance_throughput.SERVICEBUS_DELAY * 1000
    assert [row["concurrency"] for row in result["concurrency_table"]] == [1, 2]
    assert result["local_queue_driver"]["commands"] == 4
    assert result["loaded_latency_ms"]["per_command"] > 0


# --- the latency proxy ----------------------------------------------------------------------------


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback echo server (each connection echoes until EOF, then closes)."""
    server = socket.create_server(("127.0.0.1", 0))

    def echo(connection: socket.socket) -> None:
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _round_trip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(payload)
        connection.shutdown(socket.SHUT_WR)
        received = b""
        while data := connection.recv(65536):
            received += data
        return received


def test_proxy_keeps_order_and_adds_its_delay_each_way(echo_port: int) -> None:
    payload = b"".join(b"%08d" % i for i in range(50_000))  # many chunks, sent without waiting
    with LatencyProxy(echo_port, 0.02, return_delay=0.03) as proxy:
        started = time.perf_counter()
        assert _round_trip(proxy.port, payload) == payload
        assert time.perf_counter() - started >= 0.05  # a floor: out and back delays both apply
        assert proxy.stats.connections == 1 and proxy.stats.bytes_out == proxy.stats.bytes_back == len(payload)


def test_proxy_connections_do_not_wait_for_each_other(echo_port: int) -> None:
    delay, connections = 0.25, 8
    with LatencyProxy(echo_port, delay) as proxy:
        results: list[bytes] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(_round_trip(proxy.port, b"c%d" % i)))
            for i in range(connections)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    assert sorted(results) == sorted(b"c%d" % i for i in range(connections))
    # Serialised, they would take connections x 2 x delay = 4 s; side by side, about 2 x delay.
    assert elapsed < connections * 2 * delay / 2


def test_proxy_forwards_a_close_after_the_data(echo_port: int) -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def answer_then_close() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(16)
            connection.sendall(b"x" * 200_000)

    threading.Thread(target=answer_then_close, daemon=True).start()
    with LatencyProxy(server.getsockname()[1], 0.01) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as c:
        c.sendall(b"request")
        received = b""
        while data := c.recv(65536):
            received += data
    server.close()
    assert received == b"x" * 200_000


def test_proxy_is_loopback_only_and_bounded(echo_port: int) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LatencyProxy(80, 0.01, target_host="192.0.2.1")
    proxy = LatencyProxy(echo_port, 0.001, lifetime=0.3).start()
    assert proxy.address.startswith("127.0.0.1:")
    deadline = time.monotonic() + 10
    while proxy.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proxy.running  # stopped by itself at the end of its lifetime


# --- targets, results and documents ---------------------------------------------------------------


def _canned(ratio: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"jobs": 4, "tasks": 4000, "small_jobs": 1, "small_tasks": 1000}
    for prefix in ("", "small_"):
        for kind in ("expansion", "baseline"):
            for name in ("_s", "_cpu_s", "_listing_s", "_own_s", "_rss_growth_mib"):
                figures[f"{prefix}{kind}{name}"] = 1.0
        figures[f"{prefix}expansion_counts_s"] = 0.1
        figures[f"{prefix}queue_peak_mib"] = 0.1
        figures[f"{prefix}ratio"] = ratio
        figures[f"{prefix}ratio_range"] = [ratio, ratio]
    return {"environment": report.environment(), "fan_out": figures}


def test_targets_are_checked_on_the_medians() -> None:
    assert report.missed(_canned(1.3)) == []
    (failed,) = report.missed(_canned(1.31))
    assert failed.subject == "fan_out" and failed.target.figure == "ratio"


def test_a_missed_target_fails_python_m_bench(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def canned(runs: int) -> dict[str, Any]:
        return {"fan_out": ("fan-out", lambda: _canned(1.5)["fan_out"])}

    monkeypatch.setattr(bench_main, "benchmarks", canned)
    assert bench_main.main(["--no-write"]) == 1
    assert "Targets missed" in capsys.readouterr().out
    monkeypatch.setattr(bench_main, "benchmarks", lambda runs: {"fan_out": ("f", lambda: _canned(1.0)["fan_out"])})
    assert bench_main.main(["--no-write"]) == 0


def test_a_benchmark_that_fails_is_recorded_and_fails_python_m_bench(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("stand-in did not start")

    def canned(runs: int) -> dict[str, Any]:
        return {
            "fan_out": ("fan-out", lambda: _canned(1.0)["fan_out"]),
            "instance_throughput": ("instance", broken),
        }

    monkeypatch.setattr(bench_main, "benchmarks", canned)
    assert bench_main.main(["--no-write"]) == 1
    out = capsys.readouterr().out
    assert "instance_throughput (failed)" in out and "not measured (the benchmark failed)" in out


def test_results_go_to_bench_files_and_docs_only_on_request(tmp_path: Path) -> None:
    results = _canned(1.1)
    report.finish(results, 1.0)
    report.write(results, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["fan_out"]["ratio"] == 1.1
    assert "4 fan-out (4,000 tasks / 4 jobs" in (tmp_path / "results.md").read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results.json", "results.md"]
    document = tmp_path / "doc.md"
    document.write_text("intro\n<!-- bench-results:start -->\nold\n<!-- bench-results:end -->\nend\n")
    report.refresh_docs(results, document)
    section = report.results_section(results)
    assert document.read_text() == f"intro\n<!-- bench-results:start -->\n{section}\n<!-- bench-results:end -->\nend\n"


def test_docs_page_has_the_results_markers() -> None:
    assert "<!-- bench-results:start -->" in report.DOCS.read_text()
