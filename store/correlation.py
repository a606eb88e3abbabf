"""One root cause, one incident: which open incident a new alert belongs to, and storing it there.

An alert joins an open incident when it comes from the same Alertmanager group (the group key), or
shares a cause with it within a window: the same node, the same deployment, or a region-wide alert of
its region. An alert about something a run's disruptive action changed (the deployments of a drained node, a
restarted deployment) shortly after that action, while the run has not yet verified recovery, joins the
run's incident: the 429s of an eviction are mitigate's own doing, not a new problem. Once the run is
verified, a new alert there is a new problem again. The reason is stored with the alert.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    String,
    bindparam,
    cast,
    insert,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agent.entities import entities_with_sources
from agent.schemas import Incident
from store.ack_writes import INCIDENT_KEYS, INCIDENTS, incident_values, insert_if_new
from store.models import IncidentKeyRow, IncidentRow
from store.recorder import CLOSED_STATUSES

# join_for's two lookups (the group's first open incident; the incidents sharing a key) as one statement
# built once: it runs before every alert's 202, where building a select (and its cache key) per request
# cost more CPU than the query, and on PostgreSQL each statement is a round trip.
_GROUP_FIRST = (
    select(INCIDENTS.c.id, INCIDENTS.c.received_at, INCIDENTS.c.status)
    .where(
        INCIDENTS.c.correlation_key == bindparam("correlation_key", type_=String),
        INCIDENTS.c.received_at >= bindparam("since", type_=DateTime(timezone=True)),
        INCIDENTS.c.status.not_in(CLOSED_STATUSES),
        INCIDENTS.c.status.not_like("%alert_resolved"),
    )
    .order_by(INCIDENTS.c.received_at)
    .limit(1)
    .subquery("group_first")
)
_LOOKUP = union_all(
    select(
        _GROUP_FIRST.c.id.label("incident_id"),
        literal("group", String).label("kind"),
        cast(null(), String).label("key"),
        cast(null(), String).label("run_id"),
        _GROUP_FIRST.c.received_at.label("created_at"),
        _GROUP_FIRST.c.status,
    ),
    select(
        INCIDENT_KEYS.c.incident_id,
        INCIDENT_KEYS.c.kind,
        INCIDENT_KEYS.c.key,
        INCIDENT_KEYS.c.run_id,
        INCIDENT_KEYS.c.created_at,
        INCIDENTS.c.status,
    )
    .join(INCIDENTS, INCIDENTS.c.id == INCIDENT_KEYS.c.incident_id)
    .where(INCIDENT_KEYS.c.key.in_(bindparam("wanted", expanding=True))),
)
_PRIMARY_PAYLOAD = select(INCIDENTS.c.payload).where(INCIDENTS.c.id == bindparam("primary_id")).with_for_update()
_SET_PAYLOAD = update(INCIDENTS).where(INCIDENTS.c.id == bindparam("primary_id"))


def cause_keys(incident: Incident) -> tuple[list[str], list[str]]:
    """(keys the incident is about, keys a new alert looks for). Only alert labels count: text can say
    anything. A region key is the incident's own only for a region-wide alert (no node, deployment or
    pod), but every alert of that region looks for one."""
    entities, sources = entities_with_sources(incident)
    labelled = {k: v for k, v in entities.items() if sources.get(k) == "alert_labels"}
    own: list[str] = []
    if labelled.get("node"):
        own.append(f"node:{labelled['node']}")
    if labelled.get("deployment"):
        own.append(f"deployment:{labelled.get('namespace') or '-'}/{labelled['deployment']}")
    wanted = list(own)
    if labelled.get("region"):
        wanted.append(f"region:{labelled['region']}")
        if not any(labelled.get(k) for k in ("node", "deployment", "pod")):
            own.append(f"region:{labelled['region']}")
    return own, wanted


class Correlator:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._engine: Engine = sessions.kw["bind"]

    def remember(self, incident_id: str, keys: list[str]) -> None:
        if not keys:
            return
        rows = [{"incident_id": incident_id, "key": key[:300], "kind": "cause", "created_at": _now()} for key in keys]
        try:
            with self._engine.begin() as connection:  # Core, one statement: this is on the webhook's ack path
                connection.execute(insert(IncidentKeyRow), rows)
        except IntegrityError:  # a repeated delivery of the same alert: its keys are there already
            return

    def join_for(
        self,
        correlation_key: str | None,
        group_since: datetime,
        wanted: list[str],
        cause_since: datetime,
        touched_since: datetime,
        connection: Connection | None = None,
    ) -> tuple[str, str, str] | None:
        """(incident id, "group" or "cause", why) of the open incident a new alert joins: its group's
        first open incident (when `correlation_key` is given), else one it shares a cause with. Both
        lookups in one statement built once, on the caller's connection when it stores the alert in the
        same transaction: this runs before every alert's 202."""
        params = {"correlation_key": correlation_key, "since": group_since, "wanted": wanted}
        with contextlib.nullcontext(connection) if connection is not None else self._engine.connect() as conn:
            found = conn.execute(_LOOKUP, params).all()
        primary = next((row.incident_id for row in found if row.kind == "group"), None)
        if primary is not None:  # a None correlation_key matches no incident
            return primary, "group", f"same Alertmanager group as open incident {primary}"
        if not wanted:
            return None
        rows = sorted((row for row in found if row.kind != "group"), key=lambda row: _aware(row.created_at))
        for row in rows:  # as sharing_cause: an own action first, then a shared cause
            if row.kind == "touched" and _open(row.status) and _aware(row.created_at) >= touched_since:
                why = f"likely caused by mitigate's own action: run {row.run_id} changed {row.key}"
                return row.incident_id, "cause", why
        for row in rows:
            if row.kind == "cause" and _open(row.status) and _aware(row.created_at) >= cause_since:
                return row.incident_id, "cause", f"shares {row.key} with open incident {row.incident_id}"
        return None

    def open_incident_for(self, correlation_key: str, since: datetime) -> str | None:
        """The first incident of this correlation group received since `since` that is still open."""
        with self._sessions() as session:
            return session.scalar(
                select(IncidentRow.id)
                .where(
                    IncidentRow.correlation_key == correlation_key,
                    IncidentRow.received_at >= since,
                    IncidentRow.status.not_in(CLOSED_STATUSES),
                    IncidentRow.status.not_like("%alert_resolved"),
                )
                .order_by(IncidentRow.received_at)
                .limit(1)
            )

    def sharing_cause(
        self, wanted: list[str], cause_since: datetime, touched_since: datetime
    ) -> tuple[str, str] | None:
        """(incident id, why) of the incident this alert shares a cause with, if any."""
        if not wanted:
            return None
        with self._sessions() as session:
            rows = session.execute(
                select(IncidentKeyRow, IncidentRow.status)
                .join(IncidentRow, IncidentRow.id == IncidentKeyRow.incident_id)
                .where(IncidentKeyRow.key.in_(wanted))
                .order_by(IncidentKeyRow.created_at)
            ).all()
        for row, status in rows:
            # Until its run has verified recovery: after that, a new alert there is a new problem.
            if row.kind == "touched" and _open(status) and _aware(row.created_at) >= touched_since:
                why = f"likely caused by mitigate's own action: run {row.run_id} changed {row.key}"
                return row.incident_id, why
        for row, status in rows:
            if row.kind == "cause" and _open(status) and _aware(row.created_at) >= cause_since:
                return row.incident_id, f"shares {row.key} with open incident {row.incident_id}"
        return None

    def save_correlated(
        self,
        incident: Incident,
        *,
        primary_id: str,
        reason: str,
        source: str,
        payload: dict[str, Any],
        fingerprint: str | None,
        correlation_key: str,
        connection: Connection | None = None,
    ) -> bool:
        """Store an alert that belongs to an open incident: kept for the record with the reason, no run of
        its own. False when it was stored already (a repeated delivery, or the same one racing in: the
        insert's ON CONFLICT decides, so the loser is a duplicate, not an error). In the caller's
        transaction (`connection`) or one of its own."""
        row = incident_values(
            incident,
            source=source,
            status="correlated",
            payload=payload | {"correlated_with": primary_id, "correlation_reason": reason},
            fingerprint=fingerprint,
            correlation_key=correlation_key,
            received_at=_now(),
        ) | {"correlated_with": primary_id, "correlation_reason": reason}
        with contextlib.nullcontext(connection) if connection is not None else self._engine.begin() as conn:
            stored = conn.execute(insert_if_new(conn, INCIDENTS), row).first()
            if stored is None:
                return False
            # Locked: the group's other alerts, arriving at once, each append to it in turn.
            primary = conn.execute(_PRIMARY_PAYLOAD, {"primary_id": primary_id}).scalar()
            if primary is not None:
                # The open incident gathers what its group's later alerts say; a triage still waiting
                # (queued, or in its settle time) reads it when it starts.
                conn.execute(_SET_PAYLOAD, {"primary_id": primary_id, "payload": _with_related(primary, incident)})
            return True


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def _open(status: str) -> bool:
    return status not in CLOSED_STATUSES and not status.endswith("alert_resolved")


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _with_related(payload: dict[str, Any], related: Incident) -> dict[str, Any]:
    """The incident with a correlated alert's text appended and its labels added where missing."""
    merged = dict(payload)
    line = f"Also firing: {related.title}"
    if line not in (merged.get("description") or ""):
        merged["description"] = "\n".join(part for part in (merged.get("description"), line) if part)
    if related.alert is not None and merged.get("alert"):
        alert = dict(merged["alert"])
        alert["labels"] = {**related.alert.labels, **(alert.get("labels") or {})}
        merged["alert"] = alert
    return merged
