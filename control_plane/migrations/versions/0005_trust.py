"""trust boundaries: decision replays, idempotency dependencies

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-29 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decision_replays",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(length=63), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_decision_replays_decision_id_id", "decision_replays", ["decision_id", "id"])
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("depends_on", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("depends_on")
    op.drop_index("ix_decision_replays_decision_id_id", table_name="decision_replays")
    op.drop_table("decision_replays")
