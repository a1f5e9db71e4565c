"""A deterministic fake backend for unit tests: byte-level tokens and a scripted reply.

Token ids: ``0`` is BOS, ``1`` is EOS, and byte ``b`` is token ``b + 2``. Each sequence
answers with ``reply(prompt_tokens)`` byte by byte, then EOS. Every ``decode`` call is
recorded in ``calls`` so tests can check how work was batched and chunked.

Logits (:func:`fake_logits`): the token the script answers next scores 4, the two ids after
it 2 and 1, every other 0, so logprobs are exactly predictable too (:func:`fake_logprobs`).

Embeddings (:func:`fake_embedding`) count tokens into ``embedding_size`` buckets: texts
sharing bytes point the same way, and the vectors are exactly predictable in tests.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ollm.backends.base import BatchItem, ModelFacts
from ollm.sampling import SamplingParams, TokenLogprobs

BOS = 0
EOS = 1
_OFFSET = 2


def encode_bytes(text: str) -> list[int]:
    """Tokens for ``text`` in the fake vocabulary (no BOS)."""
    return [b + _OFFSET for b in text.encode("utf-8")]


def fake_embedding(tokens: Sequence[int], size: int, *, normalize: bool = True) -> list[float]:
    """The fake model's vector for ``tokens``: token ``t`` adds 1 to bucket ``t % size``
    (so it is never zero for a non-empty input), unit length when ``normalize``."""
    vector = [0.0] * size
    for token in tokens:
        vector[token % size] += 1.0
    if not normalize:
        return vector
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def fake_logits(token: int, vocab_size: int) -> list[float]:
    """The fake model's logits when its script answers ``token``: 4 for it, 2 and 1 for
    the next two ids (wrapping around the vocabulary), 0 for the rest."""
    logits = [0.0] * vocab_size
    for offset, value in enumerate((4.0, 2.0, 1.0)):
        logits[(token + offset) % vocab_size] = value
    return logits


def fake_logprobs(token: int, vocab_size: int, top: int) -> TokenLogprobs:
    """The log-softmax of :func:`fake_logits` at ``token``, with its ``top`` best tokens
    (highest first, then lowest id)."""
    logits = fake_logits(token, vocab_size)
    log_total = math.log(sum(math.exp(x) for x in logits))
    order = sorted(range(vocab_size), key=lambda t: (-logits[t], t))[:top]
    best = tuple((t, logits[t] - log_total) for t in order)
    return TokenLogprobs(token, logits[token] - log_total, best)


@dataclass
class FakeSampler:
    params: SamplingParams
    closed: bool = False
    last_logprobs: TokenLogprobs | None = None  # of the latest draw, when asked

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeBackend:
    """Answers every prompt with ``reply(prompt_tokens)``; records each decode call."""

    num_sequences: int = 4
    context_per_sequence: int = 256
    kv_pool_cells: int | None = None  # one pool shared by every sequence; overflow fails
    reply: Callable[[list[int]], str] = lambda _prompt: "Hello from the fake model."
    fail_on_call: int | None = None
    sampler_error: Exception | None = None
    calls: list[list[BatchItem]] = field(default_factory=list)
    embedding_size: int = 16
    embedding_context: int = 0  # 0: context_per_sequence
    embed_calls: list[list[list[int]]] = field(default_factory=list)
    trims: list[tuple[int, int]] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)
    restores: list[int] = field(default_factory=list)
    facts: ModelFacts = field(
        default_factory=lambda: ModelFacts(
            vocab_size=256 + _OFFSET,
            context_train=4096,
            bos_text="<s>",
            eos_text="</s>",
            chat_template=(
                "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}"
            ),
        )
    )

    def __post_init__(self) -> None:
        self._kv: dict[int, list[int]] = {}
        if not self.embedding_context:
            self.embedding_context = self.context_per_sequence

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        return ([BOS] if add_special else []) + encode_bytes(text)

    def token_bytes(self, token: int) -> bytes:
        return b"" if token < _OFFSET else bytes([token - _OFFSET])

    def is_end_of_generation(self, token: int) -> bool:
        return token == EOS

    def check_params(self, params: SamplingParams) -> None:
        pass

    def new_sampler(self, params: SamplingParams) -> FakeSampler:
        if self.sampler_error is not None:
            raise self.sampler_error
        return FakeSampler(params)

    def decode(self, items: Sequence[BatchItem]) -> list[int | None]:
        self.calls.append(list(items))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("fake backend failure")
        results: list[int | None] = []
        for item in items:
            kv = self._kv.setdefault(item.seq_id, [])
            if item.start_pos != len(kv):
                raise AssertionError(f"seq {item.seq_id}: pos {item.start_pos} != {len(kv)}")
            kv.extend(item.tokens)
            token = self._next(kv, item) if item.sample else None
            sampler = item.sampler
            if token is not None and isinstance(sampler, FakeSampler):
                top = sampler.params.logprobs
                if top is not None:  # as llama.cpp's backend: only when asked
                    sampler.last_logprobs = fake_logprobs(token, self.facts.vocab_size, top)
            results.append(token)
        if self.kv_pool_cells is not None:
            used = sum(len(kv) for kv in self._kv.values())
            if used > self.kv_pool_cells:  # llama.cpp would fail the batch: no KV room
                raise AssertionError(f"KV pool overflow: {used} > {self.kv_pool_cells} cells")
        return results

    def _next(self, kv: list[int], item: BatchItem) -> int:
        prompt_len = len(kv) - item.num_generated
        reply = encode_bytes(self.reply(kv[:prompt_len]))
        ignore_eos = item.sampler is not None and item.sampler.params.ignore_eos
        index = item.num_generated % len(reply) if ignore_eos else item.num_generated
        return reply[index] if index < len(reply) else EOS

    def embed(
        self, inputs: Sequence[str | Sequence[int]], *, normalize: bool = True
    ) -> list[list[float]]:
        """:func:`fake_embedding` of each input (text tokenized with BOS); recorded in
        ``embed_calls``."""
        tokens = [
            self.tokenize(item, add_special=True, parse_special=False)
            if isinstance(item, str)
            else list(item)
            for item in inputs
        ]
        for item in tokens:
            if not item or len(item) > self.embedding_context:
                raise ValueError(
                    f"fake embed: {len(item)} tokens (context {self.embedding_context})"
                )
        self.embed_calls.append(tokens)
        return [fake_embedding(item, self.embedding_size, normalize=normalize) for item in tokens]

    def trim_sequence(self, seq_id: int, *, keep: int) -> None:
        self.trims.append((seq_id, keep))
        kv = self._kv.setdefault(seq_id, [])
        del kv[keep:]

    def save_sequence(self, seq_id: int) -> bytes:
        kv = self._kv.get(seq_id, [])
        return struct.pack(f"<{len(kv)}I", *kv)

    def restore_sequence(self, seq_id: int, state: bytes) -> bool:
        self.restores.append(seq_id)
        if len(state) % 4 or len(state) // 4 > self.context_per_sequence:
            self._kv[seq_id] = []
            return False
        self._kv[seq_id] = list(struct.unpack(f"<{len(state) // 4}I", state))
        return True

    def copy_sequence(self, source: int, target: int) -> None:
        self.copies.append((source, target))
        self._kv[target] = list(self._kv.get(source, []))

    def kv_tokens(self, seq_id: int) -> list[int]:
        """The tokens whose KV slot ``seq_id`` holds (for tests)."""
        return list(self._kv.get(seq_id, []))

    def close(self) -> None:
        self._kv.clear()
