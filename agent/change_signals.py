"""Investigation findings as the readings the rulebook's rules are written in.

Two readings, from `recent_change` findings only (agent/findings.py):
- `config_change_age_min`: minutes from the most recent change of a Deployment's pod template (image,
  args, env, resources; or a new Deployment that differs from an older one of the same model) to the start
  of the impact. A change after the impact began is not its cause, and a rollout that changed none of
  these (a restart) is not a configuration change.
- `new_deployment_beside_good`: 1 when that change is a new Deployment next to an older one of the same
  model that still has ready replicas (a good one remains to serve: M6).

The incident's own readings win, as with live telemetry: investigation adds, never overrides.
"""

from __future__ import annotations

import math
from datetime import datetime

from agent.findings import Finding
from agent.rulebook import Rulebook, Scores
from agent.schemas import UNKNOWN, Classification, Incident

CHANGE_SUBCATEGORY = "config_change"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def change_signals(findings: list[Finding], impact: datetime, target: str | None = None) -> dict[str, float]:
    """`target`: the alert's Deployment as "namespace/name"; its own changes, when it has any, are the
    evidence, ahead of its neighbours'."""
    own = [f for f in findings if target and f["data"].get("deployment") == target]
    findings = own or findings
    ages: list[tuple[float, Finding]] = []
    for item in findings:
        data, at = item["data"], _when(item["at"])
        if item["kind"] != "recent_change" or at is None or data.get("change") not in ("rollout", "created"):
            continue
        if not data.get("changes"):
            # A rollout that changed none of image, args, env or resources is a restart; a new Deployment
            # with no older one of the same model to compare with has no known-good configuration to blame.
            continue
        age = (impact - at).total_seconds() / 60
        if age >= 0:
            ages.append((age, item))
    if not ages:
        return {}
    age, latest = min(ages, key=lambda pair: pair[0])
    out = {"config_change_age_min": round(age, 1)}
    data = latest["data"]
    if data.get("change") == "created" and data.get("previous_deployment") and data.get("previous_ready", 0) >= 1:
        out["new_deployment_beside_good"] = 1.0
    return out


def with_earliest_change(
    rulebook: Rulebook, incident: Incident, scores: Scores, answer: Classification
) -> Classification:
    """The domain's earliest-cause rule applied to what investigation found, when the engine is failing.

    The learned model reads what incidents *say* and never saw a live cluster; the rulebook's answer to
    a crash alert is the crash. When investigation found a configuration change of the target just
    before the impact (its rule has at least the rulebook's minimum score) and the engine is failing
    (restarts, OOM kills), the change is the cause of an engine-layer answer (A3: an OOM after a raised
    --max-num-seqs is a configuration failure, not an engine one) or of no answer. Infrastructure and
    configuration answers stand (as early or earlier in the chain), and so do operational ones (A4,
    outside the chain: a rollout problem is already named)."""
    if CHANGE_SUBCATEGORY not in scores or not (answer.category == "A3" or answer.subcategory == UNKNOWN):
        return answer
    if not _engine_failing(incident):
        return answer
    score, evidence = scores[CHANGE_SUBCATEGORY]
    if score < rulebook.min_score:
        return answer
    sub = rulebook.subcategories[CHANGE_SUBCATEGORY]
    confidence = round(1.0 - math.exp(-score / 4.0), 3)  # the rulebook's strength of evidence
    before = "no category" if answer.subcategory == UNKNOWN else f"{answer.category}/{answer.subcategory}"
    thin = confidence < rulebook.threshold
    return Classification(
        category="A2",
        subcategory=CHANGE_SUBCATEGORY,
        confidence=confidence,
        evidence=[*evidence, *answer.evidence],
        engine=answer.engine,
        rationale=f"{sub.description} Earliest cause: the change comes before what the first answer ({before}) read.",
        needs_human=thin,
        needs_human_reason=f"change evidence {score:.1f}, confidence {confidence:.2f} under {rulebook.threshold:.2f}"
        if thin
        else "",
    )


def _engine_failing(incident: Incident) -> bool:
    """The engine itself failing (containers restarted, OOM kills): what a bad configuration does. A
    traffic surge, a gateway's idle timer or a slow region are not explained by a change of the engine's
    settings, however recent, so they keep their own cause."""
    signals = incident.signals
    return any(
        signals.get(name, 0) >= 1 or signals.get(f"{name}_peak", 0) >= 1 for name in ("pod_restarts", "oom_kills")
    )


def impact_start(incident: Incident, now: datetime) -> datetime:
    started = incident.started_at or now
    return started if started.tzinfo else started.replace(tzinfo=now.tzinfo)


__all__ = ["CHANGE_SUBCATEGORY", "change_signals", "impact_start", "with_earliest_change"]
