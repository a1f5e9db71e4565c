"""Scheduler policy: budgets, chunked prefill, fair admission, cancellation."""

from collections import Counter

from ollm.engine.budget import StepBudget
from ollm.engine.request import Request, RequestStatus
from ollm.engine.scheduler import FairQueue, Scheduler
from ollm.engine.slots import SlotPool
from ollm.sampling import SamplingParams


def make_request(rid: str, prompt_len: int = 10, user: str = "u") -> Request:
    return Request(rid, list(range(1, prompt_len + 1)), SamplingParams(), user=user)


def run_step(scheduler: Scheduler, budget: int = 64, token: int = 7):
    """Schedule one step and pretend the model sampled ``token`` wherever it samples."""
    step = scheduler.schedule(budget)
    for chunk in step.chunks:
        scheduler.record_step(chunk, token if chunk.samples else None)
    return step


def test_long_prompt_is_prefilled_in_chunks_while_others_decode():
    scheduler = Scheduler(num_slots=4, context_per_sequence=4096)
    short = make_request("short", prompt_len=8)
    scheduler.add(short)
    run_step(scheduler, 32)  # short prefilled, first token sampled
    long = make_request("long", prompt_len=100)
    scheduler.add(long)
    seen_long_chunks = []
    for _ in range(10):
        step = run_step(scheduler, 32)
        sizes = {c.request.request_id: c.num_tokens for c in step.chunks}
        # The running stream advances one token in every step of the long prefill.
        assert sizes["short"] == 1
        assert step.num_tokens <= 32
        if "long" in sizes:
            seen_long_chunks.append(sizes["long"])
        if not long.in_prefill:
            break
    assert sum(seen_long_chunks) == 100
    assert len(seen_long_chunks) >= 4  # really chunked: 31 tokens a step at most
    assert max(seen_long_chunks) <= 31


def test_prefill_chunk_samples_only_when_it_reaches_the_last_prompt_token():
    scheduler = Scheduler(num_slots=1, context_per_sequence=4096)
    request = make_request("r", prompt_len=40)
    scheduler.add(request)
    samples = [run_step(scheduler, 16).chunks[0].samples for _ in range(3)]
    assert samples == [False, False, True]
    assert request.output_tokens == [7]
    assert request.num_computed == 40


def test_admission_is_round_robin_across_users_not_fifo():
    scheduler = Scheduler(num_slots=1, context_per_sequence=4096)
    for i in range(50):
        scheduler.add(make_request(f"greedy-{i}", user="greedy"))
    scheduler.add(make_request("polite-0", user="polite"))
    order = []
    while scheduler.has_work():
        step = run_step(scheduler)
        order.extend(r.request_id for r in step.admitted)
        for request in list(scheduler.running):
            scheduler.finish(request, RequestStatus.FINISHED_STOP)
        if len(order) >= 3:
            break
    assert order[:2] == ["greedy-0", "polite-0"]


def test_fair_queue_service_order_interleaves_users():
    queue = FairQueue()
    for rid, user in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", "c"), ("b2", "b")]:
        queue.push(make_request(rid, user=user))
    expected = ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert [r.request_id for r in queue.in_service_order({})] == expected
    running: Counter[str] = Counter()
    popped = []
    for _ in range(6):
        request = queue.pop(running)
        running[request.user] += 1
        popped.append(request.request_id)
    assert popped == expected


def test_a_user_with_nothing_running_goes_before_a_busy_one_whatever_the_arrival():
    scheduler = Scheduler(num_slots=3, context_per_sequence=4096)
    for i in range(10):
        scheduler.add(make_request(f"greedy-{i}", user="greedy"))
    run_step(scheduler, budget=20)  # two greedy requests admitted (10 tokens each)
    scheduler.add(make_request("polite", user="polite"))
    step = run_step(scheduler, budget=64)
    assert [r.request_id for r in step.admitted] == ["polite"]


def test_slots_bound_running_sequences_and_are_reused_after_finish():
    scheduler = Scheduler(num_slots=2, context_per_sequence=4096)
    requests = [make_request(f"r{i}", prompt_len=4) for i in range(3)]
    for request in requests:
        scheduler.add(request)
    run_step(scheduler)
    assert scheduler.num_running == 2 and scheduler.num_waiting == 1
    assert {r.seq_id for r in requests[:2]} == {0, 1}
    freed = scheduler.finish(requests[0], RequestStatus.FINISHED_STOP)
    assert freed == 0 and requests[0].seq_id is None
    step = run_step(scheduler)
    assert step.admitted == [requests[2]] and requests[2].seq_id == 0


def test_decodes_do_not_starve_prefill():
    scheduler = Scheduler(num_slots=8, context_per_sequence=4096, min_prefill_tokens=2)
    for i in range(7):
        scheduler.add(make_request(f"d{i}", prompt_len=1))
    for _ in range(10):
        run_step(scheduler, 8)
    assert scheduler.num_running == 7 and all(not r.in_prefill for r in scheduler.running)
    late = make_request("late", prompt_len=20)
    scheduler.add(late)
    for _ in range(20):
        run_step(scheduler, 8)
    assert not late.in_prefill


def test_aborting_waiting_and_running_requests_frees_their_places():
    scheduler = Scheduler(num_slots=1, context_per_sequence=4096)
    running, waiting = make_request("run"), make_request("wait")
    scheduler.add(running)
    scheduler.add(waiting)
    run_step(scheduler)
    assert scheduler.finish(waiting, RequestStatus.FINISHED_ABORTED) is None
    assert scheduler.num_waiting == 0
    assert scheduler.finish(running, RequestStatus.FINISHED_ABORTED) == 0
    assert not scheduler.has_work() and scheduler.slots.num_free == 1


def test_queue_positions_follow_service_order():
    scheduler = Scheduler(num_slots=1, context_per_sequence=4096)
    for rid, user in [("x", "a"), ("a1", "a"), ("a2", "a"), ("b1", "b")]:
        scheduler.add(make_request(rid, user=user))
    run_step(scheduler)  # "x" takes the only slot
    assert scheduler.queue_positions() == {"a1": 2, "a2": 3, "b1": 1}


def test_context_full_is_detected_per_sequence():
    scheduler = Scheduler(num_slots=1, context_per_sequence=12)
    request = make_request("r", prompt_len=10)
    scheduler.add(request)
    run_step(scheduler)
    assert not scheduler.context_full(request)
    run_step(scheduler)
    assert scheduler.context_full(request)


def test_budget_is_maximal_when_nothing_decodes_and_time_bound_otherwise():
    budget = StepBudget(target_seconds=0.2, max_tokens=512, min_prefill=8)
    assert budget.tokens(decoding=0) == 512
    for _ in range(20):  # the model turns out to cost 10 ms a token in mixed steps
        budget.observe(num_tokens=40, seconds=0.4, decoding=4)
    assert 18 <= budget.tokens(decoding=4) <= 22
    # Idle prefill steps are cheaper per token; they do not loosen the decoding budget.
    budget.observe(num_tokens=512, seconds=1.0, decoding=0)
    assert budget.tokens(decoding=4) <= 22
    # Many decoders still leave room for some prefill.
    assert budget.tokens(decoding=30) == 38


def test_a_time_bound_budget_chunks_a_long_prompt_beside_a_decoding_stream():
    scheduler = Scheduler(num_slots=2, context_per_sequence=8192)
    budget = StepBudget(target_seconds=0.2, max_tokens=512, initial_seconds_per_token=0.005)
    scheduler.add(make_request("stream", prompt_len=10))
    run_step(scheduler, budget.tokens(decoding=scheduler.num_decoding))
    long = make_request("long", prompt_len=2000)
    scheduler.add(long)
    sizes = []
    while long.in_prefill:
        step = run_step(scheduler, budget.tokens(decoding=scheduler.num_decoding))
        assert any(c.request.request_id == "stream" for c in step.chunks)
        sizes.append(step.num_tokens)
    assert max(sizes) <= 40  # 0.2 s at 5 ms a token


def test_a_freed_slot_keeps_its_prefix_for_the_same_owner_only():
    pool = SlotPool(2)
    first = pool.allocate("alice", [1, 2, 3])
    assert first.reused == 0
    pool.free(first.seq_id, owner="alice", tokens=[1, 2, 3, 9])
    assert pool.allocate("bob", [1, 2, 3, 4]).reused == 0  # never across owners
    again = pool.allocate("alice", [1, 2, 3, 4, 5])
    assert again[:2] == (first.seq_id, 3)


def test_reuse_leaves_one_prompt_token_to_compute_and_lru_prefers_empty_slots():
    pool = SlotPool(3)
    grants = [pool.allocate("u", [7]) for _ in range(3)]
    pool.free(grants[0].seq_id, owner="u", tokens=[1, 2, 3])
    pool.free(grants[1].seq_id)  # nothing cached
    assert pool.allocate("u", [1, 2, 3])[:2] == (grants[0].seq_id, 2)  # last one recomputed
    assert pool.allocate("u", [5, 6]).seq_id == grants[1].seq_id  # empty before cached


def test_admission_starts_prefill_after_the_reused_prefix():
    scheduler = Scheduler(num_slots=1, context_per_sequence=4096)
    first = make_request("first", prompt_len=20)
    scheduler.add(first)
    while not first.output_tokens:
        run_step(scheduler)
    run_step(scheduler)  # one decode step: the sampled token is now in the KV too
    scheduler.finish(first, RequestStatus.FINISHED_STOP)
    follow = Request("follow", [*first.prompt_tokens, 7, 99, 100], SamplingParams(), user="u")
    scheduler.add(follow)
    step = run_step(scheduler)
    assert follow.num_cached == 21 and step.chunks[0].start == 21 and step.chunks[0].num_tokens == 2
