"""The guard: deterministic policy between a plan and the cluster.

It never consults the LLM or the incident text; its inputs are the plan's operation, target and
parameters, the policy file and the clock. Its verdict is one of:
  not_applicable     the plan writes nothing to a cluster (M1 hand-off, M5, capacity request)
  allowed            the write may go ahead
  approval_required  the write may go ahead once enough different humans approve it
  denied             the write must not happen; the reasons say why
  already_mitigated  the same operation already ran on the same target within its cooldown (by_run
                     names the run): the cause was already acted on, nobody needs to be paged for it
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")
MIN_DESTRUCTIVE_APPROVALS = 2

Verdict = Literal["not_applicable", "allowed", "approval_required", "denied", "already_mitigated"]
# Where the plan's target came from: alert labels (or telemetry, or the cluster) are machine-made; a
# name read out of free text is not, so the guard asks a human to look before it is written to.
TargetSource = Literal["alert_labels", "telemetry", "text", "none"]


class PolicyError(ValueError):
    """The policy file is not usable; the message says where."""


@dataclass(frozen=True)
class Operation:
    name: str
    action: str
    risk: str
    touches_cluster: bool
    approvals: int
    destructive: bool = False
    cooldown_seconds: int = 0


@dataclass(frozen=True)
class Policy:
    version: str
    digest: str
    kill_switch: bool
    allowed_namespaces: frozenset[str]
    name_pattern: re.Pattern[str]
    freeze_windows: tuple[tuple[datetime, datetime, str], ...]
    blast_radius: dict[str, int]
    operations: dict[str, Operation]
    approval_ttl_seconds: int = 3600
    free_text_target_approvals: int = 1

    def operation(self, name: str) -> Operation:
        try:
            return self.operations[name]
        except KeyError:
            raise PolicyError(f"operation {name!r} is not in the policy") from None


@dataclass
class GuardDecision:
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    approvals_required: int = 0
    risk: str = "low"
    by_run: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "approvals_required": self.approvals_required,
            "risk": self.risk,
            "by_run": self.by_run,
        }


def _ts(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_policy(text: str) -> Policy:
    try:
        data = yaml.safe_load(text)
        operations = {
            name: Operation(
                name=name,
                action=str(raw["action"]),
                risk=str(raw["risk"]),
                touches_cluster=bool(raw["touches_cluster"]),
                approvals=int(raw.get("approvals", 0)),
                destructive=bool(raw.get("destructive", False)),
                cooldown_seconds=int(raw.get("cooldown_seconds", 0)),
            )
            for name, raw in data["operations"].items()
        }
        windows = tuple(
            (_ts(w["start"]), _ts(w["end"]), str(w.get("reason", "change freeze")))
            for w in data.get("freeze_windows") or []
        )
        return Policy(
            version=str(data["version"]),
            digest=hashlib.sha256(text.encode()).hexdigest()[:16],
            kill_switch=bool(data.get("kill_switch", False)),
            allowed_namespaces=frozenset(data["allowed_namespaces"]),
            name_pattern=re.compile(data["name_pattern"]),
            freeze_windows=windows,
            blast_radius={k: int(v) for k, v in data["blast_radius"].items()},
            operations=operations,
            approval_ttl_seconds=int(data.get("approval_ttl_seconds", 3600)),
            free_text_target_approvals=int(data.get("free_text_target_approvals", 1)),
        )
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise PolicyError(f"policy is not usable: {exc}") from exc


@cache
def load_policy(path: Path = DEFAULT_POLICY) -> Policy:
    return parse_policy(Path(path).read_text(encoding="utf-8"))


RecentRun = Callable[[str, str, datetime], "str | None"]


def evaluate(
    policy: Policy,
    plan: dict[str, Any],
    *,
    now: datetime,
    recent_run: RecentRun | None = None,
    target_source: TargetSource = "alert_labels",
) -> GuardDecision:
    """Judge one plan. Pure apart from `recent_run`, which reads the audit trail for cooldowns."""
    op = policy.operation(plan["operation"])
    if op.action != plan["mitigation"]:
        return GuardDecision("denied", [f"operation {op.name} implements {op.action}, not {plan['mitigation']}"])
    if not op.touches_cluster:
        return GuardDecision("not_applicable", ["no cluster write"], risk=op.risk)

    reasons: list[str] = []
    if policy.kill_switch:
        reasons.append("kill switch is on: no cluster writes")
    for start, end, why in policy.freeze_windows:
        if start <= now < end:
            reasons.append(f"inside change freeze until {end.isoformat()}: {why}")
    target = plan.get("target") or {}
    namespace, name = target.get("namespace"), target.get("name")
    if target.get("kind") != "node":
        if not namespace:
            reasons.append("target has no namespace")
        elif namespace not in policy.allowed_namespaces:
            reasons.append(f"namespace {namespace!r} is not in the allowed namespaces")
    if not name:
        reasons.append("target has no name")
    for label, value in (("namespace", namespace), ("name", name)):
        if value and not policy.name_pattern.fullmatch(str(value)):
            reasons.append(f"{label} {value!r} is not a valid Kubernetes name")
    reasons.extend(_bounds(policy, op.name, plan.get("parameters") or {}))
    if reasons:
        return GuardDecision("denied", reasons, risk=op.risk)
    if op.cooldown_seconds and recent_run is not None and name:
        since = now - timedelta(seconds=op.cooldown_seconds)
        if (run := recent_run(op.name, str(name), since)) is not None:
            why = f"already mitigated by run {run}: {op.name} on {name} ran within its {op.cooldown_seconds}s cooldown"
            return GuardDecision("already_mitigated", [why], risk=op.risk, by_run=run)

    approvals = max(op.approvals, MIN_DESTRUCTIVE_APPROVALS) if op.destructive or op.action == "M6" else op.approvals
    why_human = [f"{op.name} is {op.risk} risk"]
    if target_source == "text" and approvals < policy.free_text_target_approvals:
        approvals = policy.free_text_target_approvals
        why_human = [f"the target {name} was read from the incident's text, not from alert labels"]
    if approvals:
        return GuardDecision("approval_required", why_human, approvals, op.risk)
    return GuardDecision("allowed", [f"{op.name} within policy {policy.version}"], 0, op.risk)


def _bounds(policy: Policy, operation: str, params: dict[str, Any]) -> list[str]:
    limits = policy.blast_radius
    out: list[str] = []
    if operation == "scale_out":
        replicas, current = int(params.get("replicas", 0)), int(params.get("current_replicas", 0))
        if replicas > limits["max_replicas"]:
            out.append(f"scale to {replicas} exceeds max_replicas {limits['max_replicas']}")
        if current and replicas - current > limits["max_scale_step"]:
            out.append(f"adding {replicas - current} replicas exceeds max_scale_step {limits['max_scale_step']}")
    if int(params.get("pods_affected", 0)) > limits["max_pods_affected"]:
        out.append(f"{params['pods_affected']} pods affected exceeds max_pods_affected {limits['max_pods_affected']}")
    if int(params.get("shift_percent", 0)) > limits["max_traffic_shift_percent"]:
        out.append("traffic shift exceeds max_traffic_shift_percent")
    return out
