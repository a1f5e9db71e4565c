"""Rate limiting: a token bucket per API key, session or client address.

``OLLM_RATE_LIMIT`` is requests per minute. Unset, it is off in loopback single-user mode
(auth off on 127.0.0.1: one person, who should not be throttled by their own server) and
:data:`ollm.settings.DEFAULT_RATE_LIMIT` when auth is on or the server is exposed; 0 turns
it off everywhere. A bucket holds a minute's worth of requests and refills steadily, so a
client may burst up to the limit and then goes at the limit's pace.

The key is the caller's API key or session (hashed) when that credential is known valid
(authentication accepted it in the last few minutes, :class:`VerifiedCredentials`), else
the client address. So a request with a junk or revoked token draws on its address's
bucket: inventing tokens buys no fresh bucket. Behind a reverse proxy the address is the
proxy's unless ``OLLM_FORWARDED_ALLOW_IPS`` names it. Sign-up has its own, stricter limit
per address (``OLLM_SIGNUP_RATE_LIMIT`` an hour).

Refusals are 429 with ``Retry-After`` (whole seconds) in the dialect's error shape.
Health, readiness and metrics are never limited: monitors poll them.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ollm.api.http.auth import SESSION_COOKIE, presented_api_key
from ollm.api.http.limits import error_response
from ollm.settings import Settings

EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
_MAX_KEYS = 10_000  # buckets kept before idle ones are dropped


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """``per_minute`` requests a minute per key, bursts up to ``burst`` (default: the same).

    Memory stays bounded: past ``max_keys`` buckets, the full ones (idle long enough to have
    refilled) are forgotten, and if that is not enough, the least recently used.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = _MAX_KEYS,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0  # tokens per second
        self.capacity = float(burst if burst is not None else per_minute)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if granted, else seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        refill = self.capacity / self.rate  # seconds from empty to full
        for key in [k for k, b in self._buckets.items() if now - b.updated >= refill]:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k].updated)
            for key in by_age[: len(by_age) // 2 + 1]:
                del self._buckets[key]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class VerifiedCredentials:
    """Digests of the API keys and sessions that authenticated recently.

    The limiter runs before authentication, so it cannot check a credential itself; what
    :func:`ollm.api.http.auth.authenticate` accepted, it records here. A credential not
    (yet) recorded draws on its address's bucket, so inventing tokens buys nothing.
    Bounded: the oldest entries go first; entries expire after ``ttl`` seconds.
    """

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        max_entries: int = _MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, kind: str, secret: str) -> None:
        """``secret`` (a key or session token of ``kind``) authenticated just now."""
        name = f"{kind}:{_digest(secret)}"
        self._seen[name] = self._clock()
        self._seen.move_to_end(name)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def record(self, kind: str, secret: str, *, valid: bool) -> None:
        """What authentication made of ``secret``: :meth:`add` it, or :meth:`discard` it."""
        if valid:
            self.add(kind, secret)
        else:
            self.discard(kind, secret)

    def discard(self, kind: str, secret: str) -> None:
        """``secret`` was refused (revoked, expired): stop giving it a bucket of its own."""
        self._seen.pop(f"{kind}:{_digest(secret)}", None)

    def bucket(self, kind: str, secret: str) -> str | None:
        """The bucket name of ``secret`` when it authenticated recently, else None."""
        name = f"{kind}:{_digest(secret)}"
        seen = self._seen.get(name)
        if seen is None or self._clock() - seen > self._ttl:
            return None
        return name


def presented_credential(request: Request) -> tuple[str, str] | None:
    """``("key", token)`` for an API key, ``("session", token)`` for a session cookie."""
    if (token := presented_api_key(request)) is not None:
        return "key", token
    if session := request.cookies.get(SESSION_COOKIE):
        return "session", session
    return None


def client_key(request: Request, verified: VerifiedCredentials | None = None) -> str:
    """Whose bucket a request draws on: its API key or session when that credential
    authenticated recently (``verified``), else its address. Secrets are hashed; a bucket's
    name never holds one."""
    credential = presented_credential(request)
    if (
        verified is not None
        and credential is not None
        and (name := verified.bucket(*credential)) is not None
    ):
        return name
    host = request.client.host if request.client is not None else "unknown"
    return "addr:" + host


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a client's bucket is empty."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: TokenBucketLimiter,
        verified: VerifiedCredentials | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.verified = verified  # None: auth is off, every bucket is an address's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = client_key(request, self.verified)
        wait = self.limiter.acquire(key)
        if wait > 0 and key.startswith("addr:") and self.verified is not None:
            # The address is out of requests, and this one brings a credential nobody has
            # checked yet: a real user behind a busy address (a NAT, an office) is let
            # through on their own bucket once the credential proves valid. Junk still
            # gets the 429, after one indexed lookup (no password hash is involved).
            credential = presented_credential(request)
            if credential is not None and await self._valid(request, *credential):
                self.verified.add(*credential)
                wait = self.limiter.acquire(client_key(request, self.verified))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        response = error_response(
            scope["path"],
            429,
            f"Too many requests: this server allows {round(self.limiter.rate * 60)} a minute "
            f"per client. Try again in {retry_after} s.",
            error_type="rate_limit_error",
            code="rate_limited",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)

    @staticmethod
    async def _valid(request: Request, kind: str, secret: str) -> bool:
        accounts = request.app.state.accounts
        if kind == "key":
            return await accounts.user_for_key(secret) is not None
        return await accounts.user_for_session(secret) is not None


def install_rate_limit(app: Starlette, settings: Settings) -> None:
    """Add :class:`RateLimitMiddleware` to ``app`` when ``settings`` turn rate limiting on.

    ``app.state.verified_credentials`` is where authentication records what it accepted;
    with auth off nothing is recorded and every bucket is an address's.
    ``app.state.signup_limiter`` bounds sign-ups per address (each costs an argon2 hash
    and a row), whatever the general limit.
    """
    verified = VerifiedCredentials()
    app.state.verified_credentials = verified
    app.state.signup_limiter = (
        TokenBucketLimiter(settings.signup_rate_limit / 60.0, burst=settings.signup_rate_limit)
        if settings.signup_rate_limit > 0
        else None
    )
    per_minute = settings.effective_rate_limit
    if per_minute > 0:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=TokenBucketLimiter(per_minute),
            verified=verified if settings.auth else None,
        )
