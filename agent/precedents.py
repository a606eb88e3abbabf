"""Weighing precedents: a similarity-weighted vote of the retrieved postmortems' labels, combined with
the rulebook's evidence. Precedents can confirm a classification, temper it, or rescue an `unknown`
when they agree strongly; they never decide "no action" (M5) on their own."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from agent.rulebook import Rulebook
from agent.schemas import UNKNOWN, Classification, Evidence

MIN_PRECEDENTS = 3  # fewer than this is an anecdote, not a vote
RESCUE_SHARE = 0.6  # an `unknown` is replaced only when this share of the vote agrees


def vote(precedents: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Share of the vote per (category, subcategory); weights fall with rank (1, 1/2, 1/3, ...)."""
    weights: dict[tuple[str, str], float] = defaultdict(float)
    for rank, precedent in enumerate(precedents):
        if precedent.get("category") and precedent.get("subcategory"):
            weights[(precedent["category"], precedent["subcategory"])] += 1.0 / (rank + 1)
    total = sum(weights.values())
    return {label: weight / total for label, weight in weights.items()} if total else {}


def combine(rulebook: Rulebook, classification: Classification, precedents: list[dict[str, Any]]) -> Classification:
    shares = vote(precedents)
    if len(precedents) < MIN_PRECEDENTS or not shares:
        return classification
    (top_category, top_subcategory), top_share = max(shares.items(), key=lambda kv: kv[1])
    cited = ", ".join(p["id"] for p in precedents[:3])
    same = shares.get((classification.category, classification.subcategory), 0.0)
    evidence = [
        *classification.evidence,
        Evidence(
            source="precedent",
            detail=f"precedents {cited}: {top_category}/{top_subcategory} {top_share:.0%} of the vote",
            weight=top_share,
            points_to=top_subcategory,
        ),
    ]
    if classification.category == UNKNOWN:
        if top_share >= RESCUE_SHARE and top_subcategory in rulebook.subcategories:
            return classification.model_copy(
                update={
                    "category": top_category,
                    "subcategory": top_subcategory,
                    "confidence": round(min(0.7, 0.2 + 0.5 * top_share), 3),
                    "evidence": evidence,
                    "rationale": f"rulebook evidence too thin; {top_share:.0%} of similar past incidents were "
                    f"{top_category}/{top_subcategory}",
                }
            )
        return classification.model_copy(update={"evidence": evidence})
    # Agreement raises confidence towards 1, disagreement pulls it down; the label stays the rulebook's.
    adjusted = classification.confidence + (1 - classification.confidence) * 0.5 * same - 0.15 * (1 - same)
    return classification.model_copy(
        update={"confidence": round(min(1.0, max(0.0, adjusted)), 3), "evidence": evidence}
    )


def mitigation_vote(precedents: list[dict[str, Any]], subcategory: str) -> dict[str, float]:
    """Share of the rank-weighted vote per mitigation among precedents of the same subcategory."""
    weights: dict[str, float] = defaultdict(float)
    for rank, precedent in enumerate(precedents):
        if precedent.get("subcategory") == subcategory and precedent.get("mitigation"):
            weights[precedent["mitigation"]] += 1.0 / (rank + 1)
    total = sum(weights.values())
    return {action: weight / total for action, weight in weights.items()} if total else {}


def precedent_note(precedents: list[dict[str, Any]], subcategory: str) -> str:
    """What fixed the similar past incidents, for the plan's rationale."""
    same = [p for p in precedents if p.get("subcategory") == subcategory]
    if not same:
        return ""
    cited = ", ".join(f"{p['id']} ({p.get('mitigation')})" for p in same[:3])
    return f" Similar past incidents: {cited}."
