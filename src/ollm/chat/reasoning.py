"""Keep a reasoning model's thinking apart from its answer.

Reasoning models (DeepSeek-R1, Qwen3, QwQ, ...) write their thinking between markers before
the answer: ``<think>…</think>answer``. Some chat templates open the marker themselves at the
end of the prompt, so the reply starts inside the thinking and only closes it. The dialects
return the two apart (OpenAI ``reasoning_content``, Ollama ``message.thinking``) and keep
the thinking out of the visible answer, as vLLM's reasoning parsers and Ollama do.

A reply that does not open with the marker (and whose prompt did not open it) is all answer,
so models that do not think are never held back by more than the first few characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPEN = "<think>"
CLOSE = "</think>"


@dataclass(frozen=True, slots=True)
class SplitReply:
    """A reply as thinking and answer."""

    reasoning: str
    content: str


def prompt_opens_thinking(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open thinking block (the template opened it
    for the model, as DeepSeek-R1's does)."""
    tail = prompt.rstrip()
    return tail.endswith(OPEN)


def split_reasoning(text: str, *, started: bool = False) -> SplitReply:
    """Split a whole reply. ``started``: the prompt opened the thinking block."""
    stream = ReasoningStream(started=started)
    first = stream.feed(text)
    rest = stream.finish()
    return SplitReply(first.reasoning + rest.reasoning, first.content + rest.content)


@dataclass(slots=True)
class ReasoningStream:
    """Incremental :func:`split_reasoning`: ``feed()`` returns the thinking and the answer
    that can be shown now; ``finish()`` returns what was held back.

    Held back: at the start, text that may still become ``<think>``; while thinking, text
    that may still become ``</think>``. Whitespace between the thinking and the answer is
    dropped, as the templates add it.
    """

    started: bool = False
    _state: str = field(init=False, default="start")  # start, thinking, answer
    _buffer: str = field(init=False, default="")
    _answer_began: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.started:
            self._state = "thinking"

    def feed(self, delta: str) -> SplitReply:
        """Add a delta of the reply."""
        self._buffer += delta
        reasoning, content = [], []
        while self._buffer:
            if self._state == "start":
                stripped = self._buffer.lstrip()
                if stripped.startswith(OPEN):
                    self._state, self._buffer = "thinking", stripped[len(OPEN) :]
                    continue
                if OPEN.startswith(stripped):  # maybe the marker, not yet whole
                    break
                self._state = "answer"
                continue
            if self._state == "thinking":
                end = self._buffer.find(CLOSE)
                if end >= 0:
                    reasoning.append(self._buffer[:end])
                    self._state, self._buffer = "answer", self._buffer[end + len(CLOSE) :]
                    continue
                keep = _partial_suffix(self._buffer, CLOSE)
                reasoning.append(self._buffer[: len(self._buffer) - keep])
                self._buffer = self._buffer[len(self._buffer) - keep :]
                break
            # answer
            text = self._buffer
            if not self._answer_began:
                text = text.lstrip()
                if not text:
                    self._buffer = ""
                    break
                self._answer_began = True
            content.append(text)
            self._buffer = ""
        return SplitReply("".join(reasoning), "".join(content))

    def finish(self) -> SplitReply:
        """The end of the reply: release what was held back."""
        held, self._buffer = self._buffer, ""
        if self._state == "thinking":  # the reply ended while thinking (a token limit)
            return SplitReply(held, "")
        if self._state == "start":
            return SplitReply("", held)
        return SplitReply("", held if self._answer_began else held.lstrip())


def _partial_suffix(text: str, marker: str) -> int:
    """How many characters at the end of ``text`` could begin ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
