"""The Slack bot (slack_bolt), mounted in the FastAPI app at POST /slack/events.

A mention (or a DM) is routed by intent: describing a problem starts a triage and answers in its
thread; a question about past incidents is answered from history with citations (no incident is
created); status, approve, reject and help are answered; `/mitigate triage|ask|status|approve|reject`;
the summary comes back as Block Kit with Approve/Reject buttons that resume the paused run, the
clicking user recorded as approver and checked against an allowed list.
The route verifies every request's signature and replay window (401 otherwise) on the raw bytes, then
checks the body's shape (api/chat_bodies.py), and only then hands it to Bolt, which verifies it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from slack_bolt import Ack, App, BoltRequest, Respond, Say
from slack_sdk import WebClient

from agent.intents import clean, route
from agent.schemas import Incident
from api.approvals_flow import Identity, audit_refusal
from api.ask import status_answer, which_run
from api.chat_bodies import SlackCommand, SlackEventEnvelope, SlackInteraction
from api.chat_intents import question_answer, reply
from api.chat_summary import summarize
from api.deps import client_of, read_body
from api.input_checks import BadInput, check_storable, decode_utf8, parse_json
from api.intake import accept_incident, submit_decision
from api.lookup import full_run_id
from api.openapi_bodies import json_body
from api.runs import RunOutcome
from api.slack_blocks import APPROVE, REJECT, blocks, escape, fallback_text

log = logging.getLogger("mitigate.slack")


def summary_blocks(outcome: RunOutcome, incident: Any = None, public_url: str = "") -> list[dict[str, Any]]:
    """Block Kit for a run (api/slack_blocks.py renders what api/chat_summary.py says)."""
    return blocks(summarize(outcome, incident, public_url))


def decided_blocks(original: list[dict[str, Any]], verdict: str, answer: str) -> list[dict[str, Any]]:
    """The approval message once answered: the same content without its buttons, and who decided
    (`answer` is ours: the verdict and the clicking user's verified id as a mention)."""
    kept = [b for b in original if b.get("type") != "actions"]
    note = {"type": "mrkdwn", "text": f"*{verdict}*: {answer}"}
    return [*kept, {"type": "context", "elements": [note]}][:50]


class SlackBot:
    def __init__(self, settings: Any) -> None:
        self.service: Any = None  # bound at start-up, when the store and worker exist
        # run id -> (channel, ts) of its message: later outcomes edit it and reply in its thread. In
        # memory: after a restart a later outcome is posted as a new message.
        self.messages: dict[str, tuple[str, str]] = {}
        self.signing_secret = settings.slack_signing_secret.get_secret_value()
        self.client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
        self.app = App(
            client=self.client,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            token_verification_enabled=False,
            process_before_response=True,
        )
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.command("/mitigate")(self._on_command)
        self.app.action(APPROVE)(self._on_button)
        self.app.action(REJECT)(self._on_button)

    def bind(self, service: Any) -> None:
        self.service = service

    # ---- starting triage ------------------------------------------------------------------------
    def _triage(self, text: str, channel: str, thread_ts: str, user: str) -> str | None:
        incident = Incident(id=f"slack-{channel}-{thread_ts}", title=text[:200], description=text)
        raw = {"slack": {"channel": channel, "thread_ts": thread_ts, "user": user}}
        return accept_incident(self.service, incident, "slack", raw)

    def _on_mention(self, event: dict[str, Any], say: Say) -> None:
        """Routed by intent (api/chat_intents.py): a new incident starts a triage in this thread; a
        question is answered from history; status, approve, reject and help are answered here."""
        text = clean(event.get("text", ""))
        if text and self._follow_up(event, text, say):
            return
        thread = event.get("thread_ts") or event["ts"]
        say(text=escape(self._reply(text, event["channel"], thread, event.get("user", ""))), thread_ts=thread)

    def _reply(self, text: str, channel: str, thread: str, user: str) -> str:
        def triage(description: str) -> str:
            run_id = self._triage(description, channel, thread, user)
            return f"Triaging (run `{run_id}`)…" if run_id else "Already triaging this thread."

        return reply(text, self.service, triage, lambda run_id, ok: self._decide(run_id, user, ok, channel))[1]

    def _on_message(self, event: dict[str, Any], say: Say) -> None:
        if event.get("bot_id") or event.get("subtype"):
            return
        if event.get("channel_type") == "im":
            self._on_mention(event, say)
        elif event.get("thread_ts") and "<@" not in event.get("text", ""):
            self._follow_up(event, event.get("text", ""), say)  # replies in an incident's thread

    def _follow_up(self, event: dict[str, Any], text: str, say: Say) -> bool:
        """A message in the thread of a triaged incident: answer it from the incident's record."""
        thread = event.get("thread_ts")
        if not thread or thread == event.get("ts"):
            return False
        run = self.service.store.recorder.latest_run_of(f"slack-{event['channel']}-{thread}")
        if run is None:
            return False
        if route(text).intent in ("approve", "reject", "status", "help"):  # a command, not a question
            say(text=escape(self._reply(text, event["channel"], thread, event.get("user", ""))), thread_ts=thread)
            return True
        context = self.service.make_context()
        if run["report"] is None:
            say(text=f"Run `{run['id']}` is {run['status']}; I will post the summary here.", thread_ts=thread)
        elif context.llm is None:
            say(text=escape(self._answer_without_llm(text, run)), thread_ts=thread)
        else:
            from agent.llm import LLMFailure

            try:
                answer, _ = context.llm.answer(text, run["report"])
            except LLMFailure as failure:
                answer = f"I could not get an answer from the LLM ({failure.kind}); the record is unchanged."
            say(text=escape(answer), thread_ts=thread)  # an answer about incident text carries no mentions
        return True

    def _answer_without_llm(self, text: str, run: dict[str, Any]) -> str:
        """A follow-up with no LLM configured: the run's own status, then what `mitigate ask` would say —
        retrieval from the incident store and the postmortem index, with citations, read-only. The
        question is searched with the incident's title (so "what did we do last time?" means this kind of
        incident), and the thread's own incident is left out of its history."""
        report = run["report"]
        plan = report.get("plan") or {}
        status = (
            f"Run `{run['id']}`: {report.get('category')}/{report.get('subcategory')}, {report.get('mitigation')} "
            f"{plan.get('operation')}, {report.get('status')}."
        )
        incident = self.service.store.recorder.incident_for_run(run["id"])
        answer = question_answer(self.service, f"{text[:2000]} {incident.title}", exclude={incident.id}).answer
        return (
            f"{status} No LLM is configured, so this is what past incidents and postmortems say:\n{answer}\n"
            "(/mitigate status|approve|reject act on the run.)"
        )

    # ---- commands -----------------------------------------------------------------------------
    def _on_command(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack()
        verb, _, rest = (command.get("text") or "").strip().partition(" ")
        user = command.get("user_id", "")
        if verb == "triage" and rest:
            run_id = self._triage(rest, command["channel_id"], command.get("trigger_id", rest[:20]), user)
            respond(f"Triage started: run `{run_id}`.")
        elif verb == "status" and rest:
            run_id = full_run_id(self.service.store.sessions, rest.strip())
            run = self.service.store.recorder.run(run_id)
            respond(f"Run `{run_id}`: {run['status']}" if run else f"No run `{escape(rest.strip())}`.")
        elif verb in ("approve", "reject") and rest:
            run_id = full_run_id(self.service.store.sessions, rest.strip())
            respond(self._decide(run_id, user, verb == "approve", command.get("channel_id", "")))
        elif verb in ("approve", "reject", "status"):  # a bare verb: never guess the run
            store = self.service.store
            respond(which_run(store, verb).answer if verb != "status" else status_answer(store, None).answer)
        elif verb == "ask" and rest:
            respond(escape(question_answer(self.service, rest).answer))
        else:
            respond("Usage: /mitigate triage TEXT | ask QUESTION | status RUN_ID | approve RUN_ID | reject RUN_ID")

    def _on_button(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        action = body["actions"][0]
        channel = (body.get("channel") or {}).get("id", "")
        approved = action["action_id"] == APPROVE
        answer, submitted = self._answer(action["value"], body["user"]["id"], approved, channel)
        original = (body.get("message") or {}).get("blocks")
        if submitted and original:  # the message itself now says who decided, and has no buttons
            verdict = "approved" if approved else "rejected"
            respond(text=answer, blocks=decided_blocks(original, verdict, answer), replace_original=True)
        else:
            respond(answer, replace_original=False)

    def _decide(self, run_id: str, user: str, approved: bool, channel: str) -> str:
        return self._answer(run_id, user, approved, channel)[0]

    def _answer(self, run_id: str, user: str, approved: bool, channel: str) -> tuple[str, bool]:
        """The Slack user id comes from a request Bolt verified (signature, replay window); the approvers
        file says which person it is and what they may approve. (answer, whether it was submitted)"""
        person = self.service.approvers.by_slack(user)
        identity = Identity(person.id if person else None, "slack", user, f"slack:{channel}")
        verdict = "approved" if approved else "rejected"
        result = submit_decision(self.service, run_id, identity, approved=approved, reason=f"{verdict} in Slack")
        if result.outcome == "unauthenticated":
            return f"<@{user}> is not in the approvers group; nothing was changed.", False
        if result.outcome == "not_waiting":
            return f"Run `{run_id}` is not waiting for an approval.", False
        if result.outcome == "submitted":
            return f"{verdict.capitalize()} by <@{user}>; resuming run `{run_id}`.", True
        return f"<@{user}>: {escape(result.message)}", result.submitted

    # ---- results back to Slack ------------------------------------------------------------------
    def on_outcome(self, outcome: RunOutcome) -> None:
        """Post the run's message; later outcomes of the same run edit that message and say what
        happened in its thread (approved by, executed, verified with SLA numbers, escalated)."""
        recorder = self.service.store.recorder
        raw = recorder.raw_for_run(outcome.run_id) or {}
        where = raw.get("slack")
        channel = where["channel"] if where else self.service.settings.slack_alert_channel
        if not channel:
            return
        summary = summarize(outcome, recorder.incident_for_run(outcome.run_id), self.service.settings.public_url)
        text, content = fallback_text(summary), blocks(summary)
        try:
            posted = self.messages.get(outcome.run_id)
            if posted is not None:
                self.client.chat_update(channel=posted[0], ts=posted[1], text=text, blocks=content)
                happened = "; ".join([summary.headline, *summary.outcome])
                self.client.chat_postMessage(
                    channel=posted[0], thread_ts=where["thread_ts"] if where else posted[1], text=escape(happened)
                )
                return
            answer = self.client.chat_postMessage(
                channel=channel,
                thread_ts=where["thread_ts"] if where else None,
                text=text,
                blocks=content,
                unfurl_links=False,
                unfurl_media=False,
            )
            if answer.get("ts"):
                self.messages[outcome.run_id] = (str(answer.get("channel") or channel), str(answer["ts"]))
        except Exception:  # Slack being down must not fail the run; the report is in the store
            log.exception("could not post run %s to Slack", outcome.run_id)


def claimed_approval(body: bytes) -> tuple[str, str, bool] | None:
    """(run id, user id, approved) an approval request claims to be, read without trusting it."""
    try:
        form = parse_qs(body.decode("utf-8"))
        if "payload" in form:
            payload = json.loads(form["payload"][0])
            action = (payload.get("actions") or [{}])[0]
            if action.get("action_id") in (APPROVE, REJECT):
                user = str((payload.get("user") or {}).get("id", ""))
                return str(action.get("value", ""))[:64], user[:64], action["action_id"] == APPROVE
        verb, _, rest = (form.get("text") or [""])[0].strip().partition(" ")
        if verb in ("approve", "reject") and rest:
            return rest.strip()[:64], (form.get("user_id") or [""])[0][:64], verb == "approve"
    except (UnicodeDecodeError, ValueError, AttributeError, TypeError, IndexError, KeyError, RecursionError):
        return None
    return None


def _unverified(text: str) -> str:
    """A claimed id kept for the audit of a refused request: text a database cannot store is replaced."""
    return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in text)


def slack_signature_ok(secret: str, body: bytes, timestamp: str, signature: str, window_s: int = 300) -> bool:
    """Slack's v0 signature over the raw bytes (slack_sdk's verifier decodes the body first, so a signed
    body that is not UTF-8 would never reach the 400 it deserves)."""
    try:
        if abs(time.time() - int(timestamp)) > window_s:
            return False
    except ValueError:
        return False
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def _checked_body(body: bytes, content_type: str) -> None:
    """A verified Slack body, shaped before Bolt or a listener reads it: UTF-8, a form or JSON, bounded
    nesting, storable text, and the fields the listeners use (4xx otherwise, never a listener's crash)."""
    text = decode_utf8(body)
    if content_type.startswith("application/json"):
        SlackEventEnvelope.model_validate(parse_json(body))
        return
    try:
        form = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=200)
    except ValueError as exc:
        raise BadInput(status.HTTP_400_BAD_REQUEST, f"body is not a form: {exc}") from None
    check_storable({key: values for key, values in form.items()})
    if "payload" in form:
        SlackInteraction.model_validate(parse_json(form["payload"][0].encode()))
    elif "command" in form:
        SlackCommand.model_validate({key: values[0] for key, values in form.items()})
    else:
        raise BadInput(status.HTTP_400_BAD_REQUEST, "a Slack form carries a slash command or an interaction payload")


def slack_router(bot: SlackBot) -> APIRouter:
    router = APIRouter(tags=["chat"])

    @router.post(
        "/slack/events",
        summary="Slack Events API, interactivity and slash commands (signed)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    **json_body(SlackEventEnvelope)["requestBody"]["content"],
                    **json_body(SlackCommand, "application/x-www-form-urlencoded")["requestBody"]["content"],
                },
            }
        },
    )
    async def events(request: Request) -> Response:
        service = bot.service
        body = await read_body(request, service.settings.max_body_bytes)
        # The signature first, over the raw bytes: nothing parses an unverified body but the audit of
        # what a refused approval claimed (claimed_approval, which trusts nothing).
        headers = request.headers
        if not slack_signature_ok(
            bot.signing_secret, body, headers.get("x-slack-request-timestamp", ""), headers.get("x-slack-signature", "")
        ):
            if (claim := claimed_approval(body)) is not None:
                run_id, user, approved = (_unverified(claim[0]), _unverified(claim[1]), claim[2])
                identity = Identity(None, "slack", user, f"{client_of(request)} (unverified)")
                message = "the Slack request signature did not verify"
                await run_in_threadpool(audit_refusal, service.store.recorder, run_id, identity, approved, message)
            return Response(status_code=401, content="invalid request signature")
        service.limiter.check("slack", "signing-secret")
        try:
            _checked_body(body, headers.get("content-type", ""))
        except ValidationError as exc:
            errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)]
            raise BadInput(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not a Slack request: {errors}") from None
        bolt_request = BoltRequest(body=body.decode("utf-8"), query=str(request.query_params), headers=dict(headers))
        response = await run_in_threadpool(bot.app.dispatch, bolt_request)
        return Response(
            status_code=response.status, content=response.body, headers=response.first_headers_without_set_cookie()
        )

    return router
