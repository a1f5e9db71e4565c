"""What hostile testing found, one test per class, each through a real ``ollm serve``.

1. model management (pull, copy, delete) is admin-only with auth on; listing is open;
2. DNS rebinding: unknown ``Host`` names are refused; so are writes from foreign pages;
3. lone UTF-16 surrogates are a 400 in each dialect's shape, wherever text enters;
4. non-finite and out-of-range numbers, and unsafe model names, are refused on the way in;
5. a 20,000-message import does not starve other users' writes, nor the event loop;
6. junk tokens share their address's rate-limit bucket; sign-up has its own limit.
Plus the extras: look-alike usernames, weak passwords, key revocation on a reset, no
``/docs`` with auth on.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import MODEL, report, small_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PASSWORD = "hostile test pw 1"


@pytest.fixture(scope="module")
def open_server(rel_home: Path) -> Iterator[str]:
    """Auth off on loopback, plus two allowed names (one a suffix)."""
    yield from small_server(rel_home, "open", OLLM_ALLOWED_HOSTS="ollm.example.org,.corp.example")


@pytest.fixture(scope="module")
def accounts_server(rel_home: Path) -> Iterator[str]:
    """Auth on, no general rate limit, no sign-up limit: the account and data classes."""
    yield from small_server(
        rel_home, "accounts", OLLM_AUTH="true", OLLM_RATE_LIMIT="0", OLLM_SIGNUP_RATE_LIMIT="0"
    )


@pytest.fixture(scope="module")
def limited_server(rel_home: Path) -> Iterator[str]:
    """Auth on, 20 requests a minute per client, 3 sign-ups an hour per address, behind a
    (pretend) TLS proxy on loopback."""
    yield from small_server(
        rel_home,
        "limited",
        OLLM_AUTH="true",
        OLLM_FORWARDED_ALLOW_IPS="127.0.0.1",
        OLLM_RATE_LIMIT="20",
        OLLM_SIGNUP_RATE_LIMIT="3",
    )


def _signup(base_url: str, username: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/auth/signup",
        json={"username": username, "password": password},
        timeout=30,
    )


def _account(base_url: str, username: str) -> dict[str, str]:
    """Sign ``username`` up (or log in) and return headers carrying a fresh API key."""
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        response = browser.post(
            "/api/v1/auth/signup", json={"username": username, "password": PASSWORD}
        )
        if response.status_code == 409:
            response = browser.post(
                "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
            )
        assert response.status_code in (200, 201), response.text
        browser.headers["X-CSRF-Token"] = browser.cookies["csrf_token"]
        key = browser.post("/api/v1/keys", json={"name": "test"})
        assert key.status_code == 201, key.text
        return {"Authorization": f"Bearer {key.json()['key']}"}


def _raw(client: httpx.Client, method: str, path: str, text: str, **headers: str) -> Any:
    """Send ``text`` as the JSON body exactly as written (escapes, NaN and all)."""
    return client.request(
        method, path, content=text.encode(), headers={"content-type": "application/json", **headers}
    )


def _openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, dict) and error["message"], error
    return error


def _ollama_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error, error
    return error


# -- 1. model management ---------------------------------------------------------------------


def test_model_management_is_admin_only(accounts_server: str, tmp_path: Path) -> None:
    admin = _account(accounts_server, "models-admin")  # the first account: the admin
    user = _account(accounts_server, "models-user")
    with httpx.Client(base_url=accounts_server, timeout=60) as client:
        listed = client.get("/api/tags", headers=user)
        assert listed.status_code == 200 and listed.json()["models"]
        assert client.get("/v1/models", headers=user).status_code == 200
        attempts = {
            "copy over a bare name": client.post(
                "/api/copy", json={"source": MODEL, "destination": "smollm2"}, headers=user
            ),
            "copy to a new name": client.post(
                "/api/copy", json={"source": MODEL, "destination": "mine:1"}, headers=user
            ),
            "delete": client.request("DELETE", "/api/delete", json={"model": MODEL}, headers=user),
            "pull": client.post("/api/pull", json={"model": "hf.co/x/y:Q4_0"}, headers=user),
        }
        for what, response in attempts.items():
            assert "admin" in _ollama_error(response, 403), what
        # The model is still there and still answers for everyone.
        assert any(
            m["name"] == MODEL for m in client.get("/api/tags", headers=user).json()["models"]
        )
        copied = client.post(
            "/api/copy", json={"source": MODEL, "destination": "team-copy:1"}, headers=admin
        )
        assert copied.status_code == 200, copied.text
        deleted = client.request(
            "DELETE", "/api/delete", json={"model": "team-copy:1"}, headers=admin
        )
        assert deleted.status_code == 200, deleted.text
    # The CLI is refused the same way, and says why.
    key = user["Authorization"].removeprefix("Bearer ")
    env = {"OLLM_HOST": accounts_server, "OLLM_API_KEY": key, "PATH": "/usr/bin:/bin"}
    cli = subprocess.run(
        [sys.executable, "-m", "ollm", "cp", MODEL, "cli-copy:1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert cli.returncode != 0 and "admin" in cli.stdout + cli.stderr, cli


# -- 2. DNS rebinding and foreign pages ------------------------------------------------------


def test_unknown_hosts_and_foreign_origins_are_refused(open_server: str) -> None:
    port = open_server.rsplit(":", 1)[1]
    with httpx.Client(base_url=open_server, timeout=30) as client:
        chat = client.post("/api/v1/chats", json={"title": "private"})
        assert chat.status_code == 201, chat.text
        export = f"/api/v1/chats/{chat.json()['id']}/export"
        for host in ("rebind.attacker.example", "127.0.0.1.nip.io", "localhost.evil.example"):
            refused = client.get(export, headers={"Host": f"{host}:{port}"})
            assert _openai_error(refused, 400)["code"] == "host_not_allowed", host
            assert "private" not in refused.text
        ollama = client.get("/api/tags", headers={"Host": f"rebind.attacker.example:{port}"})
        assert "OLLM_ALLOWED_HOSTS" in _ollama_error(ollama, 400)
        for host in ("localhost", "127.0.0.1", "[::1]", "ollm.example.org", "gpu.corp.example"):
            assert client.get(export, headers={"Host": f"{host}:{port}"}).status_code == 200, host
        # Writes from another site's page: refused with or without Sec-Fetch-Site.
        body = b'{"title": "planted"}'
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            planted = client.post(
                "/api/v1/chats", content=body, headers={"content-type": "text/plain", **headers}
            )
            assert _openai_error(planted, 403)["code"] == "csrf_failed", headers
        ollama_write = client.post(
            "/api/chat", json={"model": MODEL}, headers={"Origin": "http://rebind.example"}
        )
        _ollama_error(ollama_write, 403)
        # This server's own pages, and pages on loopback or allowed names, may write.
        for origin in (open_server, f"http://localhost:{port}", "https://ollm.example.org"):
            own = client.post("/api/v1/chats", json={"title": "ok"}, headers={"Origin": origin})
            assert own.status_code == 201, (origin, own.text)
        titles = [c["title"] for c in client.get("/api/v1/chats").json()["items"]]
        assert "planted" not in titles


def test_a_non_loopback_bind_needs_allowed_hosts(tmp_path: Path) -> None:
    env = {"OLLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    refused = subprocess.run(
        [sys.executable, "-m", "ollm", "serve", "--host", "0.0.0.0", "--port", "1", "--auth"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused
    assert "OLLM_ALLOWED_HOSTS" in refused.stdout + refused.stderr


# -- 3. lone surrogates ----------------------------------------------------------------------

# Where text enters, in each dialect; "\ud800" is written into the JSON text as an escape.
ASK = [{"role": "user", "content": "SUR"}]
SURROGATE_BODIES = [
    ("openai", "/v1/chat/completions", {"model": MODEL, "messages": ASK}),
    ("openai", "/v1/completions", {"model": MODEL, "prompt": "SUR", "max_tokens": 2}),
    ("openai", "/v1/chat/completions", {"model": "SUR", "messages": [{"role": "user"}]}),
    ("ollama", "/api/chat", {"model": MODEL, "messages": ASK}),
    ("ollama", "/api/generate", {"model": MODEL, "prompt": "SUR"}),
    ("ollama", "/api/generate", {"model": MODEL, "prompt": "hi", "system": "SUR"}),
    ("ollama", "/api/show", {"model": "smollSUR"}),
    ("v1", "/api/v1/chats", {"title": "t", "system_prompt": "SUR"}),
    ("v1", "/api/v1/chats", {"title": "SUR"}),
    ("v1", "/api/v1/chats/import", {"title": "x", "messages": ASK}),
]


@pytest.mark.parametrize("surrogate", ["\\ud800", "\\udfff", "x\\udc00", "\\ud83d\\u0041"])
def test_lone_surrogates_are_400_in_each_dialect(open_server: str, surrogate: str) -> None:
    with httpx.Client(base_url=open_server, timeout=60) as client:
        chat = client.post("/api/v1/chats", json={"title": "surrogates"}).json()
        bodies = [
            *SURROGATE_BODIES,
            ("v1", f"/api/v1/chats/{chat['id']}/messages", {"content": "SUR", "stream": False}),
            ("v1", f"/api/v1/chats/{chat['id']}", {"system_prompt": "SUR"}),
        ]
        for dialect, path, body in bodies:
            text = json.dumps(body).replace("SUR", surrogate)
            method = "PATCH" if path.endswith(chat["id"]) else "POST"
            response = _raw(client, method, path, text)
            if dialect == "ollama":
                assert "surrogate" in _ollama_error(response, 400), path
            else:
                error = _openai_error(response, 400)
                assert error["code"] == "invalid_body" and "surrogate" in error["message"], path
            # The connection is still good: the next request on it is answered.
            assert client.get("/api/version").status_code == 200
        # A well-formed pair (an emoji) is text like any other.
        emoji = json.dumps({"title": "PAIR"}).replace("PAIR", "\\ud83d\\ude00 ok")
        created = _raw(client, "POST", "/api/v1/chats", emoji)
        assert created.status_code == 201 and created.json()["title"] == "\U0001f600 ok"
        # Nothing half-written was stored.
        assert client.get(f"/api/v1/chats/{chat['id']}").json()["messages"] == []


# -- 4. non-finite numbers and unchecked settings --------------------------------------------


def test_non_finite_numbers_and_unchecked_settings_are_refused(accounts_server: str) -> None:
    headers = _account(accounts_server, "numbers-user")
    with httpx.Client(base_url=accounts_server, timeout=60, headers=headers) as client:
        before = client.get("/api/v1/chats").json()["total"]
        export = {
            "format": "ollm.chat",
            "version": 1,
            "chat": {"title": "poisoned"},
            "messages": [
                {"id": 1, "role": "user", "content": "hi"},
                {"id": 2, "parent_id": 1, "role": "assistant", "content": "yo", "ttft_ms": 1.5},
            ],
        }
        for poison in ("Infinity", "-Infinity", "NaN", "1e400", "-2E+999"):
            text = json.dumps(export).replace("1.5", poison)
            error = _openai_error(_raw(client, "POST", "/api/v1/chats/import", text), 400)
            assert "finite" in error["message"], poison
        assert client.get("/api/v1/chats").json()["total"] == before  # nothing was stored
        # Finite but absurd is refused by the field's bound, the same way.
        export["messages"][1]["ttft_ms"] = 1e300
        _openai_error(client.post("/api/v1/chats/import", json=export), 400)
        export["messages"][1]["ttft_ms"] = 12.5
        imported = client.post("/api/v1/chats/import", json=export)
        assert imported.status_code == 201, imported.text
        chat_id = imported.json()["id"]
        assert client.get(f"/api/v1/chats/{chat_id}/export").status_code == 200
        # Chat settings: checked when stored, not when someone later uses them.
        for change in (
            {"params": {"max_tokens": 1e30}},
            {"params": {"max_tokens": 2**40}},
            {"params": {"top_k": 2**40}},
            {"params": {"repeat_penalty": 1e308}},
            {"params": {"seed": 2**70}},
            {"params": {"stop": ["x" * 5000]}},
            {"model": "../../etc/passwd"},
            {"model": "smollm2:135m\u0000"},
        ):
            _openai_error(client.patch(f"/api/v1/chats/{chat_id}", json=change), 400)
            _openai_error(client.post("/api/v1/chats", json={"title": "c", **change}), 400)
        text = json.dumps({"params": {"repeat_penalty": 1.1}}).replace("1.1", "Infinity")
        _openai_error(_raw(client, "PATCH", f"/api/v1/chats/{chat_id}", text), 400)
        assert client.get(f"/api/v1/chats/{chat_id}/export").status_code == 200
        # The dialects agree: Ollama refuses what OpenAI refuses.
        ask = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
        for options in (
            {"temperature": 1e308},
            {"top_k": 2**40},
            {"repeat_last_n": 2**40},
            {"seed": 2**70},
        ):
            _ollama_error(client.post("/api/chat", json={**ask, "options": options}), 400)
        for poison in ("Infinity", "NaN", "1e999"):
            text = json.dumps({**ask, "options": {"temperature": 0.5}}).replace("0.5", poison)
            _ollama_error(_raw(client, "POST", "/api/chat", text), 400)
            text = json.dumps({**ask, "temperature": 0.5}).replace("0.5", poison)
            _openai_error(_raw(client, "POST", "/v1/chat/completions", text), 400)
        _openai_error(client.post("/v1/chat/completions", json={**ask, "max_tokens": 10**12}), 400)


# -- 5. a large import and other writers -----------------------------------------------------

BIG_CHAT = 20_000


def _big_export() -> dict[str, Any]:
    messages = [
        {
            "id": i,
            "parent_id": i - 1 if i > 1 else None,
            "role": "user" if i % 2 else "assistant",
            "content": f"turn {i}: " + "words " * 8,
        }
        for i in range(1, BIG_CHAT + 1)
    ]
    return {"format": "ollm.chat", "version": 1, "chat": {"title": "big"}, "messages": messages}


def test_a_large_import_does_not_starve_other_writers(accounts_server: str) -> None:
    importer = _account(accounts_server, "bulk-importer")
    other = _account(accounts_server, "other-writer")
    body = json.dumps(_big_export()).encode()
    result: dict[str, Any] = {}

    def run_import() -> None:
        started = time.monotonic()
        response = httpx.post(
            f"{accounts_server}/api/v1/chats/import",
            content=body,
            headers={**importer, "content-type": "application/json"},
            timeout=300,
        )
        result.update(status=response.status_code, body=response.text[:300])
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run_import)
    writes: list[int] = []
    slowest = 0.0
    with httpx.Client(base_url=accounts_server, timeout=60, headers=other) as client:
        thread.start()
        while thread.is_alive() or len(writes) < 5:
            started = time.monotonic()
            created = client.post("/api/v1/chats", json={"title": f"while importing {len(writes)}"})
            writes.append(created.status_code)
            if created.status_code == 201:
                renamed = client.patch(
                    f"/api/v1/chats/{created.json()['id']}", json={"title": "renamed"}
                )
                writes.append(renamed.status_code)
            slowest = max(slowest, time.monotonic() - started)
        thread.join()
    assert result["status"] == 201, result
    assert writes and set(writes) <= {200, 201}, writes  # no 500, no 503
    big = httpx.get(
        f"{accounts_server}/api/v1/chats",
        params={"q": "big"},
        headers=importer,
        timeout=60,
    ).json()["items"]
    chat_id = next(c["id"] for c in big if c["title"] == "big")
    detail = httpx.get(f"{accounts_server}/api/v1/chats/{chat_id}", headers=importer, timeout=60)
    assert len(detail.json()["messages"]) == BIG_CHAT

    # Regenerating the reply of a 20,000-turn chat fits the prompt off the event loop:
    # /health keeps answering meanwhile.
    last = detail.json()["messages"][-1]["id"]
    regenerated: dict[str, Any] = {}

    def regenerate() -> None:
        response = httpx.post(
            f"{accounts_server}/api/v1/chats/{chat_id}/regenerate",
            json={"message_id": last, "stream": False},
            headers=importer,
            timeout=300,
        )
        regenerated["status"] = response.status_code

    thread = threading.Thread(target=regenerate)
    thread.start()
    health: list[float] = []
    while thread.is_alive():
        started = time.monotonic()
        assert httpx.get(f"{accounts_server}/health", timeout=10).status_code == 200
        health.append(time.monotonic() - started)
        time.sleep(0.05)
    thread.join()
    assert regenerated["status"] == 200, regenerated
    report(
        "large-import",
        {
            "messages": BIG_CHAT,
            "body_mb": round(len(body) / 1e6, 1),
            "import_s": round(result["seconds"], 2),
            "other_writes": len(writes),
            "slowest_other_write_s": round(slowest, 2),
            "health_probes_during_regenerate": len(health),
            "slowest_health_s": round(max(health, default=0.0), 3),
        },
    )


def test_a_lock_wait_that_times_out_is_a_503_with_retry_after(
    accounts_server: str, rel_home: Path
) -> None:
    """Another process holds SQLite's write lock past the busy timeout (10 s): the write
    is refused with a 503 the client can retry, in the dialect's shape, and nothing is lost."""
    headers = _account(accounts_server, "lock-waiter")
    holder = sqlite3.connect(rel_home / "accounts" / "ollm.db", isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held until the rollback below
        busy = httpx.post(
            f"{accounts_server}/api/v1/chats",
            json={"title": "blocked"},
            headers=headers,
            timeout=60,
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    error = _openai_error(busy, 503)
    assert error["code"] == "busy" and int(busy.headers["Retry-After"]) >= 1
    retried = httpx.post(
        f"{accounts_server}/api/v1/chats", json={"title": "retried"}, headers=headers, timeout=60
    )
    assert retried.status_code == 201, retried.text


# -- 6. rate-limit keys and sign-up ----------------------------------------------------------


def test_junk_tokens_share_their_address_bucket_and_signup_is_limited(
    limited_server: str,
) -> None:
    # Sign-ups: 3 an hour per address, whatever the general limit; the 4th waits. The first
    # comes through the trusted TLS proxy: its session cookie is Secure.
    first = httpx.post(
        f"{limited_server}/api/v1/auth/signup",
        json={"username": "limit-admin", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
        timeout=30,
    )
    assert first.status_code == 201, first.text
    assert all("; secure" in c.lower() for c in first.headers.get_list("set-cookie"))
    more = [_signup(limited_server, f"newcomer-{i}").status_code for i in range(2)]
    refused = _signup(limited_server, "newcomer-2")
    assert more == [201, 201], more
    assert _openai_error(refused, 429)["code"] == "too_many_signups"
    assert int(refused.headers["Retry-After"]) >= 1
    # (A Secure cookie is not sent over plain HTTP: the proxy would carry it; here, by hand.)
    session, csrf = first.cookies["ollm_session"], first.cookies["csrf_token"]
    cookie = {"Cookie": f"ollm_session={session}; csrf_token={csrf}", "X-CSRF-Token": csrf}
    with httpx.Client(base_url=limited_server, timeout=30, headers=cookie) as browser:
        created = browser.post("/api/v1/keys", json={"name": "real"})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
    with httpx.Client(base_url=limited_server, timeout=30) as client:
        # Spend the address's bucket (20 a minute) anonymously...
        codes = [client.get("/api/v1/auth/config").status_code for _ in range(25)]
        assert 429 in codes
        # ...after which a fresh junk token per request buys nothing.
        junk = [
            client.get("/v1/models", headers={"Authorization": f"Bearer junk-{i}"}).status_code
            for i in range(20)
        ]
        well_formed = client.get("/v1/models", headers={"Authorization": "Bearer ollm-" + "0" * 40})
        assert set(junk) == {429} and well_formed.status_code == 429, junk
        # A real key behind the same busy address still gets its own bucket.
        real = [
            client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
            for _ in range(5)
        ]
        assert real == [200] * 5, real
    report("hostile-rate-limit", {"anonymous_429_after": codes.index(429), "junk_429": len(junk)})


# -- extras ----------------------------------------------------------------------------------


def test_look_alike_names_weak_passwords_key_revocation_and_docs(accounts_server: str) -> None:
    admin = _account(accounts_server, "models-admin")  # the admin of test 1 (or first here)
    assert _signup(accounts_server, "T2").status_code == 201
    for look_alike in ("t2", "\uff34\uff12", "\u0422\u0032"):  # case, full-width, Cyrillic
        text = json.dumps({"username": "NAME", "password": PASSWORD}).replace("NAME", look_alike)
        with httpx.Client(base_url=accounts_server, timeout=30) as client:
            taken = _raw(client, "POST", "/api/v1/auth/signup", text)
        assert _openai_error(taken, 409)["code"] == "username_taken", look_alike
    # Forwarded headers from an untrusted address change nothing: no Secure cookie.
    spoofed = httpx.post(
        f"{accounts_server}/api/v1/auth/signup",
        json={"username": "plain-http", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
        timeout=30,
    )
    assert spoofed.status_code == 201, spoofed.text
    assert not any("; secure" in c.lower() for c in spoofed.headers.get_list("set-cookie"))
    mixed = _signup(accounts_server, "\u0430dmin")
    assert "mix" in _openai_error(mixed, 400)["message"]
    for weak in ("aaaaaaaaaaaa", "abcdefgh", "password", "12345678", "Password1"):
        response = _signup(accounts_server, f"weak-{len(weak)}-{weak[:3]}", weak)
        assert response.status_code == 400, (weak, response.text)
    # An admin's reset can revoke the user's keys with it.
    victim = _account(accounts_server, "leaky-user")
    with httpx.Client(base_url=accounts_server, timeout=30, headers=admin) as client:
        assert client.get("/v1/models", headers=victim).status_code == 200
        users = client.get("/api/v1/admin/users").json()
        victim_id = next(u["id"] for u in users if u["username"] == "leaky-user")
        reset = client.patch(
            f"/api/v1/admin/users/{victim_id}",
            json={"password": "a new strong pw 2", "revoke_keys": True},
        )
        assert reset.status_code == 200, reset.text
        assert client.get("/v1/models", headers=victim).status_code == 401
        # With auth on, the interactive docs (CDN scripts) are not served.
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 200
