"""A `ChatSummary` as Slack Block Kit, within Slack's limits (50 blocks, 3,000 characters a section,
10 fields of 2,000, a 150-character header, a 300-character confirmation).

Incident text cannot mention anyone or link anywhere: every text object is `mrkdwn` with `verbatim`
(no automatic links, channel names or mentions) and `&`, `<`, `>` escaped (so no `<!channel>`,
`<@U…>` or `<http://…|…>` can be written); the only link is the dashboard's, built by us.
"""

from __future__ import annotations

from typing import Any

from api.chat_summary import ChatSummary

APPROVE, REJECT = "mitigate_approve", "mitigate_reject"
SECTION_MAX, FIELD_MAX, HEADER_MAX, FIELDS_MAX, BLOCKS_MAX = 3000, 2000, 150, 10, 50


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(name: str, value: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cut(f"*{name}*\n{escape(value) or ' '}", FIELD_MAX), "verbatim": True}


def _section(title: str, body: str) -> dict[str, Any]:
    """A bold title over a body that may be incident text; both escaped, then cut to the limit."""
    text = f"*{escape(title)}*\n{escape(body)}"
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text or " ", SECTION_MAX), "verbatim": True}}


def _lines(items: list[str]) -> str:
    return "\n".join(f"• {item}" for item in items)


def _buttons(summary: ChatSummary) -> dict[str, Any]:
    approve: dict[str, Any] = {
        "type": "button",
        "style": "primary",
        "action_id": APPROVE,
        "value": summary.run_id,
        "text": {"type": "plain_text", "text": "Approve…" if summary.confirm else "Approve"},
    }
    if summary.confirm:
        approve["confirm"] = {
            "title": {"type": "plain_text", "text": "Approve this action?"},
            "text": {"type": "mrkdwn", "text": _cut(escape(summary.confirm), 300), "verbatim": True},
            "confirm": {"type": "plain_text", "text": "Approve"},
            "deny": {"type": "plain_text", "text": "Cancel"},
            "style": "danger",
        }
    reject = {
        "type": "button",
        "style": "danger",
        "action_id": REJECT,
        "value": summary.run_id,
        "text": {"type": "plain_text", "text": "Reject"},
    }
    return {"type": "actions", "block_id": f"decide-{summary.run_id[:40]}", "elements": [approve, reject]}


def blocks(summary: ChatSummary) -> list[dict[str, Any]]:
    fields = [
        ("Category", summary.classification),
        ("Risk", summary.risk),
        ("Plan", summary.plan),
        ("Needs a human", summary.needs_human or "no"),
    ]
    if summary.approvals:
        fields.append(("Approvals", summary.approvals))
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"mitigate: {summary.headline}", HEADER_MAX)}},
        _section(summary.title, summary.where),
        {"type": "section", "fields": [_field(name, value) for name, value in fields[:FIELDS_MAX]]},
    ]
    if summary.now:
        out.append(_section("Now", ", ".join(summary.now)))
    out.append(_section("Dry run", summary.dry_run))
    if summary.findings or summary.gaps:
        gaps = [f"not looked at: {g}" for g in summary.gaps]
        out.append(_section("Investigation (source)", _lines([*summary.findings, *gaps])))
    if summary.conclusion or summary.explored:
        said = [f"concluded: {summary.conclusion}"] if summary.conclusion else []
        out.append(_section("LLM investigation (data, not a decision)", _lines([*said, *summary.explored])))
    if summary.precedents:
        out.append(_section("Precedents (what fixed them)", _lines(summary.precedents)))
    if summary.outcome:
        out.append(_section("What happened", _lines(summary.outcome)))
    if summary.not_done:
        out.append(_section("Not done / not verified", _lines(summary.not_done)))
    context = f"run `{summary.run_id}`"
    if summary.link:  # built by us from MITIGATE_PUBLIC_URL and the quoted incident id
        context = f"<{summary.link}|Open in the dashboard> · {context}"
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    if summary.waiting:
        out.append(_buttons(summary))
    return out[:BLOCKS_MAX]


def fallback_text(summary: ChatSummary) -> str:
    """The notification line: only our own words (incident text could carry links there)."""
    return f"mitigate: {summary.headline} - run {summary.run_id} ({summary.classification.split(':')[0]})"
