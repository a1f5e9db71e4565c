"""logprobs, n > 1, prompt lists, echo and suffix over the real app and the fake backend.

The fake model's logits are exactly known (:func:`ollm.backends.fake.fake_logprobs`), so
the numbers on the wire can be checked to the last digit, whole and streamed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgi_helpers import Harness, call_and_disconnect, running_app, wait_until

from ollm.backends.base import ModelFacts
from ollm.backends.fake import FakeBackend, encode_bytes, fake_logprobs

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_app(tmp_path, reply=lambda _p: "abc") as harness:
        yield harness


def events(body: str) -> list[dict[str, Any]]:
    blocks = [b.removeprefix("data: ") for b in body.strip("\n").split("\n\n")]
    assert blocks[-1] == "[DONE]"
    return [json.loads(b) for b in blocks[:-1]]


def expected(char: str, top: int):
    vocab = FakeBackend().facts.vocab_size
    return fake_logprobs(encode_bytes(char)[0], vocab, top)


def token_text(token: int) -> str:
    return bytes([token - 2]).decode("latin-1") if token >= 2 else ""


# -- chat logprobs ------------------------------------------------------------------------


async def test_chat_logprobs_are_the_models_and_match_when_streamed(h: Harness) -> None:
    body = {"messages": HI, "logprobs": True, "top_logprobs": 2, "temperature": 0}
    whole = (await h.client.post("/v1/chat/completions", json=body)).json()
    content = whole["choices"][0]["logprobs"]["content"]
    assert [entry["token"] for entry in content] == ["a", "b", "c"]
    for entry, char in zip(content, "abc", strict=True):
        want = expected(char, 2)
        assert entry["logprob"] == pytest.approx(want.logprob)
        assert entry["bytes"] == list(char.encode())
        assert [t["token"] for t in entry["top_logprobs"]] == [token_text(t) for t, _ in want.top]
        assert entry["top_logprobs"][0]["logprob"] == entry["logprob"]  # greedy: the argmax
    assert whole["choices"][0]["logprobs"]["refusal"] is None

    response = await h.client.post("/v1/chat/completions", json={**body, "stream": True})
    streamed = [
        entry
        for chunk in events(response.text)
        for choice in chunk["choices"]
        if choice.get("logprobs")
        for entry in choice["logprobs"]["content"]
    ]
    assert streamed == content


async def test_chat_logprobs_without_alternatives_and_absent_unless_asked(h: Harness) -> None:
    body = {"messages": HI, "logprobs": True}
    content = (await h.client.post("/v1/chat/completions", json=body)).json()["choices"][0][
        "logprobs"
    ]["content"]
    assert len(content) == 3 and all(entry["top_logprobs"] == [] for entry in content)
    plain = (await h.client.post("/v1/chat/completions", json={"messages": HI})).json()
    assert plain["choices"][0]["logprobs"] is None


# -- n choices ----------------------------------------------------------------------------


async def test_n_choices_share_one_prompt_and_usage_counts_it_once(h: Harness) -> None:
    body = {"messages": HI, "n": 3, "seed": 7}
    response = (await h.client.post("/v1/chat/completions", json=body)).json()
    choices = response["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert all(c["message"]["content"] == "abc" for c in choices)
    usage = response["usage"]
    prompt = usage["prompt_tokens"]
    assert usage["completion_tokens"] == 3 * 3
    assert usage["total_tokens"] == prompt + 9
    backend = h.backend
    assert len(backend.copies) == 2  # the followers copied the leader's prompt KV
    seeds = sorted(
        item.sampler.params.seed
        for call in backend.calls
        for item in call
        if item.sampler is not None and item.sample
    )
    assert set(seeds) == {7, 8, 9}


async def test_n_choices_stream_with_their_index_and_one_usage_chunk(h: Harness) -> None:
    body = {
        "messages": HI,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = events((await h.client.post("/v1/chat/completions", json=body)).text)
    text = {0: "", 1: ""}
    finished = {}
    for chunk in chunks[:-1]:
        [choice] = chunk["choices"]
        text[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finished[choice["index"]] = choice["finish_reason"]
    assert text == {0: "abc", 1: "abc"} and finished == {0: "stop", 1: "stop"}
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6


async def test_a_disconnect_cancels_every_choice(tmp_path: Path) -> None:
    def slow(_prompt: list[int]) -> str:
        time.sleep(0.01)
        return "abcdefghij"

    async with running_app(tmp_path, reply=slow) as h:
        for stream in (True, False):
            body = {"messages": HI, "n": 3, "max_tokens": 200, "ignore_eos": True}
            await call_and_disconnect(
                h.app, "/v1/chat/completions", {**body, "stream": stream}, after_chunks=3 * stream
            )
            engine = h.models.loaded_models()[0].engine
            assert engine.num_in_flight == 0
            await wait_until(lambda e=engine: e.stats.running == 0)
            generated = sum(1 for call in h.backend.calls for item in call if item.sample)
            assert generated < 3 * 100  # stopped long before 3 * 200 tokens
            h.backend.calls.clear()
        assert h.models.loaded_models()[0].in_flight == 0  # every choice's hold given back


async def test_n_above_the_queue_is_429_not_partial(tmp_path: Path) -> None:
    async with running_app(tmp_path, max_running=2, max_waiting=1) as h:
        response = await h.client.post("/v1/chat/completions", json={"messages": HI, "n": 4})
        assert response.status_code == 429, response.text
        assert h.models.loaded_models()[0].in_flight == 0


# -- legacy completions -------------------------------------------------------------------


async def test_completion_logprobs_parallel_lists(h: Harness) -> None:
    body = {"prompt": "x", "logprobs": 2, "temperature": 0}
    choice = (await h.client.post("/v1/completions", json=body)).json()["choices"][0]
    scored = choice["logprobs"]
    assert choice["text"] == "abc"
    assert scored["tokens"] == ["a", "b", "c"]
    assert scored["text_offset"] == [0, 1, 2]
    for logprob, top, char in zip(
        scored["token_logprobs"], scored["top_logprobs"], "abc", strict=True
    ):
        want = expected(char, 2)
        assert logprob == pytest.approx(want.logprob)
        assert list(top) == [token_text(t) for t, _ in want.top]
        assert max(top.values()) == logprob
        assert sum(math.exp(v) for v in top.values()) < 1

    response = await h.client.post("/v1/completions", json={**body, "stream": True})
    chunks = [c["choices"][0] for c in events(response.text)]
    tokens = [t for c in chunks if c["logprobs"] for t in c["logprobs"]["tokens"]]
    offsets = [t for c in chunks if c["logprobs"] for t in c["logprobs"]["text_offset"]]
    assert tokens == ["a", "b", "c"] and offsets == [0, 1, 2]


async def test_prompt_lists_and_token_prompts_index_choices_prompt_by_prompt(
    tmp_path: Path,
) -> None:
    async with running_app(tmp_path, reply=lambda p: f"<{len(p)}>") as h:
        body = {"prompt": ["ab", "abcd"], "n": 2}
        response = (await h.client.post("/v1/completions", json=body)).json()
        # BOS + the prompt's bytes: 3 and 5 tokens.
        assert [c["text"] for c in response["choices"]] == ["<3>", "<3>", "<5>", "<5>"]
        assert [c["index"] for c in response["choices"]] == [0, 1, 2, 3]
        usage = response["usage"]
        assert usage["prompt_tokens"] == 3 + 5  # each prompt once
        assert usage["completion_tokens"] == 4 * 3

        ids = encode_bytes("hey")
        by_ids = (await h.client.post("/v1/completions", json={"prompt": [ids, ids[:1]]})).json()
        assert [c["text"] for c in by_ids["choices"]] == ["<3>", "<1>"]

        stream = {
            "prompt": ["ab", "abcd"],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        chunks = events((await h.client.post("/v1/completions", json=stream)).text)
        text = {0: "", 1: ""}
        for chunk in chunks:
            for choice in chunk["choices"]:
                text[choice["index"]] += choice["text"]
        assert text == {0: "<3>", 1: "<5>"}
        assert len({chunk["id"] for chunk in chunks}) == 1  # one response, one id
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["prompt_tokens"] == 3 + 5


async def test_echo_puts_the_prompt_first(h: Harness) -> None:
    response = await h.client.post("/v1/completions", json={"prompt": "Say: ", "echo": True})
    assert response.json()["choices"][0]["text"] == "Say: abc"
    ids = encode_bytes("Hi")
    by_ids = await h.client.post("/v1/completions", json={"prompt": ids, "echo": True})
    assert by_ids.json()["choices"][0]["text"] == "Hiabc"
    stream = {"prompt": "Say: ", "echo": True, "stream": True}
    chunks = events((await h.client.post("/v1/completions", json=stream)).text)
    assert chunks[0]["choices"][0]["text"].startswith("Say: ")
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Say: abc"


FIM = (250, 251, 252)  # three otherwise unused ids of the fake vocabulary


async def test_suffix_builds_the_fill_in_the_middle_prompt(tmp_path: Path) -> None:
    seen: list[list[int]] = []

    def reply(prompt: list[int]) -> str:
        seen.append(prompt)
        return "mid"

    facts = ModelFacts(vocab_size=258, context_train=4096, fim_tokens=FIM)
    async with running_app(tmp_path, reply=reply, facts=facts) as h:
        body = {"prompt": "def f(", "suffix": "):\n", "max_tokens": 5}
        response = await h.client.post("/v1/completions", json=body)
        assert response.json()["choices"][0]["text"] == "mid"
        pre, suf, mid = FIM
        assert seen[-1] == [pre, *encode_bytes("def f("), suf, *encode_bytes("):\n"), mid]
        ollama = await h.client.post(
            "/api/generate", json={"model": "fake:1", "prompt": "a", "suffix": "b", "stream": False}
        )
        assert ollama.json()["response"] == "mid"
        assert seen[-1] == [pre, *encode_bytes("a"), suf, *encode_bytes("b"), mid]


async def test_suffix_on_a_model_without_fim_tokens_is_400(h: Harness) -> None:
    response = await h.client.post("/v1/completions", json={"prompt": "a", "suffix": "b"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "suffix" and "fill-in-the-middle" in error["message"]
    ollama = await h.client.post(
        "/api/generate", json={"model": "fake:1", "prompt": "a", "suffix": "b", "stream": False}
    )
    assert ollama.status_code == 400 and "fill-in-the-middle" in ollama.json()["error"]


async def test_a_bad_prompt_in_a_list_starts_none_of_them(h: Harness) -> None:
    body = {"prompt": ["fine", "x" * 300], "max_tokens": 3}
    response = await h.client.post("/v1/completions", json=body)
    assert response.status_code == 400
    loaded = h.models.loaded_models()[0]
    await wait_until(lambda: loaded.engine.num_in_flight == 0)
    assert loaded.in_flight == 0
