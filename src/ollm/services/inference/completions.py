"""CompletionService: turn a chat or a prompt into a running generation.

Everything that can fail because of the request fails here, before the route sends a
byte: unknown model (404), no chat template, prompt longer than the context (400),
queue full (429).

Each generation holds its model (``ModelService.acquire``) from the start until its
stream ends, so the model manager never unloads a model under a running stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ollm.chat.messages import ChatMessage, ToolChoice, ToolSpec
from ollm.chat.reasoning import prompt_opens_thinking
from ollm.chat.tool_calls import HERMES_CLOSE, HERMES_OPEN
from ollm.chat.tool_grammar import tool_call_schema
from ollm.errors import ContextLengthExceededError, InvalidRequestError
from ollm.sampling import MAX_CHOICES, MAX_SEED, JsonOutput, SamplingParams, TaggedCalls
from ollm.services.models.leases import LeasedStream
from ollm.services.models.preset import conversation
from ollm.services.models.service import LoadedModel, ModelService


@dataclass(slots=True)
class Generation:
    """A request the engine has accepted; iterate ``stream`` for its deltas (``streams``:
    one per choice when ``n`` > 1, the first being ``stream``).

    Each stream holds the model loaded until it finishes or is closed (``aclose()``).
    ``load_duration`` is the seconds spent waiting for the model to be loaded. ``tools``
    are the functions the reply may call: the dialect parses its text for calls to them
    (empty: the reply is plain text).
    """

    request_id: str
    model_id: str
    created: int
    num_prompt_tokens: int
    streams: list[LeasedStream]
    load_duration: float = 0.0
    tools: tuple[ToolSpec, ...] = ()
    # The chat template opened a thinking block at the end of the prompt: the reply starts
    # inside it (see ollm.chat.reasoning).
    thinking_open: bool = False
    # A completion's prompt as text (what ``echo`` shows back; token ids decoded).
    prompt_text: str = ""

    @property
    def stream(self) -> LeasedStream:
        return self.streams[0]

    async def aclose(self) -> None:
        """Abort every choice still running and give back their holds on the model."""
        for stream in self.streams:
            await stream.aclose()


class CompletionService:
    """Renders prompts, checks they fit, and hands them to the model's engine."""

    def __init__(self, models: ModelService) -> None:
        self.models = models

    async def chat(
        self,
        *,
        model: str | None,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        user: str = "",
        keep_alive: float | None = None,
        cache_tag: str | None = None,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        n: int = 1,
    ) -> Generation:
        """Start a chat completion: render with the model's template, then generate.

        ``keep_alive`` (seconds; None: default, 0: unload after, negative: forever) is how
        long the model stays loaded once idle, as in Ollama. ``cache_tag`` names the
        conversation (a chat id) the KV belongs to, so deleting it deletes its snapshots.

        ``tools`` go to the model through its chat template (a model whose template has no
        place for them is a 400). ``tool_choice`` "none" leaves them out; "required" or a
        function's name constrains decoding with a grammar built from the tools' schemas,
        so the reply is always a call that parses and matches its schema.

        ``n`` choices share the prompt, computed once; choice ``i`` samples with ``seed + i``.
        """
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        offered = _offered_tools(tools, tool_choice)
        if offered and tool_choice != "auto":
            if params.json_output is not None:
                raise InvalidRequestError(
                    "a forced tool call cannot be combined with a JSON response format",
                    param="tool_choice",
                )
            schema = tool_call_schema(offered)
            params = dataclasses.replace(params, json_output=JsonOutput(schema))
        started = time.monotonic()
        loaded = await self.models.acquire(model, keep_alive=keep_alive)
        try:
            lazy = self.models.settings.tool_grammar == "lazy"
            if offered and tool_choice == "auto" and params.json_output is None and lazy:
                params = _lazy_call_grammar(loaded, offered, params, messages)
            tokens = await _chat_tokens(loaded, messages, offered)
            generation = self._start(
                loaded, tokens, params, user, started, param="messages", cache_tag=cache_tag, n=n
            )
            generation.tools = offered
            generation.thinking_open = _opens_thinking(loaded, tokens)
            return generation
        except BaseException:
            self.models.release(loaded)
            raise

    async def count_chat_tokens(
        self,
        *,
        model: str | None,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> int:
        """How many tokens :meth:`chat` would prompt the model with for ``messages`` and
        ``tools`` (rendered with the model's template, then tokenized); nothing is
        generated. Loads the model if need be: the count is its tokenizer's."""
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        offered = _offered_tools(tools, tool_choice)
        loaded = await self.models.acquire(model)
        try:
            return len(await _chat_tokens(loaded, messages, offered))
        finally:
            self.models.release(loaded)

    async def complete(
        self,
        *,
        model: str | None,
        prompt: str | Sequence[int],
        params: SamplingParams,
        user: str = "",
        keep_alive: float | None = None,
        suffix: str | None = None,
        n: int = 1,
    ) -> Generation:
        """Start a plain text completion of ``prompt`` (``keep_alive`` and ``n`` as for
        :meth:`chat`): text, or token ids as they are.

        With a ``suffix`` the model fills in the middle between ``prompt`` and it, in its
        fill-in-the-middle format (a code model's FIM tokens); a model without them is a
        400."""
        started = time.monotonic()
        loaded = await self.models.acquire(model, keep_alive=keep_alive)
        try:
            tokens = await _prompt_tokens(loaded, prompt, suffix)
            generation = self._start(loaded, tokens, params, user, started, param="prompt", n=n)
            if isinstance(prompt, str):
                generation.prompt_text = prompt
            else:
                pieces = b"".join(loaded.backend.token_bytes(t) for t in prompt)
                generation.prompt_text = pieces.decode("utf-8", errors="replace")
            return generation
        except BaseException:
            self.models.release(loaded)
            raise

    def _start(
        self,
        loaded: LoadedModel,
        tokens: list[int],
        params: SamplingParams,
        user: str,
        started: float,
        *,
        param: str,
        cache_tag: str | None = None,
        n: int = 1,
    ) -> Generation:
        """Queue the request (``n`` sequences of it); each stream releases a hold on
        ``loaded`` when it ends (the caller's hold is the first one's)."""
        if not tokens:
            raise InvalidRequestError("the prompt is empty", param=param)
        if not 1 <= n <= MAX_CHOICES:
            raise InvalidRequestError(f"n must be between 1 and {MAX_CHOICES}", param="n")
        self._check_fits(loaded, len(tokens), params, param)
        loaded.backend.check_params(params)
        request_id = uuid.uuid4().hex
        ids = [request_id] + [f"{request_id}-{i}" for i in range(1, n)]
        streams = loaded.engine.generate_many(
            tokens, _choice_params(params, n), user=user, request_ids=ids, cache_tag=cache_tag
        )
        leased = [LeasedStream(streams[0], lambda: self.models.release(loaded))]
        for stream in streams[1:]:
            self.models.acquire_again(loaded)
            leased.append(LeasedStream(stream, lambda: self.models.release(loaded)))
        return Generation(
            request_id,
            loaded.model_id,
            int(time.time()),
            len(tokens),
            leased,
            load_duration=time.monotonic() - started,
        )

    @staticmethod
    def _check_fits(
        loaded: LoadedModel, num_prompt: int, params: SamplingParams, param: str
    ) -> None:
        limit = loaded.engine.limits.context_per_sequence
        wanted = num_prompt + (params.max_tokens or 1)
        if wanted > limit:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{wanted} tokens ({num_prompt} in the prompt, {params.max_tokens or 1} for the "
                "completion). Please reduce the prompt or the completion length.",
                param=param,
                context_length=limit,
                prompt_tokens=num_prompt,
            )


async def _chat_tokens(
    loaded: LoadedModel, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
) -> list[int]:
    """``messages`` (and ``tools``) rendered with the model's chat template, tokenized; a
    created model's system prompt and preset history go in as its preset says."""
    messages = conversation(loaded.entry.preset, messages)
    if loaded.template is None:
        raise InvalidRequestError(
            f"model '{loaded.model_id}' has no chat template; use the completions endpoint",
            param="model",
        )
    template = loaded.template
    if tools and not template.supports_tools:
        raise InvalidRequestError(
            f"model '{loaded.model_id}' does not support tools", param="tools"
        )
    return await _off_loop_if_long(
        sum(len(m.content) for m in messages),
        lambda: loaded.tokenize(template.render(messages, tools=tools)),
    )


def _choice_params(params: SamplingParams, n: int) -> list[SamplingParams]:
    """Choice ``i`` samples with ``seed + i`` (wrapping within the seed range), so a seeded
    request gives the same ``n`` answers each time, and different ones among them."""
    if params.seed is None or n == 1:
        return [params] * n
    span = MAX_SEED + 1
    return [dataclasses.replace(params, seed=(params.seed + i) % span) for i in range(n)]


async def _prompt_tokens(
    loaded: LoadedModel, prompt: str | Sequence[int], suffix: str | None
) -> list[int]:
    """A completion's prompt as tokens: text tokenized (special tokens as plain text), or
    ids checked against the vocabulary; with ``suffix``, in the fill-in-the-middle form."""
    facts = loaded.backend.facts
    if suffix is not None and facts.fim_tokens is None:
        raise InvalidRequestError(
            f"model '{loaded.model_id}' has no fill-in-the-middle tokens, so it cannot "
            "complete with a suffix",
            param="suffix",
        )
    if not isinstance(prompt, str):
        bad = next((t for t in prompt if not 0 <= t < facts.vocab_size), None)
        if bad is not None:
            raise InvalidRequestError(
                f"token id {bad} is outside the model's vocabulary (0 to {facts.vocab_size - 1})",
                param="prompt",
            )
        tokens = list(prompt)
    elif suffix is None:
        return await _off_loop_if_long(len(prompt), lambda: loaded.tokenize(prompt, special=False))
    else:
        tokens = loaded.backend.tokenize(prompt, add_special=False, parse_special=False)
    if suffix is None or facts.fim_tokens is None:
        return tokens
    prefix_token, suffix_token, middle_token = facts.fim_tokens
    after = loaded.backend.tokenize(suffix, add_special=False, parse_special=False)
    # llama-server's /infill order: <PRE> prefix <SUF> suffix <MID>, and the model writes
    # the middle. (Its BOS is left out: Qwen2.5-Coder, for one, has none.)
    return [prefix_token, *tokens, suffix_token, *after, middle_token]


def _opens_thinking(loaded: LoadedModel, tokens: Sequence[int]) -> bool:
    """Whether the prompt ends with an opened ``<think>`` (a few tokens suffice to tell)."""
    tail = b"".join(loaded.backend.token_bytes(t) for t in tokens[-8:])
    return prompt_opens_thinking(tail.decode("utf-8", errors="ignore"))


def _lazy_call_grammar(
    loaded: LoadedModel,
    offered: Sequence[ToolSpec],
    params: SamplingParams,
    messages: Sequence[ChatMessage],
) -> SamplingParams:
    """With ``tool_choice`` "auto", a model whose template frames calls in Hermes tags
    (``<tool_call>``, Qwen's) may answer in prose, but a call it opens is decoded under
    the tools' grammar from its first token on, so it always parses and validates.

    A bare JSON call (no tags) is constrained too, except right after a tool result: there
    small models echo the call they just made before answering, and the grammar would turn
    every echo into a new call (measured with qwen2.5-coder:0.5b: it re-called in 6 of 6
    round trips), where unconstrained the echo and the answer that follows stay text."""
    template = loaded.backend.facts.chat_template or ""
    if HERMES_OPEN not in template:
        return params
    after_result = bool(messages) and messages[-1].role == "tool"
    names = () if after_result else tuple(t.name for t in offered)
    tagged = TaggedCalls(HERMES_OPEN, HERMES_CLOSE, names=names)
    output = JsonOutput(tool_call_schema(offered), tagged=tagged)
    return dataclasses.replace(params, json_output=output)


def _offered_tools(tools: Sequence[ToolSpec], choice: ToolChoice) -> tuple[ToolSpec, ...]:
    """The tools the model is shown: none for "none", only the named one when forced."""
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise InvalidRequestError("tool names must be unique", param="tools")
    if choice in ("auto", "required"):
        if choice == "required" and not tools:
            raise InvalidRequestError("tool_choice 'required' needs tools", param="tool_choice")
        return tuple(tools)
    if choice == "none":
        return ()
    named = tuple(tool for tool in tools if tool.name == choice)
    if not named:
        raise InvalidRequestError(
            f"tool_choice names '{choice}', which is not one of the tools", param="tool_choice"
        )
    return named


# Below this many characters rendering and tokenizing take well under a millisecond: done
# inline, no thread hop on the way to the first token. Above, a 16 MB body takes seconds.
_INLINE_CHARS = 32_768


async def _off_loop_if_long(chars: int, work: Callable[[], list[int]]) -> list[int]:
    """``work()``, in a worker thread when the text is long, so the event loop keeps
    answering other requests meanwhile."""
    if chars <= _INLINE_CHARS:
        return work()
    return await asyncio.to_thread(work)
