"""Embeddings from a llama.cpp context of their own, apart from the generation context.

The generation context's KV pool belongs to the engine thread and its running streams.
Embeddings get a second context over the same weights (``NativeModel``), created with
``embeddings=True`` and a pooling type, on first use, so a model that never embeds never
pays for it. llama.cpp contexts of one model are independent: the engine keeps decoding in
its own context while a worker thread embeds in this one (ctypes releases the GIL inside
``llama_decode``).

Pooling: the type the GGUF names (``<arch>.pooling_type``: mean, cls, last), which
llama.cpp picks itself when asked for ``LLAMA_POOLING_TYPE_UNSPECIFIED``; a generative
model names none, and gets mean pooling. Several inputs go into one decode as separate
sequences while they fit the context and its sequence count; the rest follow in further
decodes. Each sequence must sit in one micro-batch (llama.cpp pools per micro-batch), so
the batch is as large as the context.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence

import llama_cpp

from ollm.backends.llamacpp.native import NativeBatch, NativeError, NativeModel

# Pooling names as GGUF files and Ollama's docs spell them.
POOLING_NAMES = {
    llama_cpp.LLAMA_POOLING_TYPE_NONE: "none",
    llama_cpp.LLAMA_POOLING_TYPE_MEAN: "mean",
    llama_cpp.LLAMA_POOLING_TYPE_CLS: "cls",
    llama_cpp.LLAMA_POOLING_TYPE_LAST: "last",
    llama_cpp.LLAMA_POOLING_TYPE_RANK: "rank",
}
_USABLE = (
    llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    llama_cpp.LLAMA_POOLING_TYPE_CLS,
    llama_cpp.LLAMA_POOLING_TYPE_LAST,
)
# Sequences per decode. Their tokens share the context's cells (a unified KV cache), so
# more sequences cost no memory, only bookkeeping.
DEFAULT_SEQUENCES = 16


class EmbeddingUnsupportedError(NativeError):
    """This model cannot give embeddings (a reranker, an encoder-decoder model)."""


def names_pooling(metadata: dict[str, str]) -> bool:
    """Whether the GGUF names a pooling type (``<arch>.pooling_type``): a model made for
    embeddings. Generative models name none."""
    arch = metadata.get("general.architecture", "")
    return bool(arch) and f"{arch}.pooling_type" in metadata


def embedding_size(model: NativeModel) -> int:
    """How many numbers a pooled vector of ``model`` has (its embedding width)."""
    return int(llama_cpp.llama_model_n_embd(model.handle))


def l2_normalize(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to unit length (a zero vector stays zero)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


class NativeEmbedder:
    """A llama.cpp context that pools one vector per sequence.

    ``context`` is the most tokens one input may have (and all inputs of one decode
    together). Thread-safe: one lock serialises decodes and ``close``, so the model is
    never freed under a running decode.
    """

    def __init__(
        self,
        model: NativeModel,
        *,
        context: int,
        threads: int,
        sequences: int = DEFAULT_SEQUENCES,
    ) -> None:
        self._model = model
        self._lock = threading.Lock()
        metadata = model.metadata()
        params = llama_cpp.llama_context_default_params()
        params.embeddings = True
        params.pooling_type = (
            llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
            if names_pooling(metadata)
            else llama_cpp.LLAMA_POOLING_TYPE_MEAN
        )
        params.n_ctx = context
        # A sequence must fit in one micro-batch: llama.cpp pools within a micro-batch.
        params.n_batch = params.n_ubatch = context
        params.n_seq_max = sequences
        params.kv_unified = True  # the sequences share the context's cells
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        handle = model.handle
        if llama_cpp.llama_model_has_encoder(handle) and llama_cpp.llama_model_has_decoder(handle):
            raise EmbeddingUnsupportedError("encoder-decoder models cannot embed here")
        ctx = llama_cpp.llama_init_from_model(handle, params)
        if not ctx:
            raise NativeError("llama.cpp could not create an embedding context (out of memory?)")
        self._ctx: llama_cpp.llama_context_p | None = ctx
        pooling = llama_cpp.llama_pooling_type(ctx)
        if pooling not in _USABLE:
            llama_cpp.llama_free(ctx)
            self._ctx = None
            name = POOLING_NAMES.get(pooling, str(pooling))
            raise EmbeddingUnsupportedError(f"its pooling type ({name}) gives no embeddings")
        self.pooling = POOLING_NAMES[pooling]
        # llama.cpp may round the cells up; one input must still fit one micro-batch.
        self.context = min(int(llama_cpp.llama_n_ctx(ctx)), int(llama_cpp.llama_n_ubatch(ctx)))
        self.sequences = int(llama_cpp.llama_n_seq_max(ctx))
        self.size = embedding_size(model)
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._batch = NativeBatch(self.context, self.sequences)

    @property
    def closed(self) -> bool:
        return self._ctx is None

    def embed(self, inputs: Sequence[Sequence[int]], *, normalize: bool) -> list[list[float]]:
        """One pooled vector per token list, in order (L2-normalised when ``normalize``).

        Raises ``NativeError`` for an empty input or one longer than :attr:`context`.
        """
        for tokens in inputs:
            if not tokens:
                raise NativeError("an input to embed has no tokens")
            if len(tokens) > self.context:
                raise NativeError(f"an input of {len(tokens)} tokens exceeds {self.context}")
        vectors: list[list[float]] = []
        with self._lock:
            for group in self._groups(inputs):
                vectors.extend(self._decode(group))
        return [l2_normalize(v) for v in vectors] if normalize else vectors

    def _groups(self, inputs: Sequence[Sequence[int]]) -> Iterator[list[Sequence[int]]]:
        """Consecutive inputs that fit one decode together: at most :attr:`sequences` of
        them, and :attr:`context` tokens in all."""
        group: list[Sequence[int]] = []
        used = 0
        for tokens in inputs:
            if group and (used + len(tokens) > self.context or len(group) == self.sequences):
                yield group
                group, used = [], 0
            group.append(tokens)
            used += len(tokens)
        if group:
            yield group

    def _decode(self, group: Sequence[Sequence[int]]) -> list[list[float]]:
        ctx = self._ctx
        if ctx is None:
            raise NativeError("the embedding context is closed")
        raw = self._batch.raw
        n = 0
        for seq_id, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                raw.token[n] = token
                raw.pos[n] = pos
                raw.n_seq_id[n] = 1
                raw.seq_id[n][0] = seq_id
                # Every token is an output: pooling reads them all (llama.cpp would
                # override the flags with a warning otherwise).
                raw.logits[n] = True
                n += 1
        raw.n_tokens = n
        # Each decode starts from an empty cache: inputs never attend to earlier ones.
        llama_cpp.llama_memory_clear(self._memory, True)
        try:
            rc = llama_cpp.llama_decode(ctx, raw)
            if rc != 0:
                raise NativeError(f"llama_decode failed with code {rc} while embedding")
            vectors: list[list[float]] = []
            for seq_id in range(len(group)):
                pointer = llama_cpp.llama_get_embeddings_seq(ctx, seq_id)
                if not pointer:
                    raise NativeError(f"llama.cpp gave no embedding for sequence {seq_id}")
                vectors.append([float(x) for x in pointer[: self.size]])
            return vectors
        finally:
            llama_cpp.llama_memory_clear(self._memory, True)

    def close(self) -> None:
        """Free the context (waits for a running decode). Idempotent."""
        with self._lock:
            self._batch.close()
            if self._ctx is not None:
                llama_cpp.llama_free(self._ctx)
                self._ctx = None
