"""The rulebook engine: classify an incident by the taxonomy from evidence rules kept as data.

Scoring is additive and explainable: every matched phrase, alert name and signal condition adds its
weight to one subcategory and is returned as evidence. With several factors the earliest cause in the
causal chain wins (infrastructure before model configuration before the engine), and below the
confidence threshold the answer is `unknown`.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from agent.no_action import NoActionRules, NoActionRulesError, parse_no_action
from agent.schemas import UNKNOWN, Classification, Evidence, Incident

DEFAULT_RULEBOOK = Path(__file__).with_name("rulebook.yaml")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


# Per subcategory: the summed weight of the evidence found and the evidence itself.
Scores = dict[str, tuple[float, list[Evidence]]]


class RulebookError(ValueError):
    """The rulebook file is not usable; the message says where."""


@dataclass(frozen=True)
class Phrase:
    pattern: re.Pattern[str]
    weight: float


@dataclass(frozen=True)
class SignalRule:
    metric: str
    op: str
    value: float
    weight: float = 0.0

    def holds(self, signals: Mapping[str, float]) -> float | None:
        """The value that satisfies the condition, or None (the incident's worst value counts)."""
        candidates = [signals[k] for k in (self.metric, f"{self.metric}_peak") if k in signals]
        compare = _OPS[self.op]
        hits = [v for v in candidates if compare(v, self.value)]
        if not hits:
            return None
        return max(hits) if self.op.startswith(">") else min(hits)


@dataclass(frozen=True)
class Alternative:
    """An action other than the playbook's default, chosen by its own evidence: any of `phrases` or
    `signals`, and (when given) also one of `also` (evidence that needs two facts, such as "a new
    deployment" and "a good one still serves")."""

    action: str
    operation: str
    phrases: tuple[re.Pattern[str], ...] = ()
    signals: tuple[SignalRule, ...] = ()
    also: tuple[re.Pattern[str], ...] = ()
    target: str | None = None
    categories: frozenset[str] = frozenset()  # shared alternatives: the categories they apply to

    def applies(self, text: str, signals: Mapping[str, float]) -> bool:
        seen = any(p.search(text) for p in self.phrases) or any(r.holds(signals) is not None for r in self.signals)
        return seen and (not self.also or any(p.search(text) for p in self.also))


@dataclass(frozen=True)
class PlanRule:
    default: str
    operation: str
    target: str | None = None
    automatable: bool = False
    alternatives: tuple[Alternative, ...] = ()


@dataclass(frozen=True)
class Subcategory:
    id: str
    category: str
    layer: int
    description: str
    phrases: tuple[Phrase, ...]
    alerts: tuple[re.Pattern[str], ...]
    signals: tuple[SignalRule, ...]
    plan: PlanRule
    symptom: bool = False


@dataclass(frozen=True)
class Rulebook:
    version: str
    digest: str
    threshold: float
    min_score: float
    share_of_top: float
    cause_markers: re.Pattern[str]
    cause_bonus: float
    categories: dict[str, dict[str, str]]
    actions: dict[str, str]
    subcategories: dict[str, Subcategory]
    shared_alternatives: tuple[Alternative, ...]
    voice_priors: dict[str, dict[str, float]]
    no_action: NoActionRules
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def classify(self, incident: Incident, scores: Scores | None = None) -> Classification:
        return classify(self, incident, scores)


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise RulebookError(f"{where}: bad regular expression {pattern!r}: {exc}") from exc


def _phrases(items: list[dict[str, Any]], where: str) -> tuple[Phrase, ...]:
    return tuple(Phrase(_compile(str(i["p"]), where), float(i["w"])) for i in items)


def _signal(item: dict[str, Any], where: str) -> SignalRule:
    if item.get("op") not in _OPS:
        raise RulebookError(f"{where}: signal op must be one of {sorted(_OPS)}, got {item.get('op')!r}")
    return SignalRule(str(item["metric"]), str(item["op"]), float(item["value"]), float(item.get("w", 0)))


def _alternative(alt: dict[str, Any], where: str) -> Alternative:
    when = alt.get("when", {})
    return Alternative(
        action=str(alt["action"]),
        operation=str(alt["operation"]),
        phrases=tuple(_compile(p, where) for p in when.get("phrases", [])),
        signals=tuple(_signal(s, where) for s in when.get("signals", [])),
        also=tuple(_compile(p, where) for p in when.get("also", [])),
        target=alt.get("target"),
        categories=frozenset(alt.get("categories", [])),
    )


def _plan(raw: dict[str, Any], where: str) -> PlanRule:
    alternatives = [_alternative(alt, where) for alt in raw.get("alternatives", [])]
    return PlanRule(
        default=str(raw["default"]),
        operation=str(raw["operation"]),
        target=raw.get("target"),
        automatable=bool(raw.get("automatable", False)),
        alternatives=tuple(alternatives),
    )


def parse_rulebook(text: str) -> Rulebook:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulebookError(f"rulebook is not valid YAML: {exc}") from exc
    try:
        subs: dict[str, Subcategory] = {}
        for sub_id, raw in data["subcategories"].items():
            where = f"subcategories.{sub_id}"
            if raw["category"] not in data["categories"]:
                raise RulebookError(f"{where}: unknown category {raw['category']!r}")
            subs[sub_id] = Subcategory(
                id=sub_id,
                category=raw["category"],
                layer=int(raw["layer"]),
                description=str(raw["description"]),
                phrases=_phrases(raw.get("phrases", []), where),
                alerts=tuple(_compile(a, where) for a in raw.get("alerts", [])),
                signals=tuple(_signal(s, where) for s in raw.get("signals", [])),
                plan=_plan(raw["plan"], where),
                symptom=bool(raw.get("symptom", False)),
            )
        cause = data["earliest_cause"]
        markers = "|".join(f"(?:{m})" for m in cause["markers"])
        return Rulebook(
            version=str(data["version"]),
            digest=hashlib.sha256(text.encode()).hexdigest()[:16],
            threshold=float(data["threshold"]),
            min_score=float(data["min_score"]),
            share_of_top=float(cause["share_of_top"]),
            cause_markers=_compile(rf"\b(?:{markers})\b", "earliest_cause.markers"),
            cause_bonus=float(cause["bonus"]),
            categories=data["categories"],
            actions={str(k): str(v) for k, v in data["actions"].items()},
            subcategories=subs,
            voice_priors={
                str(voice): {str(c): float(p) for c, p in prior.items()}
                for voice, prior in (data.get("voice_priors") or {}).items()
            },
            shared_alternatives=tuple(
                _alternative(alt, f"shared_alternatives.{name}")
                for name, alt in (data.get("shared_alternatives") or {}).items()
            ),
            no_action=parse_no_action(data["no_action"]),
            raw=data,
        )
    except NoActionRulesError as exc:
        raise RulebookError(str(exc)) from exc
    except (KeyError, TypeError) as exc:
        raise RulebookError(f"rulebook is missing or mistypes a required field: {exc}") from exc


@cache
def load_rulebook(path: Path = DEFAULT_RULEBOOK) -> Rulebook:
    return parse_rulebook(Path(path).read_text(encoding="utf-8"))


def _cause_spans(rulebook: Rulebook, text: str) -> list[tuple[int, int]]:
    """Character spans of the clauses that follow a causal marker ("caused by ...")."""
    spans = []
    for match in rulebook.cause_markers.finditer(text):
        end = len(text)
        stop = re.search(r"[.;\n]", text[match.end() :])
        if stop:
            end = match.end() + stop.start()
        spans.append((match.end(), end))
    return spans


_NEGATION = re.compile(r"\b(?:no|not|without|never|nor|zero|non)\b[\w\s-]{0,12}$", re.IGNORECASE)


def _negated(text: str, start: int) -> bool:
    """A mention right after a negation in the same clause ("no XID", "without any 429s")."""
    window = text[max(0, start - 20) : start]
    window = re.split(r"[.;:,!?\n()]", window)[-1]
    return bool(_NEGATION.search(window))


def score_subcategories(rulebook: Rulebook, incident: Incident) -> Scores:
    text = incident.text()
    spans = _cause_spans(rulebook, text)
    alertname = incident.alert.labels.get("alertname", "") if incident.alert else ""
    scores: dict[str, tuple[float, list[Evidence]]] = {}
    for sub in rulebook.subcategories.values():
        total = 0.0
        evidence: list[Evidence] = []
        for phrase in sub.phrases:
            matches = list(phrase.pattern.finditer(text))
            if phrase.weight > 0:  # "no XID", "not a crash": negated mentions are not evidence for
                matches = [m for m in matches if not _negated(text, m.start())]
            if not matches:
                continue
            match = matches[0]
            weight = phrase.weight
            if weight > 0 and any(a <= m.start() < b for a, b in spans for m in matches):
                weight *= rulebook.cause_bonus
            total += weight
            evidence.append(Evidence(source="text", detail=f"{match.group(0)!r}", weight=weight, points_to=sub.id))
        for pattern in sub.alerts:
            if alertname and pattern.search(alertname):
                total += 3.0
                evidence.append(Evidence(source="alert", detail=f"alert {alertname}", weight=3.0, points_to=sub.id))
                break
        for rule in sub.signals:
            value = rule.holds(incident.signals)
            if value is not None:
                total += rule.weight
                evidence.append(
                    Evidence(
                        source="signal",
                        detail=f"{rule.metric}={value:g} {rule.op} {rule.value:g}",
                        weight=rule.weight,
                        points_to=sub.id,
                    )
                )
        if total > 0:
            scores[sub.id] = (total, evidence)
    return scores


def classify(rulebook: Rulebook, incident: Incident, scores: Scores | None = None) -> Classification:
    """`scores`: the incident's `score_subcategories`, when the caller has them already."""
    scores = score_subcategories(rulebook, incident) if scores is None else scores
    ranked = sorted(scores.items(), key=lambda kv: kv[1][0], reverse=True)
    if not ranked or ranked[0][1][0] <= 0:
        return Classification(
            category="unknown",
            subcategory=UNKNOWN,
            confidence=0.1,
            needs_human=True,
            needs_human_reason="no rulebook evidence points to any category",
        )

    top_id, (top_score, _) = ranked[0]
    chosen = top_id
    top_sub = rulebook.subcategories[top_id]
    # Earliest cause: a strong-enough candidate from an earlier layer of the causal chain wins over
    # a symptom (engine exhaustion on a bad node is a bad node).
    if top_sub.symptom:
        for sub_id, (score, _) in ranked[1:]:
            sub = rulebook.subcategories[sub_id]
            if (
                0 < sub.layer < top_sub.layer
                and score >= rulebook.min_score
                and score >= rulebook.share_of_top * top_score
            ):
                chosen = sub_id
                break

    chosen_score, evidence = scores[chosen]
    sub = rulebook.subcategories[chosen]
    rival = max((s for k, (s, _) in scores.items() if rulebook.subcategories[k].category != sub.category), default=0.0)
    # Strength grows with evidence and saturates; margin falls when another category is close.
    strength = 1.0 - math.exp(-chosen_score / 4.0)
    margin = chosen_score / (chosen_score + rival)
    confidence = round(strength * (0.4 + 0.6 * margin), 3)
    # Under the threshold (or the minimum score) the answer is still the best guess, for a human to decide.
    thin = confidence < rulebook.threshold or chosen_score < rulebook.min_score
    return Classification(
        category=sub.category,  # type: ignore[arg-type]
        subcategory=chosen,
        confidence=confidence,
        evidence=evidence,
        rationale=f"{sub.description} (score {chosen_score:.1f}, rulebook {rulebook.version})",
        needs_human=thin,
        needs_human_reason=(
            f"rulebook score {chosen_score:.1f}, confidence {confidence:.2f} "
            f"under its threshold {rulebook.threshold:.2f}"
            if thin
            else ""
        ),
    )
