"""Initial schema: users, API keys, sessions, chats, the message tree, full-text search.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROLE = sa.Enum("admin", "user", name="role", native_enum=False, create_constraint=True, length=16)
MESSAGE_ROLE = sa.Enum(
    "system", "user", "assistant",
    name="message_role", native_enum=False, create_constraint=True, length=16,
)  # fmt: skip
MESSAGE_STATUS = sa.Enum(
    "complete", "streaming", "interrupted", "error",
    name="message_status", native_enum=False, create_constraint=True, length=16,
)  # fmt: skip

# Full-text search, frozen here as it was at this revision (ollm.db.fts queries it).
# SQLite: an FTS5 index over messages.content following messages.id (external content,
# kept in step by triggers) and a small FTS5 table of chat titles keyed by chat id.
SQLITE_FTS = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id')",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    "CREATE VIRTUAL TABLE chats_fts USING fts5(title, chat_id UNINDEXED)",
    """CREATE TRIGGER chats_fts_insert AFTER INSERT ON chats BEGIN
        INSERT INTO chats_fts(title, chat_id) VALUES (new.title, new.id);
    END""",
    """CREATE TRIGGER chats_fts_delete AFTER DELETE ON chats BEGIN
        DELETE FROM chats_fts WHERE chat_id = old.id;
    END""",
    """CREATE TRIGGER chats_fts_update AFTER UPDATE OF title ON chats BEGIN
        DELETE FROM chats_fts WHERE chat_id = old.id;
        INSERT INTO chats_fts(title, chat_id) VALUES (new.title, new.id);
    END""",
]
# PostgreSQL: GIN indexes on tsvector expressions ('simple': no stemming, any language).
POSTGRES_FTS = [
    "CREATE INDEX ix_messages_content_fts ON messages USING gin (to_tsvector('simple', content))",
    "CREATE INDEX ix_chats_title_fts ON chats USING gin (to_tsvector('simple', title))",
]


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table, index and search structure."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        _timestamp("created_at"),
        _timestamp("last_used_at", nullable=True),
        _timestamp("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_api_keys_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_sessions_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("token_hash", name="uq_sessions_token_hash"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])

    active_leaf_fk = sa.ForeignKeyConstraint(
        ["active_leaf_id"],
        ["messages.id"],
        name="fk_chats_active_leaf_id_messages",
        ondelete="SET NULL",
    )
    op.create_table(
        "chats",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("system_prompt", sa.Text, nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("active_leaf_id", sa.Integer, nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_chats"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_chats_owner_id_users", ondelete="CASCADE"
        ),
        # SQLite cannot add a constraint later but accepts a forward reference;
        # PostgreSQL gets it by ALTER once messages exists (below).
        *([active_leaf_fk] if sqlite else []),
    )
    op.create_index(
        "ix_chats_owner_list", "chats", ["owner_id", "archived", "pinned", "updated_at"]
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("chat_id", sa.String(36), nullable=False),
        sa.Column("parent_id", sa.Integer, nullable=True),
        sa.Column("role", MESSAGE_ROLE, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("status", MESSAGE_STATUS, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=True),
        sa.Column("completion_tokens", sa.Integer, nullable=True),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("tokens_per_second", sa.Float, nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name="fk_messages_chat_id_chats", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["messages.id"],
            name="fk_messages_parent_id_messages",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_messages_chat_parent", "messages", ["chat_id", "parent_id", "id"])
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"])
    if not sqlite:
        op.create_foreign_key(
            "fk_chats_active_leaf_id_messages",
            "chats",
            "messages",
            ["active_leaf_id"],
            ["id"],
            ondelete="SET NULL",
        )
    for statement in SQLITE_FTS if sqlite else POSTGRES_FTS:
        op.execute(statement)


def downgrade() -> None:
    """Drop everything the upgrade created."""
    if op.get_bind().dialect.name == "sqlite":
        # Triggers first: dropping a table deletes its rows, which would fire them.
        for table in ("messages", "chats"):
            for event in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{event}")
            op.execute(f"DROP TABLE IF EXISTS {table}_fts")
    else:
        op.drop_constraint("fk_chats_active_leaf_id_messages", "chats", type_="foreignkey")
    for table in ("messages", "chats", "sessions", "api_keys", "users"):
        op.drop_table(table)
