"""Full-text search over chat titles and message content, one query per dialect.

The index structures are created by the migrations (``0001_initial``):
SQLite has FTS5 tables ``messages_fts`` (external content over ``messages``, rowid =
message id) and ``chats_fts`` (title, chat_id), kept in step by triggers; PostgreSQL has
GIN indexes on ``to_tsvector('simple', …)`` of ``messages.content`` and ``chats.title``.

Neither dialect stems ('simple' / unicode61): a search term matches words that start with
it, case-insensitively. User text never reaches the FTS query syntax: it is split into
words, and each word becomes one quoted prefix term, bound as a parameter.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
)

from ollm.db.models import Chat, Message

TS_CONFIG = "simple"
# Created by the migrations, unknown to the models: schema comparison must ignore them
# (SQLite's FTS5 tables come with shadow tables such as messages_fts_data).
SEARCH_TABLE_PREFIXES = ("messages_fts", "chats_fts")
SEARCH_INDEXES = frozenset({"ix_messages_content_fts", "ix_chats_title_fts"})
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 16


def is_search_object(name: str | None) -> bool:
    """True for the full-text structures that live only in the migrations."""
    return bool(name) and (name in SEARCH_INDEXES or name.startswith(SEARCH_TABLE_PREFIXES))


def search_terms(query: str) -> list[str]:
    """The words of a search box entry (punctuation and operators dropped)."""
    return _WORD.findall(query)[:MAX_TERMS]


def chat_matches(dialect_name: str, query: str) -> ColumnElement[bool]:
    """A condition on ``Chat`` rows: every word of ``query`` occurs (as a word prefix) in
    the title or in some message of the chat, not necessarily the same one.

    Combine it with the owner filter; it never widens what a caller may see.
    """
    terms = search_terms(query)
    if not terms:
        return false()
    if dialect_name == "sqlite":
        return and_(*(_sqlite_term(term) for term in terms))
    if dialect_name == "postgresql":
        return and_(*(_postgres_term(term) for term in terms))
    raise ValueError(f"full-text search is not available on {dialect_name}")


def _sqlite_term(term: str) -> ColumnElement[bool]:
    # "word"* is an FTS5 prefix phrase; quoting neutralises keywords such as NOT or OR.
    match = bindparam(None, f'"{term}"*', unique=True)
    in_messages = select(Message.chat_id).where(
        Message.id.in_(
            select(literal_column("rowid"))
            .select_from(text("messages_fts"))
            .where(literal_column("messages_fts").op("MATCH")(match))
        )
    )
    in_titles = (
        select(literal_column("chat_id"))
        .select_from(text("chats_fts"))
        .where(literal_column("chats_fts").op("MATCH")(match))
    )
    return or_(Chat.id.in_(in_titles), Chat.id.in_(in_messages))


def _postgres_term(term: str) -> ColumnElement[bool]:
    # A \w+ word holds no tsquery operator; :* makes it a prefix match.
    config = literal_column(f"'{TS_CONFIG}'")
    tsquery = func.to_tsquery(config, bindparam(None, f"{term}:*", unique=True))
    # These must read exactly like the indexed expressions for the GIN indexes to apply.
    title_vector = func.to_tsvector(config, Chat.title)
    content_vector = func.to_tsvector(config, Message.content)
    in_messages = select(Message.chat_id).where(content_vector.bool_op("@@")(tsquery))
    return or_(title_vector.bool_op("@@")(tsquery), Chat.id.in_(in_messages))
