"""approval_attempts: every approval attempt (accepted, refused, expired) with who, when, from where

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("attempt_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("action_key", sa.String(length=200), nullable=True),
        sa.Column("person", sa.String(length=100), nullable=True),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("attempt_id"),
    )
    with op.batch_alter_table("approval_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approval_attempts_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_approval_attempts_outcome"), ["outcome"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("approval_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_attempts_outcome"))
        batch_op.drop_index(batch_op.f("ix_approval_attempts_run_id"))
    op.drop_table("approval_attempts")
