"""Per-token metrics of one model, observed on the event loop as the engine's deltas arrive.

The engine thread never takes a metrics lock: :class:`TokenObserver` is the
:data:`~ollm.engine.client.OutputObserver` of the model's ``AsyncEngine``, called on the
event loop with each step's deltas and the time the engine emitted them.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from ollm.engine.outputs import RequestOutput


class TokenObserver:
    """TTFT, inter-token latency, token counts and finish reasons for one model.

    Prompt tokens are counted when a request's first token arrives (its prompt has then
    been processed); generated tokens as they arrive, so a long reply moves the counter
    while it streams and matches the reply's ``completion_tokens`` when it ends.
    """

    def __init__(
        self,
        model_id: str,
        *,
        prompt_tokens: Counter,
        generated_tokens: Counter,
        ttft: Histogram,
        itl: Histogram,
        finished: Counter,
    ) -> None:
        self._prompt_tokens = prompt_tokens.labels(model_id)
        self._generated_tokens = generated_tokens.labels(model_id)
        self._ttft = ttft.labels(model_id)
        self._itl = itl.labels(model_id)
        self._finished = finished
        self._model_id = model_id
        self._last_token: dict[str, float] = {}  # request id -> when its last token came

    def __call__(self, outputs: list[RequestOutput], emitted: float) -> None:
        for output in outputs:
            if output.token_ids:
                self._on_tokens(output, emitted)
            if output.finished:
                self._last_token.pop(output.request_id, None)
                reason = output.finish_reason or "unknown"
                self._finished.labels(self._model_id, reason).inc()

    def _on_tokens(self, output: RequestOutput, emitted: float) -> None:
        count = len(output.token_ids)
        last = self._last_token.get(output.request_id)
        if last is None:
            self._prompt_tokens.inc(output.num_prompt_tokens)
            if output.first_token_latency is not None:
                self._ttft.observe(output.first_token_latency)
        else:
            gap = max(0.0, emitted - last) / count
            for _ in range(count):
                self._itl.observe(gap)
        self._last_token[output.request_id] = emitted
        self._generated_tokens.inc(count)
