"""The Backend protocol: what the engine needs from a model runtime, and nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ollm.sampling import SamplingParams, TokenLogprobs


@dataclass(frozen=True, slots=True)
class BatchItem:
    """A run of tokens of one sequence to put into the next forward pass.

    ``start_pos`` is the position of ``tokens[0]`` in the sequence. When ``sample`` is
    true the backend samples one token from the logits after the last token, using
    ``sampler`` and knowing ``num_generated`` tokens were produced so far (for min_tokens).
    """

    seq_id: int
    tokens: Sequence[int]
    start_pos: int
    sample: bool
    sampler: Sampler | None = None
    num_generated: int = 0


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What the engine and the chat layer need to know about a loaded model."""

    vocab_size: int
    context_train: int
    bos_text: str = ""
    eos_text: str = ""
    add_bos: bool = True
    chat_template: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # Whether a slot's KV can be cut back to a prefix and extended (not so for sliding-
    # window or recurrent models, whose cache cannot be rewound to an arbitrary position).
    prefix_reuse: bool = True
    # Identity of the model file, recorded in KV snapshots: a state computed with other
    # weights must never be loaded. Empty: snapshots are not taken.
    fingerprint: str = ""
    # Transformer blocks, and how many of them run on an accelerator (0: all on the CPU).
    layers: int = 0
    gpu_layers: int = 0
    # Fill-in-the-middle tokens (prefix, suffix, middle) for a completion with a suffix;
    # None: the model was not trained for it.
    fim_tokens: tuple[int, int, int] | None = None


class Sampler(Protocol):
    """A per-sequence sampling state (seeded RNG, penalty history).

    When its params ask for ``logprobs``, ``decode`` sets ``last_logprobs`` to the latest
    sampled token's (the engine reads it right after the pass)."""

    last_logprobs: TokenLogprobs | None

    def close(self) -> None: ...


class Backend(Protocol):
    """A loaded model with a KV cache for ``num_sequences`` sequences: a slot of
    ``context_per_sequence`` cells each, or, when ``kv_pool_cells`` is set, one pool of that
    many cells they share (each may then grow to ``context_per_sequence``).

    A backend that can embed also implements :class:`EmbeddingBackend`."""

    facts: ModelFacts
    num_sequences: int
    context_per_sequence: int
    kv_pool_cells: int | None

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """Text to token ids."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes a token renders to (special tokens render empty)."""
        ...

    def is_end_of_generation(self, token: int) -> bool:
        """True for EOS / end-of-turn tokens."""
        ...

    def check_params(self, params: SamplingParams) -> None:
        """Raise ``InvalidRequestError`` for parameters this backend cannot honour
        (called before a request is queued, so the client gets a 400, not a failed stream)."""
        ...

    def new_sampler(self, params: SamplingParams) -> Sampler:
        """A sampler for one sequence; the caller closes it when the sequence ends."""
        ...

    def decode(self, items: Sequence[BatchItem]) -> list[int | None]:
        """One forward pass over every item; the sampled token per item (None if not sampled)."""
        ...

    def trim_sequence(self, seq_id: int, *, keep: int) -> None:
        """Drop a slot's KV from position ``keep`` on (0 clears it); the first ``keep``
        positions are a prefix the next request reuses."""
        ...

    def save_sequence(self, seq_id: int) -> bytes:
        """The slot's KV state as bytes (for a snapshot on disk)."""
        ...

    def restore_sequence(self, seq_id: int, state: bytes) -> bool:
        """Load a state from :meth:`save_sequence` into a slot; False if it does not fit
        this model and context (the slot is then empty)."""
        ...

    def copy_sequence(self, source: int, target: int) -> None:
        """Make slot ``target`` hold all of slot ``source``'s KV (the caller then trims it
        to the shared prefix). Takes effect before the next forward pass."""
        ...

    def close(self) -> None:
        """Release native resources. Idempotent."""
        ...


@runtime_checkable
class EmbeddingBackend(Protocol):
    """What a :class:`Backend` adds when it can embed (optional: a backend without
    ``embed`` serves generation only, and embedding requests to it are a 400).

    Embedding must not touch the generation KV cache nor wait for the engine thread: a
    backend embeds in a context of its own, and ``embed`` is called from a worker thread
    (one call at a time per backend; it blocks until its vectors are computed).
    """

    embedding_size: int  # numbers per vector
    embedding_context: int  # the most tokens one input may have

    def embed(
        self, inputs: Sequence[str | Sequence[int]], *, normalize: bool = True
    ) -> list[list[float]]:
        """One pooled vector per input (text is tokenized with the model's special tokens;
        token lists are used as they are), L2-normalised unless ``normalize`` is false."""
        ...
