"""ChatService: conversations kept on the server, continued with their context.

History -> prompt -> engine -> persisted turns:

1. Before anything is written, the chat is found (someone else's chat is "not found"),
   the model is held, and the active branch plus the new turn is fitted into the context
   window (:mod:`ollm.chat.context`): every failure here is an ordinary 4xx.
2. The user turn and an empty assistant turn (status ``streaming``) are committed in one
   short transaction of their own. If the engine then refuses the request (queue full),
   both are removed again, so a retry does not leave a duplicate question behind.
3. A :class:`~ollm.services.chats.replies.RunningReply` drains the generation into the
   assistant turn: checkpoints while it streams, the final text, status and timings when
   it ends — finished, stopped, abandoned by its client, or cut by a shutdown. A crash
   leaves the turn ``streaming``; :meth:`ChatService.recover_interrupted` marks it
   ``interrupted`` at the next start.

Regenerating a reply or editing a question adds a sibling: the old branch stays.
One reply runs per chat at a time; :meth:`ChatService.stop` ends it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pydantic import computed_field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ollm.chat.context import FittedPrompt, fit_messages
from ollm.chat.messages import ChatMessage
from ollm.db import crud
from ollm.db.models import Chat, MessageRole, MessageStatus
from ollm.db.schemas import (
    BranchMessage,
    ChatCreate,
    ChatPage,
    ChatPublic,
    ChatUpdate,
    MessageCreate,
    MessagePublic,
    MessageUpdate,
)
from ollm.errors import (
    ChatNotFoundError,
    InvalidRequestError,
    MessageNotFoundError,
    ReplyInProgressError,
)
from ollm.sampling import SamplingParams
from ollm.services.chats import transfer as chat_transfer
from ollm.services.chats.replies import CHECKPOINT_SECONDS, DoneEvent, RunningReply, StartEvent
from ollm.services.chats.transfer import ChatExport, OpenAIChatImport
from ollm.services.inference.completions import CompletionService
from ollm.services.models.service import LoadedModel
from ollm.settings import Settings

DEFAULT_TITLE = "New chat"
TITLE_FROM_MESSAGE_CHARS = 60


class BranchTurn(BranchMessage):
    """A message on the active branch with its branch point: ``sibling_index + 1`` of
    ``sibling_count`` versions of this turn."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sibling_count(self) -> int:
        return len(self.sibling_ids)


class ChatDetail(ChatPublic):
    """A chat with its active branch, and whether a reply is being generated now."""

    messages: list[BranchTurn]
    generating: bool


def chat_sampling_params(params: dict[str, Any]) -> SamplingParams:
    """The engine's parameters from a chat's stored ones (unset fields keep the defaults)."""
    fields = {f.name for f in dataclasses.fields(SamplingParams)}
    chosen = {k: v for k, v in params.items() if k in fields and v is not None}
    if "stop" in chosen:
        chosen["stop"] = tuple(chosen["stop"])
    return SamplingParams(**chosen)


def _title_from(content: str) -> str:
    """A title for a new chat from its first message: its first line, shortened."""
    line = " ".join(content.strip().split("\n", 1)[0].split())
    if len(line) <= TITLE_FROM_MESSAGE_CHARS:
        return line or DEFAULT_TITLE
    return line[: TITLE_FROM_MESSAGE_CHARS - 1].rstrip() + "…"


class ChatService:
    """Chats, their message trees, and the replies running in them."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        completions: CompletionService,
        settings: Settings,
        *,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        self._sessions = sessions
        self.completions = completions
        self.models = completions.models
        self.settings = settings
        self._checkpoint_seconds = checkpoint_seconds
        self._running: dict[str, RunningReply] = {}
        self._claimed: set[str] = set()  # chats whose reply is being prepared or running

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    @staticmethod
    async def _chat(session: AsyncSession, owner_id: int, chat_id: str) -> Chat:
        chat = await crud.get_chat(session=session, owner_id=owner_id, chat_id=chat_id)
        if chat is None:
            raise ChatNotFoundError(f"no chat with id {chat_id!r}")
        return chat

    # -- life cycle --------------------------------------------------------------------------

    async def recover_interrupted(self) -> int:
        """At start-up: replies a crash left ``streaming`` become ``interrupted``."""
        async with self._transaction() as session:
            return await crud.interrupt_streaming(session=session)

    async def close(self) -> None:
        """Server stopping: stop every running reply and save each as interrupted."""
        running = list(self._running.values())
        await asyncio.gather(*(r.stop("shutdown") for r in running), return_exceptions=True)

    # -- chats -------------------------------------------------------------------------------

    async def list_chats(
        self,
        *,
        owner_id: int,
        q: str | None = None,
        archived: bool | None = False,
        offset: int = 0,
        limit: int = 50,
    ) -> ChatPage:
        """One page of the owner's chats, pinned first, then most recently active."""
        async with self._sessions() as session:
            filters: dict[str, Any] = {"owner_id": owner_id, "archived": archived, "q": q}
            rows = await crud.list_chats(session=session, offset=offset, limit=limit, **filters)
            total = await crud.count_chats(session=session, **filters)
            items = [ChatPublic.model_validate(row) for row in rows]
            return ChatPage(items=items, total=total, offset=offset, limit=limit)

    async def create_chat(self, *, owner_id: int, chat_in: ChatCreate) -> ChatPublic:
        """A new, empty chat."""
        async with self._transaction() as session:
            chat = await crud.create_chat(session=session, owner_id=owner_id, chat_in=chat_in)
            return ChatPublic.model_validate(chat)

    async def get_chat(self, *, owner_id: int, chat_id: str) -> ChatDetail:
        """The chat with its active branch and branch points."""
        async with self._sessions() as session:
            return await self._detail(session, owner_id, chat_id)

    async def _detail(self, session: AsyncSession, owner_id: int, chat_id: str) -> ChatDetail:
        chat = ChatPublic.model_validate(await self._chat(session, owner_id, chat_id))
        branch = await crud.get_active_branch(session=session, owner_id=owner_id, chat_id=chat_id)
        turns = [BranchTurn(**m.model_dump(exclude={"sibling_index"})) for m in branch]
        return ChatDetail(**chat.model_dump(), messages=turns, generating=chat_id in self._running)

    async def update_chat(self, *, owner_id: int, chat_id: str, chat_in: ChatUpdate) -> ChatPublic:
        """Rename, change model, system prompt or sampling, pin, archive."""
        async with self._transaction() as session:
            chat = await crud.update_chat(
                session=session, owner_id=owner_id, chat_id=chat_id, chat_in=chat_in
            )
            if chat is None:
                raise ChatNotFoundError(f"no chat with id {chat_id!r}")
            return ChatPublic.model_validate(chat)

    async def delete_chat(self, *, owner_id: int, chat_id: str) -> None:
        """Delete the chat and all its messages (a running reply is stopped first)."""
        async with self._sessions() as session:
            await self._chat(session, owner_id, chat_id)
        if (running := self._running.get(chat_id)) is not None:
            await running.stop("stopped")
        async with self._transaction() as session:
            if not await crud.delete_chat(session=session, owner_id=owner_id, chat_id=chat_id):
                raise ChatNotFoundError(f"no chat with id {chat_id!r}")
        await self.models.forget_conversation(chat_id)  # its KV, in memory and on disk

    async def select_branch(self, *, owner_id: int, chat_id: str, message_id: int) -> ChatDetail:
        """Show the branch through ``message_id`` (its newest leaf becomes active)."""
        async with self._transaction() as session:
            await self._chat(session, owner_id, chat_id)
            chat = await crud.select_branch(
                session=session, owner_id=owner_id, chat_id=chat_id, message_id=message_id
            )
            if chat is None:
                raise MessageNotFoundError(f"no message {message_id} in this chat")
            return await self._detail(session, owner_id, chat_id)

    # -- export and import -------------------------------------------------------------------

    async def export_chat(self, *, owner_id: int, chat_id: str) -> ChatExport:
        """The whole chat, every branch, as our JSON export."""
        async with self._sessions() as session:
            return await chat_transfer.export_chat(
                session, await self._chat(session, owner_id, chat_id)
            )

    async def export_markdown(self, *, owner_id: int, chat_id: str) -> tuple[ChatPublic, str]:
        """The active branch as Markdown (and the chat, for naming the file)."""
        detail = await self.get_chat(owner_id=owner_id, chat_id=chat_id)
        return detail, chat_transfer.to_markdown(detail, list(detail.messages))

    async def import_chat(
        self, *, owner_id: int, data: ChatExport | OpenAIChatImport
    ) -> ChatDetail:
        """A new chat from our export or from an OpenAI-style message list."""
        async with self._transaction() as session:
            if isinstance(data, ChatExport):
                chat = await chat_transfer.import_export(session, owner_id, data)
            else:
                chat = await chat_transfer.import_openai(session, owner_id, data)
            return await self._detail(session, owner_id, chat.id)

    # -- replies -----------------------------------------------------------------------------

    async def send(self, *, owner_id: int, chat_id: str, content: str, caller: str) -> RunningReply:
        """Add a user turn at the end of the active branch and start the reply to it."""
        async with self._sessions() as session:
            chat = ChatPublic.model_validate(await self._chat(session, owner_id, chat_id))
            history = await self._path(session, owner_id, chat_id, chat.active_leaf_id)
        parent_id = history[-1].id if history else None
        return await self._start(owner_id, chat, history, parent_id, content, caller)

    async def regenerate(
        self, *, owner_id: int, chat_id: str, message_id: int | None, caller: str
    ) -> RunningReply:
        """Answer again: a new reply beside ``message_id`` (an assistant turn; default the
        active leaf). Given a user turn instead, add a reply to it."""
        async with self._sessions() as session:
            chat = ChatPublic.model_validate(await self._chat(session, owner_id, chat_id))
            target_id = message_id if message_id is not None else chat.active_leaf_id
            target = await self._message(session, owner_id, chat_id, target_id)
            question_id = target.parent_id if target.role == MessageRole.ASSISTANT else target.id
            if target.role == MessageRole.SYSTEM or question_id is None:
                raise InvalidRequestError(
                    "only a reply, or a question, can be answered again", param="message_id"
                )
            history = await self._path(session, owner_id, chat_id, question_id)
        return await self._start(owner_id, chat, history, question_id, None, caller)

    async def edit(
        self, *, owner_id: int, chat_id: str, message_id: int, content: str, caller: str
    ) -> RunningReply:
        """Ask differently: a new user turn beside ``message_id``, then its reply."""
        async with self._sessions() as session:
            chat = ChatPublic.model_validate(await self._chat(session, owner_id, chat_id))
            target = await self._message(session, owner_id, chat_id, message_id)
            if target.role != MessageRole.USER:
                raise InvalidRequestError("only user messages can be edited", param="message_id")
            history = await self._path(session, owner_id, chat_id, target.parent_id)
        return await self._start(owner_id, chat, history, target.parent_id, content, caller)

    async def stop(self, *, owner_id: int, chat_id: str) -> DoneEvent | None:
        """Stop the chat's running reply; it is saved as interrupted. None if none runs."""
        async with self._sessions() as session:
            await self._chat(session, owner_id, chat_id)
        running = self._running.get(chat_id)
        return await running.stop("stopped") if running is not None else None

    @staticmethod
    async def _message(
        session: AsyncSession, owner_id: int, chat_id: str, message_id: int | None
    ) -> MessagePublic:
        message = None
        if message_id is not None:
            message = await crud.get_message(
                session=session, owner_id=owner_id, chat_id=chat_id, message_id=message_id
            )
        if message is None:
            raise MessageNotFoundError(f"no message {message_id} in this chat", param="message_id")
        return MessagePublic.model_validate(message)

    @staticmethod
    async def _path(
        session: AsyncSession, owner_id: int, chat_id: str, leaf_id: int | None
    ) -> list[MessagePublic]:
        if leaf_id is None:
            return []
        rows = await crud.get_path(
            session=session, owner_id=owner_id, chat_id=chat_id, leaf_id=leaf_id
        )
        return [MessagePublic.model_validate(row) for row in rows]

    # -- starting a reply --------------------------------------------------------------------

    async def _start(
        self,
        owner_id: int,
        chat: ChatPublic,
        history: list[MessagePublic],
        parent_id: int | None,
        question: str | None,
        caller: str,
    ) -> RunningReply:
        """Fit, save the turns, start the generation; one reply per chat at a time."""
        if chat.id in self._claimed:
            raise ReplyInProgressError(
                "a reply is still being generated in this chat; stop it first"
            )
        self._claimed.add(chat.id)
        try:
            reply = await self._prepare(owner_id, chat, history, parent_id, question, caller)
        except BaseException:
            self._claimed.discard(chat.id)
            raise
        self._running[chat.id] = reply
        reply.begin()
        return reply

    async def _prepare(
        self,
        owner_id: int,
        chat: ChatPublic,
        history: list[MessagePublic],
        parent_id: int | None,
        question: str | None,
        caller: str,
    ) -> RunningReply:
        params = chat_sampling_params(chat.params.model_dump())
        async with self.models.hold(chat.model) as loaded:
            turns = self._conversation(chat, history, question)
            # Rendering and tokenizing a long chat again and again to find what fits takes
            # seconds for tens of thousands of turns: off the event loop, so every other
            # request (and /health) is still answered meanwhile.
            fitted = await asyncio.to_thread(self._fit, loaded, turns, params)
            user_turn, reply_turn = await self._open_turns(
                owner_id, chat, parent_id, question, loaded.model_id
            )
            try:
                generation = await self.completions.chat(
                    model=loaded.model_id,
                    messages=fitted.messages,
                    params=params,
                    user=caller,
                    cache_tag=chat.id,
                )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._discard_turns(owner_id, chat, user_turn or reply_turn)
                raise

        async def save(update: MessageUpdate) -> MessagePublic:
            return await self._save_reply(owner_id, reply_turn, update)

        start = StartEvent(
            chat_id=chat.id,
            user_message=user_turn,
            message=reply_turn,
            dropped_turns=fitted.dropped_turns,
        )
        return RunningReply(
            start=start,
            generation=generation,
            save=save,
            on_end=lambda: self._ended(chat.id),
            checkpoint_seconds=self._checkpoint_seconds,
        )

    @staticmethod
    def _conversation(
        chat: ChatPublic, history: Sequence[MessagePublic], question: str | None
    ) -> list[ChatMessage]:
        """The turns the model sees: the system prompt, the branch, the new question.

        Turns still being written and empty replies (failed before any text) add nothing.
        """
        turns = [ChatMessage("system", chat.system_prompt)] if chat.system_prompt else []
        for message in history:
            if message.status == MessageStatus.STREAMING:
                continue
            if message.role == MessageRole.ASSISTANT and not message.content:
                continue
            turns.append(ChatMessage(message.role.value, message.content))  # type: ignore[arg-type]
        if question is not None:
            turns.append(ChatMessage("user", question))
        return turns

    def _fit(
        self, loaded: LoadedModel, turns: list[ChatMessage], params: SamplingParams
    ) -> FittedPrompt:
        """Keep as much of the conversation as fits, leaving room for the reply."""
        template = loaded.template
        if template is None:
            raise InvalidRequestError(
                f"model '{loaded.model_id}' has no chat template, so it cannot hold a chat",
                param="model",
            )
        if not turns or turns[-1].role != "user":
            raise InvalidRequestError("there is no question to answer", param="message_id")
        window = loaded.engine.limits.context_per_sequence
        reserve = params.max_tokens or min(self.settings.chat_reply_reserve, window // 2)
        budget = window - reserve
        return fit_messages(
            turns,
            budget=budget,
            count_tokens=lambda messages: len(loaded.tokenize(template.render(messages))),
            # Cut in blocks of half the budget, so the prompt's start (and with it the KV
            # cache) stays the same for many turns once the window is full.
            block_tokens=max(1, budget // 2),
        )

    async def _open_turns(
        self,
        owner_id: int,
        chat: ChatPublic,
        parent_id: int | None,
        question: str | None,
        model_id: str,
    ) -> tuple[MessagePublic | None, MessagePublic]:
        """Commit the user turn (if any) and an empty ``streaming`` reply under it."""
        async with self._transaction() as session:
            row = await self._chat(session, owner_id, chat.id)
            user_turn = None
            if question is not None:
                if parent_id is None and row.title == DEFAULT_TITLE:
                    row.title = _title_from(question)
                user_turn = await self._add(
                    session, owner_id, chat.id, MessageRole.USER, parent_id, content=question
                )
                parent_id = user_turn.id
            reply_turn = await self._add(
                session,
                owner_id,
                chat.id,
                MessageRole.ASSISTANT,
                parent_id,
                model=model_id,
                status=MessageStatus.STREAMING,
            )
            return user_turn, reply_turn

    async def _add(
        self,
        session: AsyncSession,
        owner_id: int,
        chat_id: str,
        role: MessageRole,
        parent_id: int | None,
        **fields: Any,
    ) -> MessagePublic:
        message_in = MessageCreate(role=role, parent_id=parent_id, **fields)
        row = await crud.add_message(
            session=session, owner_id=owner_id, chat_id=chat_id, message_in=message_in
        )
        if row is None:  # the parent was deleted meanwhile
            raise MessageNotFoundError("the message being answered no longer exists")
        return MessagePublic.model_validate(row)

    async def _discard_turns(self, owner_id: int, chat: ChatPublic, first: MessagePublic) -> None:
        """Undo :meth:`_open_turns` after the engine refused the request."""
        async with self._transaction() as session:
            row = await crud.get_message(
                session=session, owner_id=owner_id, chat_id=chat.id, message_id=first.id
            )
            if row is not None:
                await session.delete(row)  # its reply goes with it (ON DELETE CASCADE)
                await session.flush()
            chat_row = await crud.get_chat(session=session, owner_id=owner_id, chat_id=chat.id)
            if chat_row is not None:
                chat_row.active_leaf_id = chat.active_leaf_id
                chat_row.title = chat.title

    async def _save_reply(
        self, owner_id: int, reply_turn: MessagePublic, update: MessageUpdate
    ) -> MessagePublic:
        async with self._transaction() as session:
            row = await crud.update_message(
                session=session,
                owner_id=owner_id,
                chat_id=reply_turn.chat_id,
                message_id=reply_turn.id,
                message_in=update,
            )
            if row is None:  # the chat was deleted while the reply ran
                return reply_turn.model_copy(update=update.model_dump(exclude_unset=True))
            return MessagePublic.model_validate(row)

    def _ended(self, chat_id: str) -> None:
        self._running.pop(chat_id, None)
        self._claimed.discard(chat_id)
