"""Scale with history: indexes for every list's order and filters (keyset pagination), and what the
gap report needs stored on the run (when it closed the impact, whether a human had to approve), so
the report is a GROUP BY rather than every incident loaded with its runs and steps; when a finished
run's checkpoints and steps were pruned (store/retention.py)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 00:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INCIDENT_INDEXES = {
    "ix_incidents_received_id": ["received_at", "id"],
    "ix_incidents_status_received_id": ["status", "received_at", "id"],
    "ix_incidents_source_received_id": ["source", "received_at", "id"],
}
RUN_INDEXES = {
    "ix_runs_created_id": ["created_at", "id"],
    "ix_runs_status_created_id": ["status", "created_at", "id"],
    "ix_runs_incident_created": ["incident_id", "created_at"],
    "ix_runs_unpruned": ["pruned_at", "updated_at"],  # retention finds what to prune without rescanning
}

# Runs finished before this revision: the same facts the report used to derive from their steps.
BACKFILL_CLOSED_AT = """
UPDATE runs SET closed_at = (
    SELECT s.finished_at FROM run_steps s
    WHERE s.run_id = runs.id AND s.node = CASE runs.status WHEN 'mitigated' THEN 'verify' ELSE 'report' END
) WHERE status IN ('mitigated', 'no_action')
"""
BACKFILL_WITHOUT_HUMAN = """
UPDATE runs SET closed_without_human = CASE WHEN status = 'no_action' THEN TRUE
    WHEN EXISTS (SELECT 1 FROM actions a JOIN approvals p ON p.action_id = a.id WHERE a.run_id = runs.id) THEN FALSE
    ELSE TRUE END
WHERE status IN ('mitigated', 'no_action') AND closed_at IS NOT NULL
"""


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_without_human", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True))
        for name, columns in RUN_INDEXES.items():
            batch_op.create_index(name, columns, unique=False)
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        for name, columns in INCIDENT_INDEXES.items():
            batch_op.create_index(name, columns, unique=False)
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.create_index("ix_eval_runs_created_at", ["created_at"], unique=False)
    op.execute(BACKFILL_CLOSED_AT)
    op.execute(BACKFILL_WITHOUT_HUMAN)


def downgrade() -> None:
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_eval_runs_created_at")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        for name in INCIDENT_INDEXES:
            batch_op.drop_index(name)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for name in RUN_INDEXES:
            batch_op.drop_index(name)
        batch_op.drop_column("pruned_at")
        batch_op.drop_column("closed_without_human")
        batch_op.drop_column("closed_at")
