"""logprobs, ``n`` choices, prompt lists, echo and fill-in-the-middle with the official
``openai`` client against a real server and the bundled models.

Properties, never prose: at temperature 0 the sampled token is the most likely one, so its
logprob is the first alternative's; the tokens spell the reply; seeded choices repeat.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from conftest import run_server
from openai import OpenAI

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHAT_MODEL = "smollm2:135m"
CODE_MODEL = "qwen2.5-coder:0.5b"
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{live_server}/v1", api_key="anything", max_retries=0) as c:
        yield c


def test_greedy_chat_logprobs_are_consistent_with_what_was_sampled(client: OpenAI) -> None:
    ask = {
        "model": CHAT_MODEL,
        "messages": QUESTION,
        "temperature": 0,
        "max_tokens": 24,
        "logprobs": True,
        "top_logprobs": 5,
    }
    response = client.chat.completions.create(**ask)
    choice = response.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    content = choice.logprobs.content
    assert response.usage is not None
    assert len(content) == response.usage.completion_tokens  # one entry per token
    spelled = b"".join(bytes(entry.bytes or []) for entry in content)
    assert spelled.decode("utf-8", errors="replace") == choice.message.content
    for entry in content:
        assert len(entry.top_logprobs) == 5
        best = entry.top_logprobs[0]
        assert best.token == entry.token  # greedy: the argmax was sampled
        assert best.logprob == pytest.approx(entry.logprob)
        values = [alt.logprob for alt in entry.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert all(v <= 0 for v in values)
        assert sum(math.exp(v) for v in values) <= 1 + 1e-6  # a share of one distribution
    # The sequence's log-probability is the sum of its tokens' (a probability in (0, 1]).
    total = sum(entry.logprob for entry in content)
    assert -math.inf < total <= 0

    stream = client.chat.completions.create(**ask, stream=True)
    streamed = [
        entry
        for chunk in stream
        for c in chunk.choices
        if c.logprobs and c.logprobs.content
        for entry in c.logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in content]
    for a, b in zip(streamed, content, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


@pytest.fixture(scope="module")
def slots_client(ollm_home: Path) -> Iterator[OpenAI]:
    """A server with fixed KV slots (``OLLM_KV_POOL_CELLS=0``): a sequence's cells never
    sit among other sequences', so a seeded choice is bit-for-bit the same every time. In
    the shared pool (the default) llama.cpp's attention rounds differently with where the
    cells sit and what else is in the batch, so a seeded reply may drift after a while."""
    env = {
        "OLLM_MAX_RUNNING": "4",
        "OLLM_CONTEXT_PER_SEQUENCE": "1024",
        "OLLM_KV_POOL_CELLS": "0",
        "OLLM_THREADS": "2",
    }
    log_path = ollm_home.parent / "slots-server.log"
    with (
        run_server(ollm_home, log_path, **env) as base_url,
        OpenAI(base_url=f"{base_url}/v1", api_key="anything", max_retries=0) as c,
    ):
        yield c


POEM = [{"role": "user", "content": "Write a short poem about the sea."}]


def _poem(client: OpenAI, n: int, seed: int, max_tokens: int = 24) -> list[str]:
    response = client.chat.completions.create(
        model=CHAT_MODEL, messages=POEM, temperature=1.0, max_tokens=max_tokens, seed=seed, n=n
    )
    assert [c.index for c in response.choices] == list(range(n))
    return [c.message.content or "" for c in response.choices]


def test_n_choices_with_a_seed_differ_from_each_other_and_repeat(slots_client: OpenAI) -> None:
    first = _poem(slots_client, 2, seed=1234)
    assert all(first)
    assert first[0] != first[1]  # sampled with seeds 1234 and 1235
    assert _poem(slots_client, 2, seed=1234) == first
    assert _poem(slots_client, 2, seed=1234) == first
    # Choice i is what a single request with seed + i gives.
    assert _poem(slots_client, 1, seed=1235) == first[1:]
    assert _poem(slots_client, 2, seed=99) != first


def test_n_choices_in_the_shared_pool(client: OpenAI) -> None:
    texts = _poem(client, 3, seed=7)
    assert len(texts) == 3 and all(texts) and len(set(texts)) == 3
    greedy = client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=16, n=2
    )
    single = client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=1
    )
    assert greedy.usage is not None and single.usage is not None
    assert greedy.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt once
    assert 2 <= greedy.usage.completion_tokens <= 2 * 16  # both choices' tokens


def test_completion_prompt_list_with_logprobs_and_n(slots_client: OpenAI) -> None:
    # Fixed slots: greedy choices of one prompt are then exactly equal (in the shared pool
    # they may drift apart after a few tokens, see slots_client).
    response = slots_client.completions.create(
        model=CHAT_MODEL,
        prompt=["The capital of France is", "One, two, three,"],
        max_tokens=8,
        temperature=0,
        logprobs=3,
        n=2,
    )
    assert [c.index for c in response.choices] == [0, 1, 2, 3]
    # Greedy: both choices of a prompt are the same; the prompts' differ.
    texts = [c.text for c in response.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]
    for choice in response.choices:
        scored = choice.logprobs
        assert scored is not None and scored.tokens and scored.token_logprobs
        assert scored.top_logprobs is not None and scored.text_offset is not None
        assert len(scored.tokens) == len(scored.token_logprobs) == len(scored.top_logprobs)
        assert "".join(scored.tokens) == choice.text
        assert scored.text_offset[0] == 0
        for logprob, top in zip(scored.token_logprobs, scored.top_logprobs, strict=True):
            assert logprob is not None and logprob <= 0
            assert max(top.values()) == pytest.approx(logprob)


def test_echo_puts_the_prompt_before_the_completion(client: OpenAI) -> None:
    prompt = "Once upon a time"
    echoed = client.completions.create(
        model=CHAT_MODEL, prompt=prompt, max_tokens=6, temperature=0, echo=True
    )
    plain = client.completions.create(model=CHAT_MODEL, prompt=prompt, max_tokens=6, temperature=0)
    assert echoed.choices[0].text == prompt + plain.choices[0].text


def test_fill_in_the_middle_with_a_code_model(client: OpenAI) -> None:
    response = client.completions.create(
        model=CODE_MODEL,
        prompt="def add(a, b):\n    return ",
        suffix="\n\nprint(add(1, 2))\n",
        max_tokens=12,
        temperature=0,
    )
    middle = response.choices[0].text
    assert middle.strip()
    assert "<|fim" not in middle
    assert "a" in middle and "b" in middle  # the body uses the arguments


def test_suffix_on_a_model_without_fim_is_a_clear_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=CHAT_MODEL, prompt="a", suffix="b", max_tokens=2)
    assert "fill-in-the-middle" in str(info.value)


def test_n_choices_on_a_model_whose_cache_cannot_be_cut_back(client: OpenAI) -> None:
    # gemma3's sliding-window cache cannot be rewound: each choice computes the prompt.
    response = client.completions.create(
        model="gemma3:270m", prompt="The sea is", max_tokens=8, n=2, seed=3, temperature=1.0
    )
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.text for c in response.choices)
    assert response.usage is not None and response.usage.completion_tokens >= 2
