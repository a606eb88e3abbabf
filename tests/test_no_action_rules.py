"""The "no action" rules read words, not letters: a veto or a piece of evidence must not fire on a
longer word or an identifier that happens to contain it, and must still fire on the real thing."""

from __future__ import annotations

import pytest

from agent.no_action import NoActionAssessment, assess
from agent.rulebook import Rulebook
from agent.schemas import Incident


def _assess(rulebook: Rulebook, text: str) -> NoActionAssessment:
    return assess(rulebook.no_action, Incident(id="NA-1", title="", description=text))


@pytest.mark.parametrize(
    "text",
    [
        "p99 of 8 s against a usual 400 ms; the spike ended and latency is back to normal.",
        "getaddrinfo EAI_AGAIN for the image host for two minutes, none since; back to normal.",
        "All shards progressing again after the 90 s stall; back to normal.",
    ],
)
def test_words_that_merely_contain_again_are_no_recurrence(rulebook: Rulebook, text: str) -> None:
    assert not _assess(rulebook, text).vetoes["recurrence"]


@pytest.mark.parametrize(
    "text",
    [
        "The engine crashed again at 03:10 after the restart; back to normal now.",
        "Third time this week the router pods did this; back to normal now.",
    ],
)
def test_a_fault_that_comes_back_is_still_vetoed(rulebook: Rulebook, text: str) -> None:
    assessment = _assess(rulebook, text)
    assert assessment.vetoes["recurrence"]
    assert not assessment.allows


def test_a_storage_term_is_not_ongoing_impact_but_persisting_errors_are(rulebook: Rulebook) -> None:
    assert not _assess(rulebook, "The cache node's RDB persistence fork took 1.4 s; back to normal.").vetoes["ongoing"]
    assert _assess(rulebook, "Errors persisted after the failover and users see 503s.").vetoes["ongoing"]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("One restart at 04:00, stable 5h since then, other replicas untouched.", "impact_ended"),
        ("Segfault once in the tokenizer, no repeat in four hours.", "impact_ended"),
        ("Crash loop on the nightly build; staging only, prod unaffected.", "non_production"),
        ("CrashLoopBackOff, namespace is team-dev, the values file of an open PR.", "non_production"),
        ("400s spiked to 6 %; all of it is from one tenant sending a retired api-version.", "client_side"),
    ],
)
def test_class_level_evidence_is_read(rulebook: Rulebook, text: str, kind: str) -> None:
    assert _assess(rulebook, text).evidence[kind]


def test_evidence_never_outweighs_a_veto(rulebook: Rulebook) -> None:
    text = "Xid 79 on the node again, staging only, stable 2h since the reboot."
    assessment = _assess(rulebook, text)
    assert assessment.evidence["non_production"] and assessment.vetoes["hardware_error"]
    assert not assessment.allows


@pytest.mark.parametrize(
    "text",
    [
        "Queue hit 400; we scaled the deployment from 8 to 14 replicas and it drained; back to normal.",
        "The alert threshold was corrected to 2000 ms and the page cleared; back to normal.",
        "Restarting the wedged pods released the cache; back to normal.",
    ],
)
def test_a_person_who_acted_forbids_no_action(rulebook: Rulebook, text: str) -> None:
    assessment = _assess(rulebook, text)
    assert assessment.vetoes["already_acted"]
    assert not assessment.allows


def test_describing_a_symptom_is_not_an_action(rulebook: Rulebook) -> None:
    text = "We are seeing increased error rates on one region; they subsided after 3 minutes, back to normal."
    assert not _assess(rulebook, text).vetoes["already_acted"]
