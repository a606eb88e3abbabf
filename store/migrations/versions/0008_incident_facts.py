"""The gap report's per-incident facts in one narrow indexed table, `incident_facts`, kept by database
triggers on `incidents` and `runs`: every write that changes a fact (an incident stored, a run queued,
classified, planned, paused, finished, retried, from any code path or a bulk INSERT ... SELECT) updates
the incident's row in the same transaction. A report over any window then reads an index range of this
table instead of joining every incident to its latest run (evals/gaps_store.py). Filled here for the
incidents stored before.

A row holds what the report counts and the hours it takes percentiles of: the latest run's labels
(category and subcategory only when known) and status (`no_run` without one), whether an alert opened
the incident, the month its impact started, TTD, TTE (first run), TTM (the latest run's closure) and that
TTM again when no human had to approve (`closed_ttm`, else NULL). The expressions are those the report
computed at query time before, so its figures do not change.

A later migration that recreates `incidents` or `runs` (SQLite batch mode with recreate) drops their
triggers with them: it must create them again (`create_triggers` below).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 03:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

AUTOMATIC_SOURCES = "('alertmanager', 'pagerduty', 'webhook')"  # an alert, not a person, opened it
COLUMNS = (
    "incident_id, received_at, month, auto, category, subcategory, mitigation, status, ttd, tte, ttm, closed_ttm,"
    " group_key"
)
# Indexes: the window's rows by received_at (PostgreSQL's GROUP BY); `group_key` (what the counts are
# grouped by, in one column) with received_at, so SQLite counts each group by an index range and steps
# from group to group instead of sorting the window; each measure ordered within a month with
# received_at alongside, so SQLite picks an order statistic by walking one index (LIMIT/OFFSET), never
# sorting; closed_ttm over the whole window likewise.
INDEXES = {
    "ix_incident_facts_received": ["received_at"],
    "ix_incident_facts_group": ["group_key", "received_at"],
    "ix_incident_facts_ttd": ["month", "ttd", "received_at"],
    "ix_incident_facts_tte": ["month", "tte", "received_at"],
    "ix_incident_facts_ttm": ["month", "ttm", "received_at"],
    "ix_incident_facts_closed_ttm": ["closed_ttm", "received_at"],
}
RUN_COLUMNS = "status, category, subcategory, mitigation, closed_at, closed_without_human, created_at, incident_id"
INCIDENT_COLUMNS = "source, started_at, received_at"


def _hours(dialect: str, end: str, start: str) -> str:
    if dialect == "sqlite":
        return f"((julianday({end}) - julianday({start})) * 24.0)"
    return f"(EXTRACT(epoch FROM {end} - {start}) / 3600.0)"


def _month(dialect: str, moment: str) -> str:
    if dialect == "sqlite":
        return f"strftime('%Y-%m', {moment})"
    return f"to_char(timezone('UTC', {moment}), 'YYYY-MM')"


def _group_key(dialect: str) -> str:
    """category, subcategory, mitigation ('' for none), auto (1/0) and status, joined by the unit separator
    (evals/gaps_store.py splits it)."""
    sep = "char(31)" if dialect == "sqlite" else "chr(31)"
    auto = "CASE WHEN f.auto THEN '1' ELSE '0' END"
    parts = ["COALESCE(f.category, '')", "COALESCE(f.subcategory, '')", "COALESCE(f.mitigation, '')", auto, "f.status"]
    return f" || {sep} || ".join(parts)


def facts_select(dialect: str, where: str) -> str:
    """One row of facts per incident matching `where` (over `i`, the incidents table), in COLUMNS' order."""
    # WHERE: SQLite's upsert after a SELECT needs one to parse ON CONFLICT as the upsert clause.
    return f"SELECT f.*, {_group_key(dialect)} FROM ({_facts(dialect, where)}) f WHERE 1 = 1"


def _facts(dialect: str, where: str) -> str:
    started = "COALESCE(i.started_at, i.received_at)"
    engaged = "(SELECT min(e.created_at) FROM runs e WHERE e.incident_id = i.id)"
    latest = "(SELECT l.id FROM runs l WHERE l.incident_id = i.id ORDER BY l.created_at DESC, l.id DESC LIMIT 1)"
    known = "r.category IS NOT NULL AND r.category <> 'unknown'"
    ttm = _hours(dialect, "r.closed_at", started)
    return f"""SELECT i.id, i.received_at, {_month(dialect, started)} AS month, i.source IN {AUTOMATIC_SOURCES} AS auto,
    CASE WHEN {known} THEN r.category END AS category, CASE WHEN {known} THEN r.subcategory END AS subcategory,
    r.mitigation AS mitigation, COALESCE(r.status, 'no_run') AS status,
    {_hours(dialect, "i.received_at", started)} AS ttd, {_hours(dialect, engaged, started)} AS tte, {ttm} AS ttm,
    CASE WHEN r.closed_without_human THEN {ttm} END AS closed_ttm
FROM incidents i LEFT JOIN runs r ON r.id = {latest}
WHERE {where}"""


def _upsert(dialect: str, incident: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ")[1:])
    return (
        f"INSERT INTO incident_facts ({COLUMNS}) {facts_select(dialect, f'i.id = {incident}')}"
        f" ON CONFLICT (incident_id) DO UPDATE SET {updates}"
    )


def _sqlite_triggers() -> list[str]:
    refresh = {
        "incident_facts_incident_insert": ("AFTER INSERT ON incidents", _upsert("sqlite", "NEW.id")),
        "incident_facts_incident_update": (
            f"AFTER UPDATE OF {INCIDENT_COLUMNS} ON incidents",
            _upsert("sqlite", "NEW.id"),
        ),
        "incident_facts_incident_delete": (
            "AFTER DELETE ON incidents",
            "DELETE FROM incident_facts WHERE incident_id = OLD.id",
        ),
        "incident_facts_run_insert": ("AFTER INSERT ON runs", _upsert("sqlite", "NEW.incident_id")),
        "incident_facts_run_update": (f"AFTER UPDATE OF {RUN_COLUMNS} ON runs", _upsert("sqlite", "NEW.incident_id")),
        "incident_facts_run_delete": ("AFTER DELETE ON runs", _upsert("sqlite", "OLD.incident_id")),
    }
    return [f"CREATE TRIGGER {name} {when} FOR EACH ROW BEGIN {body}; END" for name, (when, body) in refresh.items()]


def _postgresql_triggers() -> list[str]:
    # SET search_path FROM CURRENT: the functions read the tables of the schema they were created in,
    # whatever the search path of the session whose write fires them.
    return [
        # plpgsql, not sql: PL/pgSQL keeps the upsert's plan for the session, where a SQL function
        # called per row is planned again on every call (measured: 2.3 ms of a webhook write).
        f"""CREATE FUNCTION incident_facts_refresh(incident text) RETURNS void LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$ BEGIN {_upsert("postgresql", "incident")}; END $$""",
        """CREATE FUNCTION incident_facts_on_incident() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$ BEGIN
    IF TG_OP = 'DELETE' THEN DELETE FROM incident_facts WHERE incident_id = OLD.id;
    ELSE PERFORM incident_facts_refresh(NEW.id); END IF;
    RETURN NULL;
END $$""",
        """CREATE FUNCTION incident_facts_on_run() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$ BEGIN
    IF TG_OP = 'DELETE' THEN PERFORM incident_facts_refresh(OLD.incident_id);
    ELSE PERFORM incident_facts_refresh(NEW.incident_id); END IF;
    RETURN NULL;
END $$""",
        f"""CREATE TRIGGER incident_facts_incident AFTER INSERT OR UPDATE OF {INCIDENT_COLUMNS} OR DELETE
ON incidents FOR EACH ROW EXECUTE FUNCTION incident_facts_on_incident()""",
        f"""CREATE TRIGGER incident_facts_run AFTER INSERT OR UPDATE OF {RUN_COLUMNS} OR DELETE
ON runs FOR EACH ROW EXECUTE FUNCTION incident_facts_on_run()""",
    ]


def create_triggers(dialect: str) -> None:
    for statement in _sqlite_triggers() if dialect == "sqlite" else _postgresql_triggers():
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "incident_facts",
        sa.Column("incident_id", sa.String(200), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("auto", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(10), nullable=True),
        sa.Column("subcategory", sa.String(60), nullable=True),
        sa.Column("mitigation", sa.String(4), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("ttd", sa.Float(), nullable=False),
        sa.Column("tte", sa.Float(), nullable=True),
        sa.Column("ttm", sa.Float(), nullable=True),
        sa.Column("closed_ttm", sa.Float(), nullable=True),
        sa.Column("group_key", sa.String(400), nullable=False),
    )
    for name, columns in INDEXES.items():
        op.create_index(name, "incident_facts", columns, unique=False)
    op.execute(f"INSERT INTO incident_facts ({COLUMNS}) {facts_select(dialect, '1 = 1')}")
    create_triggers(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _sqlite_triggers():
            op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
    else:
        op.execute("DROP TRIGGER IF EXISTS incident_facts_run ON runs")
        op.execute("DROP TRIGGER IF EXISTS incident_facts_incident ON incidents")
        for function in ("incident_facts_on_run()", "incident_facts_on_incident()", "incident_facts_refresh(text)"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.drop_table("incident_facts")
