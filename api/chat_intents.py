"""One conversation for both chat bots: a message is routed by intent (agent/intents.py) and answered
here — help, an empty or overlong message, a question about history (with citations), a run's status,
an approval (a bare one asks which run) — or handed back to the bot to start a triage. The bots keep
what is theirs: how a triage is started and how an approval is checked and submitted."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from agent.intents import Routed, route, route_with_llm
from api.ask import Answer, simple_answer, status_answer, which_run
from api.lookup import LookupFailed, full_run_id

Triage = Callable[[str], str]  # the description -> what to say
Decide = Callable[[str, bool], str]  # (full run id, approved) -> what to say


def routed_message(text: str, service: Any) -> tuple[Routed, Any]:
    """The intent, and the LLM when one was needed to settle it (rules first; the LLM only for
    "question or new incident", and only when one is configured)."""
    routed = route(text)
    if not routed.ambiguous or not service.settings.use_llm():
        return routed, None
    llm = service.make_context().llm
    return route_with_llm(text, llm), llm


def question_answer(service: Any, text: str, llm: Any = None, exclude: Collection[str] = ()) -> Answer:
    from api.wiring import make_asker

    answer: Answer = make_asker(service.settings, service.store, llm).question(text, exclude)
    return answer


def reply(text: str, service: Any, triage: Triage, decide: Decide) -> tuple[Routed, str]:
    """What the bot says to a message (the bot escapes it for its platform), and how it was routed."""
    routed, llm = routed_message(text, service)
    simple = simple_answer(routed)
    if simple is not None:
        return routed, simple.answer
    store = service.store
    if routed.intent == "question":
        if llm is None and service.settings.use_llm():  # the rules routed it; the LLM still writes the answer
            llm = service.make_context().llm
        return routed, question_answer(service, routed.text, llm).answer
    if routed.intent == "status":
        return routed, status_answer(store, routed.run_ref).answer
    if routed.intent in ("approve", "reject"):
        if routed.run_ref is None:
            return routed, which_run(store, routed.intent).answer
        try:
            run_id = full_run_id(store.sessions, routed.run_ref)
        except LookupFailed as exc:
            return routed, str(exc)
        return routed, decide(run_id, routed.intent == "approve")
    verb, _, rest = routed.text.partition(" ")
    return routed, triage(rest if verb.lower() == "triage" and rest else routed.text)
