"""Full-text search over chat titles and message content, one query per dialect.

The index structures are created by the migrations (``0001_initial``):
SQLite has FTS5 tables ``messages_fts`` (external content over ``messages``, rowid =
message id) and ``chats_fts`` (title, chat_id), kept in step by triggers; PostgreSQL has
GIN indexes on ``to_tsvector('simple', …)`` of ``messages.content`` and ``chats.title``.

Neither dialect stems ('simple' / unicode61): a search term matches words that start with
it, case-insensitively. User text never reaches the FTS query syntax: it is split into
words and each becomes a quoted prefix term, all of which must match.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, false, func, literal_column, or_, select, text

from ollm.db.models import Chat, Message

TS_CONFIG = "simple"
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 16


def search_terms(query: str) -> list[str]:
    """The words of a search box entry (punctuation and operators dropped)."""
    return _WORD.findall(query)[:MAX_TERMS]


def _sqlite_match(terms: list[str]) -> str:
    # "word"* is an FTS5 prefix phrase; quoting neutralises keywords such as NOT or OR.
    return " ".join(f'"{term}"*' for term in terms)


def _postgres_tsquery(terms: list[str]) -> str:
    # \w+ words contain no tsquery operators; :* makes each a prefix match.
    return " & ".join(f"{term}:*" for term in terms)


def chat_matches(dialect_name: str, query: str) -> ColumnElement[bool]:
    """A condition on ``Chat`` rows: the title or any of its messages match ``query``.

    Combine it with the owner filter; it never widens what a caller may see.
    """
    terms = search_terms(query)
    if not terms:
        return false()
    if dialect_name == "sqlite":
        match = _sqlite_match(terms)
        in_messages = select(Message.chat_id).where(
            Message.id.in_(
                select(literal_column("rowid"))
                .select_from(text("messages_fts"))
                .where(text("messages_fts MATCH :fts_messages").bindparams(fts_messages=match))
            )
        )
        in_titles = (
            select(literal_column("chat_id"))
            .select_from(text("chats_fts"))
            .where(text("chats_fts MATCH :fts_titles").bindparams(fts_titles=match))
        )
        return or_(Chat.id.in_(in_titles), Chat.id.in_(in_messages))
    if dialect_name == "postgresql":
        tsquery = func.to_tsquery(literal_column(f"'{TS_CONFIG}'"), _postgres_tsquery(terms))
        # The expressions must read exactly like the indexed ones for the GIN index to apply.
        title_vector = func.to_tsvector(literal_column(f"'{TS_CONFIG}'"), Chat.title)
        content_vector = func.to_tsvector(literal_column(f"'{TS_CONFIG}'"), Message.content)
        in_messages = select(Message.chat_id).where(content_vector.bool_op("@@")(tsquery))
        return or_(title_vector.bool_op("@@")(tsquery), Chat.id.in_(in_messages))
    raise ValueError(f"full-text search is not available on {dialect_name}")
