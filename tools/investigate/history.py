"""Has this happened before? Earlier incidents of the same alert on the same target in the incident
store: how often, what the last one was classified as, how it ended and what was done. It is the
evidence behind the recurrence veto of "no action"; one bounded read, a failure is a gap.

`read_history` also returns what the read saw as a `RecurrenceRead` (JSON, kept in the run's state by
the investigate step): the recurrences' ids and received times, and from when on that list is
complete. Classify's recurrence veto answers from it when it covers the veto's window
(`agent.no_action.known_occurrences`) instead of asking the store the same question again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from agent.findings import Finding, Gap, finding, gap
from agent.schemas import Incident
from store.incident_queries import recurrence_key, recurrences, window_floor
from store.models import ActionRow, RunRow
from tools.investigate.bounds import Bounds, iso


class RecurrenceRead(TypedDict):
    """What one history read saw, for the recurrence veto (agent/no_action.py `known_occurrences`)."""

    incident: str  # the incident it was read for (left out of its own history)
    recurrences: list[list[str]]  # [id, received_at ISO] newest first, at most `max_items`
    # Every recurrence received strictly after this moment is in `recurrences`: the read's cutoff, or
    # where its window (`window` newest incidents) or the list (`max_items`) was cut, the later of them
    # (cut: the received time of the first one left out, as others may share it).
    complete_after: str
    window: int  # how many of the newest incidents the read looked through


# The last recurrence's newest run and that run's newest action, built once (bound parameters): building
# a select per call cost about as much as running it.
_LAST_RUN = (
    select(RunRow.id, RunRow.category, RunRow.subcategory, RunRow.mitigation)
    .where(RunRow.incident_id == bindparam("incident_id"))
    .order_by(RunRow.created_at.desc())
    .limit(1)
)
_LAST_ACTION = (
    select(ActionRow.operation, ActionRow.status)
    .where(ActionRow.run_id == bindparam("run_id"))
    .order_by(ActionRow.created_at.desc())
    .limit(1)
)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def incident_history(
    sessions: sessionmaker[Session], incident: Incident, *, now: datetime, bounds: Bounds | None = None
) -> tuple[list[Finding], list[Gap]]:
    findings, gaps, _ = read_history(sessions, incident, now=now, bounds=bounds)
    return findings, gaps


def read_history(
    sessions: sessionmaker[Session], incident: Incident, *, now: datetime, bounds: Bounds | None = None
) -> tuple[list[Finding], list[Gap], RecurrenceRead | None]:
    """The history finding (none when nothing recurred), gaps, and what was read (None when nothing
    could be: no alert name, or the store failed)."""
    bounds = bounds or Bounds()
    key = recurrence_key(incident.model_dump(mode="json"))
    if key is None:
        return [], [], None
    since = _aware(now) - timedelta(days=bounds.history_days)
    window = bounds.max_items * 20
    try:
        with sessions() as session:
            connection = session.connection()  # plain rows: no ORM result processing (store/incident_queries.py)
            matched = recurrences(connection, key, since=since, exclude_id=incident.id, limit=window)
            same = matched[: bounds.max_items]
            complete_after = since
            floor = window_floor(connection, since=since, limit=window)
            if floor is not None:  # a full window: only what is newer than its floor is sure to be in it
                complete_after = max(complete_after, _aware(floor))
            if len(matched) > len(same):  # the list is cut: the first left out, and older ones, are not in it
                complete_after = max(complete_after, _aware(matched[len(same)].received_at))
            read: RecurrenceRead = {
                "incident": incident.id,
                "recurrences": [[r.id, _aware(r.received_at).isoformat()] for r in same],
                "complete_after": complete_after.isoformat(),
                "window": window,
            }
            if not same:
                return [], [], read
            last = same[0]
            run = connection.execute(_LAST_RUN, {"incident_id": last.id}).first()
            action = connection.execute(_LAST_ACTION, {"run_id": run.id}).first() if run is not None else None
            data: dict[str, Any] = {
                "count": len(same),
                "days": bounds.history_days,
                "last": {
                    "incident": last.id,
                    "title": last.title[:200],
                    "received_at": iso(last.received_at),
                    "status": last.status,
                    "classified": f"{run.category}/{run.subcategory}" if run is not None and run.category else None,
                    "mitigation": run.mitigation if run is not None else None,
                    "action": f"{action.operation} {action.status}" if action is not None else None,
                },
            }
    except Exception as exc:  # the store is advisory here; without a read, the veto asks the store itself
        stated = gap("incident_store", f"incident history unreadable ({type(exc).__name__}): no recurrence evidence")
        return [], [stated], None
    alertname, target = key
    last_info = data["last"]
    what = (
        f"; last {last_info['received_at'][:16]} ({last_info['status']}"
        + (f", {last_info['classified']} {last_info['mitigation']}" if last_info["classified"] else "")
        + (f", action {last_info['action']}" if last_info["action"] else "")
        + ")"
    )
    summary = (
        f"{alertname} on {target or 'the same target'} seen {len(same)} time(s) in {bounds.history_days} days{what}"
    )
    source = {"type": "incident_store", "incident_ids": [r.id for r in same]}
    return [finding("history", summary, source, last_info["received_at"], data)], [], read
