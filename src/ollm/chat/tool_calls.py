"""Find the tool calls in a model's reply, whatever syntax the model writes them in.

Models write calls in their own syntax, and small ones are sloppy about it. Recognised:

- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (one or
  more; the closing tag may be missing at the end of the reply);
- Llama 3: ``<|python_tag|>{...}`` or a bare ``{"name": ..., "parameters": {...}}``;
- Mistral: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}]`` and the newer
  ``[TOOL_CALLS]name[ARGS]{...}``;
- a bare JSON object (or a list of them, or either in a fenced code block) naming a
  declared function, which is how Qwen2.5-Coder-0.5B often answers.

A call only counts when it names one of the request's tools and its arguments are a JSON
object: anything else stays text, so a reply that merely talks about JSON is not mistaken
for a call. :class:`ToolCallStream` does the same over a stream, holding text back only
while it may be the start of a call.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ollm.chat.messages import ToolCall, ToolSpec

HERMES_OPEN = "<tool_call>"
HERMES_CLOSE = "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MISTRAL_TAG = "[TOOL_CALLS]"
MISTRAL_ARGS = "[ARGS]"
# Where a call may begin in the middle of a reply (bare JSON only counts at its start).
MARKERS = (HERMES_OPEN, PYTHON_TAG, MISTRAL_TAG)

# A call in a code fence; either fence may be missing (a reply cut at the call's end, or
# one whose call was decoded under the lazy grammar, which ends it after the JSON or its
# closing fence).
_FENCE = re.compile(r"^(?:```(?:json)?)?\s*(.*?)\s*(?:```)?$", re.DOTALL)
_decoder = json.JSONDecoder()


def new_call_id() -> str:
    """An id in OpenAI's style; a tool result refers back to it."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """A reply split into what the user should read and the calls the model made."""

    content: str
    calls: tuple[ToolCall, ...] = ()


def parse_tool_calls(text: str, tools: Sequence[ToolSpec]) -> ParsedReply:
    """Split ``text`` into visible content and the calls it makes to ``tools``."""
    names = {tool.name for tool in tools}
    if not names:
        return ParsedReply(text)
    for parse in (_hermes, _mistral, _python_tag, _bare):
        found = parse(text, names)
        if found is not None and found.calls:
            return found
    return ParsedReply(text)


# -- the syntaxes ---------------------------------------------------------------------------


def _hermes(text: str, names: set[str]) -> ParsedReply | None:
    if HERMES_OPEN not in text:
        return None
    content = [text[: text.index(HERMES_OPEN)]]
    calls: list[ToolCall] = []
    rest = text[text.index(HERMES_OPEN) :]
    while rest.startswith(HERMES_OPEN):
        body = rest[len(HERMES_OPEN) :]
        end = body.find(HERMES_CLOSE)
        inner, rest = (body, "") if end < 0 else (body[:end], body[end + len(HERMES_CLOSE) :])
        parsed = _calls_in(inner.strip(), names)
        if not parsed:
            return None  # a tag around something that is not a call: leave it all as text
        calls.extend(parsed)
        stripped = rest.lstrip()
        if stripped.startswith(HERMES_OPEN):
            rest = stripped
        elif HERMES_OPEN in rest:
            content.append(rest[: rest.index(HERMES_OPEN)])
            rest = rest[rest.index(HERMES_OPEN) :]
    content.append(rest)
    return ParsedReply("".join(content).strip(), tuple(calls))


def _mistral(text: str, names: set[str]) -> ParsedReply | None:
    if MISTRAL_TAG not in text:
        return None
    before, _, after = text.partition(MISTRAL_TAG)
    after = after.strip()
    calls: list[ToolCall] = []
    if MISTRAL_ARGS in after:  # [TOOL_CALLS]name[ARGS]{...}[TOOL_CALLS]name2[ARGS]{...}
        for piece in after.split(MISTRAL_TAG):
            name, _, args = piece.partition(MISTRAL_ARGS)
            call = _call({"name": name.strip(), "arguments": _json_prefix(args.strip())}, names)
            if call is None:
                return None
            calls.append(call)
    else:
        calls = _calls_in(after, names)
    return ParsedReply(before.strip(), tuple(calls))


def _python_tag(text: str, names: set[str]) -> ParsedReply | None:
    if PYTHON_TAG not in text:
        return None
    before, _, after = text.partition(PYTHON_TAG)
    calls: list[ToolCall] = []
    for piece in after.split(";"):  # Llama 3.1 separates parallel calls with ";"
        calls.extend(_calls_in(piece.strip(), names))
    return ParsedReply(before.strip(), tuple(calls))


def _bare(text: str, names: set[str]) -> ParsedReply | None:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    if not stripped.startswith(("{", "[")):
        return None
    value, end = _json_value(stripped)
    if value is None or stripped[end:].strip():
        return None  # JSON followed by prose is an answer that shows JSON, not a call
    calls = _calls_from(value, names)
    return ParsedReply("", tuple(calls)) if calls else None


# -- JSON to calls --------------------------------------------------------------------------


def _calls_in(text: str, names: set[str]) -> list[ToolCall]:
    """The calls in a JSON object or list at the start of ``text`` (trailing text ignored,
    as a model may add a stray token after the closing brace)."""
    value, _ = _json_value(text)
    return [] if value is None else _calls_from(value, names)


def _calls_from(value: Any, names: set[str]) -> list[ToolCall]:
    items: Iterable[Any] = value if isinstance(value, list) else [value]
    calls = [_call(item, names) for item in items]
    return [c for c in calls if c is not None] if all(calls) else []


def _call(item: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(item, Mapping):
        return None
    if isinstance(item.get("function"), Mapping):  # {"type": "function", "function": {...}}
        item = item["function"]
    name = item.get("name")
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(name, str) or name not in names or not isinstance(arguments, Mapping):
        return None
    return ToolCall(new_call_id(), name, dict(arguments))


def _json_value(text: str) -> tuple[Any, int]:
    try:
        return _decoder.raw_decode(text)
    except ValueError:
        return None, 0


def _json_prefix(text: str) -> Any:
    value, _ = _json_value(text)
    return value


# -- streaming ------------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCallStream:
    """Incremental :func:`parse_tool_calls`: ``feed()`` returns the text that is safe to
    show now; ``finish()`` returns the rest of the text and the calls.

    Text is held back from the first sign of a call (a marker, or a reply that opens with
    ``{``, ``[`` or a code fence) and, at the end, either becomes calls or is released as
    text. A partial marker at the end of a delta (``<tool``) is held until the next one
    shows what it was.
    """

    tools: Sequence[ToolSpec]
    _text: list[str] = field(default_factory=list)
    _sent: int = 0
    _holding: bool = False

    def feed(self, delta: str) -> str:
        """Add a delta; return the part of the reply that can be shown now."""
        self._text.append(delta)
        if self._holding or not self.tools:
            return "" if self._holding else self._release(len(self.text))
        text = self.text
        if not text[: self._sent].strip() and text.lstrip()[:1] in ("{", "[", "`"):
            self._holding = True  # may be a bare JSON call: decide at the end
            return self._release(len(text) - len(text.lstrip()))
        starts = [i for i in (text.find(m, self._sent) for m in MARKERS) if i >= 0]
        if starts:
            self._holding = True
            return self._release(min(starts))
        return self._release(len(text) - _partial_marker(text))

    def finish(self) -> ParsedReply:
        """The text not shown yet (as ``content``) and the calls found in the whole reply."""
        text = self.text
        parsed = parse_tool_calls(text, self.tools)
        if not parsed.calls:
            return ParsedReply(self._release(len(text)))
        shown = text[: self._sent].strip()
        rest = parsed.content[len(shown) :] if parsed.content.startswith(shown) else ""
        self._sent = len(text)
        return ParsedReply(rest.strip(), parsed.calls)

    @property
    def text(self) -> str:
        if len(self._text) > 1:
            self._text = ["".join(self._text)]
        return self._text[0] if self._text else ""

    def _release(self, upto: int) -> str:
        out = self.text[self._sent : upto] if upto > self._sent else ""
        self._sent = max(self._sent, upto)
        return out


def _partial_marker(text: str) -> int:
    """How many characters at the end of ``text`` could begin a marker."""
    longest = 0
    for marker in MARKERS:
        for n in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:n]):
                longest = max(longest, n)
                break
    return longest
