"""The state of one sequence inside the engine: one status enum, derived properties."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from ollm.sampling import SamplingParams


class RequestStatus(enum.Enum):
    """Where a request is in its life. Finished states carry the finish reason."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED_STOP = "stop"
    FINISHED_LENGTH = "length"
    FINISHED_ABORTED = "abort"
    FINISHED_ERROR = "error"

    @property
    def finished(self) -> bool:
        return self not in (RequestStatus.WAITING, RequestStatus.RUNNING)


@dataclass(eq=False, slots=True)
class Request:
    """One generation: its prompt, what it produced, and how far the KV has caught up.

    ``num_computed`` counts tokens whose KV is in the sequence's cache. Prefill is done
    when every prompt token is computed; after that each step computes the last sampled
    token and samples one more.
    """

    request_id: str
    prompt_tokens: list[int]
    params: SamplingParams
    user: str = ""
    arrival: float = field(default_factory=time.monotonic)
    status: RequestStatus = RequestStatus.WAITING
    seq_id: int | None = None
    num_computed: int = 0
    num_cached: int = 0  # prompt tokens whose KV was reused (slot, copy or disk snapshot)
    cache_tag: str | None = None  # the conversation (chat id) its KV belongs to
    output_tokens: list[int] = field(default_factory=list)
    first_token_time: float | None = None
    # Tokens to compute before the next sample: the prompt, or, for a sequence preempted
    # and readmitted, every token it had (its reply so far is recomputed, not resampled).
    prefill_until: int = 0
    preemptions: int = 0
    # The first choice of the same API request, whose prompt KV this one copies however
    # short (see ollm.engine.messages.AddRequest); None for a request of its own.
    leader: Request | None = None

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_tokens)

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return len(self.prompt_tokens) + len(self.output_tokens)

    @property
    def prefill_target(self) -> int:
        return self.prefill_until or self.num_prompt_tokens

    @property
    def in_prefill(self) -> bool:
        return self.num_computed < self.prefill_target

    @property
    def remaining_prompt(self) -> int:
        return max(0, self.prefill_target - self.num_computed)

    def token_at(self, index: int) -> int:
        """The token at absolute position ``index`` (prompt first, then output)."""
        if index < len(self.prompt_tokens):
            return self.prompt_tokens[index]
        return self.output_tokens[index - len(self.prompt_tokens)]
