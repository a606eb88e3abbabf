"""PostgreSQL: procrastinate's job queue (its tables, functions and triggers) for runs shared by several
replicas, and a job for every run left unfinished by the previous version's in-process worker.
SQLite keeps the in-process worker: nothing changes there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 00:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    from procrastinate.schema import SchemaManager

    from api.pg_queue import defer_run

    raw = bind.connection.driver_connection
    assert raw is not None  # a live psycopg connection inside alembic's transaction
    installed = raw.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
    if installed is None or installed[0] is None:
        raw.execute(SchemaManager.get_schema())
    # Runs the previous version queued in its own process: nothing accepted is lost in the upgrade.
    pending = bind.execute(sa.text("SELECT id FROM runs WHERE status IN ('queued', 'running', 'retrying')"))
    for (run_id,) in pending.fetchall():
        defer_run(bind, run_id)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # procrastinate's objects stay (another application may share them); mitigate's jobs go.
    bind.execute(sa.text("DELETE FROM procrastinate_jobs WHERE queue_name = 'mitigate-runs'"))
