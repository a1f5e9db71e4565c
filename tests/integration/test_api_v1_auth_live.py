"""A real ``ollm serve`` with ``OLLM_AUTH=true``, on SQLite and on PostgreSQL: accounts
made through the API, each seeing only its own chats on every route; every dialect needs
a session or a key; the official clients work with an API key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from conftest import run_server
from isolation_routes import isolation_attempts
from v1_helpers import (
    CHAT_MODEL,
    DIALECTS,
    PASSWORD,
    SERVER_ENV,
    ask,
    database_url,
    new_chat,
    post_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GREEDY = {"temperature": 0, "max_tokens": 16}


@pytest.fixture(scope="module", params=DIALECTS)
def server(
    request: pytest.FixtureRequest, ollm_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server with auth on and an empty database of each dialect."""
    url = database_url(request.param, request, tmp_path_factory.mktemp("v1-auth"))
    log = ollm_home.parent / f"v1-auth-{request.param}.log"
    with run_server(
        ollm_home, log, OLLM_AUTH="true", OLLM_DATABASE_URL=url, **SERVER_ENV
    ) as base_url:
        yield base_url


def browser(server: str, username: str) -> httpx.Client:
    """A client that has signed up (or logged in) as ``username``, cookies and CSRF set."""
    client = httpx.Client(base_url=server, timeout=120)
    credentials = {"username": username, "password": PASSWORD}
    response = client.post("/api/v1/auth/signup", json=credentials)
    if response.status_code == 409:  # signed up by an earlier test of this module
        response = client.post("/api/v1/auth/login", json=credentials)
    assert response.status_code in (200, 201), response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


@pytest.fixture
def alice(server: str) -> Iterator[httpx.Client]:
    client = browser(server, "alice")
    yield client
    client.close()


@pytest.fixture
def bob(server: str) -> Iterator[httpx.Client]:
    client = browser(server, "bob")
    yield client
    client.close()


def test_nothing_is_served_without_credentials(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as anonymous:
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/api/v1/auth/config").json()["auth"] is True
        for path in ["/api/v1/chats", "/v1/models", "/api/tags"]:
            assert anonymous.get(path).status_code == 401, path
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-whatever", max_retries=0)
    with client, pytest.raises(openai.AuthenticationError):
        client.models.list()
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=server).list()
    assert caught.value.status_code == 401


def test_two_accounts_each_see_only_their_own_chats(alice: httpx.Client, bob: httpx.Client) -> None:
    alice_me = alice.get("/api/v1/auth/me").json()["user"]
    bob_me = bob.get("/api/v1/auth/me").json()["user"]
    assert alice_me["id"] != bob_me["id"]

    secret = new_chat(alice, title="Alice's plans", params=GREEDY)
    done = post_events(
        alice, f"/api/v1/chats/{secret['id']}/messages", {"content": "The password is swordfish."}
    )[-2]
    before = alice.get(f"/api/v1/chats/{secret['id']}").json()
    own = new_chat(bob, title="Bob's notes", params=GREEDY)
    ask(bob, own["id"], "Hello there.")

    for method, path, body in isolation_attempts(secret["id"], done["message"]["id"], own["id"]):
        response = bob.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)

    bob_ids = {
        c["id"] for c in bob.get("/api/v1/chats", params={"archived": "all"}).json()["items"]
    }
    alice_ids = {c["id"] for c in alice.get("/api/v1/chats").json()["items"]}
    assert own["id"] in bob_ids and secret["id"] not in bob_ids
    assert secret["id"] in alice_ids and own["id"] not in alice_ids
    assert bob.get("/api/v1/chats", params={"q": "swordfish"}).json()["total"] == 0
    assert alice.get("/api/v1/chats", params={"q": "swordfish"}).json()["total"] >= 1
    assert alice.get(f"/api/v1/chats/{secret['id']}").json() == before


def test_api_keys_serve_every_dialect(alice: httpx.Client, server: str) -> None:
    created = alice.post("/api/v1/keys", json={"name": "scripts"}).json()
    key = created["key"]
    with openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0) as client:
        reply = client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Say hi."}],
            temperature=0,
            max_tokens=8,
        )
        assert reply.choices[0].message.content
    listed = ollama.Client(host=server, headers={"Authorization": f"Bearer {key}"}).list()
    assert any(m.model == CHAT_MODEL for m in listed.models)

    # A key needs no CSRF token, and sees its owner's chats.
    with httpx.Client(
        base_url=server, timeout=120, headers={"Authorization": f"Bearer {key}"}
    ) as program:
        chat = new_chat(program, params=GREEDY)
        assert ask(program, chat["id"], "Hi!")["message"]["status"] == "complete"
        assert chat["id"] in {c["id"] for c in alice.get("/api/v1/chats").json()["items"]}
        assert alice.delete(f"/api/v1/keys/{created['id']}").status_code == 204
        assert program.get("/api/v1/chats").status_code == 401


def test_a_session_needs_its_csrf_token_for_changes(alice: httpx.Client) -> None:
    token = alice.headers.pop("X-CSRF-Token")
    try:
        assert alice.get("/api/v1/chats").status_code == 200
        refused = alice.post("/api/v1/chats", json={})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
    finally:
        alice.headers["X-CSRF-Token"] = token
    assert alice.post("/api/v1/chats", json={}).status_code == 201


def test_admin_can_disable_an_account(alice: httpx.Client, bob: httpx.Client) -> None:
    users: list[dict[str, Any]] = alice.get("/api/v1/admin/users").json()
    assert [u["username"] for u in users][:2] == ["alice", "bob"]  # alice came first: admin
    assert bob.get("/api/v1/admin/users").status_code == 403
    bob_id = next(u["id"] for u in users if u["username"] == "bob")
    assert alice.patch(f"/api/v1/admin/users/{bob_id}", json={"disabled": True}).status_code == 200
    assert bob.get("/api/v1/chats").status_code == 401
    assert alice.patch(f"/api/v1/admin/users/{bob_id}", json={"disabled": False}).status_code == 200
