"""The fleet's telemetry in Prometheus' exposition format, as the real exporters name it: vLLM engine
metrics, gateway request counts by status, DCGM GPU metrics, cAdvisor container metrics and
kube-state-metrics. One collector reads the traffic model's current state on every scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sim.kubelet import ClusterView
from sim.model import Histogram, TrafficModel

POD_LABELS = ["namespace", "model", "region", "deployment", "pod", "node"]


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [
        ("+Inf" if b == float("inf") else repr(b), c) for b, c in zip(histogram.buckets, histogram.counts, strict=True)
    ]


class FleetCollector(Collector):
    def __init__(self, snapshot: Callable[[], tuple[TrafficModel, ClusterView]], namespace: str) -> None:
        self._snapshot = snapshot
        self._namespace = namespace

    def collect(self) -> Iterator[Metric]:
        model, view = self._snapshot()
        ns = self._namespace
        requests = CounterMetricFamily(
            "gateway_requests",
            "Requests through the gateway by upstream pod and HTTP status",
            labels=[*POD_LABELS, "code", "reason"],
        )
        gauges = {
            name: GaugeMetricFamily(name, doc, labels=POD_LABELS)
            for name, doc in (
                ("vllm:num_requests_running", "Sequences being generated"),
                ("vllm:num_requests_waiting", "Requests queued in the engine"),
                ("vllm:gpu_cache_usage_perc", "KV-cache usage, 0-1"),
                ("DCGM_FI_DEV_GPU_UTIL", "GPU utilisation, percent"),
                ("DCGM_FI_DEV_POWER_USAGE", "GPU power draw, W"),
                ("DCGM_FI_DEV_FB_USED", "GPU framebuffer memory used, MiB"),
                ("DCGM_FI_DEV_XID_ERRORS", "Last XID error code (0 = none)"),
                ("container_memory_working_set_bytes", "Container working-set memory"),
            )
        }
        counters = {
            name: CounterMetricFamily(name, doc, labels=POD_LABELS)
            for name, doc in (
                ("vllm:prompt_tokens", "Prompt tokens processed"),
                ("vllm:generation_tokens", "Tokens generated"),
                ("container_cpu_usage_seconds", "Container CPU time"),
                ("container_network_receive_bytes", "Bytes received by the pod"),
                ("kube_pod_container_status_restarts", "Container restarts"),
            )
        }
        histograms = {
            name: HistogramMetricFamily(name, doc, labels=POD_LABELS)
            for name, doc in (
                ("vllm:time_to_first_token_seconds", "Time to first token"),
                ("vllm:time_per_output_token_seconds", "Time per output token"),
                ("vllm:e2e_request_latency_seconds", "End-to-end request latency"),
            )
        }
        for pod in view.pods:
            stats = model.stats.get(pod.name)
            if stats is None:
                continue
            labels = [ns, pod.model, pod.region, pod.deployment, pod.name, pod.node]
            for (code, reason), count in stats.requests.items():
                requests.add_metric([*labels, code, reason], count)
            values = {
                "vllm:num_requests_running": stats.running,
                "vllm:num_requests_waiting": stats.waiting,
                "vllm:gpu_cache_usage_perc": stats.kv_cache,
                "DCGM_FI_DEV_GPU_UTIL": 100 * stats.gpu_util,
                "DCGM_FI_DEV_POWER_USAGE": stats.power_w,
                "DCGM_FI_DEV_FB_USED": stats.fb_used_gb * 1024,
                "DCGM_FI_DEV_XID_ERRORS": stats.xid,
                "container_memory_working_set_bytes": stats.memory_gb * 2**30,
            }
            for name, value in values.items():
                gauges[name].add_metric(labels, value)
            totals = {
                "vllm:prompt_tokens": stats.prompt_tokens,
                "vllm:generation_tokens": stats.generation_tokens,
                "container_cpu_usage_seconds": stats.cpu_seconds,
                "container_network_receive_bytes": stats.network_rx_bytes,
                "kube_pod_container_status_restarts": stats.restarts,
            }
            for name, value in totals.items():
                counters[name].add_metric(labels, value)
            for name, histogram in (
                ("vllm:time_to_first_token_seconds", stats.ttft),
                ("vllm:time_per_output_token_seconds", stats.tpot),
                ("vllm:e2e_request_latency_seconds", stats.e2e),
            ):
                histograms[name].add_metric(labels, _buckets(histogram), histogram.total)
        for (model_name, region), count in model.unserved.items():
            requests.add_metric([ns, model_name, region, "", "", "", "503", "no-ready-upstream"], count)
        yield requests
        yield from gauges.values()
        yield from counters.values()
        yield from histograms.values()
        desired = GaugeMetricFamily(
            "kube_deployment_spec_replicas", "Desired replicas", labels=["namespace", "deployment"]
        )
        available = GaugeMetricFamily(
            "kube_deployment_status_replicas_available", "Available replicas", labels=["namespace", "deployment"]
        )
        for deployment, (want, have) in view.replicas.items():
            desired.add_metric([ns, deployment], want)
            available.add_metric([ns, deployment], have)
        yield desired
        yield available
        cordoned = GaugeMetricFamily("kube_node_spec_unschedulable", "Node cordoned", labels=["node"])
        for node in view.cordoned:
            cordoned.add_metric([node], 1)
        yield cordoned


def exposition(collector: Any) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return bytes(generate_latest(registry))
