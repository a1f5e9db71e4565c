"""Slot choice with conversations: keep and extend, copy a shared prefix, report evictions."""

from __future__ import annotations

from ollm.engine.slots import CachedPrefix, Sharer, SlotPool

SYSTEM = list(range(100, 160))  # a 60-token system prompt two chats share


def test_the_next_turn_of_a_chat_extends_its_own_slot():
    pool = SlotPool(3)
    grant = pool.allocate("alice", [*SYSTEM, 1], tag="chat-a")
    pool.free(grant.seq_id, owner="alice", tag="chat-a", tokens=[*SYSTEM, 1, 2, 3])
    again = pool.allocate("alice", [*SYSTEM, 1, 2, 3, 4, 5], tag="chat-a")
    assert (again.seq_id, again.reused, again.copy_from, again.evicted) == (
        grant.seq_id,
        len(SYSTEM) + 3,
        None,
        None,
    )


def test_another_chat_of_the_owner_copies_the_shared_system_prompt_and_keeps_the_first():
    pool = SlotPool(3)
    first = pool.allocate("alice", [*SYSTEM, 1], tag="chat-a")
    chat_a = [*SYSTEM, *range(1, 200)]
    pool.free(first.seq_id, owner="alice", tag="chat-a", tokens=chat_a)
    second = pool.allocate("alice", [*SYSTEM, 7, 8], tag="chat-b")
    assert second.seq_id != first.seq_id  # chat A's cache survives in its slot
    assert second.copy_from == first.seq_id
    assert second.reused == len(SYSTEM)
    assert second.evicted is None
    # chat A continues in place afterwards
    third = pool.allocate("alice", [*chat_a, 5], tag="chat-a")
    assert (third.seq_id, third.reused) == (first.seq_id, len(chat_a))


def test_a_running_sequence_of_the_same_owner_is_a_copy_source_but_not_another_owners():
    pool = SlotPool(4)
    running = pool.allocate("alice", [*SYSTEM, 1], tag="chat-a")
    sharers = [Sharer(running.seq_id, "alice", [*SYSTEM, 1])]
    mine = pool.allocate("alice", [*SYSTEM, 9], tag="chat-b", sharers=sharers)
    assert (mine.copy_from, mine.reused) == (running.seq_id, len(SYSTEM))
    theirs = pool.allocate("bob", [*SYSTEM, 9], tag="chat-c", sharers=sharers)
    assert (theirs.copy_from, theirs.reused) == (None, 0)


def test_short_shared_prefixes_are_recomputed_rather_than_copied():
    pool = SlotPool(3, min_copy_tokens=32)
    first = pool.allocate("alice", [1], tag="a")
    pool.free(first.seq_id, owner="alice", tag="a", tokens=list(range(1, 300)))
    other = pool.allocate("alice", [*range(1, 11), 999], tag="b")
    assert (other.copy_from, other.reused) == (None, 0)


def test_overwriting_another_conversation_reports_it_for_a_snapshot():
    pool = SlotPool(1)
    grant = pool.allocate("alice", [1, 2], tag="chat-a")
    pool.free(grant.seq_id, owner="alice", tag="chat-a", tokens=[1, 2, 3, 4])
    taken = pool.allocate("bob", [9, 9, 9], tag="chat-b")
    assert taken.reused == 0
    assert taken.evicted == CachedPrefix(grant.seq_id, "alice", "chat-a", [1, 2, 3, 4])


def test_a_copy_source_is_not_handed_out_in_the_same_step():
    pool = SlotPool(2)
    first = pool.allocate("alice", [1], tag="a")
    pool.free(first.seq_id, owner="alice", tag="a", tokens=[*SYSTEM, *range(300, 400)])
    assert not pool.can_allocate(exclude=[0, 1])
    assert pool.can_allocate(exclude=[first.seq_id])
    grant = pool.allocate("alice", [*SYSTEM, 5], tag="b")
    assert grant.copy_from == first.seq_id
    assert not pool.can_allocate(exclude=[first.seq_id])  # only the source is left


def test_forget_drops_a_deleted_conversations_prefix():
    pool = SlotPool(2)
    grant = pool.allocate("alice", [1], tag="gone")
    pool.free(grant.seq_id, owner="alice", tag="gone", tokens=[1, 2, 3, 4])
    assert pool.forget("gone") == 1
    assert pool.cached() == []
    assert pool.allocate("alice", [1, 2, 3, 4, 5], tag="gone").reused == 0


def test_another_choice_copies_its_leader_however_short_and_never_a_cached_slot():
    pool = SlotPool(4)
    prompt = [5, 6, 7]  # far below min_copy_tokens
    cached = pool.allocate("alice", prompt)
    pool.free(cached.seq_id, owner="alice", tokens=[*prompt, 8, 9])  # same prefix, cached
    leader = pool.allocate("alice", prompt)
    assert leader.seq_id == cached.seq_id  # the leader extends the cached slot
    sharer = Sharer(leader.seq_id, "alice", prompt)
    follower = pool.allocate("alice", prompt, sharers=[sharer], only_copy=True)
    assert follower.seq_id != leader.seq_id
    assert (follower.copy_from, follower.reused) == (leader.seq_id, len(prompt) - 1)


def test_another_choice_of_a_model_that_cannot_rewind_computes_its_prompt():
    pool = SlotPool(2, prefix_reuse=False)
    leader = pool.allocate("alice", [5, 6, 7])
    sharer = Sharer(leader.seq_id, "alice", [5, 6, 7])
    follower = pool.allocate("alice", [5, 6, 7], sharers=[sharer], only_copy=True)
    assert (follower.copy_from, follower.reused) == (None, 0)
