""" "No action needed" (M5) as its own safety-critical decision: typed evidence that may allow it, and
hard vetoes that forbid it whatever any score says.

The rules are data (the `no_action` section of the rulebook). `assess` reads an incident (and, when
the service has a store, the incident history) and returns which kinds of evidence it found, which
vetoes it checked and which of them hold. The learned model (agent/judgement.py) turns the evidence
into a calibrated probability; the decision itself is `NoActionAssessment.allows` plus that
probability against the operating threshold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.schemas import Incident

EVIDENCE_KINDS = (
    "impact_ended",
    "client_side",
    "non_production",
    "automation_remediated",
    "planned_or_expected",
    "alert_misfire",
)
VETOES = ("recurrence", "hardware_error", "leak_restart", "quality_regression", "already_acted", "ongoing")
DEFAULT_SLA_TARGET = 0.99
HISTORY_BOUND = 2000  # incidents the recurrence veto looks through, newest first (store/incident_queries.py)
_WINDOW = 40  # characters before a match that may negate it ("no recurrence", "not yet recovered")
_NEGATED_EVIDENCE = re.compile(r"(?:\bno|\bnot|\bnever|n.t|\bwithout|\bnor)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)


class NoActionRulesError(ValueError):
    """The rulebook's `no_action` section is unusable; the message says where."""


@dataclass(frozen=True)
class Veto:
    patterns: tuple[re.Pattern[str], ...]
    ignore_before: re.Pattern[str] | None = None


@dataclass(frozen=True)
class NoActionRules:
    ongoing_above: dict[str, float]
    low_volume_rps: float  # under this request rate, a share of requests is noise, not impact
    sla_floor: float  # an SLA reading without its target is ongoing impact under this
    state_signals: frozenset[str]  # readings of the platform's state, not of users' experience
    evidence: dict[str, tuple[re.Pattern[str], ...]]
    vetoes: dict[str, Veto]
    xid_codes: frozenset[int]
    leak_restart: re.Pattern[str]
    history_days: int


@dataclass
class NoActionAssessment:
    """What the incident says for and against "no action": evidence per kind, vetoes that hold."""

    evidence: dict[str, list[str]] = field(default_factory=dict)  # kind -> what was seen
    vetoes: dict[str, list[str]] = field(default_factory=dict)  # veto -> why it holds (empty: it does not)

    @property
    def vetoed(self) -> bool:
        return any(self.vetoes.values())

    @property
    def allows(self) -> bool:
        """At least one kind of positive evidence and no veto: the model may then decide M5."""
        return not self.vetoed and any(self.evidence.values())

    def held_vetoes(self) -> list[str]:
        return [f"{name}: {'; '.join(why)}" for name, why in self.vetoes.items() if why]

    def evidence_lines(self) -> list[str]:
        return [f"{kind}: {'; '.join(seen)}" for kind, seen in self.evidence.items() if seen]

    def checked(self) -> list[str]:
        """Every veto with its verdict, for the report of an M5 (and of a refused one)."""
        return [f"{name}: {'holds (' + '; '.join(why) + ')' if why else 'clear'}" for name, why in self.vetoes.items()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "evidence": {k: v for k, v in self.evidence.items() if v},
            "vetoes": {k: v for k, v in self.vetoes.items() if v},
            "checked": self.checked(),
        }


def _compile(pattern: Any, where: str) -> re.Pattern[str]:
    try:
        return re.compile(str(pattern), re.IGNORECASE)
    except re.error as exc:
        raise NoActionRulesError(f"{where}: bad regular expression {pattern!r}: {exc}") from exc


def parse_no_action(raw: Mapping[str, Any]) -> NoActionRules:
    try:
        evidence = {
            kind: tuple(_compile(p, f"no_action.evidence.{kind}") for p in raw["evidence"][kind])
            for kind in EVIDENCE_KINDS
        }
        vetoes = {}
        for name in VETOES:
            spec = raw["vetoes"][name]
            ignore = spec.get("ignore")
            vetoes[name] = Veto(
                tuple(_compile(p, f"no_action.vetoes.{name}") for p in spec.get("phrases", [])),
                _compile(ignore, f"no_action.vetoes.{name}.ignore") if ignore else None,
            )
        return NoActionRules(
            ongoing_above={str(k): float(v) for k, v in raw["ongoing_above"].items()},
            low_volume_rps=float(raw.get("low_volume_rps", 0.0)),
            sla_floor=float(raw.get("sla_floor_without_target", DEFAULT_SLA_TARGET)),
            state_signals=frozenset(str(s) for s in raw.get("state_signals", [])),
            evidence=evidence,
            vetoes=vetoes,
            xid_codes=frozenset(int(c) for c in raw["vetoes"]["hardware_error"].get("xid_codes", [])),
            leak_restart=_compile(raw["vetoes"]["leak_restart"]["restart"], "no_action.vetoes.leak_restart.restart"),
            history_days=int(raw["vetoes"]["recurrence"].get("history_days", 7)),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise NoActionRulesError(f"no_action section is missing or mistypes a field: {exc}") from exc


def _matches(patterns: tuple[re.Pattern[str], ...], text: str, ignore: re.Pattern[str] | None) -> list[str]:
    seen = []
    for pattern in patterns:
        for match in pattern.finditer(text):
            before = text[max(0, match.start() - _WINDOW) : match.start()]
            before = re.split(r"[.;:!?\n()|]", before)[-1]
            if ignore is not None and ignore.search(before):
                continue
            seen.append(repr(match.group(0).strip()))
            break
    return seen


_SHARES = frozenset({"error_rate", "http_408_rate", "http_429_rate", "http_5xx_rate", "http_4xx_rate", "sla"})


def _signal_readings(rules: NoActionRules, signals: Mapping[str, float]) -> tuple[list[str], list[tuple[str, str]]]:
    """Recovered readings, and ongoing ones as (metric, what) so the caller can tell state from impact."""
    recovered: list[str] = []
    ongoing: list[tuple[str, str]] = []
    # One failed request out of four is a 25 % error rate: at a trickle of traffic, shares say nothing.
    trickle = signals.get("request_rate_rps", float("inf")) < rules.low_volume_rps
    for metric, limit in rules.ongoing_above.items():
        if metric not in signals or (trickle and metric in _SHARES):
            continue
        now, peak = signals[metric], signals.get(f"{metric}_peak")
        if now >= limit:
            ongoing.append((metric, f"{metric}={now:g} at or above {limit:g}"))
        elif peak is not None and peak >= limit:
            recovered.append(f"{metric} back to {now:g} (peak {peak:g}, threshold {limit:g})")
    if "sla" in signals and not trickle:
        target = signals.get("sla_target", rules.sla_floor)
        worst = signals.get("sla_peak")  # for the SLA, the window's worst reading is its lowest
        if signals["sla"] < target:
            ongoing.append(("sla", f"SLA {signals['sla']:g} below target {target:g}"))
        elif worst is not None and worst < target:
            # Meeting the target is not an ending unless the SLA was missed in the window: a CPU hog
            # that never dented it has not "recovered".
            recovered.append(f"SLA back to {signals['sla']:g} (lowest {worst:g}, target {target:g})")
    return recovered, ongoing


def known_occurrences(
    read: Mapping[str, Any] | None, incident_id: str, since: datetime, bound: int = HISTORY_BOUND
) -> list[str] | None:
    """The recurrence veto's answer (ids of the incident's recurrences received since `since`, newest
    first) from what this run's investigation read of the store (tools/investigate/history.py
    `RecurrenceRead`), or None when that read cannot be sure of it and the store must be asked.

    The read lists every recurrence received after its `complete_after` (its own cutoff, or where its
    window or its list was cut). So when `since` is later, the recurrences since `since` are exactly
    those it lists; and the incidents since then all lie in its window of `window` newest, so the
    veto's own bound (the `bound` newest since `since`) would not have cut them either when `window`
    is not above it. Anything else (another incident's read, a cut list reaching into the veto's days,
    a malformed read) is None: the veto never counts fewer than its own query would. The read is the
    store as investigate saw it earlier in the run; an alert of the same alert and target arriving in
    between normally joins this open incident as a correlated duplicate, which both reads leave out."""
    if not read or read.get("incident") != incident_id:
        return None
    try:
        after = _aware(datetime.fromisoformat(read["complete_after"]))
        window = int(read["window"])
        listed = [(str(rid), _aware(datetime.fromisoformat(at))) for rid, at in read["recurrences"]]
    except (KeyError, TypeError, ValueError):
        return None
    start = _aware(since)
    if window > bound or start <= after:
        return None
    return [rid for rid, at in listed if at >= start]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def assess(rules: NoActionRules, incident: Incident, recent_occurrences: list[str] | None = None) -> NoActionAssessment:
    """`recent_occurrences`: earlier incidents of the same alert or target within the history window,
    as the store found them (None when there is no store to ask)."""
    text = incident.text()
    out = NoActionAssessment()
    for kind in EVIDENCE_KINDS:
        out.evidence[kind] = _matches(rules.evidence[kind], text, _NEGATED_EVIDENCE)
    recovered, ongoing = _signal_readings(rules, incident.signals)
    out.evidence["impact_ended"] += recovered
    alert = incident.alert
    if alert is not None and alert.status == "resolved":
        out.evidence["impact_ended"].append("the alert is resolved")

    for name in VETOES:
        veto = rules.vetoes[name]
        out.vetoes[name] = _matches(veto.patterns, text, veto.ignore_before)
    if recent_occurrences:
        out.vetoes["recurrence"].append(
            f"{len(recent_occurrences)} earlier incident(s) of the same alert or target in the last "
            f"{rules.history_days} days: {', '.join(recent_occurrences[:3])}"
        )
    xid = incident.signals.get("gpu_xid")
    if xid is not None and int(xid) in rules.xid_codes:
        out.vetoes["hardware_error"].append(f"NVIDIA Xid {int(xid)} reported")
    if incident.signals.get("ecc_dbe_errors", 0) > 0 or incident.signals.get("row_remap_failures", 0) > 0:
        out.vetoes["hardware_error"].append("double-bit ECC errors or failed row remapping reported")
    # A restart does not fix a leak, it only resets the clock: a leak with restarts is never "no action".
    if out.vetoes["leak_restart"] and not (rules.leak_restart.search(text) or incident.signals.get("oom_kills", 0) > 0):
        out.vetoes["leak_restart"] = []
    # A quality regression only nobody outside sees (a staging canary that was blocked) is not user-visible.
    if out.vetoes["quality_regression"] and out.evidence["non_production"]:
        out.vetoes["quality_regression"] = []
    # Readings of a non-production scope are not production impact (a chaos experiment in staging
    # errors by design); readings of the platform's state are expected during planned work or right
    # after automation acted, while users' own readings (SLA, errors, latency) still veto.
    non_production = bool(out.evidence["non_production"])
    expected_state = non_production or bool(
        out.evidence["planned_or_expected"] or out.evidence["automation_remediated"]
    )
    out.vetoes["ongoing"] += [
        what
        for metric, what in ongoing
        if not non_production and not (expected_state and metric in rules.state_signals)
    ]
    return out
