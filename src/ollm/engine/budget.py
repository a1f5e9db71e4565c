"""How many tokens the next forward pass may carry.

A step's duration is every decoding stream's inter-token latency, so while anything
decodes the step is sized to a time target from the measured cost per token (it grows
with context length and shrinks with batch size, so it is learned, not assumed). With
nothing decoding no one is waiting on a step, and prompts prefill in the largest, most
efficient batches.
"""

from __future__ import annotations


class StepBudget:
    """Token budget per step: time-targeted while streams decode, maximal otherwise."""

    def __init__(
        self,
        *,
        target_seconds: float,
        max_tokens: int,
        min_prefill: int = 8,
        initial_seconds_per_token: float = 0.005,
        smoothing: float = 0.3,
    ) -> None:
        self.target_seconds = target_seconds
        self.max_tokens = max_tokens
        self.min_prefill = min_prefill
        self.seconds_per_token = initial_seconds_per_token
        self._smoothing = smoothing

    def tokens(self, *, decoding: int) -> int:
        """The budget for a step in which ``decoding`` sequences each take one token."""
        if decoding == 0:
            return self.max_tokens
        fitting = int(self.target_seconds / self.seconds_per_token)
        return max(decoding + self.min_prefill, min(fitting, self.max_tokens))

    def observe(self, *, num_tokens: int, seconds: float, decoding: int) -> None:
        """Learn from a finished step. Only steps with decoders inform the time target:
        big idle prefill batches are cheaper per token and would overstate the budget."""
        if decoding == 0 or num_tokens <= decoding:
            return
        sample = seconds / num_tokens
        self.seconds_per_token += self._smoothing * (sample - self.seconds_per_token)
