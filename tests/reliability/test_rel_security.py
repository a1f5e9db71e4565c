"""Abuse against a real server with auth on: rate limits per key and per address, login
throttling, CORS closed except for the allowed origin, security headers everywhere.

(API keys are compared in constant time: ``security.token_matches`` uses
``hmac.compare_digest`` on the stored sha256; that is a property of the code, tested in
tests/unit/test_security.py, not something timing on a shared box could show.)
"""

from __future__ import annotations

import httpx
import pytest
from conftest import report

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ALLOWED = "https://ui.example.org"
LIMIT = 30  # OLLM_RATE_LIMIT of secure_server


def _api_key(client: httpx.Client, name: str) -> str:
    response = client.post("/api/v1/keys", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["key"]


def test_rate_limit_login_throttle_cors_and_headers(secure_server: str) -> None:
    with httpx.Client(base_url=secure_server, timeout=30) as browser:
        signed_up = browser.post(
            "/api/v1/auth/signup", json={"username": "admin", "password": "long enough pw 1"}
        )
        assert signed_up.status_code == 201, signed_up.text
        browser.headers["X-CSRF-Token"] = browser.cookies["csrf_token"]
        key_a, key_b = _api_key(browser, "a"), _api_key(browser, "b")

    # Per key: A runs out, B is untouched. A key's first request draws on the address's
    # bucket (nobody has checked the key yet); from then on it has a bucket of its own.
    with httpx.Client(base_url=secure_server, timeout=30) as client:
        for key in (key_a, key_b):
            assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).is_success
        codes_a = [
            client.get("/v1/models", headers={"Authorization": f"Bearer {key_a}"}).status_code
            for _ in range(LIMIT + 2)
        ]
        refused = client.get("/v1/models", headers={"Authorization": f"Bearer {key_a}"})
        ollama = client.get("/api/tags", headers={"Authorization": f"Bearer {key_a}"})
        other_key = client.get("/v1/models", headers={"Authorization": f"Bearer {key_b}"})
    assert codes_a[:LIMIT] == [200] * LIMIT and codes_a[LIMIT:] == [429, 429]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
    assert ollama.status_code == 429 and isinstance(ollama.json()["error"], str)
    assert other_key.status_code == 200

    # Login: five wrong passwords, then 429 even for the right one.
    with httpx.Client(base_url=secure_server, timeout=30) as guesser:
        wrong = {"username": "admin", "password": "guess"}
        codes = [guesser.post("/api/v1/auth/login", json=wrong).status_code for _ in range(5)]
        locked = guesser.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "long enough pw 1"}
        )
    assert codes == [401] * 5
    assert locked.status_code == 429, locked.text
    assert locked.json()["error"]["code"] == "too_many_login_attempts"
    assert int(locked.headers["Retry-After"]) >= 1

    # Per address: anonymous requests share the address's bucket (logins, sign-up and the
    # keys' first requests already spent some).
    with httpx.Client(base_url=secure_server, timeout=30) as anonymous:
        anon = [anonymous.get("/api/v1/auth/config").status_code for _ in range(LIMIT)]
        assert (anonymous.get("/health")).status_code == 200  # never limited
    assert 429 in anon and anon[0] == 200

    # CORS: the allowed origin gets its headers, any other none; security headers everywhere.
    preflight = {"Access-Control-Request-Method": "POST"}
    with httpx.Client(base_url=secure_server, timeout=30) as page:
        auth = {"Authorization": f"Bearer {key_b}"}
        allowed = page.options("/v1/chat/completions", headers={**preflight, "Origin": ALLOWED})
        evil = page.options(
            "/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"}
        )
        simple = page.get("/v1/models", headers={**auth, "Origin": "https://evil.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "access-control-allow-origin" not in evil.headers
    assert "access-control-allow-origin" not in simple.headers
    for response in (allowed, evil, simple, refused, locked):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    report(
        "security",
        {
            "key_a_429_after": codes_a.index(429),
            "anonymous_429_after": anon.index(429),
            "login_locked_after_failures": 5,
            "login_retry_after_s": locked.headers["Retry-After"],
        },
    )
