"""Fault scenarios of the simulated fleet, by name (`mitigate sim inject NAME`).

A fault is data: what it targets and how it changes the traffic model while it lasts. Deployment-level
faults persist until the cluster is changed the way that fixes them (the keep-alive template for
`timeout`, more replicas for `resource_exhaustion`, traffic moved for `latency_spike`, pods moved off
the node for `bad_node`) or, for `transient`, until their time is up; `header_misconfig` is a model
configuration problem that no cluster action fixes; `bad_rollout` is a new Deployment that only deleting
it (or rolling it back) fixes. Pod-level faults (the RCA paper's four) belong to
one pod instance: a restart or deletion of that pod clears them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["model", "region", "node", "pod", "deployment"]


@dataclass(frozen=True)
class FaultSpec:
    name: str
    scope: Scope
    description: str
    # What it does to the requests of the pods it touches.
    demand_factor: float = 1.0  # traffic to the targeted model multiplied by this
    ttft_factor: float = 1.0
    tpot_factor: float = 1.0
    extra_latency_s: float = 0.0  # added to TTFT and end-to-end latency (incoming network delay)
    load_share: float = 1.0  # the share of its peers' load the balancer still sends it (a slow pod gets less)
    errors: dict[str, float] = field(default_factory=dict)  # HTTP code -> share of the pod's requests
    error_reason: str = ""  # the gateway's reason label on those errors
    stream_timeouts: float = 0.0  # share of long streams cut with 408 (unless keep-alive is applied)
    cpu_cores: float = 0.0  # extra CPU burned
    memory_leak_gb_per_s: float = 0.0
    power_cap_w: float | None = None
    xid: int = 0
    duration_s: float | None = None  # heals by itself after this long (transient)
    automatable: bool = True  # a cluster action is expected to fix it
    # Deployment faults: the fault *is* a rollout. A new Deployment of the model is created beside the
    # one serving, with these engine arguments instead of the stable ones; the fault touches its pods.
    rollout_args: tuple[str, ...] = ()


FAULTS: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in (
        FaultSpec(
            "timeout",
            "model",
            "idle streaming connections dropped by the gateway's idle timer: HTTP 408 on long generations",
            stream_timeouts=0.2,
        ),
        FaultSpec(
            "resource_exhaustion",
            "model",
            "a traffic surge beyond the replicas' capacity: queues and KV cache full, 429s, TTFT up",
            demand_factor=1.9,
        ),
        FaultSpec(
            "latency_spike",
            "region",
            "one region's endpoint slows down: time to first token x12, tokens 3x slower",
            ttft_factor=12.0,
            tpot_factor=3.0,
        ),
        FaultSpec(
            "transient",
            "model",
            "a network blip: streams dropped (408) for a few seconds, then it heals by itself",
            errors={"408": 0.08},
            error_reason="stream-reset",
            duration_s=5.0,
        ),
        FaultSpec(
            "bad_node",
            "node",
            "a GPU on one node throws XID 79 (fallen off the bus): the pods on it fail with 503",
            errors={"503": 0.6},
            error_reason="gpu-xid-error",
            ttft_factor=2.0,
            xid=79,
        ),
        FaultSpec(
            "header_misconfig",
            "model",
            "a model deployment's config drops the required x-model-version header: 500 on a share of requests",
            errors={"500": 0.15},
            error_reason="missing-header:x-model-version",
            automatable=False,
        ),
        FaultSpec(
            "bad_rollout",
            "deployment",
            "a new deployment of the model rolled out with --max-num-seqs raised from 256 to 1024: its engine "
            "runs out of GPU memory, is OOM-killed and fails requests (503) while the old one still serves",
            errors={"503": 0.6},
            error_reason="engine-oom",
            memory_leak_gb_per_s=20.0,
            rollout_args=("--max-num-seqs", "1024"),
        ),
        FaultSpec("cpu_hog", "pod", "16 busy threads on one engine pod", cpu_cores=16.0, ttft_factor=1.6),
        FaultSpec("memory_leak", "pod", "one engine pod leaks memory until it is OOM-killed", memory_leak_gb_per_s=1.5),
        FaultSpec(
            "network_latency",
            "pod",
            "+1 s on the incoming traffic of one engine pod (least-connections balancing then sends it less)",
            extra_latency_s=1.0,
            load_share=0.6,
        ),
        FaultSpec(
            "gpu_throttle",
            "pod",
            "one engine pod's GPU power-capped from 300 W to 150 W: utilisation barely moves, tokens slow down",
            power_cap_w=150.0,
            tpot_factor=1.9,
            ttft_factor=1.5,
        ),
    )
}


@dataclass
class ActiveFault:
    spec: FaultSpec
    target: str  # model name, "model/region", node name or pod name
    started: float  # the fleet's clock
    model: str = ""  # the model whose traffic it touches (for node faults: any on the node)

    def expired(self, now: float) -> bool:
        return self.spec.duration_s is not None and now - self.started >= self.spec.duration_s

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "name": self.spec.name,
            "target": self.target,
            "age_s": round(now - self.started, 1),
            "description": self.spec.description,
        }
