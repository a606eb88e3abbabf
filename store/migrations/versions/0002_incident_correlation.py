"""incidents.correlation_key: alerts of one Alertmanager group become one incident

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("correlation_key", sa.String(length=300), nullable=True))
        batch_op.create_index(batch_op.f("ix_incidents_correlation_key"), ["correlation_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_correlation_key"))
        batch_op.drop_column("correlation_key")
