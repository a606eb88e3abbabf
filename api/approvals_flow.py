"""One approval attempt, from whichever door it came through (REST, dashboard, Slack, Teams, CLI).

The door authenticates and names the identity (`Identity`); this module checks what can be checked
at once — is the run waiting, is this a configured approver, do their roles cover the action's risk
tier, did they already approve it — answers the person with a message, and writes an audit row for
every refusal. What it lets through resumes the run, where the guard checks all of it again (two
answers can race) and writes the audit row of the outcome (accepted, refused, expired).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from store.recorder import StoreRecorder
from tools.approvers import Approvers

Outcome = Literal["submitted", "unknown_run", "unauthenticated", "forbidden", "repeat", "not_waiting", "expired"]


@dataclass(frozen=True)
class Identity:
    person: str | None  # the configured approver, None when the door could not tell who this is
    via: str  # rest, dashboard, slack, teams, cli
    subject: str  # what the door authenticated: a token's owner, a Slack user id, an AAD object id
    address: str  # where from: client address, Slack channel, Teams conversation, local user

    def as_dict(self) -> dict[str, str]:
        return {"person": self.person or "", "via": self.via, "subject": self.subject, "address": self.address}


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    message: str

    @property
    def submitted(self) -> bool:
        return self.outcome in ("submitted", "expired")


def audit_refusal(
    recorder: StoreRecorder, run_id: str | None, identity: Identity, approved: bool, message: str, reason: str = ""
) -> None:
    attempt = identity.as_dict() | {"decision": "approve" if approved else "reject", "reason": reason}
    attempt |= {"outcome": "refused", "message": message, "attempt_id": uuid.uuid4().hex}
    recorder.record_approval_attempt(run_id or "", None, attempt)


def decide(
    *,
    recorder: StoreRecorder,
    approvers: Approvers,
    approval_ttl_s: float,
    submit: Any,
    run_id: str,
    identity: Identity,
    approved: bool,
    reason: str = "",
) -> Result:
    """Check one attempt and, when it may count, resume the run with it (`submit(run_id, answer)`)."""
    verb = "approval" if approved else "rejection"

    def refuse(outcome: Outcome, message: str) -> Result:
        audit_refusal(recorder, run_id, identity, approved, message, reason)
        return Result(outcome, message)

    run = recorder.run(run_id)
    if run is None:
        return refuse("unknown_run", f"no run {run_id}")
    person = approvers.get(identity.person) if identity.person else None
    if person is None:
        return refuse("unauthenticated", f"{identity.subject or 'this caller'} is not a configured approver")
    pending = recorder.pending_approval(run_id) if run["status"] == "awaiting_approval" else None
    if pending is None:
        return refuse("not_waiting", f"run {run_id} is {run['status']}, not waiting for an approval")
    if approved and not person.may_approve(pending["risk"]):
        roles = ", ".join(sorted(person.roles)) or "none"
        return refuse("forbidden", f"{person.id} may not approve {pending['risk']}-risk actions (roles: {roles})")
    if approved and person.id in pending["approved_by"]:
        return refuse(
            "repeat", f"{person.id} already approved this action; the next approval must come from someone else"
        )
    answer = {"approved": approved, "reason": reason, "attempt_id": uuid.uuid4().hex, "identity": identity.as_dict()}
    submit(run_id, answer)
    age = (datetime.now(UTC) - datetime.fromisoformat(pending["requested_at"])).total_seconds()
    if approved and age > approval_ttl_s:
        # Submitted all the same: the guard records it as expired and ends the request, so the run does
        # not wait forever on an approval nobody can give any more.
        return Result(
            "expired", f"the approval request expired {age - approval_ttl_s:.0f}s ago; the action ends unapproved"
        )
    return Result("submitted", f"{verb} by {person.id} recorded; resuming run {run_id}")
