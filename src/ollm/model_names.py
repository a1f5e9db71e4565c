"""Model names: ``[host/][namespace/]name[:tag]`` in a small, safe alphabet.

Names arrive from HTTP bodies and command lines and end up as keys of the manifest (never
as file names: pulled files are stored by digest). Still, every name is checked strictly
so nothing surprising gets in: no path separators beyond the three segments, no ``..``,
no NUL, backslash, control or non-ASCII characters (a name that NFKC normalisation would
change is refused, so look-alike letters cannot impersonate another model), nothing
overlong. Names compare case-insensitively, as in Ollama: the canonical form is lower case
with an explicit tag (``:latest`` when none is given).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ollm.errors import InvalidModelNameError

MAX_NAME_LENGTH = 200
DEFAULT_TAG = "latest"

_HOST = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"
)
_SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
_TAG = re.compile(r"[a-z0-9_][a-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class ModelName:
    """A parsed, validated model name; ``str()`` gives the canonical ``...name:tag``."""

    host: str | None
    namespace: str | None
    name: str
    tag: str

    @property
    def repository(self) -> str:
        """Everything before the tag: ``host/namespace/name`` with the parts present."""
        return "/".join(part for part in (self.host, self.namespace, self.name) if part)

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def _refuse(text: str, why: str) -> InvalidModelNameError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return InvalidModelNameError(f"invalid model name {shown!r}: {why}", param="model")


def _check_characters(text: str) -> None:
    if not text:
        raise _refuse(text, "it is empty")
    if len(text) > MAX_NAME_LENGTH:
        raise _refuse(text, f"longer than {MAX_NAME_LENGTH} characters")
    if unicodedata.normalize("NFKC", text) != text:
        raise _refuse(text, "it contains look-alike (non-normalised) Unicode characters")
    if not text.isascii():
        raise _refuse(text, "only ASCII letters, digits, '.', '_', '-', '/' and ':' are allowed")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise _refuse(text, "it contains control characters")
    if "\\" in text:
        raise _refuse(text, "backslashes are not allowed")
    if text.startswith("/"):
        raise _refuse(text, "absolute paths are not model names")
    if ".." in text:
        raise _refuse(text, "'..' is not allowed")


def parse_model_name(text: str) -> ModelName:
    """Validate ``text`` and split it; raise :class:`InvalidModelNameError` (400) if unsafe."""
    if not isinstance(text, str):
        raise InvalidModelNameError("the model name must be a string", param="model")
    _check_characters(text)
    lowered = text.lower()
    repository, colon, tag = lowered.partition(":")
    if colon and not _TAG.fullmatch(tag):
        raise _refuse(text, "the tag may use letters, digits, '_', '.' and '-' (at most 128)")
    segments = repository.split("/")
    if len(segments) > 3:
        raise _refuse(text, "use at most host/namespace/name")
    host = segments[0] if len(segments) == 3 else None
    if host is not None and not _HOST.fullmatch(host):
        raise _refuse(text, f"{host!r} is not a host name")
    for segment in segments[-2:] if host is None else segments[1:]:
        if not _SEGMENT.fullmatch(segment):
            raise _refuse(
                text, "each part must start with a letter or digit and use only a-z 0-9 . _ -"
            )
    namespace = segments[-2] if len(segments) >= 2 else None
    return ModelName(host, namespace, segments[-1], tag or DEFAULT_TAG)


def canonical_name(text: str) -> str:
    """The canonical spelling of a valid name (lower case, explicit tag)."""
    return str(parse_model_name(text))


def lookup_key(text: str) -> str | None:
    """The canonical form for a registry lookup, or None when ``text`` cannot name a model."""
    try:
        return canonical_name(text)
    except InvalidModelNameError:
        return None


def name_from_file(path: Path) -> str | None:
    """``<stem>:latest`` for a GGUF file dropped into the models directory, if that is valid."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower())
    stem = re.sub(r"\.{2,}", ".", stem).strip("-._")[:80] or "model"
    return lookup_key(f"{stem}:{DEFAULT_TAG}")
