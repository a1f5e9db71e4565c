"""The one settings tree, from four sources; the first that sets a value wins:

1. command-line flags (``ollm serve --port 9000``), passed to :func:`load_settings`;
2. ``OLLM_*`` environment variables (``OLLM_PORT=9000``; engine fields keep flat names:
   ``OLLM_MAX_RUNNING``, ``OLLM_THREADS``);
3. a TOML file: ``--config PATH`` or ``OLLM_CONFIG`` (which must exist), else
   ``$OLLM_HOME/ollm.toml`` when it exists (``OLLM_HOME`` from the flag, the environment or
   ``~/.ollm``). Top-level keys are field names (``port = 9000``); engine fields go in an
   ``[engine]`` table. The current directory is never searched: where the server was started
   from should not change how it behaves;
4. the defaults below.

The merge is pydantic-settings' own (:meth:`Settings.settings_customise_sources` with a
``TomlConfigSettingsSource``). Unknown keys in the file and bad values anywhere raise
``ValidationError``; an unreadable or missing explicit file raises :class:`ConfigFileError`.

Nothing here runs at import time; call :func:`load_settings` and keep the result on
``app.state``. Every field carries help text because ``ollm serve --help`` and the README
are generated from the same descriptions.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
DEFAULT_KV_POOL_CELLS = 8192  # as many as llama-server -np 8 -c 8192 holds
DEFAULT_RATE_LIMIT = 300  # requests a minute per client, when rate limiting is on by default
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number of seconds or a Go-style duration (``"5m"``, ``"1h30m"``, ``"-1"``).

    This is how Ollama spells ``keep_alive``: negative means forever, 0 means at once.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION_PART.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(f"invalid duration {value!r}: use seconds or e.g. '30s', '5m', '1h'")
    return sign * sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_byte_size(value: int | str) -> int:
    """Bytes from an integer or a size with a binary suffix (``"512M"``, ``"8GiB"``, ``"2g"``)."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", value.lower())
    if match is None:
        raise ValueError(f"invalid size {value!r}: use bytes or e.g. '512M', '8G'")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def _default_threads() -> int:
    return max(1, os.cpu_count() or 1)


class EngineSettings(BaseSettings):
    """How each loaded model's engine batches and schedules work."""

    model_config = SettingsConfigDict(env_prefix="OLLM_", extra="forbid")

    max_running: int = Field(
        16, ge=1, le=256, description="Sequences decoded together in one batch (KV slots)."
    )
    kv_pool_cells: int | None = Field(
        None,
        ge=0,
        description=(
            "One KV pool of this many cells shared by every sequence (llama.cpp's unified "
            "cache): memory follows use, and one request may grow to the model's trained "
            "context when the pool has room. Unset: 8,192 cells (llama-server -np 8 -c 8192 "
            "holds as many), or max_running x context_per_sequence when that is set. "
            "0: fixed slots, each reserving context_per_sequence cells."
        ),
    )
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field(
        "f16",
        description=(
            "Element type of the KV cache: q8_0 takes about half of f16's memory, q4_0 about "
            "a quarter, at some cost in quality (as Ollama's OLLAMA_KV_CACHE_TYPE)."
        ),
    )
    flash_attention: Literal["auto", "on", "off"] = Field(
        "auto",
        description="llama.cpp's flash attention; a quantized KV cache needs it (auto: on then).",
    )
    gpu_layers: int | None = Field(
        None,
        ge=-1,
        description=(
            "Layers offloaded to the GPU by an accelerated build: unset or -1 as many as fit "
            "in the GPUs' free memory after the KV cache and compute buffers (Ollama's "
            "behaviour), 0 none (CPU only), N exactly N (one more than the model's blocks "
            "offloads the output head too). A CPU build ignores it."
        ),
    )
    main_gpu: int = Field(
        0, ge=0, description="The GPU that holds the compute buffers (llama.cpp's main_gpu)."
    )
    tensor_split: Annotated[tuple[float, ...] | None, NoDecode] = Field(
        None,
        description=(
            "Share of the offloaded layers per GPU, e.g. '3,1' (llama.cpp's tensor_split). "
            "Unset: each GPU is filled in turn with what fits in its free memory."
        ),
    )
    gpu_overhead: int = Field(
        512 << 20,
        ge=0,
        description="Bytes kept free on every GPU when fitting layers (CUDA context, workspaces).",
    )
    max_waiting: int = Field(
        128, ge=0, description="Requests allowed to wait for a slot; beyond this the API says 429."
    )
    context_per_sequence: int = Field(
        4096,
        ge=256,
        description=(
            "Context window of each sequence. With the KV pool (the default) it applies only "
            "when set: it then caps each request and sizes the pool (max_running x it); "
            "unset, a request may grow to the model's trained context within the pool. With "
            "fixed slots (kv_pool_cells = 0) it is the cells each slot reserves."
        ),
    )
    max_step_tokens: int = Field(
        512,
        ge=16,
        le=4096,
        description="Most tokens in one forward pass (prompt prefill when nothing decodes).",
    )
    step_target_ms: float = Field(
        200.0,
        gt=0,
        description=(
            "Target duration of one forward pass while streams are decoding: the time "
            "between their tokens. Long prompts are prefilled in chunks sized to it, so "
            "they never stall running streams for longer."
        ),
    )
    threads: int = Field(default_factory=_default_threads, ge=1, description="CPU threads.")

    @field_validator("tensor_split", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return tuple(float(part) for part in text.split(",") if part.strip()) or None
        return value

    @field_validator("gpu_overhead", mode="before")
    @classmethod
    def _overhead_size(cls, value: Any) -> int:
        return parse_byte_size(value)

    def kv_layout(self, context_train: int) -> tuple[int | None, int]:
        """``(pool cells, cells one sequence may use)`` for a model trained on
        ``context_train`` tokens; a pool of None means fixed slots."""
        chosen = "context_per_sequence" in self.model_fields_set
        per_sequence = min(self.context_per_sequence, context_train)
        if self.kv_pool_cells == 0:
            return None, per_sequence
        if self.kv_pool_cells is None:
            pool = self.max_running * per_sequence if chosen else DEFAULT_KV_POOL_CELLS
        else:
            pool = self.kv_pool_cells
        limit = min(pool, context_train, self.context_per_sequence if chosen else pool)
        return pool, limit

    @model_validator(mode="after")
    def _quantized_kv_needs_flash_attention(self) -> EngineSettings:
        if self.kv_cache_type != "f16" and self.flash_attention == "off":
            raise ValueError(
                f"kv_cache_type {self.kv_cache_type} needs flash attention: llama.cpp keeps a "
                "quantized V cache only with it (set flash_attention to auto or on)"
            )
        return self


class Settings(BaseSettings):
    """Server settings. Environment variables use the ``OLLM_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="OLLM_", extra="forbid")

    config: Path | None = Field(
        None,
        description=(
            "TOML settings file (must exist). Default: $OLLM_HOME/ollm.toml when present. "
            "Flags and OLLM_* variables override it."
        ),
    )

    home: Path = Field(
        default_factory=lambda: Path.home() / ".ollm",
        description="Data directory: database, models, KV snapshots.",
    )
    host: str = Field(
        "127.0.0.1",
        description=(
            "Address to listen on. Like Ollama's OLLAMA_HOST it may carry a port or a scheme "
            "(`0.0.0.0:9000`, `http://127.0.0.1:9000`), so one OLLM_HOST serves server and CLI."
        ),
    )
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    default_model: str = Field("smollm2:135m", description="Model used when none is named.")
    preload_default_model: bool = Field(
        True, description="Load the default model at start-up instead of on first use."
    )
    max_loaded_models: int = Field(
        3, ge=1, le=64, description="Most models kept in memory at once (idle ones unload first)."
    )
    memory_budget: int | None = Field(
        None,
        ge=0,
        description=(
            "Memory loaded models may use, in bytes or with a suffix ('8G'). Estimated per "
            "model as file size plus KV cache. Default: half the RAM available at start-up."
        ),
    )
    kv_disk_budget: int = Field(
        2 << 30,
        ge=0,
        description=(
            "Disk space for KV snapshots in $OLLM_HOME/kv (bytes or with a suffix: '4G'): a "
            "conversation's cached state is saved when evicted from memory or at shutdown, "
            "and loaded when it continues. Least recently used go first; 0 turns it off."
        ),
    )
    keep_alive: float = Field(
        300.0,
        description=(
            "How long an idle model stays loaded: seconds or a duration ('5m', '1h'); "
            "0 unloads it as soon as its requests end, negative keeps it forever."
        ),
    )
    hf_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("OLLM_HF_ENDPOINT", "HF_ENDPOINT", "hf_endpoint"),
        description="Hugging Face Hub URL for pulls (default https://huggingface.co; HF_ENDPOINT).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level: debug, info, warning, error."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as readable text, or one JSON object per line."
    )
    log_prompts: bool = Field(
        False,
        description=(
            "Allow prompts and replies in debug logs. Passwords and API keys are redacted "
            "from log lines either way."
        ),
    )
    shutdown_grace: float = Field(
        10.0,
        ge=0,
        description=(
            "On SIGTERM, seconds running replies get to finish before they are interrupted "
            "(and saved as such); new requests get 503 meanwhile."
        ),
    )
    engine: EngineSettings = Field(default_factory=EngineSettings)
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the chat database: sqlite+aiosqlite:///PATH or "
            "postgresql+asyncpg://USER:PASSWORD@HOST/DB. Default: SQLite at $OLLM_HOME/ollm.db."
        ),
    )
    auth: bool = Field(
        False, description="Require a login session or an API key on every endpoint."
    )
    allow_signup: bool = Field(
        True, description="With auth on, let anyone create an account (the first is admin)."
    )
    session_ttl_days: int = Field(
        30, ge=1, le=3650, description="Days a login session stays valid."
    )
    insecure_no_auth: bool = Field(
        False,
        description=(
            "Serve without authentication even on a non-loopback address (anyone who can "
            "reach the port can use the server and read its chats)."
        ),
    )
    local_username: str = Field(
        "local", description="With auth off, the one account every chat belongs to."
    )
    chat_reply_reserve: int = Field(
        512,
        ge=1,
        description=(
            "Tokens kept free for the reply when a chat's history is fitted into the "
            "context window (a chat's own max_tokens takes its place; at most half the window)."
        ),
    )

    # -- hardening: request limits, rate limits, CORS, login throttling --------------------
    max_body_size: int = Field(
        16 * 1024**2,
        ge=1024,
        description="Largest request body accepted, in bytes or with a suffix ('16M'); 413 beyond.",
    )
    max_blob_size: int = Field(
        64 * 1024**3,
        ge=1024,
        description="Largest model file POST /api/blobs takes (bytes, or e.g. '64G'); 413 beyond.",
    )
    max_json_depth: int = Field(
        64, ge=4, le=512, description="Deepest nesting of arrays/objects a JSON body may have."
    )
    rate_limit: int | None = Field(
        None,
        ge=0,
        description=(
            "Requests per minute per API key, session or address (429 beyond). Default: off "
            f"with auth off on loopback, {DEFAULT_RATE_LIMIT} otherwise; 0 turns it off."
        ),
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Origins whose web pages may call this server (comma-separated, or '*'). "
            "Default: none, cross-origin pages are refused."
        ),
    )
    tool_grammar: Literal["lazy", "off"] = Field(
        "lazy",
        description=(
            "With tool_choice auto, decode a tool call the model begins under the tools' "
            "grammar (lazy: prose stays free), or parse what it wrote (off)."
        ),
    )
    signup_rate_limit: int = Field(
        10,
        ge=0,
        description="Sign-ups allowed per client address an hour (0: no limit of its own).",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Host names this server answers to besides loopback and its bind address "
            "(comma-separated; '.example.org' admits subdomains, '*' any name). Required "
            "for a non-loopback --host: other Host headers get a 400 (DNS rebinding)."
        ),
    )
    forwarded_allow_ips: str | None = Field(
        None,
        description=(
            "Addresses of reverse proxies whose X-Forwarded-For/-Proto are trusted "
            "(comma-separated, or '*'); behind a TLS proxy this makes cookies Secure. "
            "Default: none, forwarded headers are ignored."
        ),
    )
    login_max_failures: int = Field(
        5,
        ge=0,
        description=(
            "Failed logins allowed per username (4x per address) before logins are locked, "
            "for login_lockout, doubling with each further failure; 0 turns this off."
        ),
    )
    login_lockout: float = Field(
        30.0, gt=0, description="First login lockout: seconds or a duration ('30s', '1m')."
    )

    @field_validator("max_body_size", "max_blob_size", mode="before")
    @classmethod
    def _body_size(cls, value: Any) -> int:
        return parse_byte_size(value)

    @field_validator("login_lockout", mode="before")
    @classmethod
    def _lockout_duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _origin_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip().rstrip("/") for part in text.split(",") if part.strip()]
        return value

    @property
    def effective_rate_limit(self) -> int:
        """Requests per minute per client actually enforced (0: no limit)."""
        if self.rate_limit is not None:
            return self.rate_limit
        return DEFAULT_RATE_LIMIT if self.auth or self.exposed_without_auth else 0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init), then ``OLLM_*``, then the TOML file; defaults fill in the rest."""
        env = FlatEngineEnvSource(settings_cls)
        flags = init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
        path = config_file_path({**env(), **flags})
        return init_settings, env, toml_source(settings_cls, path)

    @model_validator(mode="before")
    @classmethod
    def _split_host_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("host"), str):
            host, port = split_host_port(data["host"])
            data = {**data, "host": host}
            if port is not None and data.get("port") is None:
                data["port"] = port
        return data

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        return None if value is None else normalize_database_url(value)

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        # Filled in here rather than as a default so that it follows OLLM_HOME: after
        # validation database_url is always the effective URL, never None.
        if self.database_url is None:
            self.database_url = f"sqlite+aiosqlite:///{self.home / 'ollm.db'}"
        return self

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive_duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> int | None:
        return None if value in (None, "") else parse_byte_size(value)

    @field_validator("kv_disk_budget", mode="before")
    @classmethod
    def _disk_size(cls, value: Any) -> int:
        return parse_byte_size(value)

    @property
    def exposed_without_auth(self) -> bool:
        """True when auth is off on an address other machines can reach."""
        return not self.auth and not is_loopback_host(self.host)

    @property
    def kv_dir(self) -> Path:
        """Where KV snapshots are saved."""
        return self.home / "kv"

    @property
    def models_dir(self) -> Path:
        """Where GGUF files live (bundled models are assembled here too)."""
        return self.home / "models"


_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def normalize_database_url(url: str) -> str:
    """Give a database URL its async driver; refuse databases ollm does not support."""
    scheme, sep, rest = url.partition("://")
    driver = _DRIVERS.get(scheme.lower())
    if not sep or driver is None:
        raise ValueError(
            "database_url must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
            f"(got {scheme or url!r})"
        )
    return f"{driver}://{rest}"


def split_host_port(value: str) -> tuple[str, int | None]:
    """``http://h:p``, ``h:p``, ``[v6]:p``, ``:p`` or ``h`` -> (host, port or None)."""
    text = value.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    try:
        ipaddress.IPv6Address(text)
        return text, None  # a bare IPv6 address: its colons are not a port
    except ValueError:
        pass
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if port_text and not port_text.isdigit():
        raise ValueError(f"invalid port in host {value!r}")
    return host or "127.0.0.1", int(port_text) if port_text else None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``localhost``, 127/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: assume it is reachable from elsewhere


class ConfigFileError(ValueError):
    """The settings file named explicitly is missing, or a settings file is not valid TOML."""


class FlatEngineEnvSource(EnvSettingsSource):
    """``OLLM_*`` variables, with the engine's fields under their flat names
    (``OLLM_MAX_RUNNING``, not ``OLLM_ENGINE__MAX_RUNNING``) gathered into ``engine``."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        engine = EnvSettingsSource(EngineSettings)()
        if engine:
            data["engine"] = engine
        return data


def config_file_path(explicit: dict[str, Any]) -> Path | None:
    """The TOML file to read, from flag or environment values already known (see module doc)."""
    if explicit.get("config"):
        path = Path(explicit["config"]).expanduser()
        if not path.is_file():
            raise ConfigFileError(f"settings file {path} does not exist")
        return path
    home = explicit.get("home")
    home_path = Path(home).expanduser() if home else Path.home() / ".ollm"
    candidate = home_path / "ollm.toml"
    return candidate if candidate.is_file() else None


def toml_source(settings_cls: type[BaseSettings], path: Path | None) -> TomlConfigSettingsSource:
    """pydantic-settings' TOML source over ``path``; a syntax error names the file."""
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings tree; explicit overrides (CLI flags, None = not given) win.

    ``engine`` may hold a dict of flag values for the engine's fields.
    """
    engine = {k: v for k, v in (overrides.pop("engine", None) or {}).items() if v is not None}
    clean = {key: value for key, value in overrides.items() if value is not None}
    if engine:
        clean["engine"] = engine
    return Settings(**clean)
