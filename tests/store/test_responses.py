"""Stored Responses API responses: create, owner-scoped reads and deletes, the
previous_response_id chain, and the cascade when an account goes."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from ollm.db.crud import responses as crud
from ollm.db.models import StoredResponse, User
from ollm.services.responses.service import ResponseNotFoundError, ResponseService

pytestmark = pytest.mark.anyio

MESSAGE = {"id": "msg_1", "type": "message", "role": "user", "content": [], "status": "completed"}


async def store(session, owner, response_id, previous=None, text="hi"):
    item = {**MESSAGE, "content": [{"type": "input_text", "text": text}]}
    row = await crud.create_response(
        session=session,
        owner_id=owner.id,
        response_id=response_id,
        model="fake:1",
        input_items=[item],
        body={"id": response_id, "output": [{"type": "message", "text": text.upper()}]},
        previous_response_id=previous,
    )
    await session.commit()
    return row


async def test_create_and_get_round_trips_the_json(session, alice):
    await store(session, alice, "resp_a", text="héllo ✓")
    row = await crud.get_response(session=session, owner_id=alice.id, response_id="resp_a")
    assert row is not None
    assert row.model == "fake:1" and row.previous_response_id is None
    assert row.input_items[0]["content"] == [{"type": "input_text", "text": "héllo ✓"}]
    assert row.body["output"][0]["text"] == "HÉLLO ✓"
    assert row.created_at.tzinfo is not None


async def test_another_owner_sees_nothing(session, alice, bob):
    await store(session, alice, "resp_a")
    assert await crud.get_response(session=session, owner_id=bob.id, response_id="resp_a") is None
    assert await crud.response_chain(session=session, owner_id=bob.id, response_id="resp_a") is None
    assert not await crud.delete_response(session=session, owner_id=bob.id, response_id="resp_a")
    await session.commit()
    assert await crud.get_response(session=session, owner_id=alice.id, response_id="resp_a")


async def test_chain_is_oldest_first_and_stops_at_a_gap(session, alice, bob):
    await store(session, alice, "resp_1")
    await store(session, alice, "resp_2", previous="resp_1")
    await store(session, alice, "resp_3", previous="resp_2")
    chain = await crud.response_chain(session=session, owner_id=alice.id, response_id="resp_3")
    assert [row.id for row in chain] == ["resp_1", "resp_2", "resp_3"]
    assert await crud.delete_response(session=session, owner_id=alice.id, response_id="resp_2")
    await session.commit()
    chain = await crud.response_chain(session=session, owner_id=alice.id, response_id="resp_3")
    assert [row.id for row in chain] == ["resp_3"]
    # A link to someone else's response is not followed.
    await store(session, bob, "resp_b", previous="resp_1")
    chain = await crud.response_chain(session=session, owner_id=bob.id, response_id="resp_b")
    assert [row.id for row in chain] == ["resp_b"]


async def test_deleting_an_account_deletes_its_responses(session, alice, bob):
    await store(session, alice, "resp_a")
    await store(session, bob, "resp_b")
    await session.execute(delete(User).where(User.id == alice.id))
    await session.commit()
    remaining = await session.scalars(select(StoredResponse.id))
    assert list(remaining) == ["resp_b"]


async def test_service_saves_chains_and_deletes(sessionmaker, alice, bob):
    service = ResponseService(sessionmaker)
    await service.save(
        owner_id=alice.id,
        response_id="resp_1",
        model="fake:1",
        input_items=[MESSAGE],
        body={"id": "resp_1", "output": [{"type": "message"}]},
    )
    await service.save(
        owner_id=alice.id,
        response_id="resp_2",
        model="fake:1",
        input_items=[MESSAGE],
        body={"id": "resp_2", "output": []},
        previous_response_id="resp_1",
    )
    history = await service.history(owner_id=alice.id, response_id="resp_2")
    assert [saved.id for saved in history] == ["resp_1", "resp_2"]
    assert history[0].output_items == [{"type": "message"}]
    assert (await service.get(owner_id=alice.id, response_id="resp_1")).input_items == [MESSAGE]
    for call in (service.get, service.history, service.delete):
        with pytest.raises(ResponseNotFoundError):
            await call(owner_id=bob.id, response_id="resp_1")
    await service.delete(owner_id=alice.id, response_id="resp_1")
    with pytest.raises(ResponseNotFoundError):
        await service.get(owner_id=alice.id, response_id="resp_1")
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(StoredResponse)) == 1
