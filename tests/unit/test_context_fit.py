"""Fitting a conversation into the context window: the system prompt stays, whole
exchanges go from the start, what remains is a verbatim suffix."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pytest

from ollm.chat.context import fit_messages, split_exchanges
from ollm.chat.messages import ChatMessage
from ollm.errors import ContextLengthExceededError

OVERHEAD = 3  # tokens a template adds around each message


def count(messages: Sequence[ChatMessage]) -> int:
    """A stand-in tokenizer: one token per character, plus the template's framing."""
    return sum(len(m.content) + OVERHEAD for m in messages) + 1


class Counter:
    """``count`` that remembers how often it was called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, messages: Sequence[ChatMessage]) -> int:
        self.calls += 1
        return count(messages)


def conversation(exchanges: int, *, system: str | None = "be nice") -> list[ChatMessage]:
    turns = [ChatMessage("system", system)] if system is not None else []
    for i in range(exchanges):
        turns += [ChatMessage("user", f"question {i:02d}"), ChatMessage("assistant", f"answer {i}")]
    return [*turns, ChatMessage("user", "the new question")]


def test_everything_fits() -> None:
    turns = conversation(3)
    fitted = fit_messages(turns, budget=count(turns), count_tokens=count)
    assert fitted.messages == turns
    assert fitted.dropped_turns == 0
    assert fitted.num_tokens == count(turns)


@pytest.mark.parametrize("budget", range(40, 260, 7))
def test_oldest_exchanges_go_first_and_the_rest_is_a_verbatim_suffix(budget: int) -> None:
    turns = conversation(8)
    fitted = fit_messages(turns, budget=budget, count_tokens=count)
    kept = fitted.messages
    assert kept[0] == turns[0]  # the system prompt
    assert count(kept) == fitted.num_tokens <= budget
    rest = kept[1:]
    assert rest == turns[len(turns) - len(rest) :]  # a suffix, byte for byte
    assert rest[0].role == "user"  # whole exchanges: never an orphaned answer
    assert fitted.dropped_turns == len(turns) - len(kept)
    assert fitted.dropped_turns % 2 == 0
    if fitted.dropped_turns:  # as little as possible: one more exchange would not fit
        one_more = [turns[0], *turns[len(turns) - len(rest) - 2 :]]
        assert count(one_more) > budget


def test_the_last_exchange_never_goes() -> None:
    turns = conversation(4)
    just_the_question = [turns[0], turns[-1]]
    fitted = fit_messages(turns, budget=count(just_the_question), count_tokens=count)
    assert fitted.messages == just_the_question
    assert fitted.dropped_turns == 8


def test_too_long_even_alone_is_refused() -> None:
    turns = conversation(2)
    with pytest.raises(ContextLengthExceededError) as caught:
        fit_messages(turns, budget=count([turns[0], turns[-1]]) - 1, count_tokens=count)
    assert caught.value.status_code == 400
    assert caught.value.details["prompt_tokens"] == count([turns[0], turns[-1]])


def test_a_long_system_prompt_is_refused_rather_than_dropped() -> None:
    turns = [ChatMessage("system", "s" * 500), ChatMessage("user", "hi")]
    with pytest.raises(ContextLengthExceededError):
        fit_messages(turns, budget=100, count_tokens=count)


def test_few_renders_for_a_long_conversation() -> None:
    turns = conversation(1000)
    counter = Counter()
    fitted = fit_messages(turns, budget=500, count_tokens=counter)
    assert fitted.dropped_turns > 0
    assert counter.calls <= 2 + math.ceil(math.log2(1001))


def test_exchanges_and_leading_system_messages() -> None:
    turns = [
        ChatMessage("system", "a"),
        ChatMessage("system", "b"),
        ChatMessage("assistant", "greeting before any question"),
        ChatMessage("user", "q1"),
        ChatMessage("assistant", "a1"),
        ChatMessage("system", "mid-conversation note"),
        ChatMessage("user", "q2"),
    ]
    system, exchanges = split_exchanges(turns)
    assert system == turns[:2]
    assert exchanges == [[turns[2]], turns[3:6], [turns[6]]]
    fitted = fit_messages(turns, budget=count([*turns[:2], turns[6]]), count_tokens=count)
    assert fitted.messages == [*turns[:2], turns[6]]
    assert fitted.dropped_turns == 4


def test_without_a_system_prompt() -> None:
    turns = conversation(5, system=None)
    fitted = fit_messages(turns, budget=60, count_tokens=count)
    assert fitted.messages == turns[len(turns) - len(fitted.messages) :]
    assert fitted.messages[0].role == "user"


def test_empty_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        fit_messages([], budget=10, count_tokens=count)


def test_stable_cut_points_keep_the_prompts_start_for_many_turns() -> None:
    """As a chat grows past the window, the first kept message changes in jumps, not every
    turn; each prompt still fits and is a verbatim suffix after the system prompt."""
    budget = 200
    starts = []
    turns = conversation(0)
    for turn in range(40):
        fitted = fit_messages(turns, budget=budget, count_tokens=count, block_tokens=budget // 2)
        assert fitted.num_tokens <= budget
        kept = fitted.messages[1:]
        assert kept == turns[len(turns) - len(kept) :]
        starts.append(len(turns) - len(kept))  # index of the first kept message
        turns = [*turns, ChatMessage("assistant", f"answer {turn}"), ChatMessage("user", "q")]
    changes = sum(1 for a, b in itertools.pairwise(starts) if a != b)
    fewest = []
    for n in range(40):
        turns = conversation(n)
        kept = fit_messages(turns, budget=budget, count_tokens=count).messages[1:]
        fewest.append(len(turns) - len(kept))
    fewest_changes = sum(1 for a, b in itertools.pairwise(fewest) if a != b)
    assert changes <= fewest_changes // 3  # the start moves far less often
    assert changes >= 2  # but it does move: old turns still leave the window


def test_a_stable_cut_never_drops_the_turn_being_answered() -> None:
    turns = conversation(6)
    tight = count([turns[0], turns[-1]])
    fitted = fit_messages(turns, budget=tight, count_tokens=count, block_tokens=1000)
    assert fitted.messages == [turns[0], turns[-1]]
