"""Owned wrappers over llama.cpp's C API. The ONLY module in ollm that imports llama_cpp.

Each wrapper owns one native object, frees it in ``close()`` (idempotent), and raises
on failure codes instead of returning sentinels. The batch filler writes any number of
sequences into one ``llama_batch``: llama-cpp-python's own helpers assume sequence 0.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

log = logging.getLogger("ollm.llama_cpp")

_init_lock = threading.Lock()
_initialised = False
# ggml_log_level: 3 is WARN, 4 is ERROR; everything else (load chatter) goes to debug.
_LOG_LEVELS = {3: logging.WARNING, 4: logging.ERROR}


@llama_cpp.llama_log_callback
def _log_to_python(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp is chatty at load time; keep it at debug unless it warns or fails.
    message = text.decode("utf-8", errors="replace").rstrip()
    if message:
        log.log(_LOG_LEVELS.get(level, logging.DEBUG), message)


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its logs to Python logging."""
    global _initialised
    with _init_lock:
        if not _initialised:
            llama_cpp.llama_log_set(_log_to_python, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _initialised = True


def system_info() -> str:
    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")


def json_grammar(schema: Mapping[str, Any] | None) -> str:
    """A GBNF grammar for any JSON object, or for objects matching a JSON schema."""
    from llama_cpp import llama_grammar  # pure Python; only needed for structured output

    if schema is None:
        return _JSON_OBJECT_GBNF
    try:
        return llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises plain exceptions on unsupported schemas
        raise NativeError(f"unsupported JSON schema: {exc}") from exc


# Any JSON object. Whitespace is bounded so a model cannot pad forever between tokens.
_JSON_OBJECT_GBNF = r"""
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"""


def supports_gpu_offload() -> bool:
    """Whether this build of llama.cpp can put layers on an accelerator (CUDA, Metal, ...)."""
    init_backend()
    return bool(llama_cpp.llama_supports_gpu_offload())


def library_version() -> str:
    return getattr(llama_cpp, "__version__", "unknown")


class NativeError(RuntimeError):
    """llama.cpp reported a failure."""


class NativeModel:
    """A loaded GGUF model: weights, vocabulary and metadata."""

    def __init__(
        self,
        path: Path,
        *,
        gpu_layers: int | None = None,
        main_gpu: int = 0,
        tensor_split: Sequence[float] | None = None,
    ) -> None:
        """``gpu_layers``: layers to offload to an accelerator; None or -1: as many as
        llama.cpp offloads by default (all of them), 0: none. ``main_gpu`` and
        ``tensor_split`` (a share per device) are llama.cpp's. Ignored by CPU builds."""
        init_backend()
        params = llama_cpp.llama_model_default_params()
        params.use_mmap = True
        if gpu_layers is not None:
            params.n_gpu_layers = gpu_layers
        params.main_gpu = main_gpu
        # llama.cpp reads the split while loading; the array must outlive the call.
        split = (ctypes.c_float * llama_cpp.llama_max_devices())()
        for index, share in enumerate((tensor_split or ())[: len(split)]):
            split[index] = share
        if tensor_split:
            params.tensor_split = split
        model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if not model:
            raise NativeError(f"llama.cpp could not load {path}")
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._piece = ctypes.create_string_buffer(256)

    @property
    def handle(self) -> llama_cpp.llama_model_p:
        if self._model is None:
            raise NativeError("model is closed")
        return self._model

    def close(self) -> None:
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    # -- facts ---------------------------------------------------------------------

    def n_layer(self) -> int:
        """Transformer blocks (what ``gpu_layers`` counts)."""
        return int(llama_cpp.llama_model_n_layer(self.handle))

    def n_ctx_train(self) -> int:
        return llama_cpp.llama_model_n_ctx_train(self.handle)

    def metadata(self) -> dict[str, str]:
        """Every GGUF key with its value as llama.cpp renders it to a string."""
        result: dict[str, str] = {}
        for i in range(llama_cpp.llama_model_meta_count(self.handle)):
            key = self._meta_string(llama_cpp.llama_model_meta_key_by_index, i)
            result[key] = self._meta_string(llama_cpp.llama_model_meta_val_str_by_index, i)
        return result

    def _meta_string(self, getter: object, index: int) -> str:
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            needed = getter(self.handle, index, buf, size)  # type: ignore[operator]
            if needed < size:
                return buf.value.decode("utf-8", errors="replace")
            size = needed + 1

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self.handle, None)
        return raw.decode("utf-8") if raw else None

    @property
    def vocab(self) -> llama_cpp.llama_vocab_p:
        return self._vocab

    def bos(self) -> int:
        return llama_cpp.llama_vocab_bos(self._vocab)

    def eos(self) -> int:
        return llama_cpp.llama_vocab_eos(self._vocab)

    def fim_tokens(self) -> tuple[int, int, int] | None:
        """The fill-in-the-middle tokens (prefix, suffix, middle) of a code model such as
        Qwen2.5-Coder, or None when the vocabulary lacks any of them."""
        tokens = (
            llama_cpp.llama_vocab_fim_pre(self._vocab),
            llama_cpp.llama_vocab_fim_suf(self._vocab),
            llama_cpp.llama_vocab_fim_mid(self._vocab),
        )
        return tokens if all(t >= 0 for t in tokens) else None

    def adds_bos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))

    def token_text(self, token: int) -> str:
        """A token's text as stored in the vocabulary (for special tokens like BOS)."""
        if token < 0:
            return ""
        raw = llama_cpp.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def can_rewind(self) -> bool:
        """Whether the KV cache can be cut back to any position (false for sliding-window
        attention and recurrent state, which keep only a recent window)."""
        model = self.handle
        return (
            llama_cpp.llama_model_n_swa(model) == 0
            and not llama_cpp.llama_model_is_recurrent(model)
            and not llama_cpp.llama_model_is_hybrid(model)
        )

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def eog_tokens(self) -> list[int]:
        return [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)]

    # -- text ----------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 2
        while True:
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), tokens, capacity, add_special, parse_special
            )
            if n >= 0:
                return list(tokens[:n])
            capacity = -n

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one token; control tokens (BOS, EOS, turn markers) render empty."""
        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, 256, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
            return buf.raw[:n]
        return self._piece.raw[:n]


@dataclass(frozen=True, slots=True)
class ContextConfig:
    """How to size a context: one KV stream of ``n_ctx_seq`` cells per sequence."""

    n_seq_max: int
    n_ctx_seq: int
    n_batch: int
    threads: int
    kv_cache_type: str = "f16"  # f16, q8_0 or q4_0: the element type of K and V
    flash_attention: str = "auto"  # auto, on or off
    # One pool of this many cells shared by every sequence (llama.cpp's unified KV cache);
    # None: a stream of n_ctx_seq cells per sequence.
    pool_cells: int | None = None


_KV_TYPES = {
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
}
_FLASH_ATTENTION = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


class NativeContext:
    """A llama.cpp context: the KV cache for ``n_seq_max`` independent sequences."""

    def __init__(self, model: NativeModel, config: ContextConfig) -> None:
        params = llama_cpp.llama_context_default_params()
        unified = config.pool_cells is not None
        params.n_ctx = config.pool_cells if unified else config.n_ctx_seq * config.n_seq_max
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch
        params.n_seq_max = config.n_seq_max
        params.n_threads = config.threads
        params.n_threads_batch = config.threads
        params.no_perf = True
        params.type_k = params.type_v = _KV_TYPES[config.kv_cache_type]
        params.flash_attn_type = _FLASH_ATTENTION[config.flash_attention]
        # Fixed slots: one KV stream per sequence, so a sequence attends only over its own
        # cells, which is faster for independent requests (llama.cpp #14363). A pool: one
        # unified buffer, so memory follows what sequences use, not the worst case.
        params.kv_unified = unified
        ctx = llama_cpp.llama_init_from_model(model.handle, params)
        if not ctx:
            detail = (
                f" or a {config.kv_cache_type} KV cache it cannot use here"
                if config.kv_cache_type != "f16"
                else ""
            )
            raise NativeError(f"llama.cpp could not create a context (out of memory{detail}?)")
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self.n_ctx_seq = llama_cpp.llama_n_ctx_seq(ctx)
        self.n_ctx = llama_cpp.llama_n_ctx(ctx)
        self.n_seq_max = llama_cpp.llama_n_seq_max(ctx)
        self.batch = NativeBatch(config.n_batch, config.n_seq_max)

    @property
    def handle(self) -> llama_cpp.llama_context_p:
        if self._ctx is None:
            raise NativeError("context is closed")
        return self._ctx

    def decode(self) -> None:
        """Run the forward pass over the filled batch."""
        rc = llama_cpp.llama_decode(self.handle, self.batch.raw)
        if rc != 0:
            raise NativeError(f"llama_decode failed with code {rc}")

    def logits(self, row: int, n_vocab: int) -> Any:
        """The raw logits of batch row ``row`` of the last decode, as a float32 numpy
        array of ``n_vocab`` (a view into llama.cpp's buffer: read it before the next
        decode; samplers do not write to it)."""
        import numpy as np  # a dependency of llama_cpp; only needed for logprobs

        pointer = llama_cpp.llama_get_logits_ith(self.handle, row)
        if not pointer:
            raise NativeError(f"llama.cpp has no logits for batch row {row}")
        return np.ctypeslib.as_array(pointer, shape=(n_vocab,))

    def trim_sequence(self, seq_id: int, keep: int) -> None:
        """Drop the sequence's KV from position ``keep`` on (0: all of it)."""
        if not llama_cpp.llama_memory_seq_rm(self._memory, seq_id, keep, -1):
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
            raise NativeError(f"llama.cpp cannot cut sequence {seq_id} back to {keep} tokens")

    def sequence_state(self, seq_id: int) -> bytes:
        """The sequence's KV state (llama_state_seq_get_data): only its own cells."""
        size = llama_cpp.llama_state_seq_get_size(self.handle, seq_id)
        if size <= 0:
            return b""
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.handle, buffer, size, seq_id)
        if written != size:
            raise NativeError(f"llama.cpp wrote {written} of {size} state bytes")
        return bytes(buffer)

    def restore_sequence(self, seq_id: int, state: bytes) -> bool:
        """Replace the sequence's KV with ``state``; False when llama.cpp refuses it (the
        sequence is then empty)."""
        self.trim_sequence(seq_id, 0)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        read = llama_cpp.llama_state_seq_set_data(self.handle, buffer, len(state), seq_id)
        if read != len(state):
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
            return False
        return True

    def copy_sequence(self, source: int, target: int) -> None:
        """Make ``target`` hold all of ``source``'s KV. With one KV stream per sequence,
        llama.cpp copies whole streams only (a partial range aborts the process), and the
        data moves at the start of the next decode."""
        llama_cpp.llama_memory_seq_rm(self._memory, target, -1, -1)
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)

    def close(self) -> None:
        self.batch.close()
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None


class NativeBatch:
    """A reusable ``llama_batch`` filled with tokens of many sequences."""

    def __init__(self, capacity: int, n_seq_max: int) -> None:
        self.capacity = capacity
        self.raw = llama_cpp.llama_batch_init(capacity, 0, n_seq_max)
        self._open = True

    def fill(self, runs: Iterable[tuple[int, Sequence[int], int, bool]]) -> list[int]:
        """Write ``(seq_id, tokens, start_pos, want_logits)`` runs; return logit row indices.

        The returned list has one entry per run: the batch index of its last token when
        logits were requested, else -1 (never read).
        """
        raw = self.raw
        n = 0
        rows: list[int] = []
        for seq_id, tokens, start_pos, want_logits in runs:
            if n + len(tokens) > self.capacity:
                raise NativeError(f"batch overflow: {n + len(tokens)} > {self.capacity}")
            for offset, token in enumerate(tokens):
                raw.token[n] = token
                raw.pos[n] = start_pos + offset
                raw.n_seq_id[n] = 1
                raw.seq_id[n][0] = seq_id
                raw.logits[n] = False
                n += 1
            raw.logits[n - 1] = want_logits
            rows.append(n - 1 if want_logits else -1)
        raw.n_tokens = n
        return rows

    def close(self) -> None:
        if self._open:
            llama_cpp.llama_batch_free(self.raw)
            self._open = False


@dataclass(frozen=True, slots=True)
class SamplerConfig:
    """The knobs of one sampler chain, already validated."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    penalty_last_n: int
    seed: int
    banned_tokens: Sequence[int] = ()
    grammar: str | None = None
    # Lazy grammar: unconstrained until one of these tokens is sampled, or the reply so far
    # matches one of these expressions (see backends/llamacpp/grammar.py).
    grammar_trigger_tokens: Sequence[int] = ()
    grammar_trigger_patterns: Sequence[str] = ()


def _grammar_sampler(
    model: NativeModel, gbnf: str, tokens: Sequence[int], patterns: Sequence[str]
) -> llama_cpp.llama_sampler_p | None:
    if not tokens and not patterns:
        return llama_cpp.llama_sampler_init_grammar(model.vocab, gbnf.encode("utf-8"), b"root")
    token_array = (llama_cpp.llama_token * max(1, len(tokens)))(*tokens)
    pattern_array = (ctypes.c_char_p * max(1, len(patterns)))(
        *(pattern.encode("utf-8") for pattern in patterns)
    )
    return llama_cpp.llama_sampler_init_grammar_lazy_patterns(
        model.vocab,
        gbnf.encode("utf-8"),
        b"root",
        pattern_array,
        len(patterns),
        token_array,
        len(tokens),
    )


class NativeSampler:
    """A llama.cpp sampler chain: penalties, bans, top-k, top-p, min-p, temperature, draw."""

    def __init__(self, model: NativeModel, config: SamplerConfig) -> None:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain = chain
        add = lambda sampler: llama_cpp.llama_sampler_chain_add(chain, sampler)  # noqa: E731
        if config.grammar is not None:
            grammar = _grammar_sampler(
                model,
                config.grammar,
                config.grammar_trigger_tokens,
                config.grammar_trigger_patterns,
            )
            if not grammar:
                self.close()
                raise NativeError("llama.cpp rejected the output grammar")
            add(grammar)
        if (
            config.repeat_penalty != 1.0
            or config.frequency_penalty != 0.0
            or config.presence_penalty != 0.0
        ):
            add(
                llama_cpp.llama_sampler_init_penalties(
                    model.n_vocab,
                    config.penalty_last_n,
                    config.repeat_penalty,
                    config.frequency_penalty,
                    config.presence_penalty,
                )
            )
        if config.banned_tokens:
            biases = (llama_cpp.llama_logit_bias * len(config.banned_tokens))()
            for slot, token in zip(biases, config.banned_tokens, strict=True):
                slot.token, slot.bias = token, -math.inf
            add(llama_cpp.llama_sampler_init_logit_bias(model.n_vocab, len(biases), biases))
        if config.temperature <= 0.0 or config.top_k == 1:
            add(llama_cpp.llama_sampler_init_greedy())
            return
        if config.top_k > 0:
            add(llama_cpp.llama_sampler_init_top_k(config.top_k))
        if config.top_p < 1.0:
            add(llama_cpp.llama_sampler_init_top_p(config.top_p, 1))
        if config.min_p > 0.0:
            add(llama_cpp.llama_sampler_init_min_p(config.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(config.temperature))
        add(llama_cpp.llama_sampler_init_dist(config.seed & 0xFFFFFFFF))

    def sample(self, ctx: NativeContext, row: int) -> int:
        """Draw a token from the logits of batch row ``row`` (the chain accepts it)."""
        if self._chain is None:
            raise NativeError("sampler is closed")
        return llama_cpp.llama_sampler_sample(self._chain, ctx.handle, row)

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
