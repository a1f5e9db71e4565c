"""Where one generation's time went, in the nanoseconds Ollama reports.

``load_duration`` runs from the request's arrival until the engine accepted it (the
model load, if one was needed, plus rendering and tokenizing the prompt);
``prompt_eval_duration`` from there to the first generated token (queueing and prefill);
``eval_duration`` from the first token to the last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ollm.api.ollama.schemas import Stats
from ollm.engine.outputs import RequestOutput


@dataclass(slots=True)
class Timer:
    """Time marks of one request, from :func:`time.perf_counter_ns`."""

    started: int = field(default_factory=time.perf_counter_ns)
    queued: int | None = None
    first_token: int | None = None
    finished: int | None = None

    def mark_queued(self) -> None:
        """The engine accepted the request."""
        self.queued = time.perf_counter_ns()

    def observe(self, output: RequestOutput) -> None:
        """Note the first token and the end as deltas arrive."""
        now = time.perf_counter_ns()
        if self.first_token is None and output.num_output_tokens > 0:
            latency = output.first_token_latency
            if latency is not None and self.queued is not None:
                # Measured on the engine thread from the moment it got the request.
                self.first_token = min(now, self.queued + int(latency * 1e9))
            else:
                self.first_token = now
        if output.finished:
            self.finished = now

    def stats(self, *, prompt_tokens: int, output_tokens: int) -> Stats:
        """The final chunk's counts and durations."""
        end = self.finished or time.perf_counter_ns()
        queued = self.queued or self.started
        first = self.first_token or end
        return Stats(
            total_duration=end - self.started,
            load_duration=queued - self.started,
            prompt_eval_count=prompt_tokens,
            prompt_eval_duration=max(0, first - queued),
            eval_count=output_tokens,
            eval_duration=max(0, end - first),
        )
