"""federation: enforcement points, their OAuth2 clients, the bundle signing key, edge decisions

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-29 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "enforcement_points",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bundle_revision", sa.String(length=80), nullable=True),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["domain"], ["domains.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("domain", "name", name="uq_enforcement_points_name"),
    )
    op.create_index("ix_enforcement_points_domain", "enforcement_points", ["domain"])
    op.create_table(
        "bundle_signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("public_jwk", _JSON, nullable=False),
        sa.Column("private_key_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid"),
    )
    # SQLite cannot alter a column in place: batch mode rebuilds the table.
    with op.batch_alter_table("credentials") as batch:
        batch.alter_column("agent_id", existing_type=sa.Uuid(), nullable=True)
        batch.add_column(sa.Column("enforcement_point_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_credentials_enforcement_point",
            "enforcement_points",
            ["enforcement_point_id"],
            ["id"],
        )
        batch.create_index("ix_credentials_enforcement_point_id", ["enforcement_point_id"])
    op.add_column("decisions", sa.Column("enforcement_point_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("decisions", "enforcement_point_id")
    with op.batch_alter_table("credentials") as batch:
        batch.drop_index("ix_credentials_enforcement_point_id")
        batch.drop_constraint("fk_credentials_enforcement_point", type_="foreignkey")
        batch.drop_column("enforcement_point_id")
        batch.alter_column("agent_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_table("bundle_signing_keys")
    op.drop_index("ix_enforcement_points_domain", table_name="enforcement_points")
    op.drop_table("enforcement_points")
