"""The Microsoft Teams bot (Bot Framework, botbuilder), mounted at POST /teams/messages.

The same conversation as the Slack bot: a message describing a problem starts a triage; `triage TEXT`,
`status RUN_ID`, `approve RUN_ID`, `reject RUN_ID`; the summary comes back as an Adaptive Card with
Approve/Reject (Action.Submit) that resumes the paused run. Every inbound request goes through the
framework's own JWT validation (CloudAdapter); outbound replies go to the activity's service URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from botbuilder.core import ActivityHandler, CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ConversationReference
from botframework.connector.auth import PasswordServiceClientCredentialFactory, ServiceClientCredentialsFactory
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from agent.schemas import Incident
from api.approvals_flow import Identity, audit_refusal
from api.deps import client_of, read_body
from api.intake import accept_incident, submit_decision
from api.runs import RunOutcome

log = logging.getLogger("mitigate.teams")


def summary_card(outcome: RunOutcome) -> dict[str, Any]:
    """An Adaptive Card: classification, plan, what was not done, and Approve/Reject when paused."""
    body: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    if outcome.report is None:
        waiting = outcome.waiting_for or {}
        action = waiting.get("action", {})
        target = action.get("target") or {}
        summary = waiting.get("summary") or {}
        body.append(
            {
                "type": "TextBlock",
                "weight": "Bolder",
                "wrap": True,
                "text": f"Approval needed: {action.get('mitigation')} {action.get('operation')} on "
                f"{target.get('kind')} {target.get('namespace') or ''}/{target.get('name') or ''}",
            }
        )
        dry = summary.get("dry_run") or {}
        facts = [
            {"title": "Category", "value": f"{summary.get('category')}/{summary.get('subcategory')}"},
            {"title": "Risk", "value": str(summary.get("risk"))},
            {"title": "Plan", "value": f"{action.get('mitigation')} {action.get('operation')}"},
            {"title": "Dry run", "value": f"{dry.get('status', 'not run')}: {dry.get('reason', '')}"},
        ]
        body.append({"type": "FactSet", "facts": facts})
        body.append({"type": "TextBlock", "wrap": True, "text": action.get("rationale", "")})
        actions = [
            {"type": "Action.Submit", "title": title, "data": {"mitigate": verb, "run_id": outcome.run_id}}
            for title, verb in (("Approve", "approve"), ("Reject", "reject"))
        ]
    else:
        report = outcome.report
        plan = report["plan"]
        body.append(
            {"type": "TextBlock", "weight": "Bolder", "text": f"Incident {report['incident_id']}", "wrap": True}
        )
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Category", "value": f"{report['category']}/{report['subcategory']}"},
                    {"title": "Confidence", "value": f"{report['confidence']:.2f} ({report['engine']})"},
                    {"title": "Plan", "value": f"{plan['mitigation']} {plan['operation']}"},
                    {"title": "Status", "value": report["status"]},
                ],
            }
        )
        body.append({"type": "TextBlock", "wrap": True, "text": plan["rationale"]})
        for note in report.get("notes", []):
            body.append({"type": "TextBlock", "wrap": True, "isSubtle": True, "text": f"- {note}"})
    return {"type": "AdaptiveCard", "version": "1.4", "body": body, "actions": actions}


class TeamsBot(ActivityHandler):
    def __init__(self, settings: Any, credentials: ServiceClientCredentialsFactory | None = None) -> None:
        self.service: Any = None  # bound at start-up
        self.app_id = settings.teams_app_id
        config = _BotConfig(settings)
        auth = ConfigurationBotFrameworkAuthentication(
            config,
            credentials_factory=credentials
            or PasswordServiceClientCredentialFactory(
                settings.teams_app_id, settings.teams_app_password.get_secret_value()
            ),
        )
        self.adapter = CloudAdapter(auth)

    def bind(self, service: Any) -> None:
        self.service = service

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        # The AAD object id of a token the framework validated; a bare channel id is no identity for approvals.
        user = activity.from_property.aad_object_id or ""
        where = f"teams:{activity.conversation.id}" if activity.conversation else "teams"
        if isinstance(activity.value, dict) and activity.value.get("mitigate") in ("approve", "reject"):
            approved = activity.value["mitigate"] == "approve"
            await turn_context.send_activity(self._decide(str(activity.value.get("run_id")), user, approved, where))
            return
        text = TurnContext.remove_recipient_mention(activity) or activity.text or ""
        verb, _, rest = text.strip().partition(" ")
        if verb.lower() in ("approve", "reject") and rest:
            await turn_context.send_activity(self._decide(rest.strip(), user, verb.lower() == "approve", where))
        elif verb.lower() == "status" and rest:
            run = self.service.store.recorder.run(rest.strip())
            await turn_context.send_activity(f"Run {rest.strip()}: {run['status']}" if run else "No such run.")
        elif text.strip():
            description = rest if verb.lower() == "triage" else text
            reference = TurnContext.get_conversation_reference(activity)
            run_id = self._triage(description.strip(), activity, reference)
            await turn_context.send_activity(f"Triaging (run {run_id})…" if run_id else "Already triaging this.")

    def _triage(self, text: str, activity: Activity, reference: ConversationReference) -> str | None:
        incident_id = f"teams-{activity.conversation.id}-{activity.id}"[:200]
        incident = Incident(id=incident_id, title=text[:200], description=text)
        return accept_incident(self.service, incident, "teams", {"teams": {"reference": reference.serialize()}})

    def _decide(self, run_id: str, user: str, approved: bool, where: str) -> str:
        person = self.service.approvers.by_teams(user) if user else None
        identity = Identity(person.id if person else None, "teams", user, where)
        verdict = "approved" if approved else "rejected"
        result = submit_decision(self.service, run_id, identity, approved=approved, reason=f"{verdict} in Teams")
        if result.outcome == "unauthenticated":
            return f"{user or 'this sender'} is not in the approvers group; nothing was changed."
        if result.outcome == "not_waiting":
            return f"Run {run_id} is not waiting for an approval."
        if result.outcome == "submitted":
            return f"{verdict.capitalize()} by {person.id if person else user}; resuming run {run_id}."
        return result.message

    def on_outcome(self, outcome: RunOutcome) -> None:
        """Post the summary card into the conversation that started the run (a proactive message)."""
        raw = self.service.store.recorder.raw_for_run(outcome.run_id) or {}
        if "teams" not in raw:
            return
        reference = ConversationReference().deserialize(raw["teams"]["reference"])
        card = MessageFactory.attachment(CardFactory.adaptive_card(summary_card(outcome)))

        async def send(turn_context: TurnContext) -> None:
            await turn_context.send_activity(card)

        try:
            asyncio.run(self.adapter.continue_conversation(reference, send, self.app_id))
        except Exception:  # Teams being unreachable must not fail the run; the report is stored
            log.exception("could not post run %s to Teams", outcome.run_id)


class _BotConfig:
    """The attribute-style configuration botbuilder reads."""

    def __init__(self, settings: Any) -> None:
        self.APP_ID = settings.teams_app_id
        self.APP_PASSWORD = settings.teams_app_password.get_secret_value()
        self.APP_TYPE = "MultiTenant"
        if settings.teams_openid_metadata_url:  # sovereign or private clouds, and the test suite
            self.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = settings.teams_openid_metadata_url
            self.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = settings.teams_token_issuer
            self.TO_CHANNEL_FROM_BOT_LOGIN_URL = "https://login.microsoftonline.com/botframework.com"
            self.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = "https://api.botframework.com"
            self.VALIDATE_AUTHORITY = True


def teams_router(bot: TeamsBot) -> APIRouter:
    router = APIRouter(tags=["chat"])

    @router.post("/teams/messages", summary="Bot Framework activities from Teams (JWT-authenticated)")
    async def messages(request: Request) -> Response:
        bot.service.limiter.check("teams", client_of(request))
        body = await read_body(request, bot.service.settings.max_body_bytes)
        try:
            activity = Activity().deserialize(json.loads(body))
        except ValueError:
            return Response(status_code=400, content="body is not an activity")
        auth = bot.adapter.bot_framework_authentication
        try:
            # The framework's own validation: signature against the channel's published keys, issuer,
            # audience (our app id), expiry, endorsement of the channel id.
            authenticated = await auth.authenticate_request(activity, request.headers.get("Authorization", ""))
        except Exception as exc:  # every way a token can be wrong is a 401, never a 500
            log.info("refused a Teams activity: %s", type(exc).__name__)
            value = activity.value if isinstance(activity.value, dict) else {}
            if value.get("mitigate") in ("approve", "reject"):  # what the unverified request claims
                sender = activity.from_property.aad_object_id if activity.from_property else ""
                identity = Identity(None, "teams", str(sender or "")[:64], f"{client_of(request)} (unverified)")
                approved, run_id = value["mitigate"] == "approve", str(value.get("run_id"))[:64]
                message = "the Bot Framework token did not validate"
                await run_in_threadpool(audit_refusal, bot.service.store.recorder, run_id, identity, approved, message)
            return Response(status_code=401, content="unauthorized")
        invoke = await bot.adapter.process_activity(authenticated, activity, bot.on_turn)
        if invoke is not None:
            return Response(status_code=invoke.status, content=str(invoke.body or ""))
        return Response(status_code=202)

    return router
