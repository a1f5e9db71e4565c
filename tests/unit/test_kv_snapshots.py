"""KV snapshots on disk: the file format, the store, and the engine saving and restoring
them, over the fake backend (whose KV is the token list itself, so a wrong restore shows
up as a position mismatch in its decode)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from ollm.backends.fake import FakeBackend, encode_bytes
from ollm.engine import snapshot_file
from ollm.engine.kv_cache import PrefixCache
from ollm.engine.loop import EngineLoop
from ollm.engine.messages import AddRequest, ForgetConversation
from ollm.engine.outputs import RequestOutput
from ollm.engine.request import Request
from ollm.engine.scheduler import Scheduler
from ollm.engine.snapshot_file import SnapshotFormatError, SnapshotHeader
from ollm.engine.snapshot_store import SnapshotStore, owner_key
from ollm.sampling import SamplingParams

RUNTIME = "fake-runtime 1"
HISTORY = "A long conversation about the weather in many words. " * 4  # ~200 tokens


def _header(tokens=(1, 2, 3), payload=b"state") -> SnapshotHeader:
    return SnapshotHeader(
        model="m1",
        runtime=RUNTIME,
        owner=owner_key("alice"),
        tag="chat",
        tokens=tuple(tokens),
        payload_bytes=len(payload),
    )


def test_a_snapshot_round_trips_and_any_flipped_byte_is_refused():
    data = snapshot_file.encode(_header(), b"state")
    header, payload = snapshot_file.decode(data)
    assert header == _header() and payload == b"state"
    for position in (0, 12, len(data) // 2, len(data) - 1):
        broken = bytearray(data)
        broken[position] ^= 0x01
        with pytest.raises(SnapshotFormatError):
            snapshot_file.decode(bytes(broken))
    with pytest.raises(SnapshotFormatError):
        snapshot_file.decode(data[:-5])


def test_the_store_never_writes_the_raw_owner(tmp_path: Path):
    store = SnapshotStore(tmp_path, budget_bytes=1 << 20, runtime=RUNTIME)
    store.save(model="m1", owner="key:secret-token", tag=None, tokens=[1, 2], payload=b"x")
    (path,) = tmp_path.glob("*.kv")
    assert b"secret-token" not in path.read_bytes()


def test_find_takes_the_owners_longest_match_and_never_another_owners(tmp_path: Path):
    store = SnapshotStore(tmp_path, budget_bytes=1 << 20, runtime=RUNTIME)
    store.save(model="m1", owner="alice", tag="a", tokens=[1, 2, 3, 4], payload=b"a4")
    store.save(model="m1", owner="alice", tag="b", tokens=[1, 2, 9], payload=b"b3")
    prompt = [1, 2, 3, 4, 5]
    assert store.find("m1", "alice", prompt, better_than=0).header.tag == "a"
    assert store.find("m1", "alice", prompt, better_than=4) is None
    assert store.find("m1", "bob", prompt, better_than=0) is None
    assert store.find("m2", "alice", prompt, better_than=0) is None


def test_a_longer_snapshot_supersedes_the_prefixes_it_extends(tmp_path: Path):
    store = SnapshotStore(tmp_path, budget_bytes=1 << 20, runtime=RUNTIME)
    store.save(model="m1", owner="alice", tag="a", tokens=[1, 2], payload=b"short")
    store.save(model="m1", owner="alice", tag="a", tokens=[1, 2, 3], payload=b"longer")
    assert len(store) == 1 and len(list(tmp_path.glob("*.kv"))) == 1


def test_the_disk_budget_evicts_least_recently_used_first(tmp_path: Path):
    one = len(snapshot_file.encode(_header(tokens=(1,), payload=b"x" * 1000), b"x" * 1000))
    store = SnapshotStore(tmp_path, budget_bytes=2 * one + 10, runtime=RUNTIME)
    store.save(model="m1", owner="alice", tag="a", tokens=[1], payload=b"x" * 1000)
    store.save(model="m1", owner="alice", tag="b", tokens=[2], payload=b"x" * 1000)
    first = store.find("m1", "alice", [1, 5], better_than=0)
    assert store.load(first, "m1", "alice") is not None  # "a" is now the most recent
    store.save(model="m1", owner="alice", tag="c", tokens=[3], payload=b"x" * 1000)
    tags = {store.find("m1", "alice", [t, 5], better_than=0) is not None for t in (1, 2, 3)}
    assert tags == {True, False}
    assert store.find("m1", "alice", [2, 5], better_than=0) is None  # "b" went
    assert store.total_bytes <= store.budget_bytes


def test_snapshots_of_another_runtime_are_discarded_with_a_log_line(tmp_path: Path, caplog):
    old = SnapshotStore(tmp_path, budget_bytes=1 << 20, runtime="llama-cpp-python 0.0.1")
    old.save(model="m1", owner="alice", tag="a", tokens=[1, 2, 3], payload=b"s")
    with caplog.at_level(logging.WARNING, logger="ollm.engine.snapshot_store"):
        store = SnapshotStore(tmp_path, budget_bytes=1 << 20, runtime=RUNTIME)
    assert len(store) == 0 and not list(tmp_path.glob("*.kv"))
    assert "discarding KV snapshot" in caplog.text and "0.0.1" in caplog.text


def test_delete_tag_removes_a_chats_snapshots_only(tmp_path: Path):
    store = SnapshotStore(tmp_path, budget_bytes=1 << 20, runtime=RUNTIME)
    store.save(model="m1", owner="alice", tag="gone", tokens=[1, 2], payload=b"s")
    store.save(model="m1", owner="alice", tag="kept", tokens=[3, 4], payload=b"s")
    assert store.delete_tag("gone") == 1
    assert len(store) == 1 and len(list(tmp_path.glob("*.kv"))) == 1


# -- the engine ------------------------------------------------------------------------


class SnapshotHarness:
    """An engine loop over a one-slot fake backend with a snapshot store."""

    def __init__(self, directory: Path, *, slots: int = 1) -> None:
        backend = FakeBackend(num_sequences=slots, context_per_sequence=1024)
        backend.facts = replace(backend.facts, fingerprint="fake-model")
        self.backend = backend
        self.store = SnapshotStore(directory, budget_bytes=64 << 20, runtime=RUNTIME)
        self.cache = PrefixCache(backend, self.store)
        scheduler = Scheduler(num_slots=slots, context_per_sequence=1024)
        self.finals: dict[str, RequestOutput] = {}
        self.loop = EngineLoop(backend, scheduler, self._collect, cache=self.cache)
        self._count = 0

    def _collect(self, outputs: list[RequestOutput]) -> None:
        for output in outputs:
            if output.finished:
                self.finals[output.request_id] = output

    def ask(self, text: str, *, user: str = "alice", tag: str | None = "chat") -> RequestOutput:
        self._count += 1
        rid = f"r{self._count}"
        request = Request(rid, encode_bytes(text), SamplingParams(), user=user, cache_tag=tag)
        self.loop.inbox.put(AddRequest(request))
        for _ in range(2000):
            self.loop.run_once()
            if rid in self.finals:
                self.cache.flush()  # snapshot writes run on a writer thread
                self.loop._update_stats()
                return self.finals[rid]
        raise AssertionError("request did not finish")

    def stop(self) -> None:
        self.loop._abort_all()
        self.loop._save_cache()


def test_an_evicted_conversation_is_saved_and_restored_from_disk(tmp_path: Path):
    h = SnapshotHarness(tmp_path)
    turn1 = h.ask(HISTORY)
    assert turn1.num_cached_tokens == 0
    h.ask("something else entirely, from bob", user="bob", tag="bobs")  # evicts alice's slot
    assert h.loop.stats.snapshot_saves == 1
    turn2 = h.ask(HISTORY + "Hello from the fake model. And now?")
    # restored from disk: the whole history, checked token by token by the fake's decode
    assert turn2.num_cached_tokens >= len(encode_bytes(HISTORY))
    assert h.loop.stats.snapshot_loads == 1
    assert h.loop.stats.snapshot_tokens_loaded == turn2.num_cached_tokens


def test_saving_does_not_wait_for_the_disk(tmp_path: Path):
    """The state is read on the engine thread; hashing and writing happen on the writer."""
    h = SnapshotHarness(tmp_path)
    h.ask(HISTORY)
    writer_threads = []
    real_save = h.store.save

    def recording_save(**kwargs):
        writer_threads.append(threading.current_thread().name)
        return real_save(**kwargs)

    h.store.save = recording_save
    h.ask("something else entirely, from bob", user="bob", tag="bobs")
    assert writer_threads and all(name.startswith("ollm-kv-writer") for name in writer_threads)
    assert h.loop.stats.snapshot_saves == 1


def test_two_owners_with_identical_prompts_never_hit_each_others_snapshots(tmp_path: Path):
    h = SnapshotHarness(tmp_path)
    h.ask(HISTORY, user="alice")
    h.ask("filler", user="carol", tag="c")  # evicts (and saves) alice's prefix
    bob = h.ask(HISTORY + " more", user="bob", tag="b")
    assert bob.num_cached_tokens == 0 and h.loop.stats.snapshot_loads == 0


def test_stopping_saves_every_cached_prefix_and_a_new_engine_restores_it(tmp_path: Path):
    first = SnapshotHarness(tmp_path)
    first.ask(HISTORY)
    first.stop()
    assert first.loop.stats.snapshot_saves == 1
    second = SnapshotHarness(tmp_path)  # a restart: a new store indexes the directory
    again = second.ask(HISTORY + "Hello from the fake model. Go on.")
    assert again.num_cached_tokens >= len(encode_bytes(HISTORY))
    assert second.loop.stats.snapshot_loads == 1


def test_a_corrupted_snapshot_is_discarded_with_a_log_line_and_the_request_succeeds(
    tmp_path: Path, caplog
):
    first = SnapshotHarness(tmp_path)
    first.ask(HISTORY)
    first.stop()
    (path,) = tmp_path.glob("*.kv")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    second = SnapshotHarness(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ollm.engine.snapshot_store"):
        again = second.ask(HISTORY + "Hello from the fake model. Go on.")
    assert again.finish_reason == "stop" and again.num_cached_tokens == 0
    assert "discarding KV snapshot" in caplog.text and "checksum" in caplog.text
    assert not path.exists()


def test_a_state_the_backend_refuses_is_discarded_and_recomputed(tmp_path: Path, caplog):
    first = SnapshotHarness(tmp_path)
    first.ask(HISTORY)
    first.stop()
    second = SnapshotHarness(tmp_path)
    second.backend.context_per_sequence = 10  # the fake refuses states longer than this
    with caplog.at_level(logging.WARNING, logger="ollm.engine.snapshot_store"):
        again = second.ask(HISTORY + "Hello from the fake model. Go on.")
    assert again.finish_reason == "stop" and again.num_cached_tokens == 0
    assert "refused" in caplog.text and not list(tmp_path.glob("*.kv"))


def test_forgetting_a_conversation_deletes_its_snapshots_and_cached_prefix(tmp_path: Path):
    h = SnapshotHarness(tmp_path, slots=2)
    h.ask(HISTORY, tag="doomed")
    h.stop()
    assert list(tmp_path.glob("*.kv"))
    h.loop.inbox.put(ForgetConversation("doomed"))
    h.loop.run_once()
    h.cache.flush()  # deletes go through the writer thread, after any queued write
    assert not list(tmp_path.glob("*.kv"))
    assert h.ask(HISTORY + " again", tag="doomed").num_cached_tokens == 0


def test_a_request_that_cannot_start_queues_no_copy_into_its_slot(tmp_path: Path):
    """Copies land at the next forward pass; a request failing first must not leave one."""
    h = SnapshotHarness(tmp_path, slots=2)
    h.ask(HISTORY + " chat A", tag="a")
    h.backend.sampler_error = RuntimeError("grammar refused")
    failed = h.ask(HISTORY + " chat B", tag="b")
    assert failed.finish_reason == "error" and h.backend.copies == []
    h.backend.sampler_error = None
    shared = h.ask(HISTORY + " chat B", tag="b")
    assert h.backend.copies and shared.num_cached_tokens >= len(encode_bytes(HISTORY))
