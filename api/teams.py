"""The Microsoft Teams bot (Bot Framework, botbuilder), mounted at POST /teams/messages.

The same conversation as the Slack bot (api/chat_intents.py): a message describing a problem starts a
triage; a question about past incidents is answered with citations; `triage TEXT`, `status RUN_ID`,
`approve RUN_ID`, `reject RUN_ID`, `help`; the summary comes back as an Adaptive Card with
Approve/Reject (Action.Submit) that resumes the paused run. Every inbound request goes through the
framework's own JWT validation (CloudAdapter); outbound replies go to the activity's service URL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from botbuilder.core import ActivityHandler, CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ConversationReference
from botframework.connector.auth import PasswordServiceClientCredentialFactory, ServiceClientCredentialsFactory
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from agent.schemas import Incident
from api.approvals_flow import Identity, audit_refusal
from api.chat_bodies import TeamsActivity
from api.chat_intents import reply
from api.chat_summary import ChatSummary, decided, summarize
from api.deps import client_of, read_body
from api.input_checks import parse_json
from api.intake import accept_incident, submit_decision
from api.openapi_bodies import json_body
from api.runs import RunOutcome
from api.teams_card import card

log = logging.getLogger("mitigate.teams")


def summary_card(outcome: RunOutcome, incident: Any = None, public_url: str = "") -> dict[str, Any]:
    """The Adaptive Card for a run (api/teams_card.py renders what api/chat_summary.py says)."""
    return card(summarize(outcome, incident, public_url))


class TeamsBot(ActivityHandler):
    def __init__(self, settings: Any, credentials: ServiceClientCredentialsFactory | None = None) -> None:
        self.service: Any = None  # bound at start-up
        # run id -> (conversation reference, id of its card, what the card says): an answer or a later
        # outcome updates that card. In memory: after a restart a later outcome is a new card.
        self.cards: dict[str, tuple[ConversationReference, str, ChatSummary]] = {}
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
            approved, run_id = activity.value["mitigate"] == "approve", str(activity.value.get("run_id"))
            reason = str(activity.value.get("reason") or "")[:500]
            answer, submitted, who = self._answer(run_id, user, approved, where, reason)
            if submitted and run_id in self.cards and activity.reply_to_id:
                reference, card_id, summary = self.cards[run_id]
                summary = decided(summary, "approved" if approved else "rejected", who)
                self.cards[run_id] = (reference, card_id, summary)
                update = MessageFactory.attachment(CardFactory.adaptive_card(card(summary)))
                update.id = str(activity.reply_to_id)
                await turn_context.update_activity(update)
            await turn_context.send_activity(answer)
            return
        text = TurnContext.remove_recipient_mention(activity) or activity.text or ""
        reference = TurnContext.get_conversation_reference(activity)

        def triage(description: str) -> str:
            started = self._triage(description.strip(), activity, reference)
            return f"Triaging (run {started})…" if started else "Already triaging this."

        decide = lambda run_id, ok: self._decide(run_id, user, ok, where)  # noqa: E731
        _, answer = await run_in_threadpool(reply, text, self.service, triage, decide)
        # Plain text: an answer quotes incident titles, which must not become markdown links or mentions.
        await turn_context.send_activity(Activity(type="message", text=answer, text_format="plain"))

    def _triage(self, text: str, activity: Activity, reference: ConversationReference) -> str | None:
        incident_id = f"teams-{activity.conversation.id}-{activity.id}"[:200]
        incident = Incident(id=incident_id, title=text[:200], description=text)
        return accept_incident(self.service, incident, "teams", {"teams": {"reference": reference.serialize()}})

    def _decide(self, run_id: str, user: str, approved: bool, where: str) -> str:
        return self._answer(run_id, user, approved, where)[0]

    def _answer(self, run_id: str, user: str, approved: bool, where: str, reason: str = "") -> tuple[str, bool, str]:
        """(the answer, whether it was submitted, who it was)"""
        person = self.service.approvers.by_teams(user) if user else None
        identity = Identity(person.id if person else None, "teams", user, where)
        verdict = "approved" if approved else "rejected"
        reason = reason or f"{verdict} in Teams"
        result = submit_decision(self.service, run_id, identity, approved=approved, reason=reason)
        who = person.id if person else user
        if result.outcome == "unauthenticated":
            return f"{user or 'this sender'} is not in the approvers group; nothing was changed.", False, who
        if result.outcome == "not_waiting":
            return f"Run {run_id} is not waiting for an approval.", False, who
        if result.outcome == "submitted":
            return f"{verdict.capitalize()} by {who}; resuming run {run_id}.", True, who
        return result.message, result.submitted, who

    def on_outcome(self, outcome: RunOutcome) -> None:
        """Post the summary card into the conversation that started the run (a proactive message)."""
        recorder = self.service.store.recorder
        raw = recorder.raw_for_run(outcome.run_id) or {}
        if "teams" not in raw:
            return
        reference = ConversationReference().deserialize(raw["teams"]["reference"])
        summary = summarize(outcome, recorder.incident_for_run(outcome.run_id), self.service.settings.public_url)
        message = MessageFactory.attachment(CardFactory.adaptive_card(card(summary)))
        known = self.cards.get(outcome.run_id)

        async def send(turn_context: TurnContext) -> None:
            if known is not None:  # the same card now says what happened; a reply says it too
                message.id = known[1]
                await turn_context.update_activity(message)
                await turn_context.send_activity("; ".join([summary.headline, *summary.outcome]))
                return
            sent = await turn_context.send_activity(message)
            if sent is not None and sent.id:
                self.cards[outcome.run_id] = (reference, sent.id, summary)

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

    @router.post(
        "/teams/messages",
        summary="Bot Framework activities from Teams (JWT-authenticated)",
        openapi_extra=json_body(TeamsActivity),
    )
    async def messages(request: Request) -> Response:
        body = await read_body(request, bot.service.settings.max_body_bytes)
        # The token's checks need the activity's channel id and service URL, so the body is read first,
        # but only by the bounded parser (UTF-8, JSON, nesting, storable text; 4xx otherwise) and the
        # shape check; botbuilder's deserializer and the bot see it only once the token validated.
        document = parse_json(body)
        try:
            TeamsActivity.model_validate(document)
            activity = Activity().deserialize(document)
        except (ValidationError, ValueError, TypeError, AttributeError, KeyError) as exc:
            return Response(status_code=400, content=f"body is not an activity: {type(exc).__name__}")
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
        bot.service.limiter.check("teams", "bot-framework")  # after the token: one credential, the channel's
        invoke = await bot.adapter.process_activity(authenticated, activity, bot.on_turn)
        if invoke is not None:
            return Response(status_code=invoke.status, content=str(invoke.body or ""))
        return Response(status_code=202)

    return router
