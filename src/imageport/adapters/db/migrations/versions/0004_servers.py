"""servers and key pairs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 18:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("vm_state", sa.String(length=16), nullable=False),
        sa.Column("task_state", sa.String(length=24), nullable=True),
        sa.Column("power_state", sa.Integer(), nullable=False),
        sa.Column("flavor_id", sa.String(length=64), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("disk_gib", sa.Integer(), nullable=False),
        sa.Column("firmware", sa.String(length=8), nullable=False),
        sa.Column("key_name", sa.String(length=64), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("availability_zone", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("fault", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.String(length=24), nullable=False),
        sa.Column("updated_at", sa.String(length=24), nullable=False),
        sa.Column("launched_at", sa.String(length=24), nullable=True),
        sa.Column("deleted_at", sa.String(length=24), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_servers_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
    )
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.create_index("ix_servers_project_id", ["project_id"], unique=False)
        batch_op.create_index("ix_servers_image_id", ["image_id"], unique=False)
    op.create_table(
        "keypairs",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("key_type", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_keypairs_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "name", name=op.f("pk_keypairs")),
    )


def downgrade() -> None:
    op.drop_table("keypairs")
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_index("ix_servers_image_id")
        batch_op.drop_index("ix_servers_project_id")
    op.drop_table("servers")
