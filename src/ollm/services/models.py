"""ModelService: which models exist, and loading them (once) into a running engine.

The registry today is the bundled models plus any ``*.gguf`` under ``$OLLM_HOME/models``
(named ``<file stem>:latest``). A model loads on first use; concurrent first requests
share that one load. Residency limits, keep-alive and pulls come with the model-manager
work; this module is where they go.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ollm.backends.base import Backend
from ollm.chat.template import ChatTemplate
from ollm.engine.client import AsyncEngine, EngineLimits
from ollm.errors import ModelLoadError, ModelNotFoundError
from ollm.services import bundled
from ollm.settings import EngineSettings, Settings

log = logging.getLogger(__name__)

Loader = Callable[[Path, EngineSettings], Backend]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model that can be loaded: its public id and where its weights are."""

    model_id: str
    path: Path
    description: str = ""
    bundled: bool = False

    @property
    def created(self) -> int:
        return int(self.path.stat().st_mtime) if self.path.exists() else 0

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


@dataclass(slots=True)
class LoadedModel:
    """A model in memory with its engine thread running."""

    entry: ModelEntry
    backend: Backend
    engine: AsyncEngine
    template: ChatTemplate | None

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Prompt text to tokens, adding BOS unless the text already starts with it."""
        facts = self.backend.facts
        add_bos = facts.add_bos and not (facts.bos_text and text.startswith(facts.bos_text))
        return self.backend.tokenize(text, add_special=add_bos, parse_special=special)


def _local_id(path: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "model"
    return f"{name}:latest"


def discover_models(settings: Settings) -> list[ModelEntry]:
    """Bundled models that are installed, then GGUF files under the models directory."""
    entries: list[ModelEntry] = []
    for model in bundled.BUNDLED_MODELS:
        path = bundled.locate(model, settings.models_dir)
        if path is not None:
            entries.append(ModelEntry(model.model_id, path, model.description, bundled=True))
    known = {entry.path.resolve() for entry in entries}
    if settings.models_dir.is_dir():
        for path in sorted(settings.models_dir.glob("*.gguf")):
            if path.resolve() not in known:
                entries.append(ModelEntry(_local_id(path), path, "local GGUF file"))
    return entries


def default_loader(path: Path, engine: EngineSettings) -> Backend:
    from ollm.backends.llamacpp.backend import LlamaCppBackend  # heavy: import on first load

    return LlamaCppBackend.load(path, engine)


class ModelService:
    """The registry of models and the engines of those loaded."""

    def __init__(
        self,
        settings: Settings,
        *,
        entries: list[ModelEntry] | None = None,
        loader: Loader = default_loader,
    ) -> None:
        self.settings = settings
        self._entries = {e.model_id: e for e in (entries or discover_models(settings))}
        self._loader = loader
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Task[LoadedModel]] = {}

    def list_models(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def loaded_models(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def resolve(self, name: str | None) -> ModelEntry:
        """The entry for ``name`` (``name:tag``; a bare name means ``:latest`` or a unique tag)."""
        name = (name or self.settings.default_model).strip()
        if name in self._entries:
            return self._entries[name]
        if ":" not in name:
            matches = [e for mid, e in self._entries.items() if mid.split(":")[0] == name]
            if len(matches) == 1:
                return matches[0]
        raise ModelNotFoundError(f"model '{name}' not found", param="model")

    async def get(self, name: str | None) -> LoadedModel:
        """The loaded model, loading it first if needed (one load however many callers)."""
        entry = self.resolve(name)
        if entry.model_id in self._loaded:
            return self._loaded[entry.model_id]
        task = self._loading.get(entry.model_id)
        if task is None:
            task = asyncio.ensure_future(self._load(entry))
            self._loading[entry.model_id] = task
            task.add_done_callback(lambda _t: self._loading.pop(entry.model_id, None))
        return await asyncio.shield(task)

    async def _load(self, entry: ModelEntry) -> LoadedModel:
        engine_settings = self.settings.engine
        log.info("loading %s from %s", entry.model_id, entry.path)
        try:
            backend = await asyncio.to_thread(self._loader, entry.path, engine_settings)
        except Exception as exc:
            raise ModelLoadError(f"could not load model '{entry.model_id}': {exc}") from exc
        facts = backend.facts
        template = (
            ChatTemplate(facts.chat_template, bos_token=facts.bos_text, eos_token=facts.eos_text)
            if facts.chat_template
            else None
        )
        limits = EngineLimits(
            max_running=backend.num_sequences,
            max_waiting=engine_settings.max_waiting,
            context_per_sequence=backend.context_per_sequence,
            max_step_tokens=engine_settings.max_step_tokens,
            step_target_seconds=engine_settings.step_target_ms / 1000,
        )
        engine = AsyncEngine(backend, limits)
        engine.start()
        loaded = LoadedModel(entry, backend, engine, template)
        self._loaded[entry.model_id] = loaded
        return loaded

    async def close(self) -> None:
        """Stop every engine and free every model."""
        loaded, self._loaded = list(self._loaded.values()), {}
        for model in loaded:
            await model.engine.close()
