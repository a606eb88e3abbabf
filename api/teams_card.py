"""A `ChatSummary` as a Microsoft Teams Adaptive Card (schema 1.4), within Teams' message size (28 KB).

Incident text goes only into `RichTextBlock` text runs, which Adaptive Cards never read as Markdown:
no link, mention or formatting can come from it. Fact values (Markdown in Teams) hold only our own
words. A destructive or high-risk approval opens a confirmation (`Action.ShowCard`) that says what it
does and asks why before the final Approve.
"""

from __future__ import annotations

import json
from typing import Any

from api.chat_summary import ChatSummary

VERSION = "1.4"
MAX_BYTES = 28_000
TEXT_MAX = 2_000


def _cut(text: str, limit: int = TEXT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _runs(label: str, text: str) -> dict[str, Any]:
    """A label (ours, bold) and text that may be the incident's, as plain text runs."""
    inlines: list[dict[str, Any]] = []
    if label:
        inlines.append({"type": "TextRun", "text": f"{label}: ", "weight": "Bolder"})
    inlines.append({"type": "TextRun", "text": _cut(text) or " "})
    return {"type": "RichTextBlock", "inlines": inlines}


def _submit(title: str, verb: str, run_id: str, **data: Any) -> dict[str, Any]:
    return {"type": "Action.Submit", "title": title, "data": {"mitigate": verb, "run_id": run_id, **data}}


def _actions(summary: ChatSummary) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    if summary.waiting and summary.confirm:
        confirm_card = {
            "type": "AdaptiveCard",
            "body": [
                _runs("", summary.confirm),
                {
                    "type": "Input.Text",
                    "id": "reason",
                    "label": "Why (recorded with your approval)",
                    "isRequired": True,
                    "errorMessage": "Say why before approving",
                    "maxLength": 500,
                },
            ],
            "actions": [_submit("Confirm approval", "approve", summary.run_id, confirmed=True)],
        }
        actions.append({"type": "Action.ShowCard", "title": "Approve…", "card": confirm_card})
    elif summary.waiting:
        actions.append(_submit("Approve", "approve", summary.run_id))
    if summary.waiting:
        actions.append(_submit("Reject", "reject", summary.run_id))
    if summary.link:
        actions.append({"type": "Action.OpenUrl", "title": "Open in the dashboard", "url": summary.link})
    return actions


def _body(
    summary: ChatSummary, precedents: list[str], not_done: list[str], explored: list[str]
) -> list[dict[str, Any]]:
    facts = [
        {"title": "Category", "value": summary.classification},
        {"title": "Risk", "value": summary.risk},
        {"title": "Needs a human", "value": summary.needs_human or "no"},
    ]
    if summary.approvals:
        facts.append({"title": "Approvals", "value": summary.approvals})
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": f"mitigate: {summary.headline}", "weight": "Bolder", "size": "Medium"},
        {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": _cut(summary.title), "weight": "Bolder"}]},
        _runs("Where", summary.where),
        {"type": "FactSet", "facts": facts},
        _runs("Plan", summary.plan),
    ]
    if summary.now:
        body.append(_runs("Now", ", ".join(summary.now)))
    body.append(_runs("Dry run", summary.dry_run))
    body.extend(_runs("Found", item) for item in summary.findings)
    body.extend(_runs("Not looked at", item) for item in summary.gaps)
    if summary.conclusion:
        body.append(_runs("LLM concluded (data, not a decision)", summary.conclusion))
    body.extend(_runs("LLM found", item) for item in explored)
    for label, items in (("Precedent", precedents), ("Happened", summary.outcome), ("Not done", not_done)):
        body.extend(_runs(label, item) for item in items)
    body.append({"type": "TextBlock", "text": f"run {summary.run_id}", "isSubtle": True, "size": "Small", "wrap": True})
    for block in body:
        if block["type"] == "TextBlock":
            block["wrap"] = True
    return body


def card(summary: ChatSummary) -> dict[str, Any]:
    precedents, not_done, explored = list(summary.precedents), list(summary.not_done), list(summary.explored)
    while True:
        out = {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": VERSION,
            "body": _body(summary, precedents, not_done, explored),
            "actions": _actions(summary),
        }
        if len(json.dumps(out).encode()) <= MAX_BYTES or not (precedents or not_done or explored):
            return out
        # Over 28 KB: drop the tail of the longest of what can go (the dashboard has all of it).
        max((not_done, precedents, explored), key=len).pop()
