"""Rate limiting: a token bucket per API key, session or client address.

``OLLM_RATE_LIMIT`` is requests per minute. Unset, it is off in loopback single-user mode
(auth off on 127.0.0.1: one person, who should not be throttled by their own server) and
:data:`ollm.settings.DEFAULT_RATE_LIMIT` when auth is on or the server is exposed; 0 turns
it off everywhere. A bucket holds a minute's worth of requests and refills steadily, so a
client may burst up to the limit and then goes at the limit's pace.

The key is who the request says it comes from, before authentication: the bearer token
(hashed), else the session cookie (hashed), else the client address. A caller inventing
keys gets a fresh bucket per key, but every such request is a cheap 401; the scheduler's
own queue limit (429 ``queue_full``) still bounds the work anyone can start. Behind a
reverse proxy the address is the proxy's unless uvicorn is told to trust forwarded headers.

Refusals are 429 with ``Retry-After`` (whole seconds) in the dialect's error shape.
Health, readiness and metrics are never limited: monitors poll them.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ollm.api.http.auth import SESSION_COOKIE, bearer_token
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
        per_minute: int,
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


def client_key(request: Request) -> str:
    """Whose bucket a request draws on: its bearer key, session, or address (secrets are
    hashed; a bucket's name never holds one)."""
    if (token := bearer_token(request)) is not None:
        return "key:" + _digest(token)
    if session := request.cookies.get(SESSION_COOKIE):
        return "session:" + _digest(session)
    host = request.client.host if request.client is not None else "unknown"
    return "addr:" + host


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a client's bucket is empty."""

    def __init__(self, app: ASGIApp, *, limiter: TokenBucketLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.limiter.acquire(client_key(Request(scope)))
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


def install_rate_limit(app: Starlette, settings: Settings) -> None:
    """Add :class:`RateLimitMiddleware` to ``app`` when ``settings`` turn rate limiting on."""
    per_minute = settings.effective_rate_limit
    if per_minute > 0:
        app.add_middleware(RateLimitMiddleware, limiter=TokenBucketLimiter(per_minute))
