"""The llama.cpp backend: one model, one context, one KV stream per sequence slot, and
(on first use) a second context for embeddings (``embedding.py``)."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ollm.backends.base import BatchItem, ModelFacts
from ollm.backends.llamacpp.embedding import (
    EmbeddingUnsupportedError,
    NativeEmbedder,
    embedding_size,
    names_pooling,
)
from ollm.backends.llamacpp.grammar import output_grammar
from ollm.backends.llamacpp.logprobs import token_logprobs
from ollm.backends.llamacpp.native import (
    ContextConfig,
    NativeContext,
    NativeError,
    NativeModel,
    NativeSampler,
    SamplerConfig,
    json_grammar,
    library_version,
    supports_gpu_offload,
)
from ollm.errors import InvalidRequestError, ShuttingDownError
from ollm.sampling import SamplingParams, TokenLogprobs
from ollm.settings import EngineSettings

_FINGERPRINT_SPAN = 1 << 20
# The most tokens one input to embed may have. The embedding context holds this many KV
# cells and decodes them in one micro-batch (llama.cpp pools within one), so its memory
# grows with it; 4,096 is Ollama's default context.
EMBEDDING_CONTEXT = 4096
# A generative model computes its logits for every token it embeds (llama.cpp marks them
# all as outputs when pooling), twice resident: the output buffer and the compute buffer.
# Measured on smollm2 (49,152 tokens of vocabulary): +1.6 GiB RSS for one 4,096-token
# input. So its context is what this many bytes of logits hold, at least
# EMBEDDING_CONTEXT_MIN. Models made for embeddings have no output head and keep 4,096.
EMBEDDING_LOGITS_BUDGET = 256 << 20
EMBEDDING_CONTEXT_MIN = 512


def embedding_context(vocab: int, *, generative: bool, limit: int) -> int:
    """The most tokens one input to embed may have: :data:`EMBEDDING_CONTEXT`, or for a
    generative model what :data:`EMBEDDING_LOGITS_BUDGET` of logits holds (in steps of
    256, at least :data:`EMBEDDING_CONTEXT_MIN`); never more than ``limit``."""
    size = EMBEDDING_CONTEXT
    if generative and vocab > 0:
        fits = EMBEDDING_LOGITS_BUDGET // (4 * vocab) // 256 * 256
        size = min(size, max(EMBEDDING_CONTEXT_MIN, fits))
    return max(1, min(size, limit))


def runtime_version() -> str:
    """What KV snapshots record as their runtime: a state saved by one llama.cpp build is
    not trusted by another."""
    return f"llama-cpp-python {library_version()}"


def file_fingerprint(path: Path) -> str:
    """A cheap identity of a model file: its size and hashes of its first and last MiB
    (hashing all of a multi-GB file at every load would cost seconds)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as stream:
        digest.update(stream.read(_FINGERPRINT_SPAN))
        stream.seek(max(0, size - _FINGERPRINT_SPAN))
        digest.update(stream.read(_FINGERPRINT_SPAN))
    return digest.hexdigest()[:32]


def offloaded_layers(layers: int, requested: int | None, can_offload: bool) -> int:
    """How many of ``layers`` blocks run on the accelerator: none on a CPU build; all for
    ``None`` or a negative request (llama.cpp's default); else the request, at most all."""
    if not can_offload:
        return 0
    if requested is None or requested < 0:
        return layers
    return min(requested, layers)


class LlamaCppSampler:
    """Two chains when EOS must be held back for ``min_tokens``: banned first, then free."""

    def __init__(self, model: NativeModel, params: SamplingParams, eog: Sequence[int]) -> None:
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        config = SamplerConfig(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            penalty_last_n=params.penalty_last_n,
            seed=seed,
            **_grammar_fields(model, params),
        )
        banned = SamplerConfig(**{**_as_dict(config), "banned_tokens": tuple(eog)})
        self.params = params
        self.last_logprobs: TokenLogprobs | None = None  # of the latest draw, when asked
        self.free = NativeSampler(model, config) if not params.ignore_eos else None
        self.banned = (
            NativeSampler(model, banned) if params.ignore_eos or params.min_tokens else None
        )

    def pick(self, num_generated: int) -> NativeSampler:
        if self.free is None or (
            self.banned is not None and num_generated < self.params.min_tokens
        ):
            assert self.banned is not None
            return self.banned
        return self.free

    def close(self) -> None:
        for chain in (self.free, self.banned):
            if chain is not None:
                chain.close()


def _grammar_fields(model: NativeModel, params: SamplingParams) -> dict[str, Any]:
    """The sampler's grammar and lazy triggers for the request's JSON output, if any."""
    if params.json_output is None:
        return {}
    tokenize = lambda text: model.tokenize(text, add_special=False, parse_special=True)  # noqa: E731
    grammar = output_grammar(params.json_output, tokenize)
    if grammar is None:
        return {}
    return {
        "grammar": grammar.gbnf,
        "grammar_trigger_tokens": grammar.trigger_tokens,
        "grammar_trigger_patterns": grammar.trigger_patterns,
    }


def _as_dict(config: SamplerConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in SamplerConfig.__slots__}


class LlamaCppBackend:
    """Implements :class:`ollm.backends.base.Backend` over llama.cpp's C API."""

    def __init__(
        self,
        model: NativeModel,
        ctx: NativeContext,
        *,
        fingerprint: str = "",
        gpu_layers: int | None = None,
        pool_cells: int | None = None,
        sequence_limit: int | None = None,
        threads: int = 1,
    ) -> None:
        self._model = model
        self._ctx = ctx
        self._threads = threads
        self._embedder: NativeEmbedder | None = None
        self._embed_lock = threading.Lock()
        self._closed = False
        self.num_sequences = ctx.n_seq_max
        self.kv_pool_cells = pool_cells
        # In a pool a sequence may grow to the whole pool, up to what the model was trained
        # on (or the context_per_sequence asked for).
        self.context_per_sequence = (
            min(pool_cells, sequence_limit or pool_cells, model.n_ctx_train())
            if pool_cells is not None
            else ctx.n_ctx_seq
        )
        self._eog = model.eog_tokens()
        metadata = model.metadata()
        self.facts = ModelFacts(
            vocab_size=model.n_vocab,
            context_train=model.n_ctx_train(),
            bos_text=model.token_text(model.bos()),
            eos_text=model.token_text(model.eos()),
            add_bos=model.adds_bos(),
            chat_template=model.chat_template(),
            metadata={k: v for k, v in metadata.items() if not k.startswith("tokenizer.ggml.")},
            prefix_reuse=model.can_rewind(),
            fingerprint=fingerprint,
            layers=model.n_layer(),
            gpu_layers=offloaded_layers(model.n_layer(), gpu_layers, supports_gpu_offload()),
            fim_tokens=model.fim_tokens(),
        )
        self.embedding_size = embedding_size(model)
        self.embedding_context = embedding_context(
            model.n_vocab,
            generative=not names_pooling(model.metadata()),
            limit=min(self.context_per_sequence, self.facts.context_train),
        )

    @classmethod
    def load(cls, path: Path, settings: EngineSettings) -> LlamaCppBackend:
        model = NativeModel(
            path,
            gpu_layers=settings.gpu_layers,
            main_gpu=settings.main_gpu,
            tensor_split=settings.tensor_split,
        )
        try:
            pool, limit = settings.kv_layout(model.n_ctx_train())
            n_ctx_seq = limit
            config = ContextConfig(
                n_seq_max=settings.max_running,
                n_ctx_seq=n_ctx_seq,
                # Decodes take one token each, prefill takes the rest of the step budget.
                n_batch=settings.max_running + settings.max_step_tokens,
                threads=settings.threads,
                kv_cache_type=settings.kv_cache_type,
                pool_cells=pool,
                # A quantized V cache exists only with flash attention in llama.cpp.
                flash_attention="on"
                if settings.kv_cache_type != "f16" and settings.flash_attention == "auto"
                else settings.flash_attention,
            )
            ctx = NativeContext(model, config)
        except BaseException:
            model.close()
            raise
        return cls(
            model,
            ctx,
            fingerprint=file_fingerprint(path),
            gpu_layers=settings.gpu_layers,
            # llama.cpp rounds a pool up (to 256 cells): the pool is what it allocated.
            pool_cells=ctx.n_ctx if pool is not None else None,
            sequence_limit=limit,
            threads=settings.threads,
        )

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        return self._model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def token_bytes(self, token: int) -> bytes:
        return self._model.token_bytes(token)

    def is_end_of_generation(self, token: int) -> bool:
        return self._model.is_eog(token)

    def check_params(self, params: SamplingParams) -> None:
        if params.json_output is not None:
            try:
                json_grammar(params.json_output.schema)
            except NativeError as exc:
                raise InvalidRequestError(str(exc), param="format") from exc

    def new_sampler(self, params: SamplingParams) -> LlamaCppSampler:
        return LlamaCppSampler(self._model, params, self._eog)

    def decode(self, items: Sequence[BatchItem]) -> list[int | None]:
        rows = self._ctx.batch.fill(
            (item.seq_id, item.tokens, item.start_pos, item.sample) for item in items
        )
        self._ctx.decode()
        results: list[int | None] = []
        for item, row in zip(items, rows, strict=True):
            if not item.sample:
                results.append(None)
                continue
            sampler = item.sampler
            assert isinstance(sampler, LlamaCppSampler)
            token = sampler.pick(item.num_generated).sample(self._ctx, row)
            if sampler.params.logprobs is not None:
                logits = self._ctx.logits(row, self._model.n_vocab)
                sampler.last_logprobs = token_logprobs(logits, token, sampler.params.logprobs)
            results.append(token)
        return results

    def trim_sequence(self, seq_id: int, *, keep: int) -> None:
        self._ctx.trim_sequence(seq_id, keep)

    def save_sequence(self, seq_id: int) -> bytes:
        return self._ctx.sequence_state(seq_id)

    def restore_sequence(self, seq_id: int, state: bytes) -> bool:
        return self._ctx.restore_sequence(seq_id, state)

    def copy_sequence(self, source: int, target: int) -> None:
        self._ctx.copy_sequence(source, target)

    def embed(
        self, inputs: Sequence[str | Sequence[int]], *, normalize: bool = True
    ) -> list[list[float]]:
        """One pooled vector per input (text, or token ids), L2-normalised unless told not
        to. Runs in the embedding context, created on first use; blocking: call it from a
        worker thread, never the event loop or the engine thread."""
        tokens = [
            self.tokenize(item, add_special=True, parse_special=False)
            if isinstance(item, str)
            else item
            for item in inputs
        ]
        try:
            return self._embedding_context().embed(tokens, normalize=normalize)
        except NativeError as exc:
            if self._closed:
                raise ShuttingDownError("the model was unloaded while embedding") from exc
            raise

    def _embedding_context(self) -> NativeEmbedder:
        with self._embed_lock:
            if self._closed:
                raise ShuttingDownError("the model is unloaded")
            if self._embedder is None:
                try:
                    self._embedder = NativeEmbedder(
                        self._model, context=self.embedding_context, threads=self._threads
                    )
                except EmbeddingUnsupportedError as exc:
                    raise InvalidRequestError(
                        f"this model cannot embed: {exc}", param="model"
                    ) from exc
            return self._embedder

    def close(self) -> None:
        with self._embed_lock:
            self._closed = True
            if self._embedder is not None:
                self._embedder.close()  # waits for a decode in progress
                self._embedder = None
        self._ctx.close()
        self._model.close()
