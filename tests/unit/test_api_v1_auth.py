"""Auth modes over the fake backend: sessions with CSRF, API keys, admin, sign-up rules,
401s in each dialect's shape, the fairness key, and isolation between accounts on every
chat and message route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_v1_harness import (
    PASSWORD,
    Harness,
    assert_error,
    cheap_password_hashing,
    done_event,
    signup,
    v1_app,
)
from isolation_routes import isolation_attempts
from starlette.requests import Request

from ollm.api.http.auth import Principal
from ollm.api.http.deps import fairness_key
from ollm.db.models import Role
from ollm.db.schemas import UserPublic

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


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


# -- auth off ---------------------------------------------------------------------------


async def test_auth_off_everything_is_the_local_user(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        me = (await h.client.get("/api/v1/auth/me")).json()
        assert me["via"] == "local" and me["auth"] is False
        assert me["user"]["username"] == "local" and me["user"]["role"] == "admin"
        # Whatever key a client sends is ignored.
        headers = {"Authorization": "Bearer sk-anything"}
        chat = await h.client.post("/api/v1/chats", json={}, headers=headers)
        assert chat.status_code == 201
        response = await h.client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
        assert response.status_code == 200
        assert (await h.client.get("/api/v1/auth/config")).json() == {
            "auth": False,
            "signup": False,
        }
        body = {"username": "someone", "password": PASSWORD}
        assert_error(await h.client.post("/api/v1/auth/signup", json=body), 400, "auth_disabled")
        assert_error(await h.client.post("/api/v1/auth/login", json=body), 400, "auth_disabled")


async def test_auth_off_refuses_cross_site_writes(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        response = await h.client.post(
            "/api/v1/chats",
            content=b'{"title": "from evil.example"}',
            headers={"content-type": "text/plain", "sec-fetch-site": "cross-site"},
        )
        assert_error(response, 403, "csrf_failed")
        same_origin = await h.client.post(
            "/api/v1/chats", json={}, headers={"sec-fetch-site": "same-origin"}
        )
        assert same_origin.status_code == 201


# -- unauthenticated --------------------------------------------------------------------


async def test_every_endpoint_needs_auth_in_its_own_error_shape(h: Harness) -> None:
    assert (await h.client.get("/health")).status_code == 200
    assert (await h.client.get("/api/v1/auth/config")).json() == {"auth": True, "signup": True}
    for method, path in [
        ("GET", "/api/v1/chats"),
        ("POST", "/api/v1/chats"),
        ("GET", "/api/v1/auth/me"),
        ("GET", "/api/v1/keys"),
        ("GET", "/api/v1/admin/users"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ]:
        response = await h.client.request(method, path, json={})
        assert_error(response, 401, "not_authenticated")
    for method, path in [("GET", "/api/tags"), ("POST", "/api/chat"), ("GET", "/")]:
        response = await h.client.request(method, path, json={})
        assert response.status_code == 401, (path, response.text)
        if path != "/":
            assert isinstance(response.json()["error"], str)  # Ollama's shape
    bogus = {"Authorization": "Bearer ollm-000000000000_" + "x" * 43}
    assert_error(await h.client.get("/v1/models", headers=bogus), 401, "invalid_api_key")
    assert_error(await h.client.get("/api/v1/chats", headers=bogus), 401, "invalid_api_key")


# -- sign-up, login, sessions, CSRF -----------------------------------------------------


async def test_signup_login_logout(h: Harness) -> None:
    first = await signup(h.client, "alice")
    assert first["role"] == "admin"  # the first account
    async with h.new_client() as other:
        second = await signup(other, "bob")
        assert second["role"] == "user"
        me = (await other.get("/api/v1/auth/me")).json()
        assert me == {"user": second, "auth": True, "via": "session"}
        again = await other.post(
            "/api/v1/auth/signup", json={"username": "bob", "password": PASSWORD}
        )
        assert_error(again, 409, "username_taken")

    async with h.new_client() as browser:
        wrong = {"username": "alice", "password": "wrong password"}
        assert_error(await browser.post("/api/v1/auth/login", json=wrong), 401)
        nobody = {"username": "nobody", "password": PASSWORD}
        assert_error(await browser.post("/api/v1/auth/login", json=nobody), 401)
        response = await browser.post(
            "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert response.status_code == 200
        cookies = response.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("ollm_session="))
        csrf = next(c for c in cookies if c.startswith("csrf_token="))
        assert "HttpOnly" in session and "samesite=lax" in session.lower()
        assert "HttpOnly" not in csrf and "samesite=lax" in csrf.lower()
        assert response.json()["csrf_token"] == browser.cookies["csrf_token"]
        assert (await browser.get("/api/v1/auth/me")).json()["user"]["username"] == "alice"

        headers = {"X-CSRF-Token": browser.cookies["csrf_token"]}
        assert (await browser.post("/api/v1/auth/logout", headers=headers)).status_code == 204
        assert "ollm_session" not in browser.cookies
        assert_error(await browser.get("/api/v1/auth/me"), 401)


async def test_a_stolen_session_cookie_dies_with_logout(h: Harness) -> None:
    await signup(h.client, "alice")
    token = h.client.cookies["ollm_session"]
    assert (await h.client.post("/api/v1/auth/logout")).status_code == 204
    async with h.new_client(cookies={"ollm_session": token}) as thief:
        assert_error(await thief.get("/api/v1/auth/me"), 401)


async def test_unsafe_methods_on_a_session_need_the_csrf_token(h: Harness) -> None:
    await signup(h.client, "alice")
    token = h.client.headers.pop("X-CSRF-Token")
    assert (await h.client.get("/api/v1/chats")).status_code == 200  # safe: no token needed
    assert_error(await h.client.post("/api/v1/chats", json={}), 403, "csrf_failed")
    response = await h.client.post("/api/v1/chats", json={}, headers={"X-CSRF-Token": "forged"})
    assert_error(response, 403, "csrf_failed")
    response = await h.client.post("/api/v1/chats", json={}, headers={"X-CSRF-Token": token})
    assert response.status_code == 201
    chat_id = response.json()["id"]
    assert_error(await h.client.delete(f"/api/v1/chats/{chat_id}"), 403, "csrf_failed")
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert_error(await h.client.post("/v1/chat/completions", json=body), 403, "csrf_failed")


async def test_signup_can_be_closed_after_the_first_account(tmp_path: Path) -> None:
    async with v1_app(tmp_path, auth=True, allow_signup=False) as h:
        assert (await h.client.get("/api/v1/auth/config")).json()["signup"] is True
        await signup(h.client, "admin")
        assert (await h.client.get("/api/v1/auth/config")).json()["signup"] is False
        async with h.new_client() as other:
            response = await other.post(
                "/api/v1/auth/signup", json={"username": "late", "password": PASSWORD}
            )
            assert_error(response, 403, "signup_disabled")


async def test_signup_validates_username_and_password(h: Harness) -> None:
    for body in [
        {"username": "has space", "password": PASSWORD},
        {"username": "ok", "password": "short"},
        {"username": "ok", "password": PASSWORD, "role": "admin"},
    ]:
        assert_error(await h.client.post("/api/v1/auth/signup", json=body), 400)


# -- API keys ---------------------------------------------------------------------------


async def test_api_keys(h: Harness) -> None:
    await signup(h.client, "alice")
    created = await h.client.post("/api/v1/keys", json={"name": "laptop"})
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith("ollm-") and key["name"] == "laptop"
    listed = (await h.client.get("/api/v1/keys")).json()
    assert [k["id"] for k in listed] == [key["id"]]
    assert "key" not in listed[0]  # the secret is shown once

    async with h.new_client(headers={"Authorization": f"Bearer {key['key']}"}) as program:
        # No cookie, no CSRF token: a bearer key is never sent by a browser on its own.
        chat = await program.post("/api/v1/chats", json={"title": "via key"})
        assert chat.status_code == 201
        me = (await program.get("/api/v1/auth/me")).json()
        assert me["via"] == "key" and me["user"]["username"] == "alice"
        body = {"messages": [{"role": "user", "content": "hi"}]}
        assert (await program.post("/v1/chat/completions", json=body)).status_code == 200
        assert (await program.get("/api/tags")).status_code == 200
        listed = (await program.get("/api/v1/keys")).json()
        assert listed[0]["last_used_at"] is not None

        assert (await h.client.delete(f"/api/v1/keys/{key['id']}")).status_code == 204
        assert_error(await program.get("/api/v1/chats"), 401, "invalid_api_key")
    assert_error(await h.client.delete("/api/v1/keys/424242"), 404)
    assert (await h.client.post("/api/v1/keys")).status_code == 201  # a body is optional


# -- admin ------------------------------------------------------------------------------


async def test_admin_manages_users(h: Harness) -> None:
    admin = await signup(h.client, "root")
    async with h.new_client() as bob_client:
        bob = await signup(bob_client, "bob")
        assert_error(await bob_client.get("/api/v1/admin/users"), 403, "permission_denied")
        users = (await h.client.get("/api/v1/admin/users")).json()
        assert [u["username"] for u in users] == ["root", "bob"]
        assert all("password_hash" not in u for u in users)

        promoted = await h.client.patch(f"/api/v1/admin/users/{bob['id']}", json={"role": "admin"})
        assert promoted.json()["role"] == Role.ADMIN
        assert (await bob_client.get("/api/v1/admin/users")).status_code == 200

        key = (await bob_client.post("/api/v1/keys", json={})).json()["key"]
        disabled = await h.client.patch(f"/api/v1/admin/users/{bob['id']}", json={"disabled": True})
        assert disabled.json()["disabled"] is True
        assert_error(await bob_client.get("/api/v1/auth/me"), 401)
        bearer = {"Authorization": f"Bearer {key}"}
        assert_error(await h.client.get("/v1/models", headers=bearer), 401, "invalid_api_key")
        login = {"username": "bob", "password": PASSWORD}
        assert_error(await bob_client.post("/api/v1/auth/login", json=login), 401)

    response = await h.client.patch(f"/api/v1/admin/users/{admin['id']}", json={"disabled": True})
    assert_error(response, 400)
    response = await h.client.patch(f"/api/v1/admin/users/{admin['id']}", json={"role": "user"})
    assert_error(response, 400)
    assert_error(await h.client.patch("/api/v1/admin/users/999", json={"role": "user"}), 404)


# -- the fairness key -------------------------------------------------------------------


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "headers": raw, "client": ("10.0.0.7", 1)})


def test_the_fairness_key_is_the_account_when_auth_is_on() -> None:
    user = UserPublic(
        id=7, username="a", role=Role.USER, disabled=False, created_at="2026-01-01T00:00:00Z"
    )
    one, other = _request({"Authorization": "Bearer k1"}), _request({"Authorization": "Bearer k2"})
    assert fairness_key(one, Principal(user, "key")) == "user:7"
    assert fairness_key(other, Principal(user, "session")) == "user:7"
    local = Principal(user, "local")  # auth off: keys and addresses as before
    assert fairness_key(one, local) != fairness_key(other, local)
    assert fairness_key(_request({}), local) == "addr:10.0.0.7"


async def test_generations_are_queued_under_the_account(h: Harness) -> None:
    users: list[str] = []
    original = h.app.state.completions.chat

    async def spy(**kwargs: Any) -> Any:
        users.append(kwargs["user"])
        return await original(**kwargs)

    h.app.state.completions.chat = spy
    alice = await signup(h.client, "alice")
    chat = (await h.client.post("/api/v1/chats", json={})).json()
    await h.client.post(f"/api/v1/chats/{chat['id']}/messages", json={"content": "hi"})
    key = (await h.client.post("/api/v1/keys", json={})).json()["key"]
    body = {"messages": [{"role": "user", "content": "hi"}]}
    await h.client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert users == [f"user:{alice['id']}"] * 2


# -- isolation --------------------------------------------------------------------------


async def test_another_users_chats_and_messages_are_not_found_on_every_route(
    h: Harness,
) -> None:
    await signup(h.client, "alice")
    chat = (await h.client.post("/api/v1/chats", json={"title": "alice secret"})).json()
    done = done_event(
        (
            await h.client.post(
                f"/api/v1/chats/{chat['id']}/messages", json={"content": "my secret plan"}
            )
        ).text
    )
    alice_message = done["message"]["id"]
    before = (await h.client.get(f"/api/v1/chats/{chat['id']}")).json()

    async with h.new_client() as bob:
        await signup(bob, "bob")
        own = (await bob.post("/api/v1/chats", json={})).json()
        await assert_isolated(bob, chat["id"], alice_message, own["id"])
        listing = (await bob.get("/api/v1/chats", params={"archived": "all"})).json()
        assert [c["id"] for c in listing["items"]] == [own["id"]]
        assert (await bob.get("/api/v1/chats", params={"q": "secret"})).json()["total"] == 0

    after = (await h.client.get(f"/api/v1/chats/{chat['id']}")).json()
    assert after == before  # nothing Bob did touched it


async def assert_isolated(
    client: httpx.AsyncClient, chat_id: str, message_id: int, own_chat_id: str
) -> None:
    """Every chat and message route answers 404 for someone else's chat or message."""
    attempts = isolation_attempts(chat_id, message_id, own_chat_id)
    for method, path, body in attempts:
        response = await client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] in ("chat_not_found", "message_not_found")
