"""The faults of the RCA experiment (`mitigate rca eval`), by tier, as data: what each does to the pod
it is injected into (or, for node faults, to every pod on the node and to the node itself). What that
does downstream (a slower engine gets less traffic from the router, a pod that is down gets none, a
slower hop delays everything behind it) is the stack's physics in sim/stack_sim.py, not written here.

Tiers: `gateway` (NGINX), `head` (the Ray head pod's resources), `router` (the Ray head's request
routing: the same pod, the paper's "Ray head Pod also takes part in load distribution"), `worker` (the
engines), `node` (a Kubernetes node: every pod on it) and `aux` (pods beside the request path that
export few series: the KubeRay operator, the model cache, a batch job sharing a GPU node).
"""

from __future__ import annotations

from dataclasses import dataclass

TIERS = ("gateway", "router", "head", "worker", "node", "aux")


@dataclass(frozen=True)
class Effect:
    cpu_hog_cores: float = 0.0  # busy threads; the pod's CPU limit caps what they get
    cpu_work_factor: float = 1.0  # CPU time per unit of work (thermal throttling of the host)
    memory_leak_per_s: float = 0.0  # share of the pod's memory limit leaked per second, until OOM-killed
    net_delay_s: float = 0.0  # on the pod's incoming traffic: its callers see it, the pod does not
    power_cap_w: float | None = None  # the GPU's power limit
    route_share: float = 0.0  # router: the share of requests pinned onto one worker, whatever its queue
    retransmit_factor: float = 1.0  # node: TCP retransmissions (a degraded NIC)
    pressure: float = 0.0  # node: CPU pressure stall (PSI) added
    disk_factor: float = 1.0  # model cache: disk read time multiplied
    burst_cores: float = 0.0  # a best-effort pod's extra threads (no CPU limit: it takes idle node cores)


@dataclass(frozen=True)
class StackFault:
    name: str
    tiers: tuple[str, ...]
    description: str
    effect: Effect
    unseen: bool = False  # not in the default matrix: the `unseen` stress (faults the methods were not built for)


STACK_FAULTS: dict[str, StackFault] = {
    f.name: f
    for f in (
        StackFault(
            "cpu_hog",
            ("gateway", "head", "worker", "aux"),
            "16 busy threads in the pod (the paper's StressChaos): its own CPU-bound work starves",
            Effect(cpu_hog_cores=16.0),
        ),
        StackFault(
            "memory_leak",
            ("gateway", "head", "worker", "aux"),
            "the pod leaks memory until it is OOM-killed and restarts (down while it restarts)",
            Effect(memory_leak_per_s=0.04),
        ),
        StackFault(
            "network_latency",
            ("gateway", "head", "worker"),
            "+1 s on the pod's incoming traffic (the paper's NetworkChaos): its callers wait longer",
            Effect(net_delay_s=1.0),
        ),
        StackFault(
            "gpu_throttle",
            ("worker",),
            "the GPU's power limit 300 W -> 150 W: every token takes longer, utilisation and memory stay",
            Effect(power_cap_w=150.0),
        ),
        StackFault(
            "routing_skew",
            ("router",),
            "the router's replica view goes stale: 60 % of requests pinned onto one worker, whatever its queue",
            Effect(route_share=0.6),
        ),
        StackFault(
            "nic_degraded",
            ("node",),
            "the node's NIC degrades: +0.3 s on every pod's incoming traffic, retransmissions up",
            Effect(net_delay_s=0.3, retransmit_factor=6.0),
        ),
        StackFault(
            "cpu_throttle",
            ("node",),
            "the node's CPUs throttle (thermal): every pod's CPU work takes 1.5x as long, CPU pressure rises",
            Effect(cpu_work_factor=1.5, pressure=0.15),
        ),
        StackFault(
            "slow_disk",
            ("aux",),
            "the disk under the model cache slows 8x: every engine's cache reads (prefix KV blocks) wait",
            Effect(disk_factor=8.0),
            unseen=True,
        ),
        StackFault(
            "noisy_neighbour",
            ("aux",),
            "the batch job sharing a GPU node starts a 24-thread phase: its co-tenants contend for CPU",
            Effect(burst_cores=24.0),
            unseen=True,
        ),
    )
}
SEEN = tuple(name for name, f in STACK_FAULTS.items() if not f.unseen)
UNSEEN = tuple(name for name, f in STACK_FAULTS.items() if f.unseen)
