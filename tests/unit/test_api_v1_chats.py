"""``/api/v1`` chats and messages over the fake backend and a real SQLite file (auth off:
everything belongs to the local user)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_v1_harness import (
    REPLY,
    Harness,
    LiveStream,
    assert_error,
    cheap_password_hashing,
    done_event,
    sse_events,
    v1_app,
)

from ollm.db import create_engine, create_sessionmaker, crud, upgrade_database
from ollm.db.models import MessageRole, MessageStatus
from ollm.db.schemas import ChatCreate, MessageCreate, UserCreate

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with v1_app(tmp_path) as harness:
        yield harness


async def new_chat(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/chats", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


async def send(client: httpx.AsyncClient, chat_id: str, content: str) -> dict[str, Any]:
    """Send a message, read the whole stream, return its ``done`` event."""
    response = await client.post(f"/api/v1/chats/{chat_id}/messages", json={"content": content})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return done_event(response.text)


async def get_chat(client: httpx.AsyncClient, chat_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/chats/{chat_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def wait_until_idle(client: httpx.AsyncClient, chat_id: str) -> dict[str, Any]:
    for _ in range(500):
        chat = await get_chat(client, chat_id)
        if not chat["generating"]:
            return chat
        await asyncio.sleep(0.01)
    raise AssertionError("the reply never ended")


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


# -- chats ------------------------------------------------------------------------------


async def test_chat_crud_and_listing(h: Harness) -> None:
    first = await new_chat(h.client, title="First")
    second = await new_chat(h.client, title="Second", system_prompt="Be brief.")
    assert second["params"] == {
        k: None for k in second["params"]
    }  # every sampling param left to the model
    listing = (await h.client.get("/api/v1/chats")).json()
    assert [c["title"] for c in listing["items"]] == ["Second", "First"]  # newest first
    assert listing["total"] == 2

    changes = {"title": "Renamed", "pinned": True, "params": {"temperature": 0, "seed": 7}}
    updated = (await h.client.patch(f"/api/v1/chats/{first['id']}", json=changes)).json()
    assert updated["title"] == "Renamed" and updated["pinned"] is True
    assert updated["params"]["temperature"] == 0 and updated["params"]["seed"] == 7
    listing = (await h.client.get("/api/v1/chats")).json()
    assert listing["items"][0]["id"] == first["id"]  # pinned first

    await h.client.patch(f"/api/v1/chats/{second['id']}", json={"archived": True})
    assert [c["id"] for c in (await h.client.get("/api/v1/chats")).json()["items"]] == [first["id"]]
    archived = (await h.client.get("/api/v1/chats", params={"archived": "true"})).json()
    assert [c["id"] for c in archived["items"]] == [second["id"]]
    both = (await h.client.get("/api/v1/chats", params={"archived": "all", "limit": 1})).json()
    assert both["total"] == 2 and len(both["items"]) == 1 and both["limit"] == 1

    assert (await h.client.delete(f"/api/v1/chats/{first['id']}")).status_code == 204
    assert_error(await h.client.get(f"/api/v1/chats/{first['id']}"), 404, "chat_not_found")
    assert_error(await h.client.delete(f"/api/v1/chats/{first['id']}"), 404, "chat_not_found")


async def test_bad_input_is_a_400_naming_the_field(h: Harness) -> None:
    assert_error(await h.client.post("/api/v1/chats", json={"titel": "typo"}), 400)
    response = await h.client.post("/api/v1/chats", json={"params": {"temperature": -1}})
    assert_error(response, 400)
    assert response.json()["error"]["param"] == "params.temperature"
    assert_error(await h.client.get("/api/v1/chats", params={"limit": 0}), 400)
    chat = await new_chat(h.client)
    url = f"/api/v1/chats/{chat['id']}/messages"
    assert_error(await h.client.post(url, json={"content": ""}), 400)


async def test_search(h: Harness) -> None:
    chat = await new_chat(h.client, title="Groceries")
    await send(h.client, chat["id"], "remember the zucchini please")
    await new_chat(h.client, title="Other")
    found = (await h.client.get("/api/v1/chats", params={"q": "zucch"})).json()
    assert [c["id"] for c in found["items"]] == [chat["id"]]
    assert (await h.client.get("/api/v1/chats", params={"q": "groceries"})).json()["total"] == 1
    assert (await h.client.get("/api/v1/chats", params={"q": "nothing"})).json()["total"] == 0


# -- sending messages -------------------------------------------------------------------


async def test_send_streams_and_saves_both_turns(h: Harness) -> None:
    chat = await new_chat(h.client)
    response = await h.client.post(
        f"/api/v1/chats/{chat['id']}/messages", json={"content": "Hi there"}
    )
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    start, *deltas, done, _ = events
    assert start["type"] == "start" and start["chat_id"] == chat["id"]
    assert start["user_message"]["content"] == "Hi there"
    assert start["message"]["status"] == "streaming"
    assert all(d["type"] == "delta" for d in deltas)
    assert "".join(d["content"] for d in deltas) == REPLY
    assert done["finish_reason"] == "stop"
    assert done["message"]["content"] == REPLY and done["message"]["status"] == "complete"
    assert done["message"]["id"] == start["message"]["id"]
    usage = done["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] >= len(REPLY)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert done["timings"]["ttft_ms"] is not None and done["timings"]["tokens_per_second"] > 0
    assert done["dropped_turns"] == 0

    saved = await get_chat(h.client, chat["id"])
    assert saved["title"] == "Hi there"  # named after its first message
    assert saved["generating"] is False
    user, assistant = saved["messages"]
    assert (user["role"], user["content"], user["status"]) == ("user", "Hi there", "complete")
    assert assistant["parent_id"] == user["id"]
    assert assistant["content"] == REPLY and assistant["status"] == "complete"
    assert assistant["model"] == "fake:1"
    assert assistant["prompt_tokens"] == usage["prompt_tokens"]
    assert assistant["completion_tokens"] == usage["completion_tokens"]
    assert assistant["ttft_ms"] is not None and assistant["tokens_per_second"] > 0
    assert saved["active_leaf_id"] == assistant["id"]


async def test_later_turns_are_answered_with_the_earlier_ones(tmp_path: Path) -> None:
    async with v1_app(tmp_path, context=1024) as h:
        chat = await new_chat(h.client, system_prompt="You are terse.")
        first = await send(h.client, chat["id"], "My name is Zorblax.")
        second = await send(h.client, chat["id"], "What is my name?")
        prompt = h.backend.prompts[-1]
        assert second["dropped_turns"] == 0
        assert "You are terse." in prompt
        assert prompt.index("My name is Zorblax.") < prompt.index(REPLY) < prompt.index("my name?")
        # The second prompt holds the whole first exchange: the question and the reply.
        grown = second["usage"]["prompt_tokens"] - first["usage"]["prompt_tokens"]
        assert grown >= len("What is my name?") + len(REPLY)


async def test_reply_as_json_when_not_streamed(h: Harness) -> None:
    chat = await new_chat(h.client)
    url = f"/api/v1/chats/{chat['id']}/messages"
    result = (await h.client.post(url, json={"content": "hi", "stream": False})).json()
    assert result["user_message"]["content"] == "hi"
    assert result["message"]["content"] == REPLY
    assert result["finish_reason"] == "stop" and result["usage"]["completion_tokens"] > 0


async def test_chat_params_reach_the_engine(h: Harness) -> None:
    chat = await new_chat(h.client, params={"max_tokens": 5, "stop": ["zzz"]})
    done = await send(h.client, chat["id"], "hi")
    assert done["message"]["content"] == REPLY[:5]
    assert done["finish_reason"] == "length"
    assert done["message"]["status"] == "complete"


async def test_unknown_model_is_a_404_and_saves_nothing(h: Harness) -> None:
    chat = await new_chat(h.client, model="nope:1")
    response = await h.client.post(f"/api/v1/chats/{chat['id']}/messages", json={"content": "x"})
    assert_error(response, 404, "model_not_found")
    assert (await get_chat(h.client, chat["id"]))["messages"] == []


# -- fitting the context ----------------------------------------------------------------


async def test_oldest_turns_are_dropped_to_fit_and_reported(tmp_path: Path) -> None:
    # 256-token window, 128 kept for the reply: about three short exchanges fit.
    async with v1_app(tmp_path, reply=lambda _p: "ok") as h:
        chat = await new_chat(h.client, system_prompt="SYSTEM")
        questions = [f"question number {i} " + "x" * 20 for i in range(6)]
        dones = [await send(h.client, chat["id"], q) for q in questions]
        assert dones[0]["dropped_turns"] == 0
        last = dones[-1]
        assert last["dropped_turns"] > 0 and last["dropped_turns"] % 2 == 0  # whole exchanges
        assert last["usage"]["prompt_tokens"] <= 128
        prompt = h.backend.prompts[-1]
        assert prompt.startswith("<|system|>SYSTEM")  # the system prompt is kept
        assert questions[0] not in prompt and questions[-1] in prompt
        kept = last["dropped_turns"] // 2
        assert all(q in prompt for q in questions[kept:])  # nothing newer is missing
        # Everything stays saved: dropping is only about what the model sees.
        assert len((await get_chat(h.client, chat["id"]))["messages"]) == 12


async def test_a_message_too_long_for_the_window_is_a_400_and_saves_nothing(h: Harness) -> None:
    chat = await new_chat(h.client)
    await send(h.client, chat["id"], "short")
    response = await h.client.post(
        f"/api/v1/chats/{chat['id']}/messages", json={"content": "y" * 500}
    )
    assert_error(response, 400, "context_length_exceeded")
    assert len((await get_chat(h.client, chat["id"]))["messages"]) == 2


# -- branches ---------------------------------------------------------------------------


async def test_regenerate_and_edit_make_branches(tmp_path: Path) -> None:
    async with v1_app(tmp_path, numbered_replies=True) as h:
        chat = await new_chat(h.client)
        base = f"/api/v1/chats/{chat['id']}"
        await send(h.client, chat["id"], "question A")
        first = await get_chat(h.client, chat["id"])
        question, answer = first["messages"]

        done = done_event((await h.client.post(f"{base}/regenerate")).text)
        assert done["message"]["parent_id"] == question["id"]
        again = await get_chat(h.client, chat["id"])
        assert again["messages"][0]["id"] == question["id"]
        regenerated = again["messages"][1]
        assert regenerated["sibling_ids"] == [answer["id"], regenerated["id"]]
        assert (regenerated["sibling_index"], regenerated["sibling_count"]) == (1, 2)
        assert (answer["content"], regenerated["content"]) == ("reply number 1", "reply number 2")

        body = {"message_id": question["id"], "content": "question B"}
        done = done_event((await h.client.post(f"{base}/edit", json=body)).text)
        edited = await get_chat(h.client, chat["id"])
        new_question, new_answer = edited["messages"]
        assert new_question["content"] == "question B" and new_question["parent_id"] is None
        assert (new_question["sibling_index"], new_question["sibling_count"]) == (1, 2)
        assert new_answer["id"] == done["message"]["id"]
        assert h.backend.prompts[-1].count("question") == 1  # the old question is not seen

        # Back to the first version of the question: its newest reply is shown.
        response = await h.client.put(f"{base}/active-leaf", json={"message_id": question["id"]})
        shown = response.json()
        assert [m["id"] for m in shown["messages"]] == [question["id"], regenerated["id"]]
        response = await h.client.put(f"{base}/active-leaf", json={"message_id": answer["id"]})
        assert [m["id"] for m in response.json()["messages"]] == [question["id"], answer["id"]]

        # Regenerating a reply that is not the active leaf answers its own question.
        done = done_event(
            (await h.client.post(f"{base}/regenerate", json={"message_id": new_answer["id"]})).text
        )
        assert done["message"]["parent_id"] == new_question["id"]


async def test_branch_errors(h: Harness) -> None:
    chat = await new_chat(h.client)
    base = f"/api/v1/chats/{chat['id']}"
    assert_error(await h.client.post(f"{base}/regenerate"), 404, "message_not_found")
    await send(h.client, chat["id"], "hello")
    question, answer = (await get_chat(h.client, chat["id"]))["messages"]
    response = await h.client.post(
        f"{base}/edit", json={"message_id": answer["id"], "content": "x"}
    )
    assert_error(response, 400)
    response = await h.client.post(f"{base}/edit", json={"message_id": 999_999, "content": "x"})
    assert_error(response, 404, "message_not_found")
    response = await h.client.put(f"{base}/active-leaf", json={"message_id": 2**40})
    assert_error(response, 404, "message_not_found")
    # Regenerating a question (not a reply) adds a reply to it.
    done = done_event(
        (await h.client.post(f"{base}/regenerate", json={"message_id": question["id"]})).text
    )
    assert done["message"]["parent_id"] == question["id"]


# -- stopping, disconnecting, queueing --------------------------------------------------


def live(h: Harness, chat_id: str, content: str = "go") -> LiveStream:
    return LiveStream(h.app, f"/api/v1/chats/{chat_id}/messages", {"content": content})


async def test_stop_saves_the_partial_reply_as_interrupted(tmp_path: Path) -> None:
    # Room for the partial reply, however long it grew before the stop, plus a whole new one.
    async with v1_app(tmp_path, reply=lambda _p: "z" * 200, delay=0.02, context=1024) as h:
        chat = await new_chat(h.client)
        base = f"/api/v1/chats/{chat['id']}"
        async with live(h, chat["id"]) as stream:
            await stream.until("delta")
            conflict = await h.client.post(f"{base}/messages", json={"content": "again"})
            assert_error(conflict, 409, "reply_in_progress")
            assert (await get_chat(h.client, chat["id"]))["generating"] is True
            stopped = (await h.client.post(f"{base}/stop")).json()
            rest = await stream.rest()
        assert stopped["stopped"] is True
        message = stopped["message"]
        assert message["status"] == "interrupted"
        assert 0 < len(message["content"]) < 200 and set(message["content"]) == {"z"}
        assert rest[-1] == "[DONE]" and rest[-2]["finish_reason"] == "stopped"
        assert rest[-2]["message"]["content"] == message["content"]
        saved = await get_chat(h.client, chat["id"])
        assert saved["generating"] is False
        assert saved["messages"][-1]["status"] == "interrupted"
        assert saved["messages"][-1]["content"] == message["content"]
        assert (await h.client.post(f"{base}/stop")).json() == {"stopped": False, "message": None}
        await wait_for(lambda: _engine(h).stats.running == 0)  # the engine freed the sequence
        # The chat goes on from the interrupted reply.
        assert (await send(h.client, chat["id"], "more"))["finish_reason"] == "stop"


async def test_client_disconnect_saves_the_reply_as_interrupted(tmp_path: Path) -> None:
    async with v1_app(tmp_path, reply=lambda _p: "z" * 300, delay=0.02) as h:
        chat = await new_chat(h.client)
        async with live(h, chat["id"]) as stream:
            await stream.until("delta")
            await stream.until("delta")
        saved = await wait_until_idle(h.client, chat["id"])
        reply = saved["messages"][-1]
        assert reply["status"] == "interrupted"
        assert 0 < len(reply["content"]) < 300
        await wait_for(lambda: _engine(h).stats.running == 0)  # the engine freed the sequence


async def test_checkpoints_save_the_text_while_it_streams(tmp_path: Path) -> None:
    async with v1_app(
        tmp_path, reply=lambda _p: "z" * 400, delay=0.01, checkpoint_seconds=0.05
    ) as h:
        chat = await new_chat(h.client)
        async with live(h, chat["id"]) as stream:
            await stream.until("delta")
            for _ in range(200):
                reply = (await get_chat(h.client, chat["id"]))["messages"][-1]
                if reply["content"]:
                    break
                await asyncio.sleep(0.02)
            assert reply["status"] == "streaming" and set(reply["content"]) == {"z"}
            await h.client.post(f"/api/v1/chats/{chat['id']}/stop")


async def test_server_stop_saves_running_replies_as_interrupted(tmp_path: Path) -> None:
    async with v1_app(tmp_path, reply=lambda _p: "z" * 300, delay=0.02) as h:
        chat = await new_chat(h.client)
        async with live(h, chat["id"]) as stream:
            await stream.until("delta")
            await h.chats.close()  # what the lifespan does first on shutdown
            rest = await stream.rest()
        assert rest[-2]["finish_reason"] == "shutdown"
        assert rest[-2]["message"]["status"] == "interrupted"
        saved = await get_chat(h.client, chat["id"])
        assert saved["messages"][-1]["status"] == "interrupted"


async def test_queue_position_is_reported_while_waiting(tmp_path: Path) -> None:
    async with v1_app(tmp_path, reply=lambda _p: "z" * 100, delay=0.02, max_running=1) as h:
        first, second = await new_chat(h.client), await new_chat(h.client)
        async with live(h, first["id"]) as running:
            await running.until("delta")
            async with live(h, second["id"]) as waiting:
                queued = await waiting.until("queue")
                assert queued[-1]["position"] == 1
                rest = await waiting.rest()
            await running.rest()
        assert rest[-2]["type"] == "done" and rest[-2]["finish_reason"] == "stop"


async def test_a_full_queue_is_a_429_and_leaves_no_turn_behind(tmp_path: Path) -> None:
    async with v1_app(
        tmp_path, reply=lambda _p: "z" * 100, delay=0.02, max_running=1, max_waiting=0
    ) as h:
        busy, other = await new_chat(h.client), await new_chat(h.client, title="Other")
        async with live(h, busy["id"]) as stream:
            await stream.until("delta")
            response = await h.client.post(
                f"/api/v1/chats/{other['id']}/messages", json={"content": "hello"}
            )
            assert_error(response, 429, "queue_full")
            assert response.headers["retry-after"]
            await h.client.post(f"/api/v1/chats/{busy['id']}/stop")
        untouched = await get_chat(h.client, other["id"])
        assert untouched["messages"] == [] and untouched["title"] == "Other"
        assert untouched["active_leaf_id"] is None
        # Nothing is left claimed: the chat takes a message now.
        assert (await send(h.client, other["id"], "hello"))["finish_reason"] == "stop"


async def test_delete_stops_a_running_reply(tmp_path: Path) -> None:
    async with v1_app(tmp_path, reply=lambda _p: "z" * 300, delay=0.02) as h:
        chat = await new_chat(h.client)
        async with live(h, chat["id"]) as stream:
            await stream.until("delta")
            assert (await h.client.delete(f"/api/v1/chats/{chat['id']}")).status_code == 204
            rest = await stream.rest()
        assert rest[-2]["finish_reason"] == "stopped"
        assert_error(await h.client.get(f"/api/v1/chats/{chat['id']}"), 404)


# -- start-up sweep ---------------------------------------------------------------------


async def test_replies_left_streaming_are_marked_interrupted_at_start(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ollm.db'}"
    await upgrade_database(url)
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            user = await crud.create_user(
                session=session, user_in=UserCreate(username="local", password="crash-test-pw-1")
            )
            chat = await crud.create_chat(
                session=session, owner_id=user.id, chat_in=ChatCreate(title="crashed")
            )
            question = await crud.add_message(
                session=session,
                owner_id=user.id,
                chat_id=chat.id,
                message_in=MessageCreate(role=MessageRole.USER, content="q"),
            )
            assert question is not None
            await crud.add_message(
                session=session,
                owner_id=user.id,
                chat_id=chat.id,
                message_in=MessageCreate(
                    role=MessageRole.ASSISTANT,
                    content="half an ans",
                    parent_id=question.id,
                    status=MessageStatus.STREAMING,
                ),
            )
            chat_id = chat.id
    finally:
        await engine.dispose()
    async with v1_app(tmp_path) as h:
        saved = await get_chat(h.client, chat_id)
        assert [(m["content"], m["status"]) for m in saved["messages"]] == [
            ("q", "complete"),
            ("half an ans", "interrupted"),
        ]
        # The interrupted reply can be answered again.
        done = done_event((await h.client.post(f"/api/v1/chats/{chat_id}/regenerate")).text)
        assert done["message"]["content"] == REPLY


# -- failures ---------------------------------------------------------------------------


async def test_an_engine_failure_mid_reply_is_saved_as_an_error(tmp_path: Path) -> None:
    async with v1_app(tmp_path, fail_on_call=6) as h:
        chat = await new_chat(h.client)
        response = await h.client.post(
            f"/api/v1/chats/{chat['id']}/messages", json={"content": "hi"}
        )
        done = done_event(response.text)
        assert done["finish_reason"] == "error"
        assert done["error"]["code"] == "engine_error"
        assert done["message"]["status"] == "error"
        saved = (await get_chat(h.client, chat["id"]))["messages"]
        assert [(m["role"], m["status"]) for m in saved] == [
            ("user", "complete"),
            ("assistant", "error"),
        ]
        assert REPLY.startswith(saved[1]["content"])  # the text before the failure is kept


async def test_a_client_gone_before_the_first_event_still_stops_the_reply(
    tmp_path: Path,
) -> None:
    async with v1_app(tmp_path, reply=lambda _p: "z" * 300, delay=0.02) as h:
        chat = await new_chat(h.client)
        url = f"/api/v1/chats/{chat['id']}/messages"
        stream = LiveStream(h.app, url, {"content": "go"}, start_delay=0.2)
        async with stream:
            stream.disconnect()  # gone while the response head is being sent
            assert await stream.rest() == []
        saved = await wait_until_idle(h.client, chat["id"])
        reply = saved["messages"][-1]
        assert reply["status"] == "interrupted" and len(reply["content"]) < 300


def _engine(h):
    """The fake model's engine (one model is loaded in these tests)."""
    return h.app.state.models.loaded_models()[0].engine
