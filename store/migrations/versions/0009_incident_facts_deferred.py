"""incident_facts kept off the write path: the triggers on `incidents` and `runs` only note which
incident changed (a row in `incident_facts_stale`), and the facts of the noted incidents are computed
again, set-based, when the gap report is read and by the hourly retention pass (store/facts.py).

Why: recomputing an incident's facts row (its latest run, its first run, six indexes) in the
transaction of every write cost the webhook's acknowledgement about 1 ms of database CPU per alert on
both SQLite and PostgreSQL (two refreshes: the incident, then its run), and again on every status
change of a run during triage (bench/webhook.py). A note is one narrow row with no index. The report
still counts every committed write: it refreshes what is noted before it reads.

Deleting an incident still deletes its facts row in the same transaction (rare: cleanup, retention).
A later migration that recreates `incidents` or `runs` (SQLite batch mode with recreate) drops their
triggers with them: it must create them again (`create_triggers` below).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 12:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

RUN_COLUMNS = "status, category, subcategory, mitigation, closed_at, closed_without_human, created_at, incident_id"
INCIDENT_COLUMNS = "source, started_at, received_at"
SQLITE_0008_TRIGGERS = (
    "incident_facts_incident_insert",
    "incident_facts_incident_update",
    "incident_facts_incident_delete",
    "incident_facts_run_insert",
    "incident_facts_run_update",
    "incident_facts_run_delete",
)


def _note(incident: str) -> str:
    return f"INSERT INTO incident_facts_stale (incident_id) VALUES ({incident})"


def _sqlite_triggers() -> list[str]:
    triggers = {
        "incident_facts_incident_insert": ("AFTER INSERT ON incidents", _note("NEW.id")),
        "incident_facts_incident_update": (f"AFTER UPDATE OF {INCIDENT_COLUMNS} ON incidents", _note("NEW.id")),
        "incident_facts_incident_delete": (
            "AFTER DELETE ON incidents",
            "DELETE FROM incident_facts WHERE incident_id = OLD.id",
        ),
        "incident_facts_run_insert": ("AFTER INSERT ON runs", _note("NEW.incident_id")),
        "incident_facts_run_update": (f"AFTER UPDATE OF {RUN_COLUMNS} ON runs", _note("NEW.incident_id")),
        "incident_facts_run_delete": ("AFTER DELETE ON runs", _note("OLD.incident_id")),
    }
    return [f"CREATE TRIGGER {name} {when} FOR EACH ROW BEGIN {body}; END" for name, (when, body) in triggers.items()]


def _postgresql_functions() -> list[str]:
    # The triggers of 0008 stay; their functions now note instead of recomputing.
    return [
        f"""CREATE OR REPLACE FUNCTION incident_facts_on_incident() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$ BEGIN
    IF TG_OP = 'DELETE' THEN DELETE FROM incident_facts WHERE incident_id = OLD.id;
    ELSE {_note("NEW.id")}; END IF;
    RETURN NULL;
END $$""",
        f"""CREATE OR REPLACE FUNCTION incident_facts_on_run() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$ BEGIN
    IF TG_OP = 'DELETE' THEN {_note("OLD.incident_id")};
    ELSE {_note("NEW.incident_id")}; END IF;
    RETURN NULL;
END $$""",
    ]


def create_triggers(dialect: str) -> None:
    for statement in _sqlite_triggers() if dialect == "sqlite" else _postgresql_functions():
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # No key and no index: a note is the cheapest possible insert; the refresh reads them all anyway.
    op.create_table("incident_facts_stale", sa.Column("incident_id", sa.String(200), nullable=False))
    if dialect == "sqlite":
        for name in SQLITE_0008_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    create_triggers(dialect)


def downgrade() -> None:
    import importlib

    facts_0008 = importlib.import_module("store.migrations.versions.0008_incident_facts")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in SQLITE_0008_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        for statement in facts_0008._sqlite_triggers():
            op.execute(statement)
    else:
        for statement in facts_0008._postgresql_triggers()[1:3]:  # the two trigger functions, as 0008 made them
            op.execute(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    # The noted incidents' facts are brought up to date before the notes go.
    where = "i.id IN (SELECT incident_id FROM incident_facts_stale)"
    updates = ", ".join(f"{c} = excluded.{c}" for c in facts_0008.COLUMNS.split(", ")[1:])
    op.execute(
        f"INSERT INTO incident_facts ({facts_0008.COLUMNS}) {facts_0008.facts_select(dialect, where)}"
        f" ON CONFLICT (incident_id) DO UPDATE SET {updates}"
    )
    op.drop_table("incident_facts_stale")
