"""The recurrence query (store/incident_queries.py `recurrences`) picks candidates by alert name in SQL:
it must answer exactly what matching `recurrence_key` over the whole rows in Python answered, on SQLite
and PostgreSQL, for the history finding and the "no action" recurrence veto alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.schemas import Alert, Incident
from store.incident_queries import IncidentQueries, recurrence_key, recurrences
from store.models import IncidentRow
from tools.investigate import Bounds
from tools.investigate.history import incident_history

NOW = datetime.now(UTC)
LABELS = {"alertname": "SLABurn", "namespace": "ns", "deployment": "m-eastus"}


@pytest.fixture
def sessions(db_sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    return db_sessions


def _payload(labels: dict[str, str] | None) -> dict[str, Any]:
    alert = Alert(status="firing", labels=labels) if labels is not None else None
    return Incident(id="x", title="t", alert=alert).model_dump(mode="json")


def _store(sessions: sessionmaker[Session], rows: list[tuple[str, dict[str, Any], str, timedelta]]) -> None:
    with sessions.begin() as session:
        for id_, payload, status, ago in rows:
            row = IncidentRow(id=id_, title=f"title {id_}", payload=payload, status=status, received_at=NOW - ago)
            session.add(row)


def _whole_rows_in_python(
    sessions: sessionmaker[Session], key: tuple[str, str], since: datetime, exclude: str, limit: int
) -> list[str]:
    """What the lookups did before: the `limit` newest whole rows, matched in Python."""
    with sessions() as session:
        rows = session.scalars(
            select(IncidentRow)
            .where(IncidentRow.received_at >= since, IncidentRow.id != exclude)
            .where(IncidentRow.status != "correlated")
            .order_by(IncidentRow.received_at.desc())
            .limit(limit)
        ).all()
        return [r.id for r in rows if recurrence_key(r.payload) == key]


def test_the_sql_filter_answers_what_the_python_match_answered(sessions):
    hour = timedelta(hours=1)
    _store(
        sessions,
        [
            ("I-now", _payload(LABELS), "open", timedelta(0)),  # the incident itself
            ("same-1", _payload(LABELS), "mitigated", 1 * hour),
            ("same-2", _payload(LABELS | {"pod": "p-1"}), "no_action", 2 * hour),  # deployment still comes first
            ("dup", _payload(LABELS), "correlated", 3 * hour),  # a correlated duplicate is not a recurrence
            ("other-target", _payload(LABELS | {"deployment": "m-westus"}), "mitigated", 4 * hour),
            ("by-node", _payload({"alertname": "SLABurn", "deployment": "", "node": "m-eastus"}), "open", 5 * hour),
            ("other-alert", _payload(LABELS | {"alertname": "KVCacheFull"}), "open", 6 * hour),
            ("no-alertname", _payload({"deployment": "m-eastus"}), "open", 7 * hour),
            ("empty-alertname", _payload(LABELS | {"alertname": ""}), "open", 8 * hour),
            ("no-alert", _payload(None), "open", 9 * hour),
            ("same-old", _payload(LABELS), "mitigated", timedelta(days=40)),  # outside the window
        ],
    )
    key = recurrence_key(_payload(LABELS))
    assert key is not None
    since = NOW - timedelta(days=30)
    with sessions() as session:
        found = recurrences(session, key, since=since, exclude_id="I-now", limit=1000)
    assert [r.id for r in found] == _whole_rows_in_python(sessions, key, since, "I-now", 1000)
    # The node label is a target too: an empty deployment falls through to it, as in Python.
    assert [r.id for r in found] == ["same-1", "same-2", "by-node"]
    assert [r.title for r in found] == ["title same-1", "title same-2", "title by-node"]
    assert [r.status for r in found] == ["mitigated", "no_action", "open"]

    # The bound is still "the newest `limit` incidents", not "the newest `limit` of this alert":
    # with room for four rows, by-node (the fourth newest, dup and I-now not counted) is in, not at three.
    bounded = {}
    for limit in (1, 2, 3, 4):
        with sessions() as session:
            bounded[limit] = [r.id for r in recurrences(session, key, since=since, exclude_id="I-now", limit=limit)]
        assert bounded[limit] == _whole_rows_in_python(sessions, key, since, "I-now", limit)
    assert bounded[3] == ["same-1", "same-2"] and bounded[4] == ["same-1", "same-2", "by-node"]

    incident = Incident(id="I-now", title="t", alert=Alert(status="firing", labels=LABELS))
    veto = IncidentQueries(sessions).recent_occurrences(incident, NOW - timedelta(days=7))
    assert veto == ["same-1", "same-2", "by-node"]
    findings, gaps = incident_history(sessions, incident, now=NOW, bounds=Bounds(max_items=2))
    assert gaps == [] and findings[0]["source"]["incident_ids"] == ["same-1", "same-2"]
    assert findings[0]["data"]["last"]["incident"] == "same-1" and findings[0]["data"]["last"]["status"] == "mitigated"


def test_an_alert_without_a_target_label_recurs_only_with_alerts_without_one(sessions):
    bare = {"alertname": "GatewayErrors", "namespace": "ns"}
    _store(
        sessions,
        [
            ("no-target", _payload(bare), "mitigated", timedelta(hours=1)),
            ("empty-targets", _payload(bare | {"deployment": "", "pod": ""}), "open", timedelta(hours=2)),
            ("a-pod", _payload(bare | {"pod": "gw-1"}), "open", timedelta(hours=3)),
            ("a-service", _payload(bare | {"service": "gw"}), "open", timedelta(hours=4)),
        ],
    )
    key = recurrence_key(_payload(bare))
    assert key == ("GatewayErrors", "")
    since = NOW - timedelta(days=30)
    with sessions() as session:
        found = [r.id for r in recurrences(session, key, since=since, exclude_id="-", limit=100)]
    assert found == _whole_rows_in_python(sessions, key, since, "-", 100) == ["no-target", "empty-targets"]
    with sessions() as session:
        by_service = recurrences(session, ("GatewayErrors", "gw"), since=since, exclude_id="-", limit=100)
    assert [r.id for r in by_service] == ["a-service"]
