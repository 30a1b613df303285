"""policy revisions carry the OPA-compiled WebAssembly module

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-29 12:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("policy_revisions", sa.Column("wasm", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("policy_revisions", "wasm")
