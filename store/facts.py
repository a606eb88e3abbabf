"""Bringing `incident_facts` up to date: the triggers only note which incidents changed
(`incident_facts_stale`, migration 0009); this recomputes the noted incidents' rows in one set-based
statement and removes the notes, in one transaction. The gap report calls it before it reads, so it
counts every committed write; the hourly retention pass calls it too, so notes never pile up.

The facts' definition is migration 0008's, the one the table was filled with.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from sqlalchemy import Connection, Engine, text

# One refresh at a time on PostgreSQL: two refreshes upserting the same incident from snapshots taken
# in a different order could leave the older one's facts. Serialised, each sees what the one before
# it committed.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('mitigate-incident-facts'))")
ANY_NOTE = text("SELECT 1 FROM incident_facts_stale LIMIT 1")
_FORGET = text("DELETE FROM incident_facts_stale")


@functools.cache
def _upsert(dialect: str) -> Any:
    facts = importlib.import_module("store.migrations.versions.0008_incident_facts")
    updates = ", ".join(f"{c} = excluded.{c}" for c in facts.COLUMNS.split(", ")[1:])
    if dialect == "postgresql":
        # The notes are taken by the statement that uses them: a note committed meanwhile stays for
        # the next refresh, never lost between a read and a delete.
        where = "i.id IN (SELECT incident_id FROM noted)"
        head = "WITH noted AS (DELETE FROM incident_facts_stale RETURNING incident_id) "
    else:
        where = "i.id IN (SELECT incident_id FROM incident_facts_stale)"
        head = ""
    return text(
        f"{head}INSERT INTO incident_facts ({facts.COLUMNS}) {facts.facts_select(dialect, where)}"
        f" ON CONFLICT (incident_id) DO UPDATE SET {updates}"
    )


def refresh_facts(engine: Engine) -> None:
    """Recompute the facts of every incident noted as changed, and forget the notes."""
    with engine.connect() as conn:
        if conn.execute(ANY_NOTE).first() is None:
            return  # the common case on a read: nothing written since the last refresh, nothing locked
    with engine.begin() as conn:
        _refresh(conn)


def _refresh(conn: Connection) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(_LOCK)
        conn.execute(_upsert(dialect))
        return
    # SQLite: the insert takes the database's write lock as it starts, so no note can be added between
    # it and the delete.
    conn.execute(_upsert(dialect))
    conn.execute(_FORGET)
