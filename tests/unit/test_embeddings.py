"""Embeddings over the fake backend: OpenAI ``/v1/embeddings``, Ollama ``/api/embed`` and
``/api/embeddings``.

The fake model's vector counts tokens into 16 buckets (:func:`fake_embedding`), so every
number a response carries is known exactly; ``embed_calls`` shows how inputs were batched.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from pathlib import Path

import pytest
from asgi_helpers import running_app

from ollm.backends.fake import BOS, encode_bytes, fake_embedding
from ollm.backends.llamacpp.backend import (
    EMBEDDING_CONTEXT,
    EMBEDDING_CONTEXT_MIN,
    embedding_context,
)
from ollm.services.inference.embeddings import GROUP_INPUTS

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text_tokens(text: str) -> list[int]:
    return [BOS, *encode_bytes(text)]


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def close_to(got: list[float], want: list[float], tol: float = 1e-6) -> bool:
    return len(got) == len(want) and all(abs(a - b) <= tol for a, b in zip(got, want, strict=True))


async def test_openai_one_string_is_one_unit_vector(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        response = await h.client.post("/v1/embeddings", json={"model": "fake:1", "input": "hello"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == "fake:1"
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert close_to(item["embedding"], fake_embedding(text_tokens("hello"), 16))
    assert abs(norm(item["embedding"]) - 1) < 1e-9
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}  # BOS + 5 bytes


async def test_openai_lists_keep_their_order_and_token_inputs_are_used_as_given(
    tmp_path: Path,
) -> None:
    texts = ["alpha", "beta", "gamma"]
    async with running_app(tmp_path) as h:
        strings = (await h.client.post("/v1/embeddings", json={"input": texts})).json()
        flat = (await h.client.post("/v1/embeddings", json={"input": [10, 11, 12]})).json()
        nested = (
            await h.client.post("/v1/embeddings", json={"input": [[10, 11], [12, 13, 14]]})
        ).json()
        calls = h.backend.embed_calls
    assert [d["index"] for d in strings["data"]] == [0, 1, 2]
    for text, item in zip(texts, strings["data"], strict=True):
        assert close_to(item["embedding"], fake_embedding(text_tokens(text), 16))
    # A flat list of ids is one input, without a BOS added.
    assert len(flat["data"]) == 1 and flat["usage"]["prompt_tokens"] == 3
    assert close_to(flat["data"][0]["embedding"], fake_embedding([10, 11, 12], 16))
    assert [len(d["embedding"]) for d in nested["data"]] == [16, 16]
    assert nested["usage"]["prompt_tokens"] == 5
    assert calls[-1] == [[10, 11], [12, 13, 14]]


async def test_openai_base64_is_little_endian_float32(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        floats = (await h.client.post("/v1/embeddings", json={"input": "x y"})).json()
        packed = (
            await h.client.post(
                "/v1/embeddings", json={"input": "x y", "encoding_format": "base64"}
            )
        ).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert close_to(decoded, floats["data"][0]["embedding"], tol=1e-7)


async def test_dimensions_keep_the_head_at_unit_length(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        full = (await h.client.post("/v1/embeddings", json={"input": "abcdef"})).json()
        short = (
            await h.client.post("/v1/embeddings", json={"input": "abcdef", "dimensions": 4})
        ).json()
    head = full["data"][0]["embedding"][:4]
    got = short["data"][0]["embedding"]
    assert len(got) == 4 and abs(norm(got) - 1) < 1e-9
    scale = norm(head)
    assert close_to(got, [x / scale for x in head])


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": ""}, "input", "empty string"),
        ({"input": []}, "input", "empty list"),
        ({"input": ["ok", ""]}, "input", "empty"),
        ({"input": [[1, 2], []]}, "input", "empty"),
        ({"input": [5, 9999]}, "input", "vocabulary"),
        ({"input": "x", "dimensions": 17}, "dimensions", "vectors of 16"),
        ({"input": "x", "dimensions": 0}, "dimensions", ""),
        ({"input": "x", "encoding_format": "binary"}, "encoding_format", ""),
        ({"input": "x", "extra": 1}, "extra", "extra"),
        ({"input": {"text": "x"}}, "input", ""),
    ],
)
async def test_openai_bad_input_is_a_400_in_openai_shape(
    tmp_path: Path, body: dict[str, object], param: str, fragment: str
) -> None:
    async with running_app(tmp_path) as h:
        response = await h.client.post("/v1/embeddings", json=body)
        calls = h.backend.embed_calls
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert fragment in error["message"]
    assert calls == []  # nothing was computed for a bad request


async def test_openai_too_long_input_is_context_length_exceeded(tmp_path: Path) -> None:
    async with running_app(tmp_path, embedding_context=64) as h:
        response = await h.client.post("/v1/embeddings", json={"input": ["ok", "z" * 100]})
        calls = h.backend.embed_calls
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "input[1]" in error["message"]
    assert calls == []


async def test_unknown_model_is_a_404(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        openai = await h.client.post("/v1/embeddings", json={"model": "nope:1", "input": "x"})
        ollama = await h.client.post("/api/embed", json={"model": "nope:1", "input": "x"})
    assert openai.status_code == 404 and "error" in openai.json()
    assert ollama.status_code == 404 and "not found" in ollama.json()["error"]


async def test_many_inputs_are_batched_in_groups(tmp_path: Path) -> None:
    texts = [f"text number {i}" for i in range(GROUP_INPUTS * 2 + 3)]
    async with running_app(tmp_path) as h:
        body = (await h.client.post("/v1/embeddings", json={"input": texts})).json()
        calls = h.backend.embed_calls
    assert [d["index"] for d in body["data"]] == list(range(len(texts)))
    assert [len(group) for group in calls] == [GROUP_INPUTS, GROUP_INPUTS, 3]
    for text, item in zip(texts, body["data"], strict=True):
        assert close_to(item["embedding"], fake_embedding(text_tokens(text), 16))


async def test_ollama_embed_answers_unit_vectors_and_counts(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        one = (await h.client.post("/api/embed", json={"model": "fake:1", "input": "hi"})).json()
        many = (
            await h.client.post("/api/embed", json={"model": "fake:1", "input": ["a", "bcd"]})
        ).json()
    assert one["model"] == "fake:1" and len(one["embeddings"]) == 1
    assert close_to(one["embeddings"][0], fake_embedding(text_tokens("hi"), 16))
    assert one["prompt_eval_count"] == 3 and one["total_duration"] > 0
    assert [len(v) for v in many["embeddings"]] == [16, 16]
    assert many["prompt_eval_count"] == 2 + 4
    assert all(abs(norm(v) - 1) < 1e-9 for v in many["embeddings"])


async def test_ollama_embed_truncates_by_default_and_refuses_when_told_not_to(
    tmp_path: Path,
) -> None:
    long = "w" * 200
    async with running_app(tmp_path, embedding_context=64) as h:
        cut = await h.client.post("/api/embed", json={"model": "fake:1", "input": long})
        small = await h.client.post(
            "/api/embed",
            json={"model": "fake:1", "input": long, "options": {"num_ctx": 10}},
        )
        refused = await h.client.post(
            "/api/embed", json={"model": "fake:1", "input": long, "truncate": False}
        )
        calls = h.backend.embed_calls
    assert cut.status_code == 200 and cut.json()["prompt_eval_count"] == 64
    assert close_to(cut.json()["embeddings"][0], fake_embedding(text_tokens(long)[:64], 16))
    assert small.json()["prompt_eval_count"] == 10
    assert refused.status_code == 400
    assert "64 tokens" in refused.json()["error"]  # Ollama's shape: a plain error string
    assert [len(group[0]) for group in calls] == [64, 10]


async def test_ollama_empty_input_only_loads_the_model(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        response = await h.client.post("/api/embed", json={"model": "fake:2", "input": ""})
        legacy = await h.client.post("/api/embeddings", json={"model": "fake:2", "prompt": ""})
        loaded = (await h.client.get("/api/ps")).json()["models"]
        calls = [b.embed_calls for b in h.backends]
    assert response.status_code == 200 and response.json()["embeddings"] == []
    assert response.json()["model"] == "fake:2"
    assert legacy.json() == {"embedding": []}
    assert "fake:2" in [m["name"] for m in loaded]
    assert all(c == [] for c in calls)


async def test_ollama_legacy_embeddings_is_the_raw_vector(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        response = await h.client.post("/api/embeddings", json={"model": "fake:1", "prompt": "aab"})
    vector = response.json()["embedding"]
    assert vector == fake_embedding(text_tokens("aab"), 16, normalize=False)
    assert norm(vector) > 1  # not normalised, as in Ollama


async def test_ollama_bad_types_are_400s(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        number = await h.client.post("/api/embed", json={"model": "fake:1", "input": 5})
        mixed = await h.client.post("/api/embed", json={"model": "fake:1", "input": ["a", 1]})
        dims = await h.client.post(
            "/api/embed", json={"model": "fake:1", "input": "a", "dimensions": 999}
        )
    for response in (number, mixed, dims):
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str)


async def test_embedding_while_a_chat_streams(tmp_path: Path) -> None:
    """Embeddings never wait for the engine: one answers while a stream is running."""
    async with (
        running_app(tmp_path, reply=lambda _prompt: "x" * 150) as h,
        h.client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "fake:1",
                "stream": True,
                "messages": [{"role": "user", "content": "go"}],
            },
        ) as stream,
    ):
        lines = stream.aiter_lines()
        first = await anext(lines)
        while not first.startswith("data:"):
            first = await anext(lines)
        embedded = await h.client.post("/v1/embeddings", json={"input": "meanwhile"})
        rest = [line async for line in lines]
    assert embedded.status_code == 200 and len(embedded.json()["data"]) == 1
    assert "data: [DONE]" in rest
    chunks = [json.loads(line[6:]) for line in [first, *rest] if line.startswith("data: {")]
    assert not any("error" in chunk for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "x" * 150  # the stream went on whole


def test_embedding_context_fits_a_generative_models_logits() -> None:
    # smollm2's vocabulary: 256 MiB of logits hold 1,365 tokens, in steps of 256.
    assert embedding_context(49_152, generative=True, limit=8192) == 1280
    # Qwen's larger vocabulary hits the floor.
    assert embedding_context(151_936, generative=True, limit=8192) == EMBEDDING_CONTEXT_MIN
    # A model made for embeddings (pooling in its GGUF) keeps the full size.
    assert embedding_context(30_522, generative=False, limit=8192) == EMBEDDING_CONTEXT
    # Never more than the context the model was trained for / served with.
    assert embedding_context(30_522, generative=False, limit=512) == 512
    assert embedding_context(100, generative=True, limit=300) == 300
