"""Secrets: password hashing, API keys, session and CSRF tokens (no database)."""

from __future__ import annotations

import pytest

from ollm import security


def test_password_round_trip_and_wrong_password():
    password_hash = security.hash_password("correct horse")
    assert password_hash.startswith("$argon2id$")
    assert "correct horse" not in password_hash
    assert security.verify_password("correct horse", password_hash)
    assert not security.verify_password("Correct horse", password_hash)


def test_same_password_hashes_differently():
    assert security.hash_password("pw-12345") != security.hash_password("pw-12345")


def test_unknown_user_path_does_real_work_and_always_fails(monkeypatch):
    verified: list[str] = []
    real_verify = security._verify

    def spy(password: str, password_hash: str) -> bool:
        verified.append(password_hash)
        return real_verify(password, password_hash)

    monkeypatch.setattr(security, "_verify", spy)
    assert not security.verify_password("anything", None)
    # An argon2 verification happened, with the parameters of a real hash.
    assert len(verified) == 1
    real_params = security.hash_password("x").split("$")[1:4]
    assert verified[0].split("$")[1:4] == real_params


def test_garbage_hash_is_a_failed_login_not_an_exception():
    assert not security.verify_password("pw", "not-a-hash")
    assert security.password_needs_rehash("not-a-hash")
    assert not security.password_needs_rehash(security.hash_password("pw"))


def test_api_key_shape_prefix_and_hash():
    new = security.generate_api_key()
    assert new.key.startswith(f"ollm-{new.prefix}_")
    assert security.api_key_prefix(new.key) == new.prefix
    assert security.token_matches(new.key, new.key_hash)
    assert new.key not in new.key_hash and len(new.key_hash) == 64
    assert security.display_prefix(new.prefix) == f"ollm-{new.prefix}"


def test_api_keys_are_unique():
    keys = {security.generate_api_key().key for _ in range(200)}
    prefixes = {security.api_key_prefix(key) for key in keys}
    assert len(keys) == len(prefixes) == 200


@pytest.mark.parametrize(
    "text",
    ["", "ollm-", "sk-abc", "ollm-abc_def", "ollm-0123456789ab", "Bearer ollm-0123456789ab_x"],
)
def test_malformed_keys_have_no_prefix(text):
    assert security.api_key_prefix(text) is None


def test_a_changed_secret_does_not_match():
    new = security.generate_api_key()
    tampered = new.key[:-1] + ("A" if new.key[-1] != "A" else "B")
    assert security.api_key_prefix(tampered) == new.prefix
    assert not security.token_matches(tampered, new.key_hash)


def test_normalize_prefix_accepts_every_spelling():
    new = security.generate_api_key()
    for spelling in (new.prefix, f"ollm-{new.prefix}", new.key, f"  {new.key}\n"):
        assert security.normalize_prefix(spelling) == new.prefix


def test_session_tokens_are_random_and_stored_hashed():
    first, second = security.generate_session_token(), security.generate_session_token()
    assert first.token != second.token
    assert first.token_hash == security.hash_token(first.token) != first.token
    assert security.token_matches(first.token, first.token_hash)
    assert not security.token_matches(second.token, first.token_hash)


def test_csrf_double_submit():
    token = security.generate_csrf_token()
    assert security.csrf_tokens_match(token, token)
    assert not security.csrf_tokens_match(token, token + "x")
    assert not security.csrf_tokens_match(None, token)
    assert not security.csrf_tokens_match(token, "")
