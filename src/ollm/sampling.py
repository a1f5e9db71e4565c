"""Per-request sampling parameters, validated once at the edge and trusted inside."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class JsonOutput:
    """Constrain the reply to JSON: any JSON object, or one matching a JSON ``schema``."""

    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one sequence picks its next tokens and when it stops.

    ``temperature == 0`` means greedy. ``seed=None`` means a fresh random seed.
    ``max_tokens=None`` means "until the context window is full".
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

    @property
    def greedy(self) -> bool:
        """True when sampling reduces to picking the most likely token."""
        return self.temperature <= 0.0 or self.top_k == 1
