"""Investigation findings as the readings the rulebook's rules are written in.

Two readings, from `recent_change` findings only (agent/findings.py):
- `config_change_age_min`: minutes from the most recent change of a Deployment's pod template (image,
  args, env, resources; or a new Deployment) to the start of the impact. A change after the impact began
  is not its cause, and a rollout that changed none of these (a restart) is not a configuration change.
- `new_deployment_beside_good`: 1 when that change is a new Deployment next to an older one of the same
  model that still has ready replicas (a good one remains to serve: M6).

The incident's own readings win, as with live telemetry: investigation adds, never overrides.
"""

from __future__ import annotations

from datetime import datetime

from agent.findings import Finding
from agent.rulebook import Rulebook, Scores
from agent.schemas import UNKNOWN, Classification, Incident

CHANGE_SUBCATEGORY = "config_change"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def change_signals(findings: list[Finding], impact: datetime) -> dict[str, float]:
    ages: list[tuple[float, Finding]] = []
    for item in findings:
        data, at = item["data"], _when(item["at"])
        if item["kind"] != "recent_change" or at is None or data.get("change") not in ("rollout", "created"):
            continue
        if data.get("change") == "rollout" and not data.get("changes"):
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
    """The learned model reads what incidents *say*; it never saw a live cluster. When investigation
    found a configuration change just before the impact and the rulebook, applying its earliest-cause
    rule to that reading, names the change as the cause, the answer is the rulebook's over an answer from
    a later layer of the causal chain (the engine's symptoms: an OOM after a raised --max-num-seqs is a
    configuration failure, not an engine one) or no answer at all. An infrastructure or configuration
    answer (layers 1 and 2) stands: it is as early or earlier."""
    if CHANGE_SUBCATEGORY not in scores or answer.category in ("A1", "A2"):
        return answer
    ruled = rulebook.classify(incident, scores)
    if ruled.subcategory != CHANGE_SUBCATEGORY:
        return answer
    before = "no category" if answer.subcategory == UNKNOWN else f"{answer.category}/{answer.subcategory}"
    rationale = (
        f"{ruled.rationale}; earliest cause: the change comes before the symptoms the first answer ({before}) read"
    )
    return ruled.model_copy(
        update={"rationale": rationale, "evidence": [*ruled.evidence, *answer.evidence], "engine": answer.engine}
    )


def impact_start(incident: Incident, now: datetime) -> datetime:
    started = incident.started_at or now
    return started if started.tzinfo else started.replace(tzinfo=now.tzinfo)


__all__ = ["CHANGE_SUBCATEGORY", "change_signals", "impact_start", "with_earliest_change"]
