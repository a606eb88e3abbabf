"""`mitigate rca eval`: the fault-localisation experiment of Scheinert et al. (section 4.3, Table 1) on
the simulated serving stack. 120 injections (four faults x three workers x ten) are simulated, written
as OpenMetrics, backfilled into a real Prometheus with promtool, and every method receives the same
per-pod telemetry by range queries: the pre-fault window and the one-minute fault window.

Methods: random; NSigma and BARO on the paper's "fundamental system telemetry" (CPU, memory, network,
GPU utilisation and memory), as in Table 1; the same two on every signal (power and the LLM-level
signals too), to separate what the telemetry contributes from what the method does; and the
serving-aware method (tools/rca/methods.py), which reads the LLM-level signals along the request path.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sim import stack
from tools.rca import methods

# Table 1 of Scheinert et al.: AC@1, AC@3, Avg@5 per fault type.
PAPER = {
    "NSigma": {"cpu_hog": (1.00, 1.00, 1.00), "memory_leak": (0.70, 0.90, 0.87),
               "network_latency": (0.93, 1.00, 0.99), "gpu_throttle": (0.17, 0.63, 0.55)},
    "BARO": {"cpu_hog": (0.13, 1.00, 0.83), "memory_leak": (0.77, 0.93, 0.91),
             "network_latency": (0.33, 1.00, 0.87), "gpu_throttle": (0.20, 0.67, 0.59)},
    "CIRCA": {"cpu_hog": (0.40, 1.00, 0.86), "memory_leak": (0.80, 0.93, 0.91),
              "network_latency": (0.70, 1.00, 0.93), "gpu_throttle": (0.20, 0.63, 0.61)},
    "Random": {"cpu_hog": (0.17, 0.50, 0.51), "memory_leak": (0.10, 0.43, 0.47),
               "network_latency": (0.30, 0.57, 0.58), "gpu_throttle": (0.23, 0.63, 0.57)},
}  # fmt: skip
RATE = "30s"


def _mean(histogram: str) -> str:
    return f"rate({histogram}_sum[{RATE}]) / rate({histogram}_count[{RATE}])"


QUERIES = {
    "cpu_cores": f"rate(container_cpu_usage_seconds_total[{RATE}])",
    "memory_bytes": "container_memory_working_set_bytes",
    "network_rx_bytes_per_s": f"rate(container_network_receive_bytes_total[{RATE}])",
    "gpu_util": "DCGM_FI_DEV_GPU_UTIL",
    "gpu_memory_bytes": "DCGM_FI_DEV_FB_USED * 2^20",
    "gpu_power_w": "DCGM_FI_DEV_POWER_USAGE",
    "ttft_s": _mean("vllm:time_to_first_token_seconds"),
    "tpot_s": _mean("vllm:time_per_output_token_seconds"),
    # The engines' own end-to-end latency, and the latency of what the gateway and the router forward.
    "e2e_s": " or ".join(
        _mean(h) for h in ("vllm:e2e_request_latency_seconds", "nginx_http_request_duration_seconds",
                           "ray_serve_request_latency_seconds")
    ),
    "tokens_per_s": f"rate(vllm:generation_tokens_total[{RATE}])",
    "queue": "vllm:num_requests_waiting",
    "kv_cache": "vllm:gpu_cache_usage_perc",
    "restarts": "kube_pod_container_status_restarts_total",
}  # fmt: skip
EVERYTHING = (*methods.RESOURCE, "gpu_power_w", *methods.SERVING)


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
            "--storage.tsdb.retention.time=2d",
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


def windows_for(prom: Any, injection: stack.Injection, schedule: stack.Schedule) -> methods.Windows:
    """Per pod and metric, the pre-fault and fault-window samples, by range queries."""
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(injection.start - schedule.pre_s, UTC)
    end = datetime.fromtimestamp(injection.start + schedule.fault_s, UTC)
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {pod: {} for pod in stack.PODS}
    for metric, query in QUERIES.items():
        for series in prom.custom_query_range(query, start_time=start, end_time=end, step=f"{schedule.step_s}s"):
            pod = series["metric"].get("pod")
            if pod not in out:
                continue
            pre: list[float] = []
            fault: list[float] = []
            for ts, value in series["values"]:
                (pre if float(ts) < injection.start else fault).append(float(value))
            out[pod][metric] = (pre, fault)
    return out


def run_matrix(schedule: stack.Schedule | None = None, seed: int = 4, workdir: Path | None = None) -> dict[str, Any]:
    from prometheus_api_client import PrometheusConnect

    schedule = schedule or stack.Schedule()
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        raise RuntimeError("needs Debian's prometheus package (promtool, prometheus): scripts/apt-need prometheus")
    base = Path(workdir or tempfile.mkdtemp(prefix="mitigate-rca-"))
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    openmetrics, data = base / "telemetry.om", base / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    with openmetrics.open("w") as out:
        injections = stack.generate(out, schedule, stack.anchor(schedule, seed), seed)
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)],
        check=True,
        capture_output=True,
    )
    topology = methods.Topology(stack.DOWNSTREAM, stack.WORKERS)
    ranked: dict[str, dict[str, list[tuple[list[methods.Candidate], str]]]] = {}
    changes: dict[str, dict[str, list[float]]] = {}
    with prometheus_on(data) as url:
        prom = PrometheusConnect(url=url)
        for n, injection in enumerate(injections):
            windows = windows_for(prom, injection, schedule)
            for metric, (pre, fault) in windows[injection.pod].items():
                if pre and fault:
                    before, during = float(np.median(pre)), float(np.median(fault))
                    changes.setdefault(injection.fault, {}).setdefault(metric, []).append(
                        during / before if before else float("nan")
                    )
            results = {
                "Random": methods.random_ranking(windows, seed * 1000 + n),
                "NSigma": methods.nsigma(windows),
                "BARO": methods.baro(windows),
                "NSigma (all signals)": methods.nsigma(windows, EVERYTHING),
                "BARO (all signals)": methods.baro(windows, EVERYTHING),
                "serving-aware (no topology)": methods.serving_aware(windows, methods.Topology({}, stack.WORKERS)),
                "serving-aware": methods.serving_aware(windows, topology),
            }
            for method, ranking in results.items():
                ranked.setdefault(method, {}).setdefault(injection.fault, []).append((ranking, injection.pod))
    table = {
        method: {
            fault: {
                "AC@1": methods.ac_at(cases, 1),
                "AC@3": methods.ac_at(cases, 3),
                "Avg@5": methods.avg_at(cases, 5),
                "n": len(cases),
                "blamed": _blamed(cases),
            }
            for fault, cases in sorted(by_fault.items(), key=lambda kv: stack.RCA_FAULTS.index(kv[0]))
        }
        for method, by_fault in ranked.items()
    }
    overall = {
        method: methods.ac_at([c for cases in by_fault.values() for c in cases], 1)
        for method, by_fault in ranked.items()
    }
    return {
        "injections": len(injections),
        "candidates": len(stack.PODS),
        "schedule": {"pre_s": schedule.pre_s, "fault_s": schedule.fault_s, "step_s": schedule.step_s},
        "methods": table,
        "ac1_overall": overall,
        # How each fault shows on the faulty pod: the median over injections of (fault median / pre median).
        "signatures": {
            fault: {metric: round(float(np.nanmedian(values)), 3) for metric, values in sorted(by.items())}
            for fault, by in changes.items()
        },
        "paper": {
            m: {f: dict(zip(("AC@1", "AC@3", "Avg@5"), v, strict=True)) for f, v in by.items()}
            for m, by in PAPER.items()
        },
        "seconds": round(time.monotonic() - started, 1),
    }


def _blamed(cases: list[tuple[list[methods.Candidate], str]]) -> dict[str, int]:
    """What the method ranked first when it was wrong (the gateway bias shows here)."""
    wrong: dict[str, int] = {}
    for ranking, truth in cases:
        if ranking and ranking[0].pod != truth:
            role = ranking[0].pod if ranking[0].pod not in stack.WORKERS else "another worker"
            wrong[role] = wrong.get(role, 0) + 1
    return wrong
