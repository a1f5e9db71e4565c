"""Usernames that cannot impersonate each other.

A username is stored NFKC-normalised (full-width letters are their ASCII ones). Two
names are the same account name when their *keys* match: NFKC, then case-folded (``T2``
is ``t2``), then each letter that looks like a Latin one mapped to it (Cyrillic a, U+0430,
is ``a``: the confusables of Unicode TS #39 that matter for names). The key column is
unique, so "admin" spelt with a Cyrillic a cannot sign up beside ``admin``. A name mixing
scripts (Latin with Cyrillic or Greek letters) is refused outright: no honest name needs
that, and it is how look-alikes are made.
"""

from __future__ import annotations

import unicodedata

# Letters of other scripts that render like a Latin letter (lower case; keys are
# case-folded first). From Unicode's confusables.txt, the single-letter cases.
_CONFUSABLE = str.maketrans(
    {
        # Cyrillic
        "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u0451": "e", "\u04bb": "h", "\u0456": "i",
        "\u0457": "i", "\u0458": "j", "\u043a": "k", "\u043c": "m", "\u043d": "h", "\u043e": "o",
        "\u0440": "p", "\u0441": "c", "\u0442": "t", "\u0443": "y", "\u0445": "x", "\u0455": "s",
        "\u0501": "d", "\u051b": "q", "\u051d": "w", "\u04af": "y", "\u04cf": "l",
        # Greek
        "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b7": "n", "\u03b9": "i", "\u03ba": "k",
        "\u03bd": "v", "\u03bf": "o", "\u03c1": "p", "\u03c4": "t", "\u03c5": "u", "\u03c7": "x",
        "\u03c9": "w", "\u03f2": "c", "\u03f3": "j",
        # Latin look-alikes of Latin letters
        "\u0131": "i", "\u0237": "j", "\u0251": "a", "\u0261": "g", "\u0269": "i", "\u028f": "y",
    }
)  # fmt: skip
_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")


def normalize_username(name: str) -> str:
    """The stored form: NFKC (compatibility characters become their plain letters)."""
    return unicodedata.normalize("NFKC", name)


def username_key(name: str) -> str:
    """What makes two names the same account name (see the module docstring)."""
    return normalize_username(name).casefold().translate(_CONFUSABLE)


def mixed_scripts(name: str) -> list[str]:
    """The scripts among Latin, Cyrillic and Greek that ``name``'s letters come from, when
    there are two or more of them (an empty list: one script, or none of these)."""
    found = []
    for script in _SCRIPTS:
        if any(ch.isalpha() and unicodedata.name(ch, "").startswith(script) for ch in name):
            found.append(script.title())
    return found if len(found) > 1 else []
