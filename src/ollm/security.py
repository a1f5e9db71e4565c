"""Passwords, API keys and session tokens: how secrets are made, stored and checked.

- Passwords: argon2id. An unknown username is checked against a dummy hash, so a login
  takes as long whether or not the account exists.
- API keys: ``ollm-<prefix>_<secret>``. The prefix is stored in clear (people recognise and
  revoke keys by it); the key itself only as sha256, which suffices for 256 random bits.
- Session and CSRF tokens: random, URL-safe; the database keeps only the sha256.

Comparisons of secrets are constant-time. Nothing here touches the database.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_KEY_PREFIX = "ollm-"
_PREFIX_CHARS = 12  # hex digits: 48 bits, unique by constraint
_SECRET_BYTES = 32
_API_KEY_PATTERN = re.compile(r"^ollm-(?P<prefix>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


@functools.cache
def _hasher() -> PasswordHasher:
    # argon2-cffi's defaults follow RFC 9106's low-memory recommendation (argon2id).
    return PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Computed once, on first use (never at import), with the same parameters as real ones.
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (with its own random salt)."""
    return _hasher().hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """True if ``password`` matches; with ``password_hash=None`` (no such user) the same
    work is done against a dummy hash and the answer is always False."""
    if password_hash is None:
        _verify(password, _dummy_hash())
        return False
    return _verify(password, password_hash)


def _verify(password: str, password_hash: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's (rehash on login)."""
    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def hash_token(token: str) -> str:
    """The sha256 (hex) under which an API key or session token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    """Constant-time check of a presented token against its stored hash."""
    return hmac.compare_digest(hash_token(token), token_hash)


class NewApiKey(NamedTuple):
    """A freshly made key: show ``key`` once, store ``prefix`` and ``key_hash``."""

    key: str
    prefix: str
    key_hash: str


def generate_api_key() -> NewApiKey:
    """A new ``ollm-<prefix>_<secret>`` key with the parts the database stores."""
    prefix = secrets.token_hex(_PREFIX_CHARS // 2)
    key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return NewApiKey(key=key, prefix=prefix, key_hash=hash_token(key))


def api_key_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed key, or None for anything else."""
    match = _API_KEY_PATTERN.match(key.strip())
    return match["prefix"] if match else None


def display_prefix(prefix: str) -> str:
    """How a key is shown in lists: enough to recognise it, nothing to use it."""
    return f"{API_KEY_PREFIX}{prefix}"


def normalize_prefix(text: str) -> str:
    """Accept ``abc123…``, ``ollm-abc123…`` or a whole key; return the stored prefix."""
    text = text.strip()
    if full := api_key_prefix(text):
        return full
    return text.removeprefix(API_KEY_PREFIX).split("_", 1)[0]


class NewToken(NamedTuple):
    """A fresh session token: ``token`` goes to the client, ``token_hash`` to the table."""

    token: str
    token_hash: str


def generate_session_token() -> NewToken:
    """A random session token (256 bits) and its stored hash."""
    token = secrets.token_urlsafe(_SECRET_BYTES)
    return NewToken(token=token, token_hash=hash_token(token))


def generate_csrf_token() -> str:
    """A random value for the double-submit CSRF cookie."""
    return secrets.token_urlsafe(_SECRET_BYTES)


def csrf_tokens_match(cookie_value: str | None, header_value: str | None) -> bool:
    """Double-submit check: both present and equal (constant-time)."""
    if not cookie_value or not header_value:
        return False
    return hmac.compare_digest(cookie_value.encode(), header_value.encode())
