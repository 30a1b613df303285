"""decisions keep the input policy saw (redacted), for impact analysis by replay

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # Nullable: decisions recorded before this revision (and failed-closed ones) have none, and
    # impact analysis reports them as not replayable.
    op.add_column("decisions", sa.Column("input", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("input")
