"""With auth on, Anthropic's clients authenticate with ``x-api-key`` as others do with
``Authorization: Bearer``; failures are 401s in Anthropic's error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from api_v1_harness import Harness, cheap_password_hashing, signup, v1_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

BODY = {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
SDK_HEADERS = {"anthropic-version": "2023-06-01"}  # what the official client adds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with v1_app(tmp_path, auth=True) as harness:
        yield harness


async def new_key(h: Harness) -> str:
    await signup(h.client, "alice")
    created = await h.client.post("/api/v1/keys", json={"name": "sdk"})
    assert created.status_code == 201, created.text
    return created.json()["key"]


def assert_auth_error(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error" and body["error"]["message"]


async def test_no_key_is_401_in_anthropic_shape(h: Harness) -> None:
    async with h.new_client() as sdk:
        assert_auth_error(await sdk.post("/v1/messages", json=BODY, headers=SDK_HEADERS))
        url = "/v1/messages/count_tokens"
        assert_auth_error(await sdk.post(url, json={"messages": BODY["messages"]}))


async def test_wrong_x_api_key_is_401(h: Harness) -> None:
    key = await new_key(h)
    async with h.new_client() as sdk:
        for wrong in ("nonsense", key[:-1] + ("A" if key[-1] != "A" else "B")):
            headers = {**SDK_HEADERS, "x-api-key": wrong}
            assert_auth_error(await sdk.post("/v1/messages", json=BODY, headers=headers))


async def test_right_x_api_key_works(h: Harness) -> None:
    key = await new_key(h)
    async with h.new_client(headers={**SDK_HEADERS, "x-api-key": key}) as sdk:
        # No cookie, no CSRF token: like a bearer key, x-api-key is only sent on purpose.
        response = await sdk.post("/v1/messages", json=BODY)
        assert response.status_code == 200, response.text
        assert response.json()["type"] == "message"
        me = (await sdk.get("/api/v1/auth/me")).json()
        assert me["via"] == "key" and me["user"]["username"] == "alice"
        # The same header works on the other dialects too.
        assert (await sdk.get("/v1/models")).status_code == 200
    async with h.new_client(headers={"Authorization": f"Bearer {key}"}) as other:
        assert (await other.post("/v1/messages", json=BODY)).status_code == 200


async def test_revoked_key_stops_working(h: Harness) -> None:
    key = await new_key(h)
    key_id = (await h.client.get("/api/v1/keys")).json()[0]["id"]
    async with h.new_client(headers={"x-api-key": key}) as sdk:
        assert (await sdk.post("/v1/messages", json=BODY)).status_code == 200
        assert (await h.client.delete(f"/api/v1/keys/{key_id}")).status_code == 204
        assert_auth_error(await sdk.post("/v1/messages", json=BODY))
