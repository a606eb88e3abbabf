from __future__ import annotations

from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime

from agent.change_signals import with_earliest_change
from agent.context import TriageContext
from agent.features import embedding_text
from agent.llm import LLMFailure
from agent.no_action import NoActionAssessment, assess, known_occurrences
from agent.nodes._common import incident_of, record
from agent.precedents import combine
from agent.rulebook import score_subcategories
from agent.schemas import Classification, Incident
from agent.state import TriageState
from agent.verdicts import from_judgement, no_action_decision, rulebook_alone, with_llm


def _recent_occurrences(ctx: TriageContext, state: TriageState, incident: Incident) -> list[str] | None:
    if ctx.history is None:
        return None
    since = ctx.clock() - timedelta(days=ctx.rulebook.no_action.history_days)
    # The investigation read the same keyed query over a longer window earlier in this run: when its
    # read covers the veto's days, it answers without a second read (else the store is asked).
    known = known_occurrences((state.get("investigation") or {}).get("recurrences"), incident.id, since)
    if known is not None:
        return known
    try:
        return ctx.history.recent_occurrences(incident, since)
    except Exception:  # history is a veto's input: unreadable history must not allow what it would forbid
        return ["incident history unreadable"]


def _judged(
    ctx: TriageContext, state: TriageState, incident: Incident, assessment: NoActionAssessment
) -> tuple[Classification, float | None, float | None, str | None]:
    """The calibrated model's answer when it is loaded, else the rulebook's (and why)."""
    scores = score_subcategories(ctx.rulebook, incident)  # read once: the answer, the features, the report
    answer = ctx.rulebook.classify(incident, scores)
    if ctx.judgement is None or ctx.embedder is None:
        why = ctx.judgement_problem or "no judgement model configured"
        precedented = combine(ctx.rulebook, answer, state.get("precedents", []))
        earliest = with_earliest_change(ctx.rulebook, incident, scores, precedented)
        return rulebook_alone(earliest, why), None, None, f"rulebook alone: {why}"
    try:
        embedding = ctx.embedder.embed_one(embedding_text(incident))
        result = ctx.judgement.judge(ctx.rulebook, incident, assessment, embedding, scores)
    except Exception as exc:  # the model is an aid: a failure of it falls back to the rulebook, said plainly
        why = f"judgement model failed: {type(exc).__name__}: {exc}"
        return rulebook_alone(answer, why), None, None, f"rulebook alone: {why}"
    judged = with_earliest_change(
        ctx.rulebook, incident, scores, from_judgement(ctx.rulebook, scores, answer, result, ctx.judgement)
    )
    return judged, result.no_action_probability, ctx.judgement.no_action_threshold, None


def classify(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """The calibrated model over the rulebook's evidence (the rulebook alone when the model is not
    loaded); an LLM's answer is weighed against it by `with_llm`. "No action" is assessed here too, from
    the same reading of the incident, and decided by `no_action_decision`."""
    ctx = runtime.context
    incident = incident_of(state)
    assessment = assess(ctx.rulebook.no_action, incident, _recent_occurrences(ctx, state, incident))
    result, probability, threshold, degraded = _judged(ctx, state, incident, assessment)
    update: dict[str, Any] = {}
    if ctx.llm is not None:
        try:
            # Both the deterministic investigation and the LLM's own exploration are evidence (untrusted).
            findings = [
                *((state.get("investigation") or {}).get("findings") or []),
                *((state.get("exploration") or {}).get("findings") or []),
            ]
            llm_result, usage = ctx.llm.classify(incident, state.get("precedents", []), result, assessment, findings)
            update["llm_usage"] = [{"stage": "classify", **usage.as_dict()}]
            result, note = with_llm(result, llm_result)
            update["llm_verdict"] = note
        except LLMFailure as failure:
            update["fallbacks"] = [{"stage": "classify", "kind": failure.kind, "detail": failure.detail[:500]}]
            update["llm_usage"] = [{"stage": "classify", **failure.usage.as_dict()}]
    update["classification"] = result.model_dump(mode="json")
    update["no_action"] = no_action_decision(assessment, probability, threshold)
    if degraded:
        update["degraded"] = degraded
    update["model"] = None if degraded or ctx.judgement is None else ctx.judgement.version
    summary = f"{result.category}/{result.subcategory} at {result.confidence:.2f} by {result.engine}"
    if result.needs_human:
        summary += " (needs a human)"
    record(runtime, state, "classify", summary, {**update["classification"], "no_action": update["no_action"]})
    return update
