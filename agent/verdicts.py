"""How the answers of the rulebook, the learned model and an LLM become one classification, and how
the "no action" evidence becomes one decision. Each rule here is stated once, in words, in its docstring.
"""

from __future__ import annotations

from typing import Any

from agent.judgement import Judgement, JudgementResult
from agent.no_action import NoActionAssessment
from agent.rulebook import Rulebook, Scores
from agent.schemas import UNKNOWN, Classification, Evidence


def from_judgement(
    rulebook: Rulebook, scores: Scores, rulebook_answer: Classification, result: JudgementResult, model: Judgement
) -> Classification:
    """The model's calibrated best guess, explained by the rulebook evidence for that subcategory (and
    for the rulebook's own pick, when the two differ)."""
    evidence = list(scores.get(result.subcategory, (0.0, []))[1])
    if rulebook_answer.subcategory not in (result.subcategory, UNKNOWN):
        evidence += [e for e in rulebook_answer.evidence if e.points_to == rulebook_answer.subcategory]
    ranked = sorted(result.category_probabilities.items(), key=lambda kv: -kv[1])
    neighbours = ", ".join(f"{k.split(':')[1]} {v:.2f}" for k, v in result.neighbours.items() if v >= 0.05)
    evidence.append(
        Evidence(
            source="model",
            detail=(
                f"model {model.version}: "
                + ", ".join(f"{c} {p:.2f}" for c, p in ranked)
                + (f"; nearest labelled incidents: {neighbours}" if neighbours else "")
            ),
            weight=result.confidence,
            points_to=result.subcategory,
        )
    )
    sub = rulebook.subcategories[result.subcategory]
    rulebook_said = (
        f"; the rulebook alone said {rulebook_answer.category}/{rulebook_answer.subcategory}"
        if rulebook_answer.subcategory != result.subcategory
        else ""
    )
    return Classification(
        category=result.category,  # type: ignore[arg-type]
        subcategory=result.subcategory,
        confidence=result.confidence,
        evidence=evidence,
        engine="model",
        rationale=f"{sub.description} (calibrated probability {result.confidence:.2f}{rulebook_said})",
        needs_human=result.needs_human,
        needs_human_reason=result.needs_human_reason,
        probabilities=result.category_probabilities,
    )


def rulebook_alone(answer: Classification, why: str) -> Classification:
    """Without the model the rulebook's scores answer; they are not calibrated, so every answer under
    the rulebook's own threshold (and every `unknown`) needs a human."""
    if answer.category == UNKNOWN or answer.needs_human:
        reason = answer.needs_human_reason or "the rulebook's evidence is too thin to name a category"
        return answer.model_copy(update={"needs_human": True, "needs_human_reason": f"{reason} ({why})"})
    return answer


def with_llm(model_answer: Classification, llm_answer: Classification) -> tuple[Classification, str]:
    """An LLM answer replaces the model's only when it is a real answer (a category, with evidence) and
    the model was not confident (it needed a human). It then keeps `needs_human` unless both agree on
    the category. An LLM that agrees lends its rationale; one that disagrees with a confident model is
    recorded and ignored. The confidence shown is always the calibrated model's, never the LLM's own."""
    usable = llm_answer.category != UNKNOWN and bool(llm_answer.evidence)
    agrees = llm_answer.category == model_answer.category
    if not usable:
        return model_answer, "LLM gave no usable answer (unknown or no evidence): the model's answer stands"
    if agrees:
        merged = model_answer.model_copy(
            update={
                "subcategory": llm_answer.subcategory,
                "evidence": [*model_answer.evidence, *llm_answer.evidence],
                "rationale": llm_answer.rationale or model_answer.rationale,
                "engine": "llm",
            }
        )
        return merged, "LLM and model agree on the category"
    if not model_answer.needs_human:
        return model_answer, (
            f"LLM said {llm_answer.category}/{llm_answer.subcategory}; the model is confident in "
            f"{model_answer.category} ({model_answer.confidence:.2f}), so its answer stands"
        )
    replaced = llm_answer.model_copy(
        update={
            "confidence": model_answer.probabilities.get(llm_answer.category, model_answer.confidence),
            "needs_human": True,
            "needs_human_reason": (
                f"the model was unsure ({model_answer.category} at {model_answer.confidence:.2f}) and the LLM "
                f"disagrees ({llm_answer.category})"
            ),
            "probabilities": model_answer.probabilities,
            "evidence": [*llm_answer.evidence, *model_answer.evidence],
        }
    )
    return replaced, "the model was unsure: the LLM's answer (with evidence) is shown, and a human decides"


def no_action_decision(
    assessment: NoActionAssessment, probability: float | None, threshold: float | None
) -> dict[str, Any]:
    """ "No action" is decided only with at least one kind of positive evidence, no veto, and — with
    the model — a calibrated probability at or over the operating threshold."""
    found = assessment.as_dict()
    if assessment.vetoed:
        decided, why = False, "vetoed: " + "; ".join(assessment.held_vetoes())
    elif not assessment.allows:
        decided, why = False, "no evidence that nothing needs doing"
    elif probability is not None and threshold is not None:
        decided = probability >= threshold
        why = f"probability {probability:.2f} {'at or over' if decided else 'under'} the threshold {threshold:.2f}"
    else:
        decided, why = True, "rulebook alone: positive evidence and no veto (no calibrated probability)"
    return {
        **found,
        "evidence_lines": assessment.evidence_lines(),
        "probability": probability,
        "threshold": threshold,
        "decided": decided,
        "why": why,
    }
