"""What the engine hands back to callers: small deltas, merged when a reader lags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token as the model scored it: its bytes, its log-probability, and the
    most likely tokens at that position (bytes, log-probability), most likely first."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass(slots=True)
class RequestOutput:
    """New text for one request since the last delta it was sent.

    ``finish_reason`` is set on the last delta only: ``"stop"`` (EOS or stop string),
    ``"length"`` (max tokens or context full), ``"abort"`` or ``"error"``.
    ``queue_position`` is set while the request waits for a slot (1 = next).
    ``stop_sequence`` names the stop string that ended a ``"stop"`` (None: EOS ended it).
    ``logprobs``: one entry per token in ``token_ids``, when the request asked for them.
    """

    request_id: str
    text: str = ""
    token_ids: tuple[int, ...] = ()
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    num_output_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    queue_position: int | None = None
    first_token_latency: float | None = None
    stop_sequence: str | None = None
    logprobs: tuple[TokenLogprob, ...] = ()

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def merge(self, newer: RequestOutput) -> None:
        """Fold a newer delta into this one (text appended, counters and status replaced)."""
        self.text += newer.text
        self.token_ids += newer.token_ids
        self.logprobs += newer.logprobs
        self.num_prompt_tokens = newer.num_prompt_tokens
        self.num_cached_tokens = newer.num_cached_tokens
        self.num_output_tokens = newer.num_output_tokens
        self.finish_reason = newer.finish_reason
        self.error = newer.error
        self.queue_position = newer.queue_position
        self.stop_sequence = newer.stop_sequence
        if self.first_token_latency is None:
            self.first_token_latency = newer.first_token_latency
