"""What a message to the bots or to `mitigate ask` wants: a new incident, a question about history or
an incident, a run's status, an approval, a rejection, help. Rules from `intents.yaml` decide without
an LLM; with one, the LLM may settle what the rules cannot tell apart (a question or a new incident),
and its answer is validated against the same list.

Only the words around the verb are read: an incident's text is never taken for an approval unless
the message *starts* with the verb, and an approval still goes through the approvers check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from agent.glossary import english_readings

DEFAULT_INTENTS = Path(__file__).with_name("intents.yaml")
Intent = Literal["new_incident", "question", "status", "approve", "reject", "help", "empty", "too_long"]
INTENTS: tuple[str, ...] = ("new_incident", "question", "status", "approve", "reject", "help", "empty", "too_long")
_MENTION = re.compile(r"<@[^>]*>|<at>[^<]*</at>")


@dataclass(frozen=True)
class Rules:
    max_chars: int
    run_id: re.Pattern[str]
    patterns: dict[str, list[re.Pattern[str]]]


@cache
def load_rules(path: Path = DEFAULT_INTENTS) -> Rules:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    patterns = {
        name: [re.compile(p, re.IGNORECASE) for p in data.get(name) or []]
        for name in ("help", "approve", "reject", "status", "question")
    }
    return Rules(int(data["max_chars"]), re.compile(data["run_id"], re.IGNORECASE), patterns)


@dataclass(frozen=True)
class Routed:
    intent: Intent
    text: str  # the message without mentions, trimmed
    run_ref: str | None = None  # a run id (or prefix) named after approve/reject/status
    by: str = "rules"  # or "llm"

    @property
    def ambiguous(self) -> bool:
        """A call an LLM may settle: the rules tell question from incident by form alone (a question
        without a question's form reads as an incident), so either of their calls is open to it."""
        return self.intent in ("new_incident", "question")


def clean(text: str | None) -> str:
    return " ".join(_MENTION.sub(" ", text or "").split())


def route(text: str | None, rules: Rules | None = None) -> Routed:
    rules = rules or load_rules()
    message = clean(text)
    if not message:
        return Routed("empty", "")
    if len(message) > rules.max_chars:
        return Routed("too_long", message)
    if any(p.search(message) for p in rules.patterns["help"]):
        return Routed("help", message)
    for verb in ("approve", "reject", "status"):
        match = next((m for p in rules.patterns[verb] if (m := p.search(message))), None)
        if match is None:
            continue
        # A command names its run right after the verb, or is the verb alone ("approve", "status?");
        # "Decline in throughput on llama-70b" or "Status 500 from the gateway" describe incidents.
        rest = message[match.end() :].strip(" :,")
        first = rest.split()[0].strip("`'\".,;:!?") if rest else ""
        ref = rules.run_id.fullmatch(first)
        if ref is not None:
            return Routed(verb, message, ref.group(1))
        if len(rest.split()) <= 1 and not any(ch.isdigit() for ch in rest):
            return Routed(verb, message)
    probe = f"{message} {english_readings(message)}"
    if any(p.search(message) or p.search(probe) for p in rules.patterns["question"]):
        return Routed("question", message)
    return Routed("new_incident", message)


def route_with_llm(text: str | None, llm: Any) -> Routed:
    """The rules first; when they can only tell "question or incident" by default and an LLM is
    configured, its validated answer decides. Any failure of the LLM keeps the rules' answer."""
    routed = route(text)
    if llm is None or not routed.ambiguous:
        return routed
    try:
        intent, _ = llm.intent(routed.text)
    except Exception:  # the rules' answer stands; an LLM is an aid here
        return routed
    if intent in ("new_incident", "question"):
        return Routed(intent, routed.text, None, "llm")
    return routed
