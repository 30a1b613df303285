"""authentication rate limits; who registered a version

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_failures",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start"),
    )
    op.create_index("ix_auth_failures_window_start", "auth_failures", ["window_start"])
    with op.batch_alter_table("agent_versions") as batch:
        batch.add_column(sa.Column("registered_by", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_versions") as batch:
        batch.drop_column("registered_by")
    op.drop_index("ix_auth_failures_window_start", table_name="auth_failures")
    op.drop_table("auth_failures")
