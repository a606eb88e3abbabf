"""The learned model's view of an incident: the rulebook's evidence, the no-action evidence and
vetoes, canonical signals, the shape of the text and its sentence embedding, as one numeric vector.

The rulebook stays the explanation: every number here comes from a rule a DRI can read, from a
signal reading, or from the embedding of the text itself. `FEATURE_VERSION` changes whenever the
meaning or order of the vector changes, so that an artefact trained on another layout is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from agent.canonical import canonicalise
from agent.no_action import EVIDENCE_KINDS, VETOES, NoActionAssessment
from agent.rulebook import Rulebook, Scores, score_subcategories
from agent.schemas import CATEGORIES, Incident

FEATURE_VERSION = "6"
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# How the text is written says something the words do not: a public status page rarely names a cause
# and is mostly about infrastructure; a customer ticket describes symptoms; a chat thread argues causes.
VOICES = {
    "status_page": re.compile(
        r"^(?:investigating|identified|monitoring|resolved|update|scheduled|in progress|completed|postmortem)\s*[-–—:]",
        re.IGNORECASE | re.MULTILINE,
    ),
    "ticket": re.compile(
        r"\bticket\b|#\s?[A-Z]{2,}-?\d{3,}|\bfrom:\s|\bcustomer (?:reports?|writes|says)", re.IGNORECASE
    ),
    "chat": re.compile(r"^\s*(?:\[?\d{1,2}:\d{2}\]?\s*)?@?[a-z][\w.-]{1,20}:\s", re.IGNORECASE | re.MULTILINE),
}


@dataclass(frozen=True)
class FeatureLayout:
    """Names of the dense features, in order; the embedding follows them."""

    subcategories: tuple[str, ...]
    signals: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        names = [f"rule:{s}" for s in self.subcategories]
        names += [f"rule_against:{s}" for s in self.subcategories]
        names += [f"rule_category:{c}" for c in CATEGORIES]
        names += [f"signal_ongoing:{s}" for s in self.signals] + [f"signal_recovered:{s}" for s in self.signals]
        names += ["sla_below_target", "sla_meets_target"]
        names += [f"no_action:{k}" for k in EVIDENCE_KINDS] + [f"veto:{v}" for v in VETOES]
        names += ["alert_present", "alert_resolved", "alert_only", "text_log_chars", "text_lines", "non_ascii_share"]
        names += [f"voice:{v}" for v in VOICES]
        names += ["names_no_cause", "status_page_naming_no_cause"]
        return names + [f"rulebook_pick:{c}" for c in CATEGORIES] + ["rulebook_confidence"]


def layout_for(rulebook: Rulebook) -> FeatureLayout:
    return FeatureLayout(tuple(rulebook.subcategories), tuple(rulebook.no_action.ongoing_above))


def with_canonical_signals(incident: Incident) -> Incident:
    """The incident with converted readings added (its own readings win)."""
    converted = canonicalise(incident.signals).signals
    if all(incident.signals.get(k) == v for k, v in converted.items()):
        return incident
    return incident.model_copy(update={"signals": {**incident.signals, **converted}})


def embedding_text(incident: Incident) -> str:
    """What the sentence embedding reads: the text, and the names of signals no rule reads (a metric
    called `redis_master_link_up` says something even when nothing maps it)."""
    unmapped = canonicalise(incident.signals).unmapped
    names = " ".join(n.replace("_", " ").replace(":", " ") for n in unmapped)
    return f"{incident.text()}\nsignals: {names}" if names else incident.text()


def dense_features(
    rulebook: Rulebook, incident: Incident, assessment: NoActionAssessment, scores: Scores | None = None
) -> np.ndarray:
    """Every feature but the embedding and the neighbour votes (agent/judgement.py adds those).
    `scores`: the incident's rulebook scores, when the caller has them already (triage's hot path)."""
    layout = layout_for(rulebook)
    scores = score_subcategories(rulebook, incident) if scores is None else scores
    positive = [max(0.0, scores.get(s, (0.0, []))[0]) for s in layout.subcategories]
    against = [1.0 if any(e.weight < 0 for e in scores.get(s, (0.0, []))[1]) else 0.0 for s in layout.subcategories]
    by_category = [
        max(
            (p for s, p in zip(layout.subcategories, positive, strict=True) if rulebook.subcategories[s].category == c),
            default=0.0,
        )
        for c in CATEGORIES
    ]
    signals = incident.signals
    limits = rulebook.no_action.ongoing_above
    ongoing = [1.0 if signals.get(s, -math.inf) >= limits[s] else 0.0 for s in layout.signals]
    recovered = [
        1.0 if signals.get(s, math.inf) < limits[s] <= signals.get(f"{s}_peak", -math.inf) else 0.0
        for s in layout.signals
    ]
    target = signals.get("sla_target", 0.99)
    sla = [1.0 if signals.get("sla", 1.0) < target else 0.0, 1.0 if signals.get("sla", 0.0) >= target else 0.0]
    evidence = [float(len(assessment.evidence.get(k, []))) for k in EVIDENCE_KINDS]
    vetoes = [1.0 if assessment.vetoes.get(v) else 0.0 for v in VETOES]
    text = incident.text()
    alert = incident.alert
    shape = [
        1.0 if alert is not None else 0.0,
        1.0 if alert is not None and alert.status == "resolved" else 0.0,
        1.0 if alert is not None and not incident.description.strip() else 0.0,
        math.log1p(len(text)),
        math.log1p(text.count("\n")),
        len(_NON_ASCII.findall(text)) / max(1, len(text)),
    ]
    voices = [1.0 if pattern.search(text) else 0.0 for pattern in VOICES.values()]
    # A note that names no cause is judged by who writes such notes: public status pages that do not say
    # why are mostly about the infrastructure underneath, which the linear heads cannot infer from
    # "no evidence" and "status page" apart.
    no_cause = 1.0 if max(positive, default=0.0) < rulebook.min_score else 0.0
    voices += [no_cause, no_cause * voices[0]]
    # The rulebook's own answer carries its earliest-cause rule, which no weighted sum of scores can.
    pick = rulebook.classify(incident, scores)
    picked = [1.0 if pick.category == c else 0.0 for c in CATEGORIES]
    head = np.log1p(positive).tolist() + against + np.log1p(by_category).tolist()
    vector = head + ongoing + recovered + sla + evidence + vetoes + shape + voices + picked + [pick.confidence]
    return np.asarray(vector, dtype=np.float64)
