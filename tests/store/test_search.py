"""Full-text search over titles and message text, scoped to the owner."""

from __future__ import annotations

import pytest

from ollm.db import crud
from ollm.db.models import MessageRole
from ollm.db.schemas import ChatCreate, ChatUpdate, MessageCreate, MessageUpdate

pytestmark = pytest.mark.anyio


async def chat_with(session, owner, title, *contents):
    chat = await crud.create_chat(
        session=session, owner_id=owner.id, chat_in=ChatCreate(title=title)
    )
    parent = None
    for content in contents:
        parent = await crud.add_message(
            session=session,
            owner_id=owner.id,
            chat_id=chat.id,
            message_in=MessageCreate(
                role=MessageRole.USER, content=content, parent_id=parent.id if parent else None
            ),
        )
    await session.commit()
    return chat


async def search(session, owner, q):
    return {c.title for c in await crud.list_chats(session=session, owner_id=owner.id, q=q)}


async def test_finds_words_in_messages_and_titles_of_the_owner_only(session, alice, bob):
    await chat_with(session, alice, "Sourdough starter", "How often should I feed it?")
    await chat_with(session, alice, "Garden", "When do tomatoes need repotting?")
    await chat_with(session, bob, "Bob's sourdough", "My tomatoes are repotted.")

    assert await search(session, alice, "sourdough") == {"Sourdough starter"}
    assert await search(session, alice, "TOMATOES") == {"Garden"}
    assert await search(session, alice, "repot") == {"Garden"}  # words starting with it
    assert await search(session, alice, "feed tomatoes") == set()  # every word must match
    assert await search(session, alice, "feed sourdough") == {"Sourdough starter"}
    assert await search(session, bob, "tomatoes") == {"Bob's sourdough"}
    assert await crud.count_chats(session=session, owner_id=alice.id, q="repotting") == 1


@pytest.mark.parametrize(
    "query", ['"', "NOT", "a OR b", "feed*", "x:y", "(", "&|!", "'; DROP TABLE chats; --", "***"]
)
async def test_search_syntax_in_user_input_is_harmless(session, alice, query):
    await chat_with(session, alice, "Anything", "plain words")
    assert await search(session, alice, query) in (set(), {"Anything"})


async def test_empty_query_matches_nothing_special(session, alice):
    await chat_with(session, alice, "One", "x")
    assert await search(session, alice, "   ") == {"One"}  # blank: no filter
    assert await search(session, alice, "?!") == set()  # no words: no match


async def test_index_follows_edits_and_deletes(session, alice):
    chat = await chat_with(session, alice, "Old title", "original wording")
    await crud.update_chat(
        session=session, owner_id=alice.id, chat_id=chat.id, chat_in=ChatUpdate(title="Renamed")
    )
    [message] = await crud.get_path(session=session, owner_id=alice.id, chat_id=chat.id)
    await crud.update_message(
        session=session,
        owner_id=alice.id,
        chat_id=chat.id,
        message_id=message.id,
        message_in=MessageUpdate(content="revised phrasing"),
    )
    await session.commit()
    assert await search(session, alice, "old") == set()
    assert await search(session, alice, "renamed") == {"Renamed"}
    assert await search(session, alice, "original") == set()
    assert await search(session, alice, "phrasing") == {"Renamed"}

    await crud.delete_chat(session=session, owner_id=alice.id, chat_id=chat.id)
    await session.commit()
    assert await search(session, alice, "phrasing") == set()


async def test_non_ascii_words(session, alice):
    await chat_with(session, alice, "Café", "Grüße aus München, 東京")
    assert await search(session, alice, "café") == {"Café"}
    assert await search(session, alice, "münchen") == {"Café"}
