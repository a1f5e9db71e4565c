"""Per-request sampling parameters, validated once at the edge and trusted inside.

Every dialect's schema checks its own fields (OpenAI's temperature stops at 2, as its spec
says), and then builds a :class:`SamplingParams`, which checks the bounds the engine and
llama.cpp need whatever the dialect: every number finite, counts within 32 bits (llama.cpp
takes them as C ``int``). A value outside them is a 400
(:class:`~ollm.errors.InvalidRequestError`) in the dialect's shape, never a crash inside the
engine. The ``MAX_*`` bounds are shared with the stored chat settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ollm.errors import InvalidRequestError

MAX_COUNT = 2**31 - 1  # a C int: llama.cpp's token counts, top_k, penalty window
MAX_TEMPERATURE = 5.0
MAX_REPEAT_PENALTY = 10.0
MIN_SEED = -(2**63)  # any 64-bit seed, signed or not; the backend keeps its low 32 bits
MAX_SEED = 2**64 - 1
MAX_TOP_LOGPROBS = 20  # alternatives per token, as OpenAI allows
MAX_CHOICES = 8  # sequences (``n``) one request may ask for


@dataclass(frozen=True, slots=True)
class TaggedCalls:
    """Free text until the model opens a tool call with ``open`` (a special token of its
    vocabulary, e.g. ``<tool_call>``); from there on only calls: ``open`` JSON ``close``,
    once or (``many``) more times, each JSON matching the output's schema. A bare JSON
    call naming one of ``names`` (as small models write them, tags left out) is
    constrained from its ``{`` on."""

    open: str
    close: str
    many: bool = True
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JsonOutput:
    """Constrain the reply to JSON: any JSON object, or one matching a JSON ``schema``.

    With ``tagged``, the constraint is lazy: it starts when the model opens a call.
    """

    schema: Mapping[str, Any] | None = None
    tagged: TaggedCalls | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """What the model thought of one sampled token: its log-probability and the ``top``
    most likely tokens with theirs, most likely first, all from a log-softmax of the raw
    logits the sampler drew from (before temperature, penalties or a grammar)."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one sequence picks its next tokens and when it stops.

    ``temperature == 0`` means greedy. ``seed=None`` means a fresh random seed.
    ``max_tokens=None`` means "until the context window is full".
    ``logprobs``: report each sampled token's log-probability and this many alternatives
    (0 to ``MAX_TOP_LOGPROBS``); None: none are computed (they cost a pass over the
    vocabulary per token).
    """

    temperature: float = 0.8
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    max_tokens: int | None = None
    min_tokens: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False
    json_output: JsonOutput | None = None
    logprobs: int | None = None

    def __post_init__(self) -> None:
        _check_range("temperature", self.temperature, 0.0, MAX_TEMPERATURE)
        _check_range("top_p", self.top_p, 0.0, 1.0)
        _check_range("top_k", self.top_k, 0, MAX_COUNT)
        _check_range("min_p", self.min_p, 0.0, 1.0)
        _check_range("repeat_penalty", self.repeat_penalty, 0.0, MAX_REPEAT_PENALTY)
        _check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        _check_range("penalty_last_n", self.penalty_last_n, 0, MAX_COUNT)
        _check_range("min_tokens", self.min_tokens, 0, MAX_COUNT)
        if self.seed is not None:
            _check_range("seed", self.seed, MIN_SEED, MAX_SEED)
        if self.max_tokens is not None:
            _check_range("max_tokens", self.max_tokens, 1, MAX_COUNT)
        if self.logprobs is not None:
            _check_range("top_logprobs", self.logprobs, 0, MAX_TOP_LOGPROBS)

    @property
    def greedy(self) -> bool:
        """True when sampling reduces to picking the most likely token."""
        return self.temperature <= 0.0 or self.top_k == 1


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a finite number, not {value}", param=name)
    if not low <= value <= high:
        raise InvalidRequestError(
            f"{name} must be between {low} and {high}, not {value}", param=name
        )
