"""image sharing: the members of images shared with other projects

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 15:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_members",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.String(length=24), nullable=False),
        sa.Column("updated_at", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_members_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["projects.id"], name=op.f("fk_image_members_member_id_projects")
        ),
        sa.PrimaryKeyConstraint("image_id", "member_id", name=op.f("pk_image_members")),
    )
    with op.batch_alter_table("image_members", schema=None) as batch_op:
        batch_op.create_index("ix_image_members_member_id", ["member_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_members", schema=None) as batch_op:
        batch_op.drop_index("ix_image_members_member_id")

    op.drop_table("image_members")
