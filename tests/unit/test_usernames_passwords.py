"""Look-alike usernames share one key; mixed scripts and weak passwords are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ollm.db.schemas import UserCreate, UserUpdate
from ollm.db.usernames import mixed_scripts, normalize_username, username_key

CYRILLIC_A = "\u0430"
FULL_WIDTH_ADMIN = "\uff41\uff44\uff4d\uff49\uff4e"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("T2", "t2"),
        ("admin", FULL_WIDTH_ADMIN),
        ("admin", CYRILLIC_A + "dmin"),
        ("ace", "\u0430\u0441\u0435"),  # all Cyrillic, every letter a look-alike
        ("Strasse", "stra\u00dfe"),  # casefold: sharp s is ss
    ],
)
def test_look_alikes_share_a_key(one: str, other: str) -> None:
    assert username_key(one) == username_key(other)


def test_distinct_names_keep_distinct_keys() -> None:
    assert len({username_key(n) for n in ("alice", "alicia", "bob", "b0b", "ali.ce")}) == 5


def test_mixed_scripts_and_normalised_storage() -> None:
    assert mixed_scripts(CYRILLIC_A + "dmin") == ["Latin", "Cyrillic"]
    assert mixed_scripts("\u0438\u0432\u0430\u043d") == []  # all Cyrillic is a real name
    assert normalize_username(FULL_WIDTH_ADMIN) == "admin"
    with pytest.raises(ValidationError, match="may not mix Latin and Cyrillic"):
        UserCreate(username=CYRILLIC_A + "dmin", password="a fine password 1")
    assert UserCreate(username=FULL_WIDTH_ADMIN, password="a fine password 1").username == "admin"


@pytest.mark.parametrize(
    "weak",
    ["aaaaaaaaaaaa", "abababababab", "abcdefgh", "12345678", "password", "Password1", "qwertyuiop"],
)
def test_weak_passwords_are_refused(weak: str) -> None:
    with pytest.raises(ValidationError):
        UserCreate(username="someone", password=weak)
    with pytest.raises(ValidationError):
        UserUpdate(password=weak)


@pytest.mark.parametrize(
    "fine",
    ["password-1", "correct horse battery", "new-pw-123", "averylongpassphrasewithoutanything"],
)
def test_reasonable_passwords_pass(fine: str) -> None:
    assert UserCreate(username="someone", password=fine).password == fine
