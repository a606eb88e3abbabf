"""The approval audit trail: one row per attempt, whatever its outcome, and the read side of it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from store.models import ApprovalAttemptRow

OUTCOMES = ("accepted", "refused", "expired")


def record_attempt(
    sessions: sessionmaker[Session], run_id: str | None, key: str | None, attempt: dict[str, Any]
) -> None:
    """Write one attempt; a second write with the same attempt id (a resumed guard replaying its answers)
    changes nothing."""
    attempt_id = str(attempt.get("attempt_id") or uuid.uuid4().hex)
    outcome = str(attempt.get("outcome") or "refused")
    if outcome not in OUTCOMES:
        raise ValueError(f"approval outcome {outcome!r} is not one of {OUTCOMES}")
    row = ApprovalAttemptRow(
        attempt_id=attempt_id,
        run_id=run_id,
        action_key=key,
        person=attempt.get("person") or None,
        via=str(attempt.get("via") or "unknown")[:20],
        subject=str(attempt.get("subject") or "")[:200],
        address=str(attempt.get("address") or "")[:200],
        decision=str(attempt.get("decision") or "approve")[:20],
        outcome=outcome,
        message=str(attempt.get("message") or ""),
        reason=str(attempt.get("reason") or ""),
    )
    try:
        with sessions.begin() as session:
            if session.scalar(select(ApprovalAttemptRow.id).where(ApprovalAttemptRow.attempt_id == attempt_id)):
                return
            session.add(row)
    except IntegrityError:  # the same attempt written by a racing replay
        return


def attempts_for(sessions: sessionmaker[Session], run_id: str) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(
            select(ApprovalAttemptRow).where(ApprovalAttemptRow.run_id == run_id).order_by(ApprovalAttemptRow.id)
        )
        return [
            {
                "person": r.person,
                "via": r.via,
                "subject": r.subject,
                "address": r.address,
                "decision": r.decision,
                "outcome": r.outcome,
                "message": r.message,
                "reason": r.reason,
                "at": r.created_at.isoformat(),
            }
            for r in rows
        ]
