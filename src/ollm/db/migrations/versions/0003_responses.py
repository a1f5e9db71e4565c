"""Responses: the OpenAI Responses API's stored responses, per owner.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``responses``; an account's responses go with it (ON DELETE CASCADE)."""
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("input_items", sa.JSON, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_responses"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_responses_owner_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_responses_owner_created", "responses", ["owner_id", "created_at"])


def downgrade() -> None:
    """Drop the table (and with it its index)."""
    op.drop_table("responses")
