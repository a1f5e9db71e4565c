"""Login throttling: failed passwords per username and per client address.

After ``max_failures`` failed logins for a username, that username is locked for
``lockout_seconds``; every further failure doubles the lock, up to ``max_lockout_seconds``.
One address gets ``address_factor`` times as many failures (it may be a shared NAT, and
one person may mistype several usernames) before the same schedule locks the address.
A locked login is a 429 with ``Retry-After`` before any password is checked, so guessing
costs the server no argon2 work either. A success clears the username's count; the
address's count only fades (after ``forget_after`` seconds without failures), so owning one
account does not license spraying others. Unknown usernames are counted like real ones:
a lock says nothing about whether an account exists.

Every attempt counts as a failure from the moment it starts until it succeeds, so a burst
of parallel guesses cannot all slip past the check before the first one is recorded.

Trade-off, as everywhere: someone who knows a username can keep it locked. The lock is
bounded (15 minutes by default) and API keys keep working.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ollm.errors import TooManyRequestsError

_MAX_RECORDS = 10_000  # records kept before stale ones are dropped


class LoginThrottledError(TooManyRequestsError):
    """Too many failed logins for this username or from this address; retry later."""

    code = "too_many_login_attempts"


@dataclass(slots=True)
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    """Counts failed logins and locks usernames and addresses that collect too many."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        lockout_seconds: float = 30.0,
        max_lockout_seconds: float = 900.0,
        address_factor: int = 4,
        forget_after: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self.max_lockout_seconds = max_lockout_seconds
        self.address_factor = address_factor
        self.forget_after = forget_after
        self._clock = clock
        self._records: dict[str, _Record] = {}

    @property
    def enabled(self) -> bool:
        """False when ``max_failures`` is 0: logins are never throttled."""
        return self.max_failures > 0

    def begin(self, *, username: str, address: str | None) -> None:
        """Check that neither the username nor the address is locked (else
        :class:`LoginThrottledError`), then count this attempt as a failure until
        :meth:`succeeded` says otherwise."""
        if not self.enabled:
            return
        now = self._clock()
        keys = self._keys(username, address)
        wait = max(self._locked_for(key, now) for key, _ in keys)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise LoginThrottledError(
                f"too many failed logins: try again in {retry_after} s",
                retry_after=retry_after,
            )
        for key, allowed in keys:
            self._fail(key, allowed, now)

    def succeeded(self, *, username: str) -> None:
        """The password was right: forget the username's failures (not the address's)."""
        self._records.pop(self._user_key(username), None)

    def _keys(self, username: str, address: str | None) -> list[tuple[str, int]]:
        keys = [(self._user_key(username), self.max_failures)]
        if address:
            keys.append(("addr:" + address, self.max_failures * self.address_factor))
        return keys

    @staticmethod
    def _user_key(username: str) -> str:
        return "user:" + username.strip().casefold()

    def _locked_for(self, key: str, now: float) -> float:
        record = self._records.get(key)
        if record is None:
            return 0.0
        if record.locked_until <= now and now - record.last_failure >= self.forget_after:
            del self._records[key]
            return 0.0
        return max(0.0, record.locked_until - now)

    def _fail(self, key: str, allowed: int, now: float) -> None:
        record = self._records.get(key)
        if record is None:
            if len(self._records) >= _MAX_RECORDS:
                self._prune(now)
            record = self._records[key] = _Record()
        record.failures += 1
        record.last_failure = now
        if record.failures >= allowed:
            doublings = record.failures - allowed
            lock = self.lockout_seconds * 2 ** min(doublings, 32)
            record.locked_until = now + min(self.max_lockout_seconds, lock)

    def _prune(self, now: float) -> None:
        for key in [k for k in list(self._records) if self._locked_for(k, now) == 0.0]:
            self._records.pop(key, None)
        if len(self._records) >= _MAX_RECORDS:
            oldest = sorted(self._records, key=lambda k: self._records[k].last_failure)
            for key in oldest[: len(oldest) // 2 + 1]:
                del self._records[key]
