"""What every localisation method receives in `mitigate rca eval`: per candidate and signal, the samples
of the reference window and of the fault window, read back from a real Prometheus by range queries
(one query per injection: every signal, each labelled with its candidate and its name).

A signal's samples sit on the query's step grid, NaN where Prometheus had nothing (a gap), so that the
methods that correlate or regress series see them aligned. Nothing about the injection but its start
time (the incident's start) is used to build them.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RATE = "30s"


def _rate(counter: str) -> str:
    return f"rate({counter}[{RATE}])"


def _mean(histogram: str) -> str:
    return f"{_rate(histogram + '_sum')} / {_rate(histogram + '_count')}"


# signal -> [(expression, the label naming the candidate)]: a pod's own series carry `pod`, a node's
# `node`; what a caller measures about its callee carries the callee in `replica` or `upstream`.
SIGNALS: dict[str, list[tuple[str, str]]] = {
    "cpu_cores": [(_rate("container_cpu_usage_seconds_total"), "pod"), (_rate("node_cpu_busy_seconds_total"), "node")],
    "memory_bytes": [("container_memory_working_set_bytes", "pod"), ("node_memory_used_bytes", "node")],
    "network_rx_bytes_per_s": [
        (_rate("container_network_receive_bytes_total"), "pod"),
        (_rate("node_network_receive_bytes_total"), "node"),
    ],
    "network_tx_bytes_per_s": [(_rate("container_network_transmit_bytes_total"), "pod")],
    "disk_io_util": [(_rate("container_fs_io_time_seconds_total"), "pod")],
    "restarts": [("kube_pod_container_status_restarts_total", "pod")],
    "gpu_util": [("DCGM_FI_DEV_GPU_UTIL", "pod")],
    "gpu_memory_bytes": [("DCGM_FI_DEV_FB_USED * 2^20", "pod")],
    "gpu_power_w": [("DCGM_FI_DEV_POWER_USAGE", "pod")],
    "ttft_s": [(_mean("vllm:time_to_first_token_seconds"), "pod")],
    "tpot_s": [(_mean("vllm:time_per_output_token_seconds"), "pod")],
    "e2e_s": [(_mean("vllm:e2e_request_latency_seconds"), "pod")],
    "tokens_per_s": [(_rate("vllm:generation_tokens_total"), "pod")],
    "queue": [("vllm:num_requests_waiting", "pod")],
    "kv_cache": [("vllm:gpu_cache_usage_perc", "pod")],
    # The latency a candidate's callers see (everything behind it, and the way to it), and its request rate.
    "latency_s": [
        (_mean("nginx_http_request_duration_seconds"), "pod"),
        (_mean("nginx_upstream_response_time_seconds"), "upstream"),
        (_mean("ray_serve_replica_request_latency_seconds"), "replica"),
    ],
    # Requests answered per second, counted where the latency is (the weights of a latency decomposition).
    "requests_per_s": [
        (_rate("nginx_http_requests_total"), "pod"),
        (_rate("nginx_upstream_response_time_seconds_count"), "upstream"),
        (_rate("ray_serve_replica_request_latency_seconds_count"), "replica"),
    ],
    "retransmits_per_s": [(_rate("node_netstat_Tcp_RetransSegs"), "node")],
    "cpu_pressure": [(_rate("node_pressure_cpu_waiting_seconds_total"), "node")],
}


def one_query() -> str:
    """Every signal in one PromQL expression; each series labelled `signal` and `candidate`."""
    parts = []
    for signal, sources in SIGNALS.items():
        for expression, label in sources:
            named = f'label_replace(({expression}), "candidate", "$1", "{label}", "(.+)")'
            parts.append(f'label_replace({named}, "signal", "{signal}", "", "")')
    return " or ".join(parts)


QUERY = one_query()


def windows_for(
    prom: Any, start: float, pre_s: int, fault_s: int, step_s: int, candidates: tuple[str, ...]
) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """Per candidate and signal, the reference and the fault window on the step grid (NaN: no sample)."""
    grid = [start - pre_s + i * step_s for i in range((pre_s + fault_s) // step_s)]
    at = {int(ts): i for i, ts in enumerate(grid)}
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {c: {} for c in candidates}
    result = prom.custom_query_range(
        QUERY,
        start_time=datetime.fromtimestamp(grid[0], UTC),
        end_time=datetime.fromtimestamp(grid[-1], UTC),
        step=f"{step_s}s",
    )
    split = pre_s // step_s
    for series in result:
        labels = series["metric"]
        candidate, signal = labels.get("candidate"), labels.get("signal")
        if candidate not in out or not signal:
            continue
        values = [float("nan")] * len(grid)
        for ts, value in series["values"]:
            if (i := at.get(round(float(ts)))) is not None:
                values[i] = float(value)
        out[candidate][signal] = (values[:split], values[split:])
    return out


@contextlib.contextmanager
def prometheus_on(data: Path) -> Iterator[str]:
    """A real Prometheus serving the blocks in `data` (nothing to scrape), on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = data.parent / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\n")
    log = (data.parent / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=3d",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(data.parent / 'prometheus.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("prometheus did not become ready within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
