"""the replay memory: used signatures of single-use requests

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 06:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_signatures",
        sa.Column("signature_digest", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("bodiless", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("signature_digest", name=op.f("pk_used_signatures")),
    )
    with op.batch_alter_table("used_signatures", schema=None) as batch_op:
        batch_op.create_index("ix_used_signatures_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("used_signatures", schema=None) as batch_op:
        batch_op.drop_index("ix_used_signatures_expires_at")

    op.drop_table("used_signatures")
