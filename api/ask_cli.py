"""`mitigate ask "TEXT" [--json]`: what the chat bots answer, on the command line. Read-only: a message
that describes a new incident is named as one, not triaged (`mitigate triage` does that)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_ask(args: argparse.Namespace) -> int:
    from agent.intents import route_with_llm
    from api.ask import Answer, simple_answer, status_answer, which_run
    from api.settings import get_settings
    from api.wiring import make_asker, make_llm, open_store

    settings = get_settings()
    llm = make_llm(settings) if settings.use_llm() else None
    routed = route_with_llm(" ".join(args.text), llm)
    answer = simple_answer(routed)
    if answer is None:
        store = open_store(settings)
        if routed.intent == "question":
            answer = make_asker(settings, store, llm).question(routed.text)
        elif routed.intent == "status":
            answer = status_answer(store, routed.run_ref)
        elif routed.intent in ("approve", "reject") and routed.run_ref is None:
            answer = which_run(store, routed.intent)
        elif routed.intent in ("approve", "reject"):
            answer = Answer(
                routed.intent,
                f"`ask` changes nothing: {routed.intent} with `mitigate {routed.intent} {routed.run_ref}` "
                "(as the owner of MITIGATE_APPROVER_TOKEN), or in Slack, Teams or the dashboard.",
            )
        else:
            answer = Answer(
                "new_incident",
                "This reads like a new incident; `ask` creates none. Triage it with "
                "`mitigate triage -` (the text on stdin), or ask a question about past incidents.",
            )
    _print(answer.as_dict(), args.json)
    return 0


def _print(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        keep = {"intent": answer["intent"], "answer": answer["answer"], "citations": answer["citations"]}
        if answer.get("run_id"):
            keep["run_id"] = answer["run_id"]
        print(json.dumps(keep, ensure_ascii=False, indent=1))
        return
    print(answer["answer"])


def add_ask_command(sub: Any) -> None:
    ask = sub.add_parser(
        "ask",
        help="ask about past incidents and postmortems, a run's status, or what the bot would do with a message",
        description="Answer a message as the Slack and Teams bots do, without changing anything: a question is "
        "answered from the incident store and the postmortem index with citations; `status RUN_ID` says where "
        "a run is; a new incident is named as one (triage it with `mitigate triage`). Any language; answers "
        "are in English.",
    )
    ask.add_argument("text", nargs="*", help='the message, e.g. "what fixed the KV cache on mixtral last time?"')
    ask.add_argument("--json", action="store_true", help="print {intent, answer, citations} as JSON")
    ask.set_defaults(func=cmd_ask)
