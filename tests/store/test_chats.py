"""Chats and their message trees: ordering, updates, branches, cascades, isolation."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from ollm.db import Database, crud
from ollm.db.models import Message, MessageRole, MessageStatus
from ollm.db.schemas import (
    ChatCreate,
    ChatParams,
    ChatPublic,
    ChatUpdate,
    MessageCreate,
    MessageUpdate,
)

pytestmark = pytest.mark.anyio

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT


async def new_chat(session, owner, title="New chat", **fields):
    chat = await crud.create_chat(
        session=session, owner_id=owner.id, chat_in=ChatCreate(title=title, **fields)
    )
    await session.commit()
    return chat


async def say(session, owner, chat, role, content, parent=None, **fields):
    message = await crud.add_message(
        session=session,
        owner_id=owner.id,
        chat_id=chat.id,
        message_in=MessageCreate(
            role=role, content=content, parent_id=parent.id if parent else None, **fields
        ),
    )
    await session.commit()
    assert message is not None
    return message


async def test_create_get_and_public_schema(session, alice):
    chat = await new_chat(
        session,
        alice,
        "Trip",
        model="smollm2:135m",
        system_prompt="Be brief.",
        params=ChatParams(temperature=0.2, seed=7),
    )
    fetched = await crud.get_chat(session=session, owner_id=alice.id, chat_id=chat.id)
    public = ChatPublic.model_validate(fetched)
    assert public.title == "Trip" and public.system_prompt == "Be brief."
    assert public.params == ChatParams(temperature=0.2, seed=7)
    assert public.active_leaf_id is None and not public.pinned and not public.archived
    assert "owner_id" not in public.model_dump()
    assert await crud.get_chat(session=session, owner_id=alice.id, chat_id="no-such") is None


async def test_list_is_pinned_first_then_newest_and_paginates(session, alice):
    old, middle, new = [await new_chat(session, alice, t) for t in ("old", "middle", "new")]
    await say(session, alice, old, USER, "bumps old to the top")
    await crud.update_chat(
        session=session, owner_id=alice.id, chat_id=middle.id, chat_in=ChatUpdate(pinned=True)
    )
    await session.commit()

    titles = [c.title for c in await crud.list_chats(session=session, owner_id=alice.id)]
    assert titles == ["middle", "old", "new"]
    page = await crud.list_chats(session=session, owner_id=alice.id, offset=1, limit=1)
    assert [c.title for c in page] == ["old"]
    assert await crud.count_chats(session=session, owner_id=alice.id) == 3

    await crud.update_chat(
        session=session, owner_id=alice.id, chat_id=new.id, chat_in=ChatUpdate(archived=True)
    )
    await session.commit()
    listed = await crud.list_chats(session=session, owner_id=alice.id)
    assert [c.title for c in listed] == ["middle", "old"]
    archived = await crud.list_chats(session=session, owner_id=alice.id, archived=True)
    assert [c.title for c in archived] == ["new"]
    assert len(await crud.list_chats(session=session, owner_id=alice.id, archived=None)) == 3
    assert await crud.count_chats(session=session, owner_id=alice.id, archived=True) == 1


async def test_update_changes_only_what_was_sent(session, alice):
    chat = await new_chat(session, alice, "Before", model="a", system_prompt="keep me")
    before = chat.updated_at
    updated = await crud.update_chat(
        session=session,
        owner_id=alice.id,
        chat_id=chat.id,
        chat_in=ChatUpdate(title="After", params=ChatParams(top_k=20)),
    )
    await session.commit()
    assert updated.title == "After" and updated.model == "a"
    assert updated.system_prompt == "keep me" and updated.params == {"top_k": 20}
    assert updated.updated_at >= before
    cleared = await crud.update_chat(
        session=session,
        owner_id=alice.id,
        chat_id=chat.id,
        chat_in=ChatUpdate(system_prompt=None, model="b"),
    )
    assert cleared.system_prompt is None and cleared.model == "b"


async def test_branches_and_the_active_path(session, alice):
    chat = await new_chat(session, alice)
    q1 = await say(session, alice, chat, USER, "question one")
    a1 = await say(session, alice, chat, ASSISTANT, "answer one", q1)
    q2 = await say(session, alice, chat, USER, "question two", a1)
    a2 = await say(session, alice, chat, ASSISTANT, "answer two", q2)
    # Regenerate the last reply, then edit the first question: both are new siblings.
    a2b = await say(session, alice, chat, ASSISTANT, "answer two, again", q2)
    q1b = await say(session, alice, chat, USER, "question one, edited")
    a1b = await say(session, alice, chat, ASSISTANT, "answer to the edit", q1b)

    path = await crud.get_path(session=session, owner_id=alice.id, chat_id=chat.id)
    assert [m.id for m in path] == [q1b.id, a1b.id]
    older = await crud.get_path(session=session, owner_id=alice.id, chat_id=chat.id, leaf_id=a2b.id)
    assert [m.content for m in older] == [
        "question one",
        "answer one",
        "question two",
        "answer two, again",
    ]
    roots = await crud.get_children(
        session=session, owner_id=alice.id, chat_id=chat.id, parent_id=None
    )
    assert [m.id for m in roots] == [q1.id, q1b.id]
    replies = await crud.get_children(
        session=session, owner_id=alice.id, chat_id=chat.id, parent_id=q2.id
    )
    assert [m.id for m in replies] == [a2.id, a2b.id]

    # Going back to the first question shows its newest branch: the regenerated reply.
    chat = await crud.select_branch(
        session=session, owner_id=alice.id, chat_id=chat.id, message_id=q1.id
    )
    await session.commit()
    assert chat.active_leaf_id == a2b.id
    branch = await crud.get_active_branch(session=session, owner_id=alice.id, chat_id=chat.id)
    assert [m.id for m in branch] == [q1.id, a1.id, q2.id, a2b.id]
    assert [(m.sibling_index, len(m.sibling_ids)) for m in branch] == [
        (0, 2),
        (0, 1),
        (0, 1),
        (1, 2),
    ]
    assert branch[0].sibling_ids == [q1.id, q1b.id]


async def test_a_bulk_tree_write_links_every_branch_and_shares_ids_safely(session, alice):
    chat = await new_chat(session, alice, title="imported")
    before = await say(session, alice, await new_chat(session, alice), USER, "elsewhere")
    # q1 -> a1 -> q2 -> (a2, a2b), and a second root q1b; the list is in tree order.
    nodes = [
        (MessageCreate(role=USER, content="q1"), None, None),
        (MessageCreate(role=ASSISTANT, content="a1"), 0, None),
        (MessageCreate(role=USER, content="q2"), 1, None),
        (MessageCreate(role=ASSISTANT, content="a2"), 2, None),
        (MessageCreate(role=ASSISTANT, content="a2b"), 2, None),
        (MessageCreate(role=USER, content="q1b"), None, None),
    ]
    ids = await crud.add_message_tree(session=session, chat=chat, messages=nodes)
    await session.commit()
    assert len(set(ids)) == 6 and ids == sorted(ids) and ids[0] > before.id
    path = await crud.get_path(session=session, owner_id=alice.id, chat_id=chat.id, leaf_id=ids[4])
    assert [m.content for m in path] == ["q1", "a1", "q2", "a2b"]
    roots = await crud.get_children(
        session=session, owner_id=alice.id, chat_id=chat.id, parent_id=None
    )
    assert [m.content for m in roots] == ["q1", "q1b"]
    # The id sequence moved past the reserved ids: the next message gets a fresh one.
    after = await say(session, alice, chat, USER, "after", path[-1])
    assert after.id > max(ids)
    hits = await crud.list_chats(session=session, owner_id=alice.id, q="a2b")
    assert [c.id for c in hits] == [chat.id]  # the search index saw the bulk rows


async def test_a_parent_must_belong_to_the_same_chat(session, alice):
    first, second = await new_chat(session, alice), await new_chat(session, alice)
    message = await say(session, alice, first, USER, "hello")
    stray = await crud.add_message(
        session=session,
        owner_id=alice.id,
        chat_id=second.id,
        message_in=MessageCreate(role=USER, content="x", parent_id=message.id),
    )
    assert stray is None


async def test_a_long_conversation_path(session, alice):
    chat = await new_chat(session, alice)
    parent = None
    for turn in range(120):
        parent = await crud.add_message(
            session=session,
            owner_id=alice.id,
            chat_id=chat.id,
            message_in=MessageCreate(
                role=USER if turn % 2 == 0 else ASSISTANT,
                content=f"turn {turn}",
                parent_id=parent.id if parent else None,
            ),
        )
    await session.commit()
    path = await crud.get_path(session=session, owner_id=alice.id, chat_id=chat.id)
    assert [m.content for m in path] == [f"turn {t}" for t in range(120)]


async def test_finishing_a_streamed_reply_and_crash_recovery(session, alice):
    chat = await new_chat(session, alice)
    question = await say(session, alice, chat, USER, "tell me")
    reply = await say(session, alice, chat, ASSISTANT, "", question, status=MessageStatus.STREAMING)
    finished = await crud.update_message(
        session=session,
        owner_id=alice.id,
        chat_id=chat.id,
        message_id=reply.id,
        message_in=MessageUpdate(
            content="done",
            status=MessageStatus.COMPLETE,
            prompt_tokens=12,
            completion_tokens=3,
            ttft_ms=40.5,
            tokens_per_second=88.0,
        ),
    )
    await session.commit()
    assert finished.content == "done" and finished.completion_tokens == 3
    assert finished.status is MessageStatus.COMPLETE

    # A reply that was still streaming when the process died is kept, marked interrupted.
    cut = await say(session, alice, chat, ASSISTANT, "half a", question, status="streaming")
    assert await crud.interrupt_streaming(session=session) == 1
    await session.commit()
    await session.refresh(cut)
    assert cut.status is MessageStatus.INTERRUPTED and cut.content == "half a"


async def test_delete_cascades_to_messages(session, alice):
    chat = await new_chat(session, alice)
    question = await say(session, alice, chat, USER, "q")
    await say(session, alice, chat, ASSISTANT, "a", question)
    keep = await new_chat(session, alice)
    await say(session, alice, keep, USER, "stays")
    assert await crud.delete_chat(session=session, owner_id=alice.id, chat_id=chat.id)
    await session.commit()
    count = await session.scalar(select(func.count()).select_from(Message))
    assert count == 1
    assert await crud.get_chat(session=session, owner_id=alice.id, chat_id=chat.id) is None
    assert not await crud.delete_chat(session=session, owner_id=alice.id, chat_id=chat.id)


async def test_another_owner_sees_nothing_and_changes_nothing(session, alice, bob):
    chat = await new_chat(session, alice, "Alice's secret plans")
    question = await say(session, alice, chat, USER, "secret question")
    answer = await say(session, alice, chat, ASSISTANT, "secret answer", question)
    ids = {"session": session, "owner_id": bob.id, "chat_id": chat.id}

    assert await crud.get_chat(**ids) is None
    assert await crud.list_chats(session=session, owner_id=bob.id) == []
    assert await crud.count_chats(session=session, owner_id=bob.id) == 0
    assert await crud.update_chat(**ids, chat_in=ChatUpdate(title="mine")) is None
    assert not await crud.delete_chat(**ids)
    assert await crud.add_message(**ids, message_in=MessageCreate(role=USER)) is None
    assert (
        await crud.add_message(**ids, message_in=MessageCreate(role=USER, parent_id=answer.id))
        is None
    )
    assert await crud.get_message(**ids, message_id=answer.id) is None
    assert (
        await crud.update_message(
            **ids, message_id=answer.id, message_in=MessageUpdate(content="x")
        )
        is None
    )
    assert await crud.get_children(**ids, parent_id=None) == []
    assert await crud.get_children(**ids, parent_id=question.id) == []
    assert await crud.get_path(**ids) == []
    assert await crud.get_path(**ids, leaf_id=answer.id) == []
    assert await crud.get_active_branch(**ids) == []
    assert await crud.select_branch(**ids, message_id=question.id) is None
    # Bob's own chat cannot adopt Alice's messages as parents either.
    own = await new_chat(session, bob)
    borrowed = await crud.add_message(
        session=session,
        owner_id=bob.id,
        chat_id=own.id,
        message_in=MessageCreate(role=USER, parent_id=answer.id),
    )
    assert borrowed is None
    await session.commit()

    # And Alice's chat is exactly as she left it.
    mine = await crud.get_chat(session=session, owner_id=alice.id, chat_id=chat.id)
    assert mine.title == "Alice's secret plans" and mine.active_leaf_id == answer.id
    path = await crud.get_path(session=session, owner_id=alice.id, chat_id=chat.id)
    assert [m.content for m in path] == ["secret question", "secret answer"]


async def test_ids_out_of_range_are_simply_not_found(session, alice):
    chat = await new_chat(session, alice)
    huge = 2**40
    ids = {"session": session, "owner_id": alice.id, "chat_id": chat.id}
    assert await crud.get_message(**ids, message_id=huge) is None
    assert await crud.get_message(**ids, message_id=-1) is None
    assert await crud.get_path(**ids, leaf_id=huge) == []
    assert await crud.get_children(**ids, parent_id=huge) == []
    assert (
        await crud.add_message(**ids, message_in=MessageCreate(role=USER, parent_id=huge)) is None
    )
    assert await crud.get_user(session=session, user_id=huge) is None
    assert await crud.revoke_api_key(session=session, user_id=alice.id, key_id=huge) is None
    assert await crud.list_chats(session=session, owner_id=alice.id, offset=-5, limit=-1) == []


async def test_concurrent_writers_all_succeed(database_url, alice):
    """Many requests saving turns at once (SQLite: WAL + busy timeout) lose nothing."""
    database = await Database.open(database_url)
    try:
        async with database.transaction() as session:
            chats = [
                await crud.create_chat(session=session, owner_id=alice.id, chat_in=ChatCreate())
                for _ in range(4)
            ]

        async def conversation(chat_id: str, turns: int) -> None:
            parent_id = None
            for turn in range(turns):
                async with database.transaction() as session:
                    message = await crud.add_message(
                        session=session,
                        owner_id=alice.id,
                        chat_id=chat_id,
                        message_in=MessageCreate(
                            role=USER, content=f"turn {turn}", parent_id=parent_id
                        ),
                    )
                    parent_id = message.id

        await asyncio.gather(*(conversation(c.id, 15) for c in chats for _ in range(2)))
        async with database.transaction() as session:
            total = await session.scalar(select(func.count()).select_from(Message))
        assert total == 4 * 2 * 15
    finally:
        await database.close()
