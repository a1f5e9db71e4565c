"""The Host allowlist (DNS rebinding) and the foreign-Origin check, as pure logic and
through the app (the real server's checks are in tests/reliability/test_rel_hostile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_v1_harness import v1_app

from ollm.api.http.hosts import HostPolicy, host_name, is_loopback_name


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:11434", "localhost"),
        ("LOCALHOST.", "localhost"),
        ("[::1]:8080", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("Ollm.Example.org:443", "ollm.example.org"),
        ("", None),
        ("host:notaport", None),
    ],
)
def test_host_names_parse_like_browsers_send_them(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_loopback_names() -> None:
    assert all(map(is_loopback_name, ["localhost", "app.localhost", "127.0.0.1", "127.9.9.9"]))
    assert is_loopback_name("::1")
    assert not any(
        map(is_loopback_name, ["localhost.evil.example", "127.0.0.1.nip.io", "0.0.0.0", "10.0.0.1"])
    )


def test_policy_admits_loopback_the_bind_address_and_listed_names() -> None:
    policy = HostPolicy(["ollm.example.org", ".corp.example"], bind_host="192.168.1.20")
    for name in ("localhost", "127.0.0.1", "192.168.1.20", "ollm.example.org", "corp.example"):
        assert policy.allows(name), name
    assert policy.allows("gpu.corp.example")
    for name in ("evil.example", "notcorp.example", "192.168.1.21", None):
        assert not policy.allows(name), name
    # A client of a server bound to the wildcard may dial it; of one on loopback, not.
    assert HostPolicy([], bind_host="0.0.0.0").allows("0.0.0.0")
    assert not HostPolicy([]).allows("0.0.0.0")


def test_a_wildcard_host_is_never_a_trusted_origin() -> None:
    policy = HostPolicy(["*"])
    assert policy.allows("anything.example")
    assert not policy.names_host("anything.example") and policy.names_host("localhost")


@pytest.mark.anyio
async def test_the_app_refuses_unknown_hosts_and_foreign_writes(tmp_path: Path) -> None:
    async with v1_app(tmp_path, allowed_hosts=["ollm.example.org"]) as h:
        rebound = await h.client.get("/api/v1/chats", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400
        assert rebound.json()["error"]["code"] == "host_not_allowed"
        ollama = await h.client.get("/api/tags", headers={"Host": "attacker.example"})
        assert ollama.status_code == 400 and isinstance(ollama.json()["error"], str)
        assert (await h.client.get("/health", headers={"Host": "pod-ip"})).status_code == 200
        listed = await h.client.get("/api/v1/chats", headers={"Host": "ollm.example.org"})
        assert listed.status_code == 200
        for origin in ("https://evil.example", "null", "file://"):
            refused = await h.client.post(
                "/api/v1/chats", json={"title": "x"}, headers={"Origin": origin}
            )
            assert refused.status_code == 403, origin
        for origin in ("http://localhost", "http://localhost:5173", "https://ollm.example.org"):
            made = await h.client.post(
                "/api/v1/chats", json={"title": "x"}, headers={"Origin": origin}
            )
            assert made.status_code == 201, origin
        # Reading is not a write: a foreign page's GET is answered (CORS keeps it unreadable).
        read = await h.client.get("/api/v1/chats", headers={"Origin": "https://evil.example"})
        assert read.status_code == 200


def test_websocket_handshakes_are_held_to_the_same_rules() -> None:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from ollm.api.http.hosts import HostGuardMiddleware

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", echo)])
    app.add_middleware(HostGuardMiddleware, policy=HostPolicy([]), cors_origins=[])
    client = TestClient(app)  # its WebSocket handshakes say "Host: testserver"
    own = {"Host": "localhost", "Origin": "http://localhost"}
    with client.websocket_connect("/ws", headers=own) as ws:
        assert ws.receive_text() == "hello"
    for headers in (
        {"Host": "localhost", "Origin": "https://evil.example"},
        {"Host": "rebind.attacker.example"},
    ):
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/ws", headers=headers),
        ):
            pass
        assert closed.value.code == 1008, headers
