"""Request and response bodies of the Ollama dialect.

Ollama's rules, not OpenAI's: unknown fields and unknown ``options`` are ignored with a
warning in the log (as Ollama does), but a known field of the wrong type is a 400.
Features this server cannot honour (images, logprobs, ``template``) are accepted only at
their empty value and are a 400 "not supported" otherwise. Ollama's sampling defaults
apply when an option is left out: temperature 0.8, top_k 40, top_p 0.9, repeat_penalty
1.1 over the last 64 tokens, and no token limit. Responses stream by default.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ollm.chat.messages import ChatMessage, ToolCall, ToolSpec
from ollm.chat.tool_calls import new_call_id
from ollm.sampling import (
    MAX_COUNT,
    MAX_SEED,
    MAX_TEMPERATURE,
    MIN_SEED,
    JsonOutput,
    SamplingParams,
)
from ollm.settings import parse_duration

log = logging.getLogger(__name__)

OLLAMA_TEMPERATURE = 0.8
OLLAMA_TOP_K = 40
OLLAMA_TOP_P = 0.9
OLLAMA_REPEAT_PENALTY = 1.1
OLLAMA_REPEAT_LAST_N = 64
MAX_STOP_STRINGS = 16

DoneReason = Literal["stop", "length", "load", "unload"]


def _not_supported(what: str) -> ValueError:
    return ValueError(f"{what} is not supported by this server yet")


# Longer than this (~317 years) is kept forever.
_FOREVER_SECONDS = 1e10


class _Lenient(BaseModel):
    """Ignores unknown fields like Ollama, but says so in the log."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _warn_unknown(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                log.warning("%s: ignoring unknown fields %s", cls.__name__, ", ".join(unknown))
        return data


# -- options ------------------------------------------------------------------------------


class Options(_Lenient):
    """``options``: the sampling ones are honoured; load-time ones are accepted and ignored
    (the server, not the request, decides how a model is loaded)."""

    # Upper bounds are the engine's (ollm.sampling), the same for every dialect.
    # No upper bound, as in Ollama: a huge num_predict just stops at the context's end.
    num_predict: int | None = Field(
        None, ge=-2, description="Most tokens to generate; -1 unlimited, -2 fill the context."
    )
    num_ctx: int | None = Field(
        None, ge=0, le=MAX_COUNT, description="Accepted; the server's per-sequence context applies."
    )
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE)
    top_k: int | None = Field(
        None, ge=-MAX_COUNT, le=MAX_COUNT, description="0 or less disables top-k."
    )
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = Field(
        None, ge=MIN_SEED, le=MAX_SEED, description="A negative seed means a random one."
    )
    stop: list[str] | None = Field(None, description=f"Up to {MAX_STOP_STRINGS} strings.")
    repeat_penalty: float | None = Field(None, ge=0.0, le=10.0, description="0 or 1 is off.")
    repeat_last_n: int | None = Field(
        None,
        ge=-1,
        le=MAX_COUNT,
        description="Tokens the penalties look back on; -1 the whole context.",
    )
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    # Accepted and ignored: samplers the engine lacks and load-time settings.
    num_keep: int | None = None
    typical_p: float | None = None
    tfs_z: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    penalize_newline: bool | None = None
    numa: bool | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    logits_all: bool | None = None
    vocab_only: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    embedding_only: bool | None = None
    num_thread: int | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: list[str] | None) -> list[str] | None:
        if value and len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed")
        return [s for s in value if s] if value is not None else None

    def sampling_params(self, *, context_length: int) -> SamplingParams:
        """The engine's view of these options, with Ollama's defaults filled in.

        ``context_length`` is what ``repeat_last_n = -1`` ("the whole context") means.
        """
        predict = self.num_predict
        last_n = OLLAMA_REPEAT_LAST_N if self.repeat_last_n is None else self.repeat_last_n
        penalty = OLLAMA_REPEAT_PENALTY if self.repeat_penalty is None else self.repeat_penalty
        return SamplingParams(
            temperature=OLLAMA_TEMPERATURE if self.temperature is None else self.temperature,
            top_p=OLLAMA_TOP_P if self.top_p is None else self.top_p,
            top_k=max(0, OLLAMA_TOP_K if self.top_k is None else self.top_k),
            min_p=self.min_p or 0.0,
            repeat_penalty=penalty or 1.0,  # 0 would divide by zero in the sampler
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            penalty_last_n=context_length if last_n < 0 else last_n,
            seed=self.seed if self.seed is not None and self.seed >= 0 else None,
            max_tokens=min(predict, MAX_COUNT) if predict is not None and predict > 0 else None,
            stop=tuple(self.stop or ()),
        )


# -- requests -----------------------------------------------------------------------------


class _ModelRequest(_Lenient):
    """``model``, or ``name`` as older clients call it."""

    model: str | None = Field(None, description="Model name, e.g. 'smollm2:135m'.")
    name: str | None = Field(None, description="Older spelling of 'model'.")

    @property
    def model_name(self) -> str | None:
        return self.model or self.name or None


class _NamedModelRequest(_ModelRequest):
    """A request about one model, which must be named."""

    @model_validator(mode="after")
    def _model_required(self) -> _NamedModelRequest:
        if not self.model_name:
            raise ValueError("model is required")
        return self


class LoadingRequest(_ModelRequest):
    """What every request that loads a model shares (chat, generate, embed): ``options``
    and ``keep_alive``."""

    options: Options = Field(default_factory=Options)
    keep_alive: float | None = Field(
        None, description="Seconds or a duration ('5m'); 0 unloads after, negative never."
    )

    @field_validator("options", mode="before")
    @classmethod
    def _null_options(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _parse_keep_alive(cls, value: Any) -> float | None:
        """Seconds, as Ollama reads it: a number or a Go duration ("5m", "1h30m")."""
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("keep_alive must be a duration string or a number of seconds")
        seconds = parse_duration(value)
        if math.isnan(seconds):
            raise ValueError("keep_alive must be a number of seconds or a duration")
        # Centuries (or "inf") mean forever, as a negative value does: no date can say when.
        return -1.0 if seconds > _FOREVER_SECONDS else seconds


class _GenerationRequest(LoadingRequest):
    """What ``/api/chat`` and ``/api/generate`` share. The server's default model serves
    a request that names none."""

    stream: bool = Field(True, description="NDJSON chunks (the default) or one object.")
    format: str | dict[str, Any] | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @field_validator("stream", mode="before")
    @classmethod
    def _null_stream_is_default(cls, value: Any) -> Any:
        return True if value is None else value

    @field_validator("format")
    @classmethod
    def _json_or_schema(cls, value: Any) -> Any:
        if value in (None, "", "json") or isinstance(value, dict):
            return value or None
        raise ValueError('format must be "json" or a JSON schema object')

    def json_output(self) -> JsonOutput | None:
        """The structured-output constraint ``format`` asks for, if any."""
        if self.format is None:
            return None
        return JsonOutput(schema=self.format if isinstance(self.format, dict) else None)

    def sampling_params(self, *, context_length: int) -> SamplingParams:
        """The engine's sampling parameters: ``options`` plus the ``format`` constraint."""
        params = self.options.sampling_params(context_length=context_length)
        return dataclasses.replace(params, json_output=self.json_output())

    @field_validator("think")
    @classmethod
    def _think_level(cls, value: Any) -> Any:
        # true/false, or a level ("low", "medium", "high") as gpt-oss takes; the markers
        # split either way, a level only says the client wants the thinking shown.
        if isinstance(value, str) and value not in ("low", "medium", "high"):
            raise ValueError('think must be true, false, "low", "medium" or "high"')
        return value

    def shows_thinking(self) -> bool:
        """Whether the thinking is returned (``message.thinking``); ``think: false`` drops
        it, as Ollama does, while the answer is still kept apart from it."""
        return self.think is not False

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _off_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value:
            raise _not_supported(info.field_name)
        return value


class ToolFunctionCall(_Lenient):
    name: str = Field(..., min_length=1, max_length=256)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _json_string(cls, value: Any) -> Any:
        # Clients that copy OpenAI's habit send the arguments as a JSON string.
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError("tool call arguments are not valid JSON") from exc
        return {} if value is None else value


class MessageToolCall(_Lenient):
    """A call in an assistant message: Ollama's arguments are an object, not a string."""

    id: str | None = None
    function: ToolFunctionCall


class ToolFunction(_Lenient):
    name: str = Field(..., min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Lenient):
    type: Literal["function"] = "function"
    function: ToolFunction

    def to_spec(self) -> ToolSpec:
        f = self.function
        return ToolSpec(f.name, f.description or "", f.parameters or {})


class Message(_Lenient):
    """One chat message. Images are refused; a past turn's ``thinking`` is not shown to
    the model again (templates drop it too).

    A tool's result is a ``tool`` message naming its function in ``tool_name``.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[Any] | None = None
    tool_calls: list[MessageToolCall] | None = None
    thinking: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _null_content(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("images")
    @classmethod
    def _empty_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value:
            raise _not_supported(f"{info.field_name} in messages")
        return value

    def to_chat_message(self) -> ChatMessage:
        calls = tuple(
            ToolCall(call.id or new_call_id(), call.function.name, call.function.arguments)
            for call in self.tool_calls or ()
        )
        is_tool = self.role == "tool"
        return ChatMessage(
            role=self.role,
            content=self.content,
            tool_calls=calls if self.role == "assistant" else (),
            tool_call_id=self.tool_call_id if is_tool else None,
            name=self.tool_name if is_tool else None,
        )


class ChatRequest(_GenerationRequest):
    """``POST /api/chat``. No messages: just load (or with ``keep_alive: 0``, unload)."""

    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] | None = Field(None, max_length=128)

    @field_validator("messages", "tools", mode="before")
    @classmethod
    def _null_messages(cls, value: Any) -> Any:
        return [] if value is None else value

    def chat_messages(self) -> list[ChatMessage]:
        """The history as chat messages. Ollama's tool results name their function, not the
        call they answer; templates that need the call's id (Mistral's, Llama 3.1's) get the
        id of the earliest unanswered call to that function in the last assistant turn."""
        out: list[ChatMessage] = []
        pending: list[ToolCall] = []
        for message in self.messages:
            chat = message.to_chat_message()
            if chat.role == "assistant":
                pending = list(chat.tool_calls)
            elif chat.role == "tool" and chat.tool_call_id is None and pending:
                match = next((c for c in pending if c.name == chat.name), pending[0])
                pending.remove(match)
                chat = dataclasses.replace(chat, tool_call_id=match.id, name=match.name)
            out.append(chat)
        return out

    def tool_specs(self) -> list[ToolSpec]:
        """The functions the model may call (Ollama has no tool_choice: always "auto")."""
        return [tool.to_spec() for tool in self.tools or ()]


class GenerateRequest(_GenerationRequest):
    """``POST /api/generate``. An empty prompt just loads (or unloads) the model.

    ``raw`` sends the prompt as it is; otherwise it is the user turn of the model's chat
    template, after ``system``. A ``suffix`` makes it a fill-in-the-middle completion
    between ``prompt`` and it (code models with FIM tokens; others are a 400). ``context``
    (token ids of an earlier exchange, deprecated in Ollama) is accepted and ignored.
    """

    prompt: str = ""
    system: str | None = None
    raw: bool = False
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None
    images: list[Any] | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _null_prompt(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("raw", mode="before")
    @classmethod
    def _null_raw(cls, value: Any) -> Any:
        return False if value is None else value

    @field_validator("template", "images")
    @classmethod
    def _empty_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value:
            raise _not_supported(info.field_name)
        return value


class ShowRequest(_NamedModelRequest):
    """``POST /api/show``."""

    verbose: bool | None = None


class DeleteRequest(_NamedModelRequest):
    """``DELETE /api/delete``."""


class PullRequest(_NamedModelRequest):
    """``POST /api/pull``: progress as NDJSON unless ``stream`` is false."""

    stream: bool = True
    insecure: bool | None = None

    @field_validator("stream", mode="before")
    @classmethod
    def _null_stream_is_default(cls, value: Any) -> Any:
        return True if value is None else value


class CopyRequest(_Lenient):
    """``POST /api/copy``."""

    source: str = Field(..., min_length=1)
    destination: str = Field(..., min_length=1)


# -- responses ----------------------------------------------------------------------------


class _Response(BaseModel):
    """Responses leave out fields that are None, as Ollama does."""

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class ModelDetails(_Response):
    parent_model: str = ""
    format: str
    family: str
    families: list[str] | None = None
    parameter_size: str
    quantization_level: str


class ListedModel(_Response):
    """One model in ``GET /api/tags``."""

    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class ModelList(_Response):
    models: list[ListedModel]


class ShowResponse(_Response):
    """``POST /api/show``."""

    modelfile: str
    parameters: str | None = None
    template: str | None = None
    license: str | None = None
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class RunningModel(_Response):
    """One model in ``GET /api/ps``; ``size_vram`` is the part of ``size`` on the GPU."""

    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str | None = None
    size_vram: int = 0
    context_length: int | None = None


class RunningList(_Response):
    models: list[RunningModel]


class Version(_Response):
    version: str


class Stats(_Response):
    """Counts and durations (nanoseconds) on the final chunk."""

    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class CalledFunction(_Response):
    index: int
    name: str
    arguments: dict[str, Any]


class CalledTool(_Response):
    id: str
    function: CalledFunction


class AssistantMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str
    thinking: str | None = None
    tool_calls: list[CalledTool] | None = None

    @classmethod
    def of(
        cls, content: str, calls: Sequence[ToolCall] = (), thinking: str = ""
    ) -> AssistantMessage:
        called = [
            CalledTool(
                id=c.id, function=CalledFunction(index=i, name=c.name, arguments=dict(c.arguments))
            )
            for i, c in enumerate(calls)
        ]
        return cls(content=content, thinking=thinking or None, tool_calls=called or None)


class _ChatHead(_Response):
    model: str
    created_at: str
    message: AssistantMessage
    done_reason: DoneReason | None = None
    done: bool


class ChatChunk(Stats, _ChatHead):
    """One ``/api/chat`` object: a streamed piece, or the final one with stats (last)."""


class _GenerateHead(_Response):
    model: str
    created_at: str
    response: str
    thinking: str | None = None
    done_reason: DoneReason | None = None
    done: bool


class GenerateChunk(Stats, _GenerateHead):
    """One ``/api/generate`` object: a streamed piece, or the final one with stats (last)."""


# -- create -------------------------------------------------------------------------------


class PresetMessage(_Lenient):
    """One turn of a created model's preset history (Ollama's ``MESSAGE``)."""

    role: Literal["system", "user", "assistant"]
    content: str = ""

    @field_validator("content", mode="before")
    @classmethod
    def _null_content(cls, value: Any) -> Any:
        return "" if value is None else value


class CreateRequest(_NamedModelRequest):
    """``POST /api/create``: a model ``from`` another one, or from ``files`` (one uploaded
    GGUF blob: ``{"name.gguf": "sha256:<hex>"}``), with a system prompt, template,
    parameters, history and license over it. ``adapters`` (LoRA) and ``quantize`` are
    refused; so is the old ``modelfile`` text form (clients parse Modelfiles themselves
    now and send these fields)."""

    from_: str | None = Field(None, alias="from", description="The model to build on.")
    files: dict[str, str] | None = Field(None, description="File name -> blob digest.")
    adapters: dict[str, str] | None = None
    template: str | None = Field(None, description="A Jinja chat template.")
    license: str | list[str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="Default options (Ollama's names) for requests to the new model."
    )
    messages: list[PresetMessage] | None = None
    quantize: str | None = None
    stream: bool = True
    modelfile: str | None = None
    path: str | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _warn_unknown(cls, data: Any) -> Any:
        # As _Lenient's, knowing that "from" is the field from_.
        if isinstance(data, dict):
            known = {*cls.model_fields, "from"}
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                log.warning("%s: ignoring unknown fields %s", cls.__name__, ", ".join(unknown))
        return data

    @field_validator("stream", mode="before")
    @classmethod
    def _null_stream_is_default(cls, value: Any) -> Any:
        return True if value is None else value

    @field_validator("adapters")
    @classmethod
    def _no_adapters(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value:
            raise ValueError(
                "adapters (LoRA) are not supported by this server: create from a GGUF file "
                "with the adapter merged in"
            )
        return value

    @field_validator("quantize")
    @classmethod
    def _no_quantize(cls, value: str | None) -> str | None:
        if value:
            raise ValueError(
                "quantize is not supported by this server: ollm serves GGUF files as they "
                "are; quantize with llama.cpp's llama-quantize and upload the result"
            )
        return value

    @field_validator("modelfile", "path")
    @classmethod
    def _no_modelfile(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value:
            raise ValueError(
                f"'{info.field_name}' (the old Modelfile form) is not supported: send 'from' "
                "or 'files' with 'system', 'template', 'parameters', 'messages' as fields "
                "(as current Ollama clients do)"
            )
        return value

    @field_validator("files")
    @classmethod
    def _one_file(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) != 1:
            raise ValueError(
                "exactly one file is supported: a single GGUF file (split GGUF files and "
                "safetensors directories are not)"
            )
        return value

    @field_validator("license")
    @classmethod
    def _one_license(cls, value: str | list[str] | None) -> str | list[str] | None:
        return "\n\n".join(value) if isinstance(value, list) else value

    @field_validator("parameters")
    @classmethod
    def _known_options(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Checked as a request's ``options`` would be; unknown names are refused (as
        Ollama's create does), not ignored: a typo would silently do nothing."""
        if not value:
            return value
        unknown = sorted(key for key in value if key not in Options.model_fields)
        if unknown:
            raise ValueError(f"unknown parameter {', '.join(repr(k) for k in unknown)}")
        from pydantic import ValidationError

        try:
            checked = Options.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"parameter '{where}': {first['msg']}") from exc
        return checked.model_dump(exclude_none=True)

    @model_validator(mode="after")
    def _one_source(self) -> CreateRequest:
        if bool(self.from_) == bool(self.files):
            raise ValueError("give either 'from' (a model name) or 'files' (one GGUF blob)")
        return self


class ShowReply(ShowResponse):
    """``POST /api/show`` with what a created model adds: its ``system`` prompt and preset
    ``messages`` (its ``parameters`` and ``template`` fill the fields shared with others)."""

    system: str | None = None
    messages: list[PresetMessage] | None = None
