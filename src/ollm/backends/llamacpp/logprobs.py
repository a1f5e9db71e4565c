"""Log-probabilities of a sampled token from the logits llama.cpp computed for it.

OpenAI (and vLLM by default) report the model's own distribution: a log-softmax of the raw
logits, before temperature, penalties or a grammar reshape them for the draw. One pass over
the vocabulary per token (about 0.1 ms for 49k entries), so only requests that ask pay it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ollm.sampling import TokenLogprobs


def token_logprobs(logits: Any, token: int, top: int) -> TokenLogprobs:
    """``token``'s log-probability under ``softmax(logits)`` and the ``top`` most likely
    tokens with theirs, most likely first (ties: the lower id first)."""
    row = np.asarray(logits, dtype=np.float64)
    peak = float(row.max())
    log_total = peak + float(np.log(np.exp(row - peak).sum()))
    best: tuple[tuple[int, float], ...] = ()
    if top > 0:
        count = min(top, row.shape[0])
        candidates = np.argpartition(-row, count - 1)[:count]
        # Sort by logit, highest first, and by id among equals, so the order is stable.
        order = sorted(candidates.tolist(), key=lambda t: (-row[t], t))
        best = tuple((int(t), float(row[t]) - log_total) for t in order)
    return TokenLogprobs(token, float(row[token]) - log_total, best)
