"""EmbeddingService: vectors for texts or token lists, whatever the dialect.

Like :class:`~ollm.services.inference.completions.CompletionService`, it finds the model
through :class:`~ollm.services.models.service.ModelService` (404, loading it if need be,
with the request's keep-alive) and holds it until the vectors are computed, so the
keep-alive reaper never unloads it mid-request. Everything the request got wrong is a 400
before any vector is computed: no input, an empty one, a token id outside the vocabulary,
an input longer than the embedding context (unless ``truncate``), ``dimensions`` larger
than the model's vectors, a model that cannot embed.

The vectors come from the backend's own embedding context, never the engine: a worker
thread computes them while the engine keeps decoding. Requests for one model take turns
(first come, first served) a group of inputs at a time, so one large batch does not hold
everyone else back until it is done.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ollm.backends.base import EmbeddingBackend
from ollm.errors import ContextLengthExceededError, EngineError, InvalidRequestError, OllmError
from ollm.services.models.service import LoadedModel, ModelService

log = logging.getLogger(__name__)

# Inputs per turn on a model's embedding context (about one llama.cpp decode).
GROUP_INPUTS = 16
# Below this many characters tokenizing takes well under a millisecond: done inline.
_INLINE_CHARS = 32_768

EmbeddingInput = str | Sequence[int]


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The vectors for a request's inputs, in order, and what they cost.

    ``token_counts`` are per input, after truncation; ``load_duration`` is the seconds
    spent waiting for the model to be loaded.
    """

    model_id: str
    vectors: list[list[float]]
    token_counts: list[int]
    load_duration: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return sum(self.token_counts)


@dataclass(slots=True)
class _Turns:
    lock: asyncio.Lock
    users: int = 0


class EmbeddingService:
    """Tokenizes, checks the embedding context, and computes vectors off the event loop."""

    def __init__(self, models: ModelService) -> None:
        self.models = models
        self._turns: dict[int, _Turns] = {}  # id(backend) -> its queue, while in use

    async def load(self, model: str | None, *, keep_alive: float | None = None) -> float:
        """Load ``model`` (as an empty Ollama request does) without embedding anything;
        the seconds the load took (0 when it was loaded already)."""
        started = time.monotonic()
        loaded = await self.models.acquire(model, keep_alive=keep_alive)
        try:
            _embedder(loaded)
            return time.monotonic() - started
        finally:
            self.models.release(loaded)

    async def embed(
        self,
        *,
        model: str | None,
        inputs: Sequence[EmbeddingInput],
        truncate: bool = False,
        normalize: bool = True,
        dimensions: int | None = None,
        context: int | None = None,
        keep_alive: float | None = None,
    ) -> Embeddings:
        """One vector per input: a text (tokenized with the model's special tokens) or a
        list of token ids (used as given).

        ``truncate`` cuts an input longer than the embedding context (or ``context``, when
        smaller) to its first tokens instead of refusing it. ``normalize`` gives unit
        vectors. ``dimensions`` keeps the first that many numbers of each vector, then
        normalizes again (as OpenAI's ``dimensions`` and Ollama's do). ``keep_alive`` as
        for chat.
        """
        if not inputs:
            raise InvalidRequestError("input must not be empty", param="input")
        if dimensions is not None and dimensions < 1:
            raise InvalidRequestError("dimensions must be at least 1", param="dimensions")
        started = time.monotonic()
        loaded = await self.models.acquire(model, keep_alive=keep_alive)
        load_duration = time.monotonic() - started
        try:
            backend = _embedder(loaded)
            if dimensions is not None and dimensions > backend.embedding_size:
                raise InvalidRequestError(
                    f"dimensions is {dimensions}, but model '{loaded.model_id}' gives vectors "
                    f"of {backend.embedding_size}",
                    param="dimensions",
                )
            limit = backend.embedding_context
            if context is not None and context > 0:
                limit = min(limit, context)
            tokens = await _tokenize(loaded, inputs)
            tokens = [_fit(t, limit, truncate, index) for index, t in enumerate(tokens)]
            vectors = await self._compute(backend, tokens, normalize=normalize)
        finally:
            self.models.release(loaded)
        if dimensions is not None:
            vectors = [_shorten(v, dimensions, normalize) for v in vectors]
        return Embeddings(
            loaded.model_id, vectors, [len(t) for t in tokens], load_duration=load_duration
        )

    async def _compute(
        self, backend: EmbeddingBackend, tokens: list[list[int]], *, normalize: bool
    ) -> list[list[float]]:
        vectors: list[list[float]] = []
        for group in _groups(tokens, backend.embedding_context):
            async with self._turn(backend):
                try:
                    computed = await asyncio.to_thread(backend.embed, group, normalize=normalize)
                except OllmError:
                    raise
                except Exception as exc:
                    log.exception("embedding failed")
                    raise EngineError("the model failed to compute embeddings") from exc
            if len(computed) != len(group) or not all(
                math.isfinite(x) for vector in computed for x in vector
            ):
                raise EngineError("the model gave invalid embeddings (NaN or infinite values)")
            vectors.extend(computed)
        return vectors

    @asynccontextmanager
    async def _turn(self, backend: EmbeddingBackend) -> AsyncIterator[None]:
        """Wait for this model's embedding context (FIFO), then hold it."""
        key = id(backend)
        turns = self._turns.setdefault(key, _Turns(asyncio.Lock()))
        turns.users += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.users -= 1
            if not turns.users:
                del self._turns[key]


def _embedder(loaded: LoadedModel) -> EmbeddingBackend:
    backend = loaded.backend
    if not isinstance(backend, EmbeddingBackend):
        raise InvalidRequestError(
            f"model '{loaded.model_id}' does not support embeddings", param="model"
        )
    return backend


async def _tokenize(loaded: LoadedModel, inputs: Sequence[EmbeddingInput]) -> list[list[int]]:
    """Texts to tokens (with the model's BOS/EOS, never parsing special tokens out of
    user text); token lists checked against the vocabulary."""
    vocab = loaded.backend.facts.vocab_size
    texts = [(i, text) for i, text in enumerate(inputs) if isinstance(text, str)]
    result: list[list[int]] = [[] for _ in inputs]
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            continue
        tokens = list(item)
        bad = next((t for t in tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(
                f"input[{index}] has token id {bad}, outside this model's vocabulary "
                f"(0 to {vocab - 1})",
                param="input",
            )
        result[index] = tokens

    def tokenize() -> None:
        for index, text in texts:
            result[index] = loaded.backend.tokenize(text, add_special=True, parse_special=False)

    if sum(len(text) for _, text in texts) <= _INLINE_CHARS:
        tokenize()
    else:
        await asyncio.to_thread(tokenize)
    return result


def _fit(tokens: list[int], limit: int, truncate: bool, index: int) -> list[int]:
    if not tokens:
        raise InvalidRequestError(f"input[{index}] is empty", param="input")
    if len(tokens) <= limit:
        return tokens
    if truncate:
        return tokens[:limit]
    raise ContextLengthExceededError(
        f"input[{index}] is {len(tokens)} tokens long, but this model embeds at most "
        f"{limit} tokens per input. Shorten the input (or allow truncation).",
        param="input",
        context_length=limit,
        prompt_tokens=len(tokens),
    )


def _groups(tokens: list[list[int]], context: int) -> Iterator[list[list[int]]]:
    """Consecutive inputs that one turn computes: at most :data:`GROUP_INPUTS`, and
    ``context`` tokens in all (what one decode of the embedding context holds)."""
    group: list[list[int]] = []
    used = 0
    for item in tokens:
        if group and (used + len(item) > context or len(group) == GROUP_INPUTS):
            yield group
            group, used = [], 0
        group.append(item)
        used += len(item)
    if group:
        yield group


def _shorten(vector: list[float], dimensions: int, normalize: bool) -> list[float]:
    """The first ``dimensions`` numbers, back to unit length when ``normalize``."""
    head = vector[:dimensions]
    if not normalize:
        return head
    norm = math.sqrt(math.fsum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head
