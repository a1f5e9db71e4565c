"""Fit a conversation into a model's context window.

The system prompt (and any system messages the conversation opens with) is always kept.
When the whole conversation does not fit, the oldest exchanges are left out first, each
one whole: a user turn together with the replies that follow it. What remains is a
verbatim suffix of the conversation, so its rendered text is byte-for-byte what it was
before (never a message cut in half), and the last exchange — the turn being answered —
is never dropped: if even that does not fit, the request is refused before anything runs.

**Stable cut points** (``block_tokens``): dropping the fewest exchanges each turn moves the
prompt's start every turn once the window is full, and a moved start invalidates the whole
KV cache (prefix reuse needs the prompt's start unchanged). With a block size, the cut
moves in jumps instead: it sits at the first exchange boundary past a multiple of
``block_tokens`` of history, and stays there, turn after turn, until the conversation has
grown by about a block. Each jump costs one full prefill; every turn in between reuses the
cache. The kept history then ranges between roughly ``budget - block_tokens`` and
``budget`` tokens (the chat service uses half the budget).

Token counts come from a callback (render with the model's template, then tokenize), so
this module knows nothing of models and is tested with a fake counter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ollm.chat.messages import ChatMessage
from ollm.errors import ContextLengthExceededError

TokenCounter = Callable[[Sequence[ChatMessage]], int]


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    """The messages to send, their rendered token count, and how many turns were left out.

    ``dropped_turns`` counts messages (an exchange of a question and its answer is two).
    """

    messages: list[ChatMessage]
    num_tokens: int
    dropped_turns: int


def split_exchanges(
    turns: Sequence[ChatMessage],
) -> tuple[list[ChatMessage], list[list[ChatMessage]]]:
    """Leading system messages, then the exchanges: each starts at a user turn and runs
    until the next one (turns before the first user turn form an exchange of their own)."""
    start = 0
    while start < len(turns) and turns[start].role == "system":
        start += 1
    exchanges: list[list[ChatMessage]] = []
    for turn in turns[start:]:
        if turn.role == "user" or not exchanges:
            exchanges.append([turn])
        else:
            exchanges[-1].append(turn)
    return list(turns[:start]), exchanges


def fit_messages(
    turns: Sequence[ChatMessage],
    *,
    budget: int,
    count_tokens: TokenCounter,
    block_tokens: int | None = None,
) -> FittedPrompt:
    """The longest suffix of whole exchanges that, with the system messages, renders to at
    most ``budget`` tokens — or, with ``block_tokens``, the suffix from the stable cut point
    at or after it (see the module docstring).

    Raises :class:`ContextLengthExceededError` when the system messages and the last
    exchange alone are already too long. ``count_tokens`` is called O(log n) times for the
    whole prompt (a shorter suffix never renders to more tokens, so the cut is found by
    bisection), plus once per exchange for stable cut points.
    """
    if not turns:
        raise ValueError("nothing to fit: the conversation is empty")
    system, exchanges = split_exchanges(turns)

    def keep_from(first: int) -> list[ChatMessage]:
        return system + [turn for exchange in exchanges[first:] for turn in exchange]

    def dropped(first: int) -> int:
        return sum(len(exchange) for exchange in exchanges[:first])

    whole = count_tokens(keep_from(0))
    if whole <= budget or not exchanges:
        if whole > budget:
            raise _too_long(whole, budget)
        return FittedPrompt(keep_from(0), whole, 0)
    last = len(exchanges) - 1
    shortest = count_tokens(keep_from(last))
    if shortest > budget:
        raise _too_long(shortest, budget)
    # Invariant: keeping from ``low`` does not fit, keeping from ``high`` does.
    low, high, fitted = 0, last, shortest
    while high - low > 1:
        middle = (low + high) // 2
        tokens = count_tokens(keep_from(middle))
        if tokens <= budget:
            high, fitted = middle, tokens
        else:
            low = middle
    if block_tokens:
        stable = _stable_cut(exchanges, high, block_tokens, count_tokens)
        if stable != high:
            high, fitted = stable, count_tokens(keep_from(stable))
    return FittedPrompt(keep_from(high), fitted, dropped(high))


def _stable_cut(
    exchanges: list[list[ChatMessage]], fewest: int, block: int, count_tokens: TokenCounter
) -> int:
    """The first exchange boundary at or after ``fewest`` whose history before it reaches
    the next multiple of ``block`` tokens (never past the last exchange). Earlier exchanges
    never change, so this index stays put while ``fewest`` moves within one block."""
    before = [0]
    for exchange in exchanges[:-1]:
        before.append(before[-1] + count_tokens(exchange))
    target = -(-before[fewest] // block) * block  # ceil to a multiple of the block
    cut = fewest
    while cut < len(exchanges) - 1 and before[cut] < target:
        cut += 1
    return cut


def _too_long(tokens: int, budget: int) -> ContextLengthExceededError:
    return ContextLengthExceededError(
        f"The message does not fit this model's context window: with the system prompt it "
        f"takes {tokens} tokens, and {budget} are available for the conversation (the rest "
        "is kept for the reply). Shorten the message or the system prompt, or lower max_tokens.",
        param="content",
        prompt_tokens=tokens,
        budget=budget,
    )
