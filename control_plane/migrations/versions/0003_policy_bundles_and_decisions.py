"""policy bundles and decisions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 04:57:20.393174
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "policy_bundles",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("active_revision", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "policy_revisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bundle", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "modules",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle"],
            ["policy_bundles.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bundle", "revision", name="uq_policy_revisions_number"),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(length=63), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("version_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.String(length=100), nullable=True),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column(
            "resource",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("input_digest", sa.String(length=71), nullable=False),
        sa.Column("effect", sa.String(length=20), nullable=False),
        sa.Column("allow", sa.Boolean(), nullable=False),
        sa.Column(
            "reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "obligations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("bundle", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column("engine", sa.String(length=20), nullable=False),
        sa.Column("failure", sa.String(length=500), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_action"), ["action"], unique=False)
        batch_op.create_index("ix_decisions_agent_id_id", ["agent_id", "id"], unique=False)
        batch_op.create_index("ix_decisions_domain_id", ["domain", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_decisions_effect"), ["effect"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_effect"))
        batch_op.drop_index("ix_decisions_domain_id")
        batch_op.drop_index("ix_decisions_agent_id_id")
        batch_op.drop_index(batch_op.f("ix_decisions_action"))

    op.drop_table("decisions")
    op.drop_table("policy_revisions")
    op.drop_table("policy_bundles")
