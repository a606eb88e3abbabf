"""The chat messages a DRI acts on: what they say, within Slack's and Teams' limits and schema, and
incident text that can neither mention anyone nor link anywhere.

Slack payloads are checked by slack_sdk's own Block Kit models (which enforce Slack's limits); Adaptive
Cards by Microsoft's `adaptivecards` renderer (tests/vendor/, MIT) in Debian's Chromium: parsed, validated
and rendered, with every link in the rendered card counted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from agent.findings import finding
from agent.nodes.guard import waiting_summary
from agent.schemas import Incident
from api.chat_summary import CONCLUSION_MAX, confidence_words, summarize
from api.runs import RunOutcome
from api.slack_blocks import blocks, fallback_text
from api.teams_card import MAX_BYTES, card

ADAPTIVE_CARDS = Path(__file__).parent / "vendor" / "adaptivecards-3.0.6.min.js"
HOSTILE = "<!channel> <@U0ADMIN> <https://evil.example/login|click here> [reset](https://evil.example) @here"
PUBLIC = "https://mitigate.example.com"


def _incident(
    title: str = "XID 79 on node aks-gpu-7: pods of llama-70b failing", description: str = "GPU fell off the bus"
) -> Incident:
    return Incident(
        id="am-4e51680d2b9c41f0a8e1",
        title=title,
        description=description,
        alert={
            "labels": {
                "alertname": "GPUXid",
                "namespace": "llm-serving",
                "node": "aks-gpu-7",
                "deployment": "llama-70b",
                "region": "westeurope",
            }
        },
        signals={"sla": 0.912, "http_5xx_rate": 0.061, "http_5xx_rate_peak": 0.12, "queue_depth": 41},
    )


def _plan(operation: str = "cordon_and_evict", kind: str = "node", name: str = "aks-gpu-7") -> dict[str, Any]:
    return {
        "mitigation": "M6" if operation == "delete_deployment" else "M4",
        "operation": operation,
        "target": {"kind": kind, "namespace": "llm-serving", "name": name},
        "rationale": "bad node",
        "risk": "critical" if operation == "delete_deployment" else "high",
    }


def _paused(plan: dict[str, Any] | None = None, precedents: int = 3, notes: str = "") -> RunOutcome:
    plan = plan or _plan()
    summary = {
        "status": "awaiting_approval",
        "incident_id": "am-4e51680d2b9c41f0a8e1",
        "category": "A1",
        "subcategory": "bad_node",
        "confidence": 0.93,
        "engine": "model",
        "needs_human": True,
        "needs_human_reason": "a node drain moves every pod on it" + notes,
        "probabilities": {"A1": 0.93, "A3": 0.05, "A2": 0.01, "A4": 0.01},
        "mitigation": plan["mitigation"],
        "plan": plan,
        "risk": plan["risk"],
        "guard": {
            "risk": plan["risk"],
            "approvals_required": 1,
            "destructive": plan["operation"] == "delete_deployment",
        },
        "dry_run": {"status": "dry-run-ok", "reason": "server accepted", "details": {"unschedulable": True}},
        "precedents": [
            {"id": f"pm-{i}", "title": f"GPU Xid {i} on a serving node", "mitigation": "M4"} for i in range(precedents)
        ],
    }
    request = {
        "action": plan,
        "guard": summary["guard"],
        "approvals_so_far": [],
        "approvals_required": 1,
        "summary": summary,
    }
    return RunOutcome("3f9c0a7be2d94c1b8e5f6a7b8c9d0e1f", "awaiting_approval", None, request)


def _finished() -> RunOutcome:
    report = {
        "incident_id": "am-4e51680d2b9c41f0a8e1",
        "run_id": "3f9c0a7be2d94c1b8e5f6a7b8c9d0e1f",
        "status": "mitigated",
        "category": "A1",
        "subcategory": "bad_node",
        "confidence": 0.93,
        "engine": "model",
        "probabilities": {"A1": 0.93, "A3": 0.07},
        "needs_human": False,
        "plan": _plan(),
        "mitigation": "M4",
        "risk": "high",
        "guard": {},
        "approvals": [{"by": "alice", "approved": True}],
        "actions": [{"operation": "cordon_and_evict", "status": "executed"}],
        "verification": {"status": "verified", "reason": "SLA 0.912 -> 0.996 (target 0.99), held for 60 s"},
        "precedents": [],
        "notes": [],
        "dry_run": {"status": "dry-run-ok", "reason": "server accepted"},
    }
    return RunOutcome(report["run_id"], "mitigated", report)


# ---- what they say -----------------------------------------------------------------------------


def test_a_paused_run_says_everything_needed_to_decide():
    summary = summarize(_paused(), _incident(), PUBLIC)
    assert summary.title.startswith("XID 79 on node aks-gpu-7")
    assert "deployment llama-70b" in summary.where and "namespace llm-serving" in summary.where
    assert "region westeurope" in summary.where
    assert summary.classification.startswith("A1/bad_node: very likely (0.93; next A3 0.05")
    assert "sla 0.912" in summary.now and "http_5xx_rate 0.061 (peak 0.12)" in summary.now
    assert summary.needs_human == "a node drain moves every pod on it" and summary.risk == "high"
    assert summary.plan == "M4 cordon_and_evict on node llm-serving/aks-gpu-7"
    assert summary.dry_run.startswith("dry-run-ok") and "would change unschedulable=True" in summary.dry_run
    assert summary.precedents[0] == "pm-0: GPU Xid 0 on a serving node — fixed by M4"
    assert summary.link == f"{PUBLIC}/dashboard/incidents/am-4e51680d2b9c41f0a8e1"
    assert summary.confirm is not None and "cordon_and_evict" in summary.confirm  # high risk: confirm first
    assert summary.approvals == "0 of 1 approval(s)"


def test_a_finished_run_says_who_approved_what_ran_and_the_sla_numbers():
    summary = summarize(_finished(), _incident(), "")
    assert summary.headline == "Run mitigated" and not summary.waiting and summary.confirm is None
    assert summary.outcome == [
        "approved by alice",
        "action cordon_and_evict: executed",
        "SLA verified: SLA 0.912 -> 0.996 (target 0.99), held for 60 s",
    ]
    assert summary.link is None  # no MITIGATE_PUBLIC_URL: no link rather than a wrong one


@pytest.mark.parametrize(
    ("p", "words"), [(0.95, "very likely"), (0.75, "likely"), (0.55, "more likely"), (0.3, "uncertain")]
)
def test_confidence_in_words(p, words):
    assert confidence_words(p).startswith(words)


def test_deleting_a_deployment_is_confirmed_as_a_deletion():
    summary = summarize(_paused(_plan("delete_deployment", "deployment", "llama-70b-canary")), _incident(), PUBLIC)
    assert summary.confirm is not None and summary.confirm.startswith("This DELETES: delete_deployment")
    approve = next(b for b in blocks(summary) if b["type"] == "actions")["elements"][0]
    assert approve["confirm"]["style"] == "danger" and "DELETES" in approve["confirm"]["text"]["text"]
    show = card(summary)["actions"][0]
    assert show["type"] == "Action.ShowCard" and show["card"]["actions"][0]["data"]["mitigate"] == "approve"
    assert any(i["type"] == "Input.Text" and i["isRequired"] for i in show["card"]["body"])


def test_a_medium_risk_approval_needs_no_confirmation():
    plan = _plan("scale_out", "deployment", "llama-70b") | {"risk": "medium"}
    summary = summarize(_paused(plan), _incident(), PUBLIC)
    approve = next(b for b in blocks(summary) if b["type"] == "actions")["elements"][0]
    assert summary.confirm is None and "confirm" not in approve
    assert card(summary)["actions"][0]["type"] == "Action.Submit"


# ---- Slack: limits and injection ---------------------------------------------------------------


def _validate_slack(payload: list[dict[str, Any]], text: str) -> None:
    for block in payload:
        Block.parse(block).validate_json()  # raises SlackObjectFormationError past any Slack limit
    assert len(payload) <= 50 and 0 < len(text) <= 4000  # a message's blocks; its notification line


@pytest.mark.parametrize("outcome", [_paused(), _finished()])
def test_slack_blocks_pass_slack_sdks_block_kit_validation(outcome):
    summary = summarize(outcome, _incident(), PUBLIC)
    _validate_slack(blocks(summary), fallback_text(summary))


def test_huge_incidents_stay_within_slacks_limits():
    long = "x" * 20_000
    incident = _incident(title=long[:2000], description=long)
    incident.signals = {f"signal_{i}": float(i) for i in range(300)}
    summary = summarize(_paused(precedents=50, notes=" " + long), incident, PUBLIC)
    payload = blocks(summary)
    _validate_slack(payload, fallback_text(summary))
    assert len(payload) <= 50 and payload[-1]["type"] == "actions"  # the buttons are never cut off


def _texts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text"):
            yield node
        for value in node.values():
            yield from _texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _texts(value)


def test_incident_text_cannot_mention_or_link_in_slack():
    outcome = _paused(_plan(name=HOSTILE))
    summary = summarize(outcome, _incident(title=HOSTILE), PUBLIC)
    payload = blocks(summary)
    flat = json.dumps(payload)
    for forbidden in ("<!channel>", "<@U0ADMIN>", "<https://evil"):
        assert forbidden not in flat
    assert "&lt;!channel&gt;" in flat  # shown, as text
    for text in _texts(payload):
        if "evil.example" in text["text"]:
            # No automatic links, channel names or mentions in any text that carries incident words.
            assert text["type"] == "plain_text" or text.get("verbatim") is True, text
    links = [t["text"] for t in _texts(payload) if "<http" in t["text"]]
    assert links == [
        f"<{PUBLIC}/dashboard/incidents/am-4e51680d2b9c41f0a8e1|Open in the dashboard> · run `{outcome.run_id}`"
    ]
    assert "evil" not in fallback_text(summary)


# ---- Teams: schema, size and injection, by Microsoft's own renderer ------------------------------


@pytest.fixture(scope="module")
def renderer(browser: Any) -> Iterator[Any]:
    """A blank page of Debian's Chromium with Microsoft's Adaptive Cards renderer loaded."""
    page = browser.new_page()
    page.set_content(
        '<!doctype html><html><head><meta charset="utf-8"></head><body><div id="card"></div></body></html>'
    )
    page.add_script_tag(path=str(ADAPTIVE_CARDS))
    yield page
    page.close()


RENDER = """(payload) => {
  const ac = new AdaptiveCards.AdaptiveCard();
  const context = new AdaptiveCards.SerializationContext();
  ac.parse(payload, context);
  const events = [];
  for (let i = 0; i < context.eventCount; i++) events.push(context.getEventAt(i).message);
  const validation = ac.validateProperties();
  for (let i = 0; i < validation.validationEvents.length; i++) events.push(validation.validationEvents[i].message);
  const host = document.getElementById("card");
  host.innerHTML = "";
  host.appendChild(ac.render());
  return {events, text: host.innerText, links: [...host.querySelectorAll("a[href]")].map(a => a.href),
          buttons: [...host.querySelectorAll("button")].map(b => b.innerText)};
}"""


@pytest.mark.parametrize("outcome", [_paused(), _paused(_plan("delete_deployment", "deployment", "x")), _finished()])
def test_adaptive_cards_parse_validate_and_render_without_a_problem(renderer, outcome):
    summary = summarize(outcome, _incident(), PUBLIC)
    payload = card(summary)
    seen = renderer.evaluate(RENDER, payload)
    assert seen["events"] == []
    assert "XID 79 on node aks-gpu-7" in seen["text"] and "A1/bad_node: very likely (0.93" in seen["text"]
    assert "Open in the dashboard" in seen["buttons"]
    if summary.waiting:
        assert {"Reject"} <= set(seen["buttons"]) and ("Approve" in seen["buttons"] or "Approve…" in seen["buttons"])


def test_incident_text_cannot_link_in_teams_and_huge_cards_stay_under_28_kb(renderer):
    long = "y" * 20_000
    incident = _incident(title=HOSTILE + long[:1000], description=long)
    summary = summarize(_paused(_plan(name=HOSTILE), precedents=200, notes=" " + long), incident, PUBLIC)
    payload = card(summary)
    assert len(json.dumps(payload).encode()) <= MAX_BYTES
    seen = renderer.evaluate(RENDER, payload)
    assert seen["events"] == [] and "[reset](https://evil.example)" in seen["text"]  # shown as text
    assert seen["links"] == []  # nothing in the card is a link (the dashboard is a button)
    facts = [f["value"] for b in payload["body"] if b["type"] == "FactSet" for f in b["facts"]]
    assert not any("evil" in value for value in facts)  # Markdown-read fact values hold only our words


# ---- the LLM's own investigation (the tool loop) -------------------------------------------------


def _exploration(findings: int = 2, conclusion: str = "", stop: str = "done") -> dict[str, Any]:
    """What agent/explore.py records: the model's findings with their sources, its calls and answer."""
    found = [
        finding(
            "history",
            f"GPUXid on aks-gpu-7 seen {i + 2} time(s) in 30 days; last {HOSTILE}",
            {"type": "incident_store", "incident_ids": [f"INC-XID-{i}"]},
            None,
            {"log": "z" * 5000},
        )
        for i in range(findings)
    ]
    calls = [{"step": 0, "tool": "incident_history", "args": {}, "ok": True, "error": None, "latency_ms": 1.0}]
    return {
        "findings": found,
        "gaps": [],
        "calls": calls,
        "stop_reason": stop,
        "steps": 2,
        "tokens": 900,
        "elapsed_ms": 12.0,
        "conclusion": conclusion or "XID 79 recurred on aks-gpu-7: the node is bad, not the model.",
    }


def _waiting_with(exploration: dict[str, Any], plan: dict[str, Any] | None = None) -> RunOutcome:
    """A paused run whose approval request is built by the guard step itself from this exploration."""
    outcome = _paused(plan)
    assert outcome.waiting_for is not None
    state = {"run_id": outcome.run_id, "incident": {"id": "am-4e51680d2b9c41f0a8e1"}, "exploration": exploration}
    state |= {"plan": outcome.waiting_for["action"], "classification": {"category": "A1"}}
    built = waiting_summary(state, outcome.waiting_for["guard"])  # type: ignore[arg-type]
    outcome.waiting_for["summary"]["exploration"] = built["exploration"]
    return outcome


def test_the_llm_investigation_is_in_the_approval_request_and_the_finished_run_message():
    exploration = _exploration()
    outcome = _waiting_with(exploration)
    carried = outcome.waiting_for["summary"]["exploration"]  # type: ignore[index]
    assert "calls" not in carried and all("data" not in f for f in carried["findings"])  # the request stays small
    for summary in (
        summarize(outcome, _incident(), PUBLIC),
        summarize(RunOutcome("r", "mitigated", {**_finished().report, "exploration": exploration}), _incident()),  # type: ignore[dict-item]
    ):
        assert summary.conclusion == exploration["conclusion"]
        assert summary.explored[0].startswith("GPUXid on aks-gpu-7 seen 2 time(s)")
        assert summary.explored[0].endswith("(incident store: INC-XID-0)")
        slack = json.dumps(blocks(summary), ensure_ascii=False)
        assert "LLM investigation (data, not a decision)" in slack and "XID 79 recurred on aks-gpu-7" in slack
        assert "(incident store: INC-XID-1)" in slack
        teams = json.dumps(card(summary), ensure_ascii=False)
        assert "LLM concluded" in teams and "XID 79 recurred on aks-gpu-7" in teams and "INC-XID-1" in teams


def test_a_loop_that_did_not_run_adds_nothing_and_one_that_stopped_early_says_why():
    skipped = {**_exploration(findings=0), "stop_reason": "no LLM configured", "conclusion": ""}
    quiet = summarize(_waiting_with(skipped), _incident(), PUBLIC)
    assert quiet.conclusion == "" and quiet.explored == []
    assert "LLM investigation" not in json.dumps(blocks(quiet)) and "LLM concluded" not in json.dumps(card(quiet))
    stopped = summarize(_waiting_with(_exploration(stop="budget: steps")), _incident(), PUBLIC)
    assert stopped.conclusion.endswith("(stopped: budget: steps)")


def test_the_llm_investigation_is_inert_and_capped_in_slack():
    huge = _exploration(findings=200, conclusion=HOSTILE + " " + "w" * 20_000)
    summary = summarize(_waiting_with(huge), _incident(), PUBLIC)
    assert len(summary.conclusion) <= CONCLUSION_MAX and len(summary.explored) == 5
    payload = blocks(summary)
    _validate_slack(payload, fallback_text(summary))
    section = next(b for b in payload if "LLM investigation" in json.dumps(b))
    assert section["text"]["verbatim"] is True and len(section["text"]["text"]) <= 3000
    flat = json.dumps(payload)
    for forbidden in ("<!channel>", "<@U0ADMIN>", "<https://evil"):
        assert forbidden not in flat
    assert "&lt;!channel&gt;" in section["text"]["text"]  # shown, as text
    assert payload[-1]["type"] == "actions"  # the buttons are never cut off


def test_the_llm_investigation_is_inert_and_the_card_stays_under_28_kb(renderer):
    huge = _exploration(findings=200, conclusion=HOSTILE + " " + "w" * 20_000)
    summary = summarize(_waiting_with(huge), _incident(), PUBLIC)
    summary.explored = summary.explored * 40  # more lines than any summary has: the card must still fit
    payload = card(summary)
    assert len(json.dumps(payload).encode()) <= MAX_BYTES
    seen = renderer.evaluate(RENDER, payload)
    assert seen["events"] == [] and seen["links"] == []
    assert "LLM concluded" in seen["text"] and "<!channel>" in seen["text"]  # shown as text, not a mention
    facts = [f["value"] for b in payload["body"] if b["type"] == "FactSet" for f in b["facts"]]
    assert not any("evil" in value for value in facts)
