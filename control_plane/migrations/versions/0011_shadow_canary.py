"""shadow and canary revisions of a policy bundle; which revision served a decision; shadow diffs

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("policy_bundles") as batch:
        batch.add_column(sa.Column("shadow_revision", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("canary_revision", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("canary_basis_points", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("canary_domains", _JSON, nullable=True))
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("served_by", sa.String(length=10), nullable=True))
    op.create_table(
        "shadow_diffs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bundle", sa.String(length=63), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column("shadow_revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(length=63), nullable=False),
        sa.Column("old_effect", sa.String(length=20), nullable=False),
        sa.Column("new_effect", sa.String(length=20), nullable=False),
        sa.Column("old_reasons", _JSON, nullable=False),
        sa.Column("new_reasons", _JSON, nullable=False),
        sa.Column("decided_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("decision_id", "shadow_revision", name="uq_shadow_diffs_decision"),
    )
    op.create_index(
        "ix_shadow_diffs_bundle_id", "shadow_diffs", ["bundle", "shadow_revision", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_shadow_diffs_bundle_id", table_name="shadow_diffs")
    op.drop_table("shadow_diffs")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("served_by")
    with op.batch_alter_table("policy_bundles") as batch:
        batch.drop_column("canary_domains")
        batch.drop_column("canary_basis_points")
        batch.drop_column("canary_revision")
        batch.drop_column("shadow_revision")
