"""Login throttling: failures per username and per address, exponential lockouts, and the
429 with Retry-After that a locked login gets from the API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_v1_harness import PASSWORD, cheap_password_hashing, signup, v1_app

from ollm.services.accounts.login_throttle import LoginThrottle, LoginThrottledError

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock, **kwargs: float) -> LoginThrottle:
    return LoginThrottle(
        max_failures=3, lockout_seconds=10, max_lockout_seconds=40, clock=clock, **kwargs
    )  # type: ignore[arg-type]


def _fail(throttle: LoginThrottle, username: str = "ann", address: str | None = "10.0.0.1") -> None:
    throttle.begin(username=username, address=address)  # then the password is wrong


# -- the policy ----------------------------------------------------------------------------


def test_locks_after_max_failures_and_doubles_up_to_the_cap() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(3):
        _fail(throttle)
    with pytest.raises(LoginThrottledError) as locked:
        _fail(throttle)
    assert locked.value.retry_after == 10 and locked.value.status_code == 429
    for expected in (20, 40, 40):  # each failure after a lock doubles it, capped at 40
        clock.now += locked.value.retry_after
        _fail(throttle)
        with pytest.raises(LoginThrottledError) as locked:
            _fail(throttle)
        assert locked.value.retry_after == expected


def test_success_clears_the_username_not_the_address() -> None:
    clock = Clock()
    throttle = _throttle(clock, address_factor=2)
    for _ in range(2):
        _fail(throttle, "ann")
    throttle.begin(username="ann", address="10.0.0.1")
    throttle.succeeded(username="ann")
    for _ in range(2):
        _fail(throttle, "ann")  # counted from zero again: not locked
    # The address has seen 5 attempts (6 allowed with address_factor=2); one more locks it.
    _fail(throttle, "bob")
    with pytest.raises(LoginThrottledError):
        _fail(throttle, "carol")


def test_usernames_differing_in_case_share_a_count() -> None:
    throttle = _throttle(Clock())
    for name in ("Ann", "ANN", "ann "):
        _fail(throttle, name, address=None)
    with pytest.raises(LoginThrottledError):
        _fail(throttle, "ann", address=None)


def test_failures_fade_after_forget_after() -> None:
    clock = Clock()
    throttle = _throttle(clock, forget_after=60)
    for _ in range(2):
        _fail(throttle)
    clock.now += 61
    for _ in range(2):
        _fail(throttle)  # the old two are forgotten: still below three
    _fail(throttle)
    with pytest.raises(LoginThrottledError):
        _fail(throttle)


def test_zero_max_failures_turns_it_off() -> None:
    throttle = LoginThrottle(max_failures=0)
    for _ in range(100):
        throttle.begin(username="ann", address="10.0.0.1")


# -- through the API -----------------------------------------------------------------------


async def test_login_is_429_after_too_many_wrong_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cheap_password_hashing(monkeypatch)
    async with v1_app(tmp_path, auth=True, login_max_failures=3) as h:
        async with h.new_client() as browser:
            await signup(browser, "ann")
        async with h.new_client() as guesser:
            wrong = {"username": "ann", "password": "not the password"}
            codes = [
                (await guesser.post("/api/v1/auth/login", json=wrong)).status_code for _ in range(3)
            ]
            assert codes == [401, 401, 401]
            right = {"username": "ann", "password": PASSWORD}
            locked = await guesser.post("/api/v1/auth/login", json=right)
            assert locked.status_code == 429
            assert int(locked.headers["Retry-After"]) == 30
            error = locked.json()["error"]
            assert error["code"] == "too_many_login_attempts"
            assert error["type"] == "rate_limit_error"
            # Another username from another address is not affected.
            elsewhere = httpx.ASGITransport(h.app, client=("10.9.9.9", 1))
            async with httpx.AsyncClient(transport=elsewhere, base_url="http://localhost") as other:
                unknown = {"username": "bob", "password": "whatever"}
                assert (await other.post("/api/v1/auth/login", json=unknown)).status_code == 401
