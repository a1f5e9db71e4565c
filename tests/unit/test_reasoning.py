"""Thinking kept apart from the answer: whole replies and every way a stream can split."""

from __future__ import annotations

import random

import pytest

from ollm.chat.reasoning import (
    ReasoningStream,
    SplitReply,
    prompt_opens_thinking,
    split_reasoning,
)


@pytest.mark.parametrize(
    ("text", "started", "expected"),
    [
        ("<think>Two and two.</think>\n\nFour.", False, SplitReply("Two and two.", "Four.")),
        ("  \n<think>x</think>y", False, SplitReply("x", "y")),
        ("Plain answer.", False, SplitReply("", "Plain answer.")),
        (
            "A <think> in the middle is text.",
            False,
            SplitReply("", "A <think> in the middle is text."),
        ),
        # The template opened the block: the reply only closes it.
        ("Hmm, four.</think>\nFour.", True, SplitReply("Hmm, four.", "Four.")),
        # Cut off while thinking: all of it is thinking, there is no answer yet.
        ("<think>Still going", False, SplitReply("Still going", "")),
        ("Still going", True, SplitReply("Still going", "")),
        ("<think></think>Four.", False, SplitReply("", "Four.")),
        ("", False, SplitReply("", "")),
        ("<thi", False, SplitReply("", "<thi")),  # a reply that only looks like the start
    ],
)
def test_whole_replies(text: str, started: bool, expected: SplitReply) -> None:
    assert split_reasoning(text, started=started) == expected


def _pieces(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 4)
        out.append(text[i : i + n])
        i += n
    return out


@pytest.mark.parametrize(
    ("text", "started"),
    [
        ("<think>Two and two make four.</think>\n\nFour.", False),
        ("The answer is < 5 and </think> is just text here.", False),
        ("Because.</think>Yes.", True),
        ("<think>unfinished </thi", False),
        ("No thinking at all, just text.", False),
    ],
)
@pytest.mark.parametrize("seed", range(6))
def test_a_stream_splits_as_the_whole_reply(text: str, started: bool, seed: int) -> None:
    stream = ReasoningStream(started=started)
    reasoning, content = "", ""
    for piece in _pieces(text, seed):
        out = stream.feed(piece)
        reasoning, content = reasoning + out.reasoning, content + out.content
        assert "<think>" not in content or not text.lstrip().startswith("<think>")
    rest = stream.finish()
    assert SplitReply(reasoning + rest.reasoning, content + rest.content) == split_reasoning(
        text, started=started
    )


def test_a_non_thinking_reply_is_not_held_back() -> None:
    stream = ReasoningStream()
    assert stream.feed("Hello") == SplitReply("", "Hello")
    assert stream.feed(" there") == SplitReply("", " there")


def test_thinking_streams_as_it_comes() -> None:
    stream = ReasoningStream()
    assert stream.feed("<think>Let me") == SplitReply("Let me", "")
    assert stream.feed(" see</th") == SplitReply(" see", "")  # "</th" may close it: held
    assert stream.feed("ink>\n") == SplitReply("", "")
    assert stream.feed("Yes.") == SplitReply("", "Yes.")
    assert stream.finish() == SplitReply("", "")


def test_prompt_opens_thinking() -> None:
    assert prompt_opens_thinking("<|Assistant|><think>\n")
    assert not prompt_opens_thinking("<|assistant|>")
    assert not prompt_opens_thinking("<think>old</think><|assistant|>")
