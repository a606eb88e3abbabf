"""incident_keys: what an incident is about (node, deployment, region) and what its actions touched,
so alerts sharing a cause join the open incident; incidents.correlated_with / correlation_reason

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("correlated_with", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("correlation_reason", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_incidents_correlated_with"), ["correlated_with"], unique=False)
    op.create_table(
        "incident_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "key", "kind", name="uq_incident_key"),
    )
    with op.batch_alter_table("incident_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_keys_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_incident_keys_key"), ["key"], unique=False)
        batch_op.create_index(batch_op.f("ix_incident_keys_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("incident_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_keys_created_at"))
        batch_op.drop_index(batch_op.f("ix_incident_keys_key"))
        batch_op.drop_index(batch_op.f("ix_incident_keys_incident_id"))
    op.drop_table("incident_keys")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_correlated_with"))
        batch_op.drop_column("correlation_reason")
        batch_op.drop_column("correlated_with")
