"""Embeddings from the real bundled smollm2:135m through the official ``openai`` and
``ollama`` clients: related sentences point closer together than unrelated ones, the
dialects agree with each other, and a chat keeps streaming while vectors are computed.

smollm2 is not an embedding model (mean pooling over a chat model), so the checks are
about ordering and consistency, never about exact numbers.
"""

from __future__ import annotations

import math
import threading

import httpx
import ollama
import pytest
from openai import BadRequestError, OpenAI

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODEL = "smollm2:135m"
# (anchor, a paraphrase of it, an unrelated sentence)
TRIPLES = [
    (
        "The cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Quarterly tax returns are due at the end of April.",
    ),
    (
        "How do I bake bread at home?",
        "What is a simple recipe for homemade bread?",
        "The stock market fell sharply on Monday.",
    ),
    (
        "The football match ended in a draw.",
        "The soccer game finished with a tie score.",
        "Photosynthesis converts light into chemical energy.",
    ),
]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_openai_related_sentences_are_closer(live_server: str) -> None:
    client = OpenAI(base_url=f"{live_server}/v1", api_key="unused")
    flat = [sentence for triple in TRIPLES for sentence in triple]
    # The client asks for base64 by default and decodes it itself.
    response = client.embeddings.create(model=MODEL, input=flat)
    vectors = [item.embedding for item in response.data]
    assert [item.index for item in response.data] == list(range(len(flat)))
    assert all(len(v) == 576 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vectors)
    assert response.usage.prompt_tokens > len(flat)
    for i in range(len(TRIPLES)):
        anchor, related, unrelated = vectors[3 * i : 3 * i + 3]
        assert cosine(anchor, related) > cosine(anchor, unrelated), TRIPLES[i]
    # One input alone gives the same vector as inside a batch (inputs never see each other).
    alone = client.embeddings.create(model=MODEL, input=flat[4], encoding_format="float")
    assert cosine(alone.data[0].embedding, vectors[4]) > 0.9999
    short = client.embeddings.create(model=MODEL, input=flat[0], dimensions=128)
    assert len(short.data[0].embedding) == 128
    assert cosine(short.data[0].embedding, vectors[0][:128]) > 0.9999


def test_openai_refuses_what_it_cannot_embed(live_server: str) -> None:
    client = OpenAI(base_url=f"{live_server}/v1", api_key="unused")
    with pytest.raises(BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input="word " * 3000)
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(BadRequestError):
        client.embeddings.create(model=MODEL, input="x", dimensions=10_000)


def test_ollama_embed_and_legacy_agree_with_openai(live_server: str) -> None:
    client = ollama.Client(host=live_server)
    anchor, related, unrelated = TRIPLES[0]
    result = client.embed(model=MODEL, input=[anchor, related, unrelated])
    a, r, u = result.embeddings
    assert cosine(a, r) > cosine(a, u)
    assert result.prompt_eval_count and result.prompt_eval_count > 3
    legacy = client.embeddings(model=MODEL, prompt=anchor).embedding
    assert math.sqrt(sum(x * x for x in legacy)) > 1.5  # the raw pooled vector
    assert cosine(legacy, a) > 0.9999  # same direction as the normalised one
    openai = httpx.post(
        f"{live_server}/v1/embeddings", json={"model": MODEL, "input": anchor}, timeout=60
    ).json()
    assert cosine(openai["data"][0]["embedding"], a) > 0.9999
    # Ollama truncates a long input by default, and refuses it when told not to.
    long = "word " * 3000
    cut = client.embed(model=MODEL, input=long)
    assert len(cut.embeddings) == 1 and cut.prompt_eval_count is not None
    with pytest.raises(ollama.ResponseError) as caught:
        client.embed(model=MODEL, input=long, truncate=False)
    assert caught.value.status_code == 400


def test_chat_streams_while_embedding(live_server: str) -> None:
    """Embeddings have a context of their own: a running chat stream keeps its tokens
    coming while a large embedding request is computed."""
    client = OpenAI(base_url=f"{live_server}/v1", api_key="unused")
    done = threading.Event()
    vectors: list[int] = []

    def embed() -> None:
        try:
            batch = [f"Sentence number {i} about something else." for i in range(64)]
            vectors.append(len(client.embeddings.create(model=MODEL, input=batch).data))
        finally:
            done.set()

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to fifty in words."}],
        max_tokens=120,
        temperature=0,
        stream=True,
    )
    tokens_during = 0
    worker = None
    for chunk in stream:
        if worker is None:
            worker = threading.Thread(target=embed)
            worker.start()
        elif not done.is_set() and chunk.choices and chunk.choices[0].delta.content:
            tokens_during += 1
    assert worker is not None
    worker.join(120)
    assert vectors == [64]
    assert tokens_during > 0  # the stream went on while the vectors were computed
