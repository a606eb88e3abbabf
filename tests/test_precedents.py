from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent.graph import builder
from agent.precedents import combine, vote
from agent.schemas import Classification, Incident


def _p(pid: str, category: str, subcategory: str, mitigation: str = "M1") -> dict:
    return {"id": pid, "title": pid, "category": category, "subcategory": subcategory, "mitigation": mitigation}


def test_vote_weights_fall_with_rank():
    shares = vote([_p("a", "A3", "timeout"), _p("b", "A1", "bad_node"), _p("c", "A1", "bad_node")])
    # 1 for the first, 1/2 + 1/3 for the others: the top-ranked one alone outweighs either of them
    assert shares[("A3", "timeout")] == pytest.approx(1 / (1 + 1 / 2 + 1 / 3))
    assert shares[("A1", "bad_node")] == pytest.approx((1 / 2 + 1 / 3) / (1 + 1 / 2 + 1 / 3))


def test_agreement_raises_and_disagreement_lowers_confidence(rulebook):
    base = Classification(category="A3", subcategory="timeout", confidence=0.6)
    agree = combine(rulebook, base, [_p(str(i), "A3", "timeout") for i in range(3)])
    disagree = combine(rulebook, base, [_p(str(i), "A2", "header_misconfig") for i in range(3)])
    assert agree.confidence > 0.6 > disagree.confidence
    assert agree.subcategory == disagree.subcategory == "timeout"  # the label stays the rulebook's
    assert any(e.source == "precedent" for e in agree.evidence)


def test_strong_precedents_rescue_unknown_and_weak_ones_do_not(rulebook):
    unknown = Classification(category="unknown", subcategory="unknown", confidence=0.1)
    rescued = combine(rulebook, unknown, [_p(str(i), "A1", "redis") for i in range(4)])
    assert (rescued.category, rescued.subcategory) == ("A1", "redis") and rescued.confidence >= rulebook.threshold
    split = combine(
        rulebook, unknown, [_p("1", "A1", "redis"), _p("2", "A3", "crash"), _p("3", "A2", "invalid_output")]
    )
    assert split.category == "unknown"
    too_few = combine(rulebook, unknown, [_p("1", "A1", "redis"), _p("2", "A1", "redis")])
    assert too_few.category == "unknown"


class _Retriever:
    def __init__(self, precedents: list[dict]) -> None:
        self.precedents = precedents
        self.asked: list[Incident] = []

    def search(self, incident: Incident, k: int) -> list[dict]:
        self.asked.append(incident)
        return self.precedents[:k]


def test_the_graph_cites_precedents_and_never_takes_m5_from_them(context):
    context.retriever = _Retriever([_p(str(i), "A3", "timeout", "M5") for i in range(5)])
    incident = {"id": "X", "title": "HTTP 408 on streaming completions, still failing"}
    report = builder.compile(checkpointer=InMemorySaver()).invoke(
        {"run_id": "r", "incident": incident}, {"configurable": {"thread_id": "r"}}, context=context
    )["report"]
    assert [p["id"] for p in report["precedents"]] == ["0", "1", "2", "3", "4"]
    assert report["mitigation"] != "M5"  # five M5 precedents do not outweigh ongoing impact
    assert context.retriever.asked[0].id == "X"


def _exhausted() -> Incident:
    return Incident(
        id="INC-RE",
        title="Requests queueing on llama-70b",
        description="Queue depth and KV cache are high and requests wait; throttling continues.",
        signals={"queue_depth": 180.0},
    )


def test_precedents_choose_between_the_playbooks_own_alternatives(rulebook, policy):
    from agent import planner

    classification = Classification(category="A3", subcategory="resource_exhaustion", confidence=0.8)
    entities = {"namespace": "llm-serving", "deployment": "llama-70b"}
    alone = planner.plan(rulebook, policy, _exhausted(), classification, entities)
    playbook = rulebook.subcategories["resource_exhaustion"].plan
    other = next(a for a in playbook.alternatives if a.action not in (alone.mitigation, "M5", "M6"))
    fixed_by_other = [_p(str(i), "A3", "resource_exhaustion", other.action) for i in range(3)]
    swayed = planner.plan(rulebook, policy, _exhausted(), classification, entities, fixed_by_other)
    assert alone.mitigation == playbook.default
    assert swayed.mitigation == other.action and "precedents" in swayed.rationale
    assert "Similar past incidents: 0 (" in swayed.rationale


def test_precedents_never_talk_the_planner_into_no_action_or_a_deletion(rulebook, policy):
    from agent import planner

    classification = Classification(category="A3", subcategory="resource_exhaustion", confidence=0.8)
    entities = {"namespace": "llm-serving", "deployment": "llama-70b"}
    alone = planner.plan(rulebook, policy, _exhausted(), classification, entities)
    for action in ("M5", "M6"):
        precedents = [_p(str(i), "A3", "resource_exhaustion", action) for i in range(5)]
        assert planner.plan(rulebook, policy, _exhausted(), classification, entities, precedents).mitigation == (
            alone.mitigation
        )
