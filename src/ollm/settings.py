"""The one settings tree: flags, then ``OLLM_*`` environment variables, then defaults.

Nothing here runs at import time; call :func:`load_settings` and keep the result on
``app.state``. Every field carries help text because ``ollm serve --help`` and the README
are generated from the same descriptions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_threads() -> int:
    return max(1, os.cpu_count() or 1)


class EngineSettings(BaseSettings):
    """How each loaded model's engine batches and schedules work."""

    model_config = SettingsConfigDict(env_prefix="OLLM_", extra="forbid")

    max_running: int = Field(
        16, ge=1, le=256, description="Sequences decoded together in one batch (KV slots)."
    )
    max_waiting: int = Field(
        128, ge=0, description="Requests allowed to wait for a slot; beyond this the API says 429."
    )
    context_per_sequence: int = Field(
        4096, ge=256, description="KV cells reserved per sequence (its context window)."
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


class Settings(BaseSettings):
    """Server settings. Environment variables use the ``OLLM_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="OLLM_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".ollm",
        description="Data directory: database, models, KV snapshots.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    default_model: str = Field("smollm2:135m", description="Model used when none is named.")
    preload_default_model: bool = Field(
        True, description="Load the default model at start-up instead of on first use."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level: debug, info, warning, error."
    )
    engine: EngineSettings = Field(default_factory=EngineSettings)

    @property
    def models_dir(self) -> Path:
        """Where GGUF files live (bundled models are assembled here too)."""
        return self.home / "models"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings tree; explicit overrides (CLI flags) beat the environment."""
    engine_overrides = overrides.pop("engine", None) or {}
    clean = {key: value for key, value in overrides.items() if value is not None}
    engine = EngineSettings(**{k: v for k, v in engine_overrides.items() if v is not None})
    return Settings(engine=engine, **clean)
