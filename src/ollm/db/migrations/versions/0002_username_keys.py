"""Username keys: one account per name after NFKC, case folding and look-alike letters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ollm.db.usernames import username_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``users.username_key``, fill it, and make it unique.

    Accounts made before this revision may already collide (``Bob`` and ``bob``): the
    oldest keeps the key, the others get theirs suffixed with their id, so they can still
    log in and nobody new can take a look-alike of any of them.
    """
    op.add_column("users", sa.Column("username_key", sa.String(128), nullable=True))
    users = sa.table(
        "users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("username_key", sa.String),
    )
    bind = op.get_bind()
    taken: set[str] = set()
    for user_id, username in bind.execute(
        sa.select(users.c.id, users.c.username).order_by(users.c.id)
    ):
        key = username_key(username)
        if key in taken:
            key = f"{key}#{user_id}"
        taken.add(key)
        bind.execute(users.update().where(users.c.id == user_id).values(username_key=key))
    op.create_index("ix_users_username_key", "users", ["username_key"], unique=True)


def downgrade() -> None:
    """Drop the key and its index."""
    op.drop_index("ix_users_username_key", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("username_key")
