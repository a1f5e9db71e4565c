"""The engine loop over the fake backend, stepped by hand (no thread, no model)."""

from ollm.backends.fake import FakeBackend, encode_bytes
from ollm.engine.loop import EngineLoop
from ollm.engine.messages import AbortRequest, AddRequest
from ollm.engine.outputs import RequestOutput
from ollm.engine.request import Request
from ollm.engine.scheduler import Scheduler
from ollm.sampling import SamplingParams


class Harness:
    """An EngineLoop with a FakeBackend, collecting every delta it emits per request."""

    def __init__(self, *, slots: int = 4, context: int = 256, **fake):
        self.backend = FakeBackend(num_sequences=slots, context_per_sequence=context, **fake)
        scheduler = Scheduler(num_slots=slots, context_per_sequence=context)
        self.deltas: dict[str, list[RequestOutput]] = {}
        self.loop = EngineLoop(self.backend, scheduler, self._collect)

    def _collect(self, outputs: list[RequestOutput]) -> None:
        for output in outputs:
            self.deltas.setdefault(output.request_id, []).append(output)

    def add(self, rid: str, prompt: str = "hi", user: str = "u", **params) -> None:
        request = Request(rid, encode_bytes(prompt), SamplingParams(**params), user=user)
        self.loop.inbox.put(AddRequest(request))

    def run(self, max_steps: int = 1000) -> None:
        for _ in range(max_steps):
            self.loop.run_once()
            if not self.loop.scheduler.has_work() and self.loop.inbox.empty():
                return
        raise AssertionError("engine did not go idle")

    def text(self, rid: str) -> str:
        return "".join(d.text for d in self.deltas[rid])

    def final(self, rid: str) -> RequestOutput:
        return self.deltas[rid][-1]


def test_reply_streams_token_by_token_and_ends_with_stop():
    h = Harness(reply=lambda _p: "Hello there")
    h.add("a")
    h.run()
    assert h.text("a") == "Hello there"
    assert len([d for d in h.deltas["a"] if d.text]) == len("Hello there")
    final = h.final("a")
    assert final.finish_reason == "stop" and final.num_output_tokens == len("Hello there")


def test_all_running_sequences_share_each_forward_pass():
    h = Harness(reply=lambda _p: "x" * 20)
    for i in range(3):
        h.add(f"r{i}", prompt="abc")
    h.run()
    batch_sizes = [len({item.seq_id for item in call}) for call in h.backend.calls]
    assert max(batch_sizes) == 3
    assert len(h.backend.calls) < 3 * 21  # batched, not one request after another


def test_max_tokens_finishes_with_length():
    h = Harness(reply=lambda _p: "abcdefgh")
    h.add("a", max_tokens=3)
    h.run()
    assert h.text("a") == "abc"
    assert h.final("a").finish_reason == "length"


def test_stop_string_is_not_emitted_and_finishes_with_stop():
    h = Harness(reply=lambda _p: "one two THREE four")
    h.add("a", stop=("THREE",))
    h.run()
    assert h.text("a") == "one two "
    assert h.final("a").finish_reason == "stop"


def test_context_window_full_finishes_with_length():
    h = Harness(context=16, reply=lambda _p: "z" * 100)
    h.add("a", prompt="0123456789")
    h.run()
    assert h.final("a").finish_reason == "length"
    assert h.final("a").num_prompt_tokens + h.final("a").num_output_tokens == 16


def test_ignore_eos_keeps_generating_until_max_tokens():
    h = Harness(reply=lambda _p: "ab")
    h.add("a", ignore_eos=True, max_tokens=7)
    h.run()
    assert h.text("a") == "abababa"
    assert h.final("a").finish_reason == "length"


def test_abort_frees_the_slot_at_the_next_step():
    h = Harness(slots=1, reply=lambda _p: "y" * 200, context=512)
    h.add("long")
    for _ in range(5):
        h.loop.run_once()
    assert h.loop.scheduler.num_running == 1
    h.loop.inbox.put(AbortRequest("long"))
    h.loop.run_once()
    assert h.loop.scheduler.num_running == 0
    assert h.loop.stats.running == 0 and h.loop.scheduler.slots.num_free == 1
    assert h.final("long").finish_reason == "abort"
    h.add("next")  # the freed slot serves the next request
    h.run()
    assert h.final("next").finish_reason in ("stop", "length")


def test_waiting_requests_are_told_their_queue_position():
    h = Harness(slots=1, reply=lambda _p: "abc")
    h.add("first")
    h.add("second")
    h.add("third")
    h.loop.run_once()
    assert [d.queue_position for d in h.deltas["second"]] == [1]
    assert [d.queue_position for d in h.deltas["third"]] == [2]
    h.run()
    assert h.text("third") == "abc"


def test_a_failing_forward_pass_ends_its_requests_with_error_and_the_engine_lives_on():
    h = Harness(fail_on_call=2, reply=lambda _p: "abcdef")
    h.add("victim")
    h.run()
    assert h.final("victim").finish_reason == "error"
    assert "fake backend failure" in (h.final("victim").error or "")
    h.add("survivor")
    h.run()
    assert h.text("survivor") == "abcdef"


def test_prefill_and_generated_token_counters():
    h = Harness(reply=lambda _p: "ok")
    h.add("a", prompt="x" * 50)
    h.run()
    assert h.loop.stats.prompt_tokens == 50
    assert h.loop.stats.generated_tokens == 2
    assert h.loop.stats.running == 0


def test_a_sampler_that_cannot_be_built_fails_only_its_request():
    h = Harness(reply=lambda _p: "ok", sampler_error=ValueError("bad grammar"))
    h.add("a")
    h.run()
    assert h.final("a").finish_reason == "error"
    assert "bad grammar" in (h.final("a").error or "")
    h.backend.sampler_error = None
    h.add("b")
    h.run()
    assert h.text("b") == "ok"


def test_a_follow_up_prompt_prefills_only_its_new_tokens_and_only_for_the_same_user():
    h = Harness(reply=lambda _p: "ok")
    h.add("one", prompt="The same long system prompt. First question?", user="alice")
    h.run()
    h.add("two", prompt="The same long system prompt. Second question?", user="alice")
    h.run()
    shared = len("The same long system prompt. ")
    assert h.final("two").num_cached_tokens == shared
    assert h.loop.stats.prefix_hits == 1 and h.loop.stats.cached_prompt_tokens == shared
    fed = [item for call in h.backend.calls for item in call if item.start_pos == shared]
    assert fed and fed[0].tokens[0] == encode_bytes("S")[0]  # prefill resumed at the change
    h.add("three", prompt="The same long system prompt. Second question?", user="mallory")
    h.run()
    assert h.final("three").num_cached_tokens == 0  # another user's prefix is never used
    assert h.text("three") == "ok"
