"""The engine's side of logprobs and of n > 1 choices, over the fake backend."""

import asyncio
import math

import pytest

from ollm.backends.fake import FakeBackend, encode_bytes, fake_logprobs
from ollm.engine.client import AsyncEngine, EngineLimits
from ollm.engine.loop import EngineLoop
from ollm.engine.messages import AbortRequest, AddRequest
from ollm.engine.outputs import RequestOutput
from ollm.engine.request import Request
from ollm.engine.scheduler import Scheduler
from ollm.errors import QueueFullError
from ollm.sampling import SamplingParams

PROMPT = "A system prompt long enough to be worth a copy of its KV cells. Question?"


class Harness:
    def __init__(self, *, slots: int = 4, reply=lambda _p: "abc") -> None:
        self.backend = FakeBackend(num_sequences=slots, context_per_sequence=256, reply=reply)
        self.loop = EngineLoop(
            self.backend, Scheduler(num_slots=slots, context_per_sequence=256), self._collect
        )
        self.deltas: dict[str, list[RequestOutput]] = {}

    def _collect(self, outputs: list[RequestOutput]) -> None:
        for output in outputs:
            self.deltas.setdefault(output.request_id, []).append(output)

    def add(self, ids: list[str], prompt: str = PROMPT, **params) -> None:
        requests = [Request(rid, encode_bytes(prompt), SamplingParams(**params)) for rid in ids]
        self.loop.inbox.put(AddRequest(requests[0], tuple(requests[1:])))

    def run(self) -> None:
        for _ in range(1000):
            self.loop.run_once()
            if not self.loop.scheduler.has_work() and self.loop.inbox.empty():
                return
        raise AssertionError("engine did not go idle")

    def merged(self, rid: str) -> RequestOutput:
        first, *rest = self.deltas[rid]
        out = RequestOutput(rid)
        for delta in [first, *rest]:
            out.merge(delta)
        return out

    def prompt_tokens_computed(self) -> int:
        length = len(encode_bytes(PROMPT))
        return sum(
            item.tokens.__len__()
            for call in self.backend.calls
            for item in call
            if item.start_pos < length
        )


def test_each_generated_token_carries_its_logprobs_and_eos_none():
    h = Harness(reply=lambda _p: "hi")
    h.add(["a"], logprobs=3)
    h.run()
    out = h.merged("a")
    assert out.text == "hi" and out.finish_reason == "stop"
    assert len(out.logprobs) == len(out.token_ids) == 2  # EOS is not part of the reply
    vocab = h.backend.facts.vocab_size
    for token, entry in zip(out.token_ids, out.logprobs, strict=True):
        expected = fake_logprobs(token, vocab, 3)
        assert entry.token == h.backend.token_bytes(token)
        assert entry.logprob == pytest.approx(expected.logprob)
        assert [b for b, _ in entry.top] == [h.backend.token_bytes(t) for t, _ in expected.top]
        assert entry.top[0][0] == entry.token  # the fake's chosen token is its argmax
        assert all(lp <= 0 for _, lp in entry.top)
        assert sum(math.exp(lp) for _, lp in entry.top) < 1


def test_no_logprobs_unless_asked():
    h = Harness()
    h.add(["a"])
    h.run()
    assert h.merged("a").logprobs == ()


def test_followers_copy_the_leaders_prompt_instead_of_computing_it_again():
    h = Harness()
    h.add(["a", "b", "c"])
    h.run()
    for rid in "abc":
        out = h.merged(rid)
        assert out.text == "abc" and out.finish_reason == "stop"
    length = len(encode_bytes(PROMPT))
    # The prompt once, plus its last token for each follower (sampling needs its logits).
    assert h.prompt_tokens_computed() == length + 2
    assert len(h.backend.copies) == 2
    assert h.merged("b").num_cached_tokens == length - 1


def test_aborting_a_held_follower_leaves_the_others_running():
    h = Harness()
    h.add(["a", "b", "c"])
    h.loop.inbox.put(AbortRequest("b"))
    h.run()
    assert h.merged("b").finish_reason == "abort"
    assert h.merged("a").text == h.merged("c").text == "abc"


def test_a_leader_that_fails_at_once_still_lets_its_followers_run():
    h = Harness()
    h.add(["a", "b"])
    h.loop.inbox.put(AbortRequest("a"))
    h.run()
    assert h.merged("a").finish_reason == "abort"
    assert h.merged("b").text == "abc"


def test_async_generate_many_streams_each_choice_and_counts_them_all_in_the_queue():
    async def main() -> None:
        backend = FakeBackend(num_sequences=2, context_per_sequence=256, reply=lambda _p: "ok")
        engine = AsyncEngine(
            backend, EngineLimits(max_running=2, max_waiting=1, context_per_sequence=256)
        )
        engine.start()
        try:
            with pytest.raises(QueueFullError):
                engine.generate_many(encode_bytes(PROMPT), [SamplingParams()] * 4)
            streams = engine.generate_many(
                encode_bytes(PROMPT), [SamplingParams(seed=i) for i in range(3)]
            )
            texts = []
            for stream in streams:
                texts.append("".join([o.text async for o in stream]))
            assert texts == ["ok"] * 3
            assert engine.num_in_flight == 0
        finally:
            await engine.close()

    asyncio.run(main())
