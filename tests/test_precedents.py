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
