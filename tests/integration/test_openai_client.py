"""The official ``openai`` client against a real server and the bundled models.

Greedy decoding or fixed seeds throughout; the assertions are about properties (finish
reasons, token counts, stop strings, determinism), never about the prose.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHAT_MODEL = "smollm2:135m"
BASE_MODEL = "gemma3:270m"
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{live_server}/v1", api_key="anything", max_retries=0) as c:
        yield c


def async_client(live_server: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{live_server}/v1", api_key="anything", max_retries=0)


def test_models_are_listed(client: OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert CHAT_MODEL in ids
    assert BASE_MODEL in ids
    assert client.models.retrieve(CHAT_MODEL).id == CHAT_MODEL


def test_chat(client: OpenAI) -> None:
    response = client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=48
    )
    assert response.id.startswith("chatcmpl-")
    assert response.model == CHAT_MODEL
    (choice,) = response.choices
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage is not None
    assert usage.prompt_tokens > 5
    assert 0 < usage.completion_tokens <= 48
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streamed_chat(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=48,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish_reasons = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason is not None:
                finish_reasons.append(choice.finish_reason)
    assert len(pieces) >= 3, pieces
    assert "".join(pieces).strip()
    assert len(finish_reasons) == 1 and finish_reasons[0] in ("stop", "length")
    assert usage is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert len(pieces) <= usage.completion_tokens <= 48

    # Streamed and non-streamed greedy answers agree.
    whole = client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=48
    )
    assert whole.choices[0].message.content == "".join(pieces)


def test_async_client_streams_concurrently(live_server: str) -> None:
    async def one(client: AsyncOpenAI, question: str) -> tuple[str, str | None]:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            max_tokens=32,
            stream=True,
        )
        text, reason = "", None
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                reason = choice.finish_reason or reason
        return text, reason

    async def both() -> list[tuple[str, str | None]]:
        async with async_client(live_server) as client:
            return await asyncio.gather(
                one(client, "What is the sun?"), one(client, "Say hello to a friend.")
            )

    for text, reason in asyncio.run(both()):
        assert text.strip()
        assert reason in ("stop", "length")


def test_completion(client: OpenAI) -> None:
    response = client.completions.create(
        model=CHAT_MODEL, prompt="The three primary colours are", temperature=0, max_tokens=12
    )
    assert response.id.startswith("cmpl-")
    assert response.choices[0].text.strip()
    assert response.choices[0].finish_reason in ("stop", "length")
    assert response.usage is not None and 0 < response.usage.completion_tokens <= 12


def test_base_model_completion_by_name(client: OpenAI) -> None:
    response = client.completions.create(
        model=BASE_MODEL, prompt="The capital of France is", temperature=0, max_tokens=8
    )
    assert response.model == BASE_MODEL
    assert response.choices[0].text.strip()
    assert response.choices[0].finish_reason in ("stop", "length")


def test_streamed_completion(client: OpenAI) -> None:
    stream = client.completions.create(
        model=BASE_MODEL, prompt="One, two, three,", temperature=0, max_tokens=10, stream=True
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert len(chunks) >= 3
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_stop_string_is_never_emitted(client: OpenAI) -> None:
    prompt = "Here is a list of fruits: apple, banana, cherry,"
    free = client.completions.create(model=CHAT_MODEL, prompt=prompt, temperature=0, max_tokens=32)
    full = free.choices[0].text
    middle = len(full) // 2
    stop = full[middle : middle + 3]
    assert len(stop) == 3 and full.find(stop) > 0, f"output too short to test stop: {full!r}"
    cut = client.completions.create(
        model=CHAT_MODEL, prompt=prompt, temperature=0, max_tokens=32, stop=[stop, "\u2603"]
    )
    text = cut.choices[0].text
    assert stop not in text
    assert cut.choices[0].finish_reason == "stop"
    assert text == full[: full.find(stop)]  # greedy: the same text, cut before the stop


def test_max_tokens_gives_length(client: OpenAI) -> None:
    response = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0,
        max_tokens=5,
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None and response.usage.completion_tokens == 5


def test_same_seed_same_text(client: OpenAI) -> None:
    def sample() -> str:
        response = client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Invent a name for a cat."}],
            temperature=0.8,
            seed=1234,
            max_tokens=24,
        )
        return response.choices[0].message.content or ""

    first = sample()
    assert first.strip()
    assert sample() == first


def test_unknown_model_is_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model:1b", messages=QUESTION)
    assert info.value.code == "model_not_found"


def test_bad_temperature_is_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=-1)
    assert info.value.param == "temperature"


def test_prompt_too_long_is_context_length_exceeded(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=CHAT_MODEL, prompt="hello there " * 2000, max_tokens=4)
    assert info.value.code == "context_length_exceeded"


def test_unsupported_option_is_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, logit_bias={"1": 5})
    assert info.value.param == "logit_bias"


# -- a client that leaves frees its slot --------------------------------------------------


ENDLESS = {
    "model": CHAT_MODEL,
    "messages": [{"role": "user", "content": "Count upwards from one, forever."}],
    "ignore_eos": True,  # runs until the 8192-token context is full unless aborted
}


def served_after_slot_frees(http: httpx.Client) -> httpx.Response:
    """A small request, retried while the one slot is busy (429) for up to 30 s.

    An aborted generation frees the slot within moments; a leaked one holds it for minutes.
    """
    body = {"model": CHAT_MODEL, "prompt": "Hello", "max_tokens": 4, "temperature": 0}
    deadline = time.monotonic() + 30
    while True:
        response = http.post("/v1/completions", json=body)
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_streamed_client_leaving_aborts_generation(tight_server: str) -> None:
    with httpx.Client(base_url=tight_server, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=ENDLESS | {"stream": True}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            chunks = 0
            while chunks < 2:
                chunks += next(lines).startswith("data: {")
        response = served_after_slot_frees(http)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 4


def test_waiting_client_leaving_aborts_generation(tight_server: str) -> None:
    with httpx.Client(base_url=tight_server, timeout=60) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=ENDLESS, timeout=3.0)
        response = served_after_slot_frees(http)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 4


def test_response_format_json_schema(client: OpenAI) -> None:
    import json

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    response = client.chat.completions.create(
        model="smollm2:135m",
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        temperature=0,
        max_tokens=120,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    data = json.loads(choice.message.content or "")
    assert isinstance(data["city"], str) and isinstance(data["population"], int)
