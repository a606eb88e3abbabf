"""Answers to what people ask the copilot, the same for `mitigate ask`, Slack and Teams: questions about
history from the incident store and the postmortem index with citations (ids, titles, what fixed
them, dashboard links), a run's status, which run an approval is for, help, and a short, polite
answer to an empty or overlong message. Read-only: nothing here creates an incident or decides one.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.intents import Routed, load_rules
from api.chat_summary import dashboard_link
from api.lookup import LookupFailed, full_run_id, list_runs

HELP = (
    "I triage incidents of the LLM serving platform and answer questions about past ones. Describe a "
    'problem (the alert, the service, what you see) and I triage it. Ask a question — e.g. "what fixed '
    'the KV cache filling up on mixtral last time?" — and I answer from past incidents and postmortems. '
    "`status RUN_ID` says where a run is; `approve RUN_ID` / `reject RUN_ID` answer a run waiting for "
    "approval (approvers only)."
)
EMPTY = "Hello! Describe a problem and I will triage it, or ask me about past incidents. Say `help` for more."
_ID_LIKE = re.compile(r"[A-Za-z0-9][\w.:-]{2,199}")


def too_long(length: int) -> str:
    limit = load_rules().max_chars
    return (
        f"Sorry, that message is {length:,} characters; I read at most {limit:,}. Please send a short "
        "summary (the alert, the service and what you see) and I will take it from there."
    )


@dataclass
class Answer:
    intent: str
    answer: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _incident_citation(hit: dict[str, Any], public_url: str) -> dict[str, Any]:
    fixed = " ".join(str(x) for x in (hit.get("mitigation"), hit.get("operation")) if x) or "not planned"
    if hit.get("action"):
        fixed += f" ({hit['action']})"
    return {
        "type": "incident",
        "id": hit["id"],
        "title": hit["title"],
        "category": f"{hit.get('category')}/{hit.get('subcategory')}" if hit.get("category") else None,
        "fixed_by": fixed,
        "outcome": hit.get("outcome"),
        "date": str(hit.get("received_at") or "")[:10],
        "url": dashboard_link(public_url, hit["id"]),
    }


def _postmortem_citation(hit: dict[str, Any]) -> dict[str, Any]:
    ttm = hit.get("ttm_hours")
    return {
        "type": "postmortem",
        "id": str(hit.get("id")),
        "title": str(hit.get("title")),
        "category": f"{hit.get('category')}/{hit.get('subcategory')}",
        "fixed_by": str(hit.get("mitigation")) + (f" (mitigated in {ttm:g} h)" if isinstance(ttm, int | float) else ""),
        "outcome": None,
        "date": str(hit.get("date") or "")[:10],
        "url": None,
    }


def _line(c: dict[str, Any]) -> str:
    head = f"- {c['type']} {c['id']}" + (f" ({c['date']})" if c.get("date") else "") + f": {c['title']}"
    tail = f" — {c['category']}, fixed by {c['fixed_by']}" if c.get("category") else f" — {c['fixed_by']}"
    if c.get("outcome"):
        tail += f", {c['outcome']}"
    return head + tail + (f" {c['url']}" if c.get("url") else "")


class Asker:
    """Questions about history, answered from the store's incidents and the postmortem index."""

    def __init__(self, incidents: Any, postmortems: Any = None, public_url: str = "", llm: Any = None) -> None:
        self.incidents = incidents  # store.incident_search.IncidentSearch
        self.postmortems = postmortems  # a search(text, limit) over the index, or None
        self.public_url = public_url
        self.llm = llm

    def _named_incidents(self, text: str, exclude: Collection[str] = ()) -> list[dict[str, Any]]:
        """Incidents the question names by id ("what happened with INC-408-1?")."""
        named = []
        for token in dict.fromkeys(t.rstrip(".:") for t in _ID_LIKE.findall(text)):
            if token in exclude:
                continue
            if any(ch.isdigit() for ch in token) and (hit := self.incidents.get(token)) is not None:
                named.append(hit)
            if len(named) >= 3:
                break
        return named

    def question(self, text: str, exclude: Collection[str] = ()) -> Answer:
        """`exclude`: incidents not to cite (a question asked in an incident's own thread is about its
        history, so that incident is left out)."""
        incidents = self._named_incidents(text, exclude)
        seen = {h["id"] for h in incidents} | set(exclude)
        found = self.incidents.search(text, 5 + len(exclude))
        incidents += [h for h in found if h["id"] not in seen][: 5 - len(incidents)]
        notes = []
        postmortems: list[dict[str, Any]] = []
        if self.postmortems is not None:
            try:
                postmortems = list(self.postmortems.search(text, 3))
            except Exception as exc:  # a broken index is said, the store's answer still given
                notes.append(f"(The postmortem index could not be searched: {type(exc).__name__}.)")
        else:
            notes.append("(No postmortem index is configured: `mitigate postmortems ingest DIR`.)")
        citations = [_incident_citation(h, self.public_url) for h in incidents]
        citations += [_postmortem_citation(h) for h in postmortems]
        if not citations:
            answer = (
                "I found no earlier incident or postmortem matching that. Name the alert, model or deployment "
                "(e.g. `KVCacheFull mixtral`) and ask again."
            )
            return Answer("question", " ".join([answer, *notes]))
        answer = self._prose(text, incidents, postmortems) or self._template(citations)
        return Answer("question", "\n".join([answer, *notes]), citations)

    def _template(self, citations: list[dict[str, Any]]) -> str:
        incidents = [c for c in citations if c["type"] == "incident"]
        postmortems = [c for c in citations if c["type"] == "postmortem"]
        lines = []
        if incidents:
            lines.append(f"{len(incidents)} earlier incident(s) match, newest and closest first:")
            lines.extend(_line(c) for c in incidents)
        if postmortems:
            lines.append("Postmortems that match:")
            lines.extend(_line(c) for c in postmortems)
        return "\n".join(lines)

    def _prose(self, text: str, incidents: list[dict[str, Any]], postmortems: list[dict[str, Any]]) -> str | None:
        if self.llm is None:
            return None
        keep = ("id", "title", "date", "category", "subcategory", "mitigation", "ttm_hours", "snippet")
        matches = {"incidents": incidents, "postmortems": [{k: p.get(k) for k in keep} for p in postmortems]}
        try:
            answer, _ = self.llm.ask(text, matches)
        except Exception:  # the template answers; an LLM is an aid here
            return None
        return str(answer)


def status_answer(store: Any, ref: str | None) -> Answer:
    """Where a run is; without a run id, the runs waiting for approval and the newest ones."""
    if ref:
        try:
            run_id = full_run_id(store.sessions, ref)
        except LookupFailed as exc:
            return Answer("status", str(exc))
        run = store.recorder.run(run_id) or {}
        report = run.get("report") or {}
        said = f"Run `{run_id}` ({run.get('incident_id')}): {run.get('status')}"
        if report:
            said += f"; {report.get('category')}/{report.get('subcategory')}, {report.get('mitigation')}"
        return Answer("status", said + ".", run_id=run_id)
    return Answer("status", "Which run? Say `status RUN_ID`. " + _recent(store))


def _recent(store: Any) -> str:
    waiting = list_runs(store.sessions, status="waiting", limit=5)
    if waiting:
        return "Waiting for approval: " + "; ".join(f"`{r['id'][:12]}` {r['title'][:80]}" for r in waiting) + "."
    newest = list_runs(store.sessions, limit=3)
    if newest:
        return (
            "No run is waiting for approval. Newest: "
            + "; ".join(f"`{r['id'][:12]}` {r['status']}" for r in newest)
            + "."
        )
    return "There are no runs yet."


def which_run(store: Any, verb: str) -> Answer:
    """A bare "approve" or "reject": never guess the run; ask which, listing those waiting."""
    return Answer(verb, f"Which run? Say `{verb} RUN_ID`. " + _recent(store))


def simple_answer(routed: Routed) -> Answer | None:
    """The answers that need nothing but the message: empty, overlong, help."""
    if routed.intent == "empty":
        return Answer("empty", EMPTY)
    if routed.intent == "too_long":
        return Answer("too_long", too_long(len(routed.text)))
    if routed.intent == "help":
        return Answer("help", HELP)
    return None
