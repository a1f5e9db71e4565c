"""Rate limiting: the token bucket's arithmetic, whose bucket a request draws on, when the
limit is on by default, and 429 + Retry-After in each dialect's shape."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_v1_harness import v1_app
from starlette.requests import Request

from ollm.api.http.ratelimit import TokenBucketLimiter, VerifiedCredentials, client_key
from ollm.settings import DEFAULT_RATE_LIMIT, Settings

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


# -- the bucket ----------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_the_steady_rate() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(60, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(1.0)  # 60/min: one token a second
    clock.now += 0.5
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0  # another key, another bucket


def test_refill_stops_at_capacity() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(6, clock=clock)  # burst defaults to a minute's worth
    for _ in range(6):
        assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(10.0)
    clock.now += 3600
    assert sum(limiter.acquire("a") == 0.0 for _ in range(10)) == 6


def test_bucket_count_stays_bounded() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(60, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.acquire(f"k{i}")
        clock.now += 0.001
    assert len(limiter) <= 100


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBucketLimiter(0)


# -- whose bucket -------------------------------------------------------------------------


def _request(headers: dict[str, str], host: str = "10.0.0.7") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "headers": raw, "client": (host, 5000)})


def test_only_a_verified_credential_gets_a_bucket_of_its_own() -> None:
    clock = [0.0]
    verified = VerifiedCredentials(ttl=60, clock=lambda: clock[0])
    bearer, cookie = {"Authorization": "Bearer ollm-secret"}, {"Cookie": "ollm_session=tok"}
    # Unknown credentials (junk, or not yet checked) draw on the address's bucket.
    assert client_key(_request(bearer), verified) == "addr:10.0.0.7"
    assert client_key(_request({"Authorization": "Bearer junk-1"}), verified) == "addr:10.0.0.7"
    assert client_key(_request(cookie), verified) == "addr:10.0.0.7"
    verified.add("key", "ollm-secret")
    verified.add("session", "tok")
    keyed, session = client_key(_request(bearer), verified), client_key(_request(cookie), verified)
    assert keyed.startswith("key:") and "secret" not in keyed
    assert session.startswith("session:") and "tok" not in session
    assert client_key(_request({}), verified) == "addr:10.0.0.7"
    verified.discard("key", "ollm-secret")  # refused since (revoked): back to the address
    assert client_key(_request(bearer), verified) == "addr:10.0.0.7"
    clock[0] = 61.0  # not seen for longer than the ttl
    assert client_key(_request(cookie), verified) == "addr:10.0.0.7"


# -- settings ------------------------------------------------------------------------------


def test_off_on_loopback_without_auth_on_with_auth(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).effective_rate_limit == 0
    assert Settings(home=tmp_path, auth=True).effective_rate_limit == DEFAULT_RATE_LIMIT
    exposed = Settings(home=tmp_path, host="0.0.0.0", insecure_no_auth=True)
    assert exposed.effective_rate_limit == DEFAULT_RATE_LIMIT
    assert Settings(home=tmp_path, auth=True, rate_limit=0).effective_rate_limit == 0
    assert Settings(home=tmp_path, rate_limit=10).effective_rate_limit == 10


def test_negative_rate_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Settings(home=tmp_path, rate_limit=-1)


# -- through the app -----------------------------------------------------------------------


async def test_default_loopback_single_user_is_not_limited(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        codes = {(await h.client.get("/v1/models")).status_code for _ in range(40)}
        assert codes == {200}


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v1/models", "openai"), ("/api/tags", "ollama"), ("/api/v1/auth/config", "openai")],
)
async def test_over_the_limit_is_429_with_retry_after(
    tmp_path: Path, path: str, shape: str
) -> None:
    async with v1_app(tmp_path, rate_limit=3) as h:
        codes = [(await h.client.get(path)).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        refused = await h.client.get(path)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1  # 3/min: a token every 20 s
        error = refused.json()["error"]
        if shape == "ollama":
            assert isinstance(error, str) and "Too many requests" in error
        else:
            assert error["type"] == "rate_limit_error" and error["code"] == "rate_limited"
        # Health checks are never limited.
        assert (await h.client.get("/health")).status_code == 200


async def test_each_address_has_its_own_bucket(tmp_path: Path) -> None:
    async with v1_app(tmp_path, rate_limit=2) as h:
        for _ in range(2):
            assert (await h.client.get("/v1/models")).status_code == 200
        assert (await h.client.get("/v1/models")).status_code == 429
        # With auth off no credential is ever verified: a made-up key buys no new bucket.
        keyed = {"Authorization": "Bearer sk-someone"}
        assert (await h.client.get("/v1/models", headers=keyed)).status_code == 429
        other_host = httpx.ASGITransport(h.app, client=("10.0.0.9", 4000))
        async with httpx.AsyncClient(transport=other_host, base_url="http://localhost") as other:
            assert (await other.get("/v1/models")).status_code == 200
