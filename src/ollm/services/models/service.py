"""ModelService: the registry, and which models are in memory, for how long.

* Registry (``registry.py``): bundled models, GGUF files in ``$OLLM_HOME/models``, pulled
  and copied names in its manifest, with metadata read from each file's GGUF header.
* Residency: a model loads on first use, once however many requests arrive together
  (they all await the same load). Several stay loaded within ``max_loaded_models`` and
  ``memory_budget``; to make room, idle models unload least recently used first, and a
  load that cannot fit waits until a busy model becomes idle. A request holds its model
  (:meth:`ModelService.acquire` ... :meth:`ModelService.release`) from start until its
  stream ends, and a held model is never unloaded: a running stream is never cut off.
* Keep-alive, as in Ollama: each request sets how long its model stays loaded once idle
  (None: the default, 0: unload when its requests end, negative: forever). A background
  task unloads models whose time ran out.
* Pull, copy, delete: ``pull.py`` and the registry. Create (Ollama's ``/api/create``):
  ``create.py``, from another model or from a GGUF blob uploaded into ``blobs.py``'s store;
  the created model's preset (``preset.py``) gives its requests their defaults.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ollm.backends.base import Backend
from ollm.backends.registry import BackendRegistry, default_registry
from ollm.chat.template import ChatTemplate
from ollm.engine.client import AsyncEngine, EngineLimits, OutputObserver
from ollm.engine.loop import EngineStats
from ollm.engine.snapshot_store import SnapshotStore
from ollm.errors import ModelLoadError, ModelNotFoundError, ShuttingDownError
from ollm.placement import processor_split
from ollm.placement.fit import compute_buffer_bytes, place_layers
from ollm.placement.gpus import GpuInfo, detect_gpus
from ollm.services.models import bundled
from ollm.services.models.blobs import BlobStore
from ollm.services.models.create import CreateSpec, create_model
from ollm.services.models.pull import Puller
from ollm.services.models.registry import ModelEntry, ModelInfo, Registry
from ollm.services.models.residency import (
    KV_TYPE_SCALE,
    ResidencyLimits,
    Resident,
    default_budget,
    estimate_memory,
    plan_evictions,
)
from ollm.settings import EngineSettings, Settings

__all__ = [
    "CreateSpec",
    "LoadedModel",
    "Loader",
    "ModelEntry",
    "ModelEvents",
    "ModelInfo",
    "ModelService",
]

log = logging.getLogger(__name__)

Loader = Callable[[Path, EngineSettings], Backend]


class ModelEvents(Protocol):
    """What the model manager tells a listener (metrics) as models come and go."""

    def engine_observer(self, model_id: str) -> OutputObserver | None:
        """The observer of every delta of the engine about to start for ``model_id``."""
        ...

    def model_loaded(self, model_id: str, seconds: float) -> None:
        """``model_id`` is loaded; the load took ``seconds``."""
        ...

    def model_unloaded(self, model_id: str, stats: EngineStats) -> None:
        """``model_id``'s engine stopped; ``stats`` are its final counters."""
        ...


@dataclass(slots=True, eq=False)
class LoadedModel:
    """A model in memory with its engine thread running, and its residency state.

    ``keep_alive`` is in seconds (negative: forever; 0: unload when idle); ``in_flight``
    counts the requests holding it; ``size_bytes`` is its estimated memory, and
    ``device_bytes`` the part of it on each GPU (empty when none was listed).
    """

    entry: ModelEntry
    backend: Backend
    engine: AsyncEngine
    template: ChatTemplate | None
    size_bytes: int = 0
    device_bytes: tuple[int, ...] = ()
    keep_alive: float = 300.0
    in_flight: int = 0
    load_duration: float = 0.0  # seconds the load took
    stale: bool = False  # its name now means another file: unload once idle
    idle_since: float = field(default_factory=time.time)
    last_used: int = 0  # LRU order

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    @property
    def expires_at(self) -> float | None:
        """Unix time it unloads if nothing uses it until then; None means never.

        While requests run the countdown has not started: it reads "keep_alive from now".
        """
        if self.keep_alive < 0:
            return None
        start = time.time() if self.in_flight else self.idle_since
        expires = start + self.keep_alive
        # A keep_alive of centuries ("1e12", "inf") is forever: no calendar holds its date.
        return expires if expires < _LAST_DATE else None

    @property
    def size_vram(self) -> int:
        """Bytes of ``size_bytes`` on the accelerator (what Ollama's ``/api/ps`` calls
        ``size_vram``): as placed on the GPUs, or, where none was listed (Metal), by the
        share of layers offloaded. With every block offloaded it is all of it, as Ollama
        counts (the token embeddings llama.cpp keeps on the host are not worth a "7% CPU")."""
        facts = self.backend.facts
        if not facts.layers or not facts.gpu_layers:
            return 0
        if facts.gpu_layers >= facts.layers:
            return self.size_bytes
        if self.device_bytes:
            return min(sum(self.device_bytes), self.size_bytes)
        return self.size_bytes * min(facts.gpu_layers, facts.layers) // facts.layers

    @property
    def processor(self) -> str:
        """Where it runs, as Ollama prints it: ``100% GPU``, ``100% CPU``, ``35%/65% CPU/GPU``."""
        return processor_split(self.size_bytes, self.size_vram)

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Prompt text to tokens, adding BOS unless the text already starts with it."""
        facts = self.backend.facts
        add_bos = facts.add_bos and not (facts.bos_text and text.startswith(facts.bos_text))
        return self.backend.tokenize(text, add_special=add_bos, parse_special=special)


# The smallest KV pool the default shrinks to for a model that would not fit otherwise.
MIN_AUTO_POOL_CELLS = 2048
# llama.cpp's default micro-batch: the compute buffer is sized for this many tokens.
UBATCH_TOKENS = 512


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """How a model will be loaded: its engine settings (GPU layers fitted), its estimated
    memory, and the part of it on each GPU."""

    engine: EngineSettings
    size_bytes: int
    device_bytes: tuple[int, ...] = ()

    @property
    def host_bytes(self) -> int:
        return self.size_bytes - sum(self.device_bytes)


# 9999-12-31T23:59:59Z, the last moment a datetime (and RFC 3339) can name.
_LAST_DATE = 253402300799.0


class ModelService:
    """The registry of models and the engines of those loaded."""

    def __init__(
        self,
        settings: Settings,
        *,
        entries: list[ModelEntry] | None = None,
        backends: BackendRegistry | None = None,
        loader: Loader | None = None,
        bundled_models: Sequence[bundled.BundledModel] = bundled.BUNDLED_MODELS,
        clock: Callable[[], float] = time.time,
        runtime: Callable[[], str] | None = None,
        gpus: Callable[[], Sequence[GpuInfo]] | None = None,
    ) -> None:
        """``entries`` replaces the bundled models (tests); ``clock`` drives keep-alive.

        A model is loaded by the backend ``backends`` registers for its format (default:
        llama.cpp for GGUF); ``loader`` replaces that choice outright (tests). ``runtime``
        names the runtime KV snapshots are tied to (default: the GGUF backend's). ``gpus``
        lists the GPUs and their free memory now (default: ``nvidia-smi``'s, when the GGUF
        backend's build can offload; none otherwise).
        """
        self.settings = settings
        self.registry = Registry(settings, entries=entries, bundled_models=bundled_models)
        budget = settings.memory_budget
        self.limits = ResidencyLimits(
            max_models=settings.max_loaded_models,
            budget_bytes=budget if budget is not None else default_budget(),
        )
        self.backends = backends if backends is not None else default_registry()
        self._loader = loader if loader is not None else self.backends.load
        self._clock = clock
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Task[LoadedModel]] = {}
        self._gpus = gpus if gpus is not None else self._offload_gpus
        self._reserved: dict[str, LoadPlan] = {}  # loads in progress -> what they will take
        self._freeing: dict[int, LoadedModel] = {}  # id(LoadedModel) -> one being closed
        self._waiters: list[asyncio.Future[None]] = []
        self._ticks = itertools.count(1)
        self._tasks: set[asyncio.Task[object]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._reaper_wake: asyncio.Event | None = None
        self._closed = False
        self._puller = Puller(self.registry, endpoint=settings.hf_endpoint)
        self.blobs = BlobStore(self.registry.store, max_size=settings.max_blob_size)
        self.events: ModelEvents | None = None  # set by create_app (metrics)
        self._runtime = runtime if runtime is not None else self._gguf_runtime
        self._snapshots: SnapshotStore | None = None

    def _gguf_runtime(self) -> str:
        # A KV snapshot is only meaningful to a cache of the same element type.
        runtime = self.backends.for_format("gguf").runtime()
        kv_type = self.settings.engine.kv_cache_type
        return runtime if kv_type == "f16" else f"{runtime}; kv {kv_type}"

    # -- registry ------------------------------------------------------------------------

    def list_models(self) -> list[ModelEntry]:
        """Every model that can be served (bundled, local files, pulled, copies)."""
        self._start_background()
        return list(self.registry.entries().values())

    def resolve(self, name: str | None) -> ModelEntry:
        """The entry for ``name`` (None: the default model). 404 :class:`ModelNotFoundError`.

        Names are case-insensitive; a bare name means ``:latest`` or its only tag.
        """
        return self.registry.resolve((name or self.settings.default_model).strip())

    def info(self, name: str | None) -> ModelInfo:
        """Facts from the model's GGUF header: family, parameters, quantization, context,
        template, license, digest, and the metadata (without tokenizer arrays). 404 if unknown.
        """
        try:
            entry = self.resolve(name)
        except ModelNotFoundError:
            # Deleted while still loaded (its last streams running): still describe it.
            loaded = self._loaded.get(name or "")
            if loaded is None:
                raise
            entry = loaded.entry
        return self.registry.info(entry)

    # -- residency -----------------------------------------------------------------------

    def loaded_models(self) -> list[LoadedModel]:
        """Models in memory now, most recently used first."""
        return sorted(self._loaded.values(), key=lambda m: m.last_used, reverse=True)

    async def get(self, name: str | None, *, keep_alive: float | None = None) -> LoadedModel:
        """The loaded model, loading it first if needed, and mark it used.

        Does not hold the model: to run requests on its engine use :meth:`acquire`.
        ``keep_alive`` (seconds; None: the default; 0: unload when idle; negative: never)
        replaces the model's keep-alive, as a request does in Ollama.
        """
        loaded = await self._ensure_loaded(self.resolve(name))
        self._touch(loaded, keep_alive)
        return loaded

    async def acquire(self, name: str | None, *, keep_alive: float | None = None) -> LoadedModel:
        """Like :meth:`get`, and hold the model until :meth:`release`: it will not unload.

        Waits (does not fail) while the model loads or while room is being made for it.
        """
        loaded = await self._ensure_loaded(self.resolve(name))
        loaded.in_flight += 1
        self._touch(loaded, keep_alive)
        return loaded

    def acquire_again(self, loaded: LoadedModel) -> None:
        """One more hold on a model the caller holds already (each choice of an ``n`` > 1
        request holds it until its own stream ends)."""
        if loaded.in_flight <= 0:
            raise RuntimeError(f"{loaded.model_id} is not held")
        loaded.in_flight += 1

    def release(self, loaded: LoadedModel) -> None:
        """Give back one hold from :meth:`acquire`. Starts its keep-alive countdown when the
        last one goes, or unloads it at once if its keep-alive is 0."""
        if loaded.in_flight <= 0:
            log.warning("release of %s without a matching acquire", loaded.model_id)
            return
        loaded.in_flight -= 1
        loaded.last_used = next(self._ticks)
        if loaded.in_flight == 0:
            loaded.idle_since = self._clock()
            current = self._loaded.get(loaded.model_id) is loaded
            if current and loaded.stale:
                self._begin_unload(loaded, "its name now means another file")
            elif current and loaded.keep_alive == 0:
                self._begin_unload(loaded, "keep_alive is 0")
        self._changed()

    @asynccontextmanager
    async def hold(
        self, name: str | None, *, keep_alive: float | None = None
    ) -> AsyncIterator[LoadedModel]:
        """``async with models.hold(name) as loaded:`` acquire and release around a block."""
        loaded = await self.acquire(name, keep_alive=keep_alive)
        try:
            yield loaded
        finally:
            self.release(loaded)

    async def unload(self, name: str | None) -> bool:
        """Unload a model now, or when its running requests end (as Ollama's keep_alive 0).

        Returns False if it was not loaded. A later request loads it again.
        """
        entry = self.resolve(name)
        loading = self._loading.get(entry.model_id)
        if loading is not None:
            await asyncio.wait([loading])
        loaded = self._loaded.get(entry.model_id)
        if loaded is None:
            return False
        loaded.keep_alive = 0
        if loaded.in_flight == 0:
            await self._begin_unload(loaded, "unload requested")
        else:
            log.info("%s unloads when its %d requests end", entry.model_id, loaded.in_flight)
        return True

    def expire_idle(self, now: float | None = None) -> list[str]:
        """Unload every idle model whose keep-alive ran out by ``now``; their ids."""
        now = self._clock() if now is None else now
        expired = [
            m
            for m in self._loaded.values()
            if m.in_flight == 0 and m.keep_alive >= 0 and m.idle_since + m.keep_alive <= now
        ]
        for loaded in expired:
            self._begin_unload(loaded, "keep-alive expired")
        return [m.model_id for m in expired]

    # -- pull, copy, delete -------------------------------------------------------------------

    async def pull(self, name: str) -> AsyncIterator[dict[str, object]]:
        """Start pulling ``hf.co/ORG/REPO[:QUANT]`` or ``ORG/REPO:FILE.gguf``.

        Awaiting it validates the name (400 :class:`InvalidModelNameError`) and finds the
        file upstream (404 :class:`ModelNotFoundError`, 502 :class:`PullError`), before any
        byte is streamed. Iterate the result for Ollama-shaped progress events:
        ``{"status": "pulling manifest"}``, ``{"status": "downloading sha256:<hex>",
        "digest", "total", "completed"}`` (repeated), ``{"status": "verifying sha256
        digest"}``, ``{"status": "writing manifest"}``, ``{"status": "success"}``. Errors
        after that (connection lost for good, :class:`DigestMismatchError`) are raised
        from the iteration. Downloads resume where an interrupted one stopped.
        """
        self._start_background()
        plan = await self._puller.prepare(name)
        return self._puller.run(plan)

    async def copy(self, source: str, destination: str) -> None:
        """Give model ``source`` a second name (no bytes copied). 404 if ``source`` is
        unknown, 400 if ``destination`` is invalid or a bundled model's name."""
        entry = self.resolve(source)
        await asyncio.to_thread(self.registry.copy, entry, destination)

    async def create(self, spec: CreateSpec) -> list[str]:
        """Make model ``spec.name`` from another model or an uploaded GGUF blob, with a
        system prompt, template, parameters, history or license over it (no bytes copied).
        Returns the statuses of the steps, as Ollama reports them. 400 for what cannot be
        made, 404 for an unknown base; nothing is written then. A loaded model of that
        name is reloaded once its running requests end (its template may have changed)."""
        return await asyncio.to_thread(create_model, self.registry, self.blobs, spec)

    async def delete(self, name: str) -> None:
        """Delete a model name, and its file once no other name uses it. Unloads it first
        (when its running requests end). 400 :class:`ModelProtectedError` for bundled models."""
        entry = self.resolve(name)
        self.registry.refuse_protected(entry.model_id, "deleted")
        await self.unload(entry.model_id)
        await asyncio.to_thread(self.registry.delete, entry)

    # -- loading -------------------------------------------------------------------------

    async def _ensure_loaded(self, entry: ModelEntry) -> LoadedModel:
        self._start_background()
        while True:
            loaded = self._loaded.get(entry.model_id)
            changed = loaded is not None and (
                loaded.entry.path != entry.path or loaded.entry.preset != entry.preset
            )
            if loaded is not None and changed:
                # Re-pulled, or overwritten by a copy or a create: running streams finish on
                # the old file (and template), new requests after them get the new one.
                loaded.stale = True
                if loaded.in_flight:
                    return loaded
                await self._begin_unload(loaded, "its name now means another file")
                continue
            if loaded is not None:
                return loaded
            task = self._loading.get(entry.model_id)
            if task is None:
                task = asyncio.ensure_future(self._load(entry))
                self._loading[entry.model_id] = task
                task.add_done_callback(lambda _t: self._loading.pop(entry.model_id, None))
                task.add_done_callback(_retrieve_exception)
            loaded = await asyncio.shield(task)
            if self._loaded.get(entry.model_id) is loaded:
                return loaded
            # Unloaded between the load finishing and this caller resuming: load it again.

    def _engine_settings(self, entry: ModelEntry) -> EngineSettings:
        """The engine settings to load ``entry`` with: the configured ones, except that the
        default KV pool shrinks (to no less than :data:`MIN_AUTO_POOL_CELLS`) when the
        model's weights plus 8,192 cells would not fit in the memory budget, so a big model
        on a small machine still loads, with less room for context."""
        engine = self.settings.engine
        chosen = {"kv_pool_cells", "context_per_sequence"} & engine.model_fields_set
        info = self.registry.gguf_info(entry.path)
        per_cell = info.kv_bytes_per_cell() if info is not None else None
        if chosen or not per_cell or info is None:
            return engine
        pool, _ = engine.kv_layout(info.context_length or 1 << 30)
        assert pool is not None
        cell_bytes = per_cell * KV_TYPE_SCALE[engine.kv_cache_type]
        room = self.limits.budget_bytes - entry.size_bytes
        fitting = int(room // cell_bytes) // 256 * 256 if room > 0 else 0
        if fitting >= pool:
            return engine
        smaller = max(MIN_AUTO_POOL_CELLS, fitting)
        log.info(
            "%s: a KV pool of %d cells fits the memory budget (not %d)",
            entry.model_id,
            smaller,
            pool,
        )
        return engine.model_copy(update={"kv_pool_cells": smaller})

    def _offload_gpus(self) -> list[GpuInfo]:
        """The GPUs ``nvidia-smi`` lists, when the GGUF backend can offload to them."""
        try:
            offloads = self.backends.for_format("gguf").offloads()
        except ModelLoadError:
            return []
        return detect_gpus() if offloads else []

    def _plan(self, entry: ModelEntry, room: Sequence[int]) -> LoadPlan:
        """What loading ``entry`` takes, with its layers fitted into ``room`` (free bytes
        per GPU, counting idle models' memory as free: they can be unloaded for it)."""
        engine = self._engine_settings(entry)
        info = self.registry.gguf_info(entry.path)
        if info is None:
            return LoadPlan(engine, entry.size_bytes)
        pool, context = engine.kv_layout(info.context_length or 1 << 30)
        cells = pool if pool is not None else context * engine.max_running
        size = estimate_memory(
            entry.size_bytes, info.kv_bytes_per_cell(), cells, kv_cache_type=engine.kv_cache_type
        )
        sizes = info.layer_sizes()
        if not room or sizes is None:
            return LoadPlan(engine, size)
        compute = compute_buffer_bytes(
            vocab=info.skipped_arrays.get("tokenizer.ggml.tokens", 0),
            embedding=int(info.arch_value("embedding_length") or 0),
            heads=int(info.arch_value("attention.head_count") or 0),
            cells=cells,
            batch=min(UBATCH_TOKENS, engine.max_running + engine.max_step_tokens),
            flash_attention=engine.flash_attention != "off",
        )
        placement = place_layers(
            sizes,
            cells=cells,
            kv_scale=KV_TYPE_SCALE[engine.kv_cache_type],
            free=room,
            compute=compute,
            overhead=engine.gpu_overhead,
            requested=engine.gpu_layers,
            split=engine.tensor_split,
            main=engine.main_gpu,
        )
        log.info(
            "%s: %d of %d layers on the GPUs (%s MiB each), %d MiB in host memory",
            entry.model_id,
            placement.gpu_layers,
            sizes.layers + 1,
            "/".join(str(b >> 20) for b in placement.device_bytes),
            placement.host_bytes >> 20,
        )
        fitted = engine.model_copy(
            update={
                "gpu_layers": placement.gpu_layers,
                "tensor_split": placement.tensor_split or engine.tensor_split,
            }
        )
        return LoadPlan(
            fitted, placement.host_bytes + placement.total_device_bytes, placement.device_bytes
        )

    def _device_free(self, gpus: Sequence[GpuInfo]) -> list[int]:
        """Bytes per GPU free for a new load without unloading anything: what the GPUs
        report, plus what models being freed still hold, less what loads in progress
        will take (neither shows in the report yet)."""
        free = [gpu.memory_free_bytes for gpu in gpus]
        for delta, models in (
            (1, [m.device_bytes for m in self._freeing.values()]),
            (-1, [plan.device_bytes for plan in self._reserved.values()]),
        ):
            for device_bytes in models:
                for index, amount in enumerate(device_bytes[: len(free)]):
                    free[index] += delta * amount
        return free

    def _device_room(self, gpus: Sequence[GpuInfo]) -> list[int]:
        """Bytes per GPU a new load may be fitted into: free, plus what idle models hold."""
        room = self._device_free(gpus)
        for model in self._loaded.values():
            if model.in_flight == 0:
                for index, amount in enumerate(model.device_bytes[: len(room)]):
                    room[index] += amount
        return room

    async def _load(self, entry: ModelEntry) -> LoadedModel:
        gpus = await asyncio.to_thread(self._gpus)
        plan = await asyncio.to_thread(self._plan, entry, self._device_room(gpus))
        freeing = await self._reserve(entry.model_id, plan)
        try:
            if freeing:
                await asyncio.wait(freeing)
            return await self._start_engine(entry, plan)
        finally:
            self._reserved.pop(entry.model_id, None)
            self._changed()

    async def _reserve(self, model_id: str, plan: LoadPlan) -> list[asyncio.Task[None]]:
        """Wait until ``plan`` fits in host and GPU memory, unload idle models (LRU) to make
        room, and reserve the room. Returns the unload tasks still freeing memory."""
        overhead = plan.engine.gpu_overhead
        while True:
            if self._closed:
                raise ShuttingDownError("the server is shutting down")
            residents = [
                Resident(
                    m.model_id,
                    m.size_bytes,
                    m.in_flight > 0,
                    m.last_used,
                    device_bytes=sum(m.device_bytes),
                )
                for m in self._loaded.values()
            ]
            pending = [
                *(p.host_bytes for p in self._reserved.values()),
                *(m.size_bytes - sum(m.device_bytes) for m in self._freeing.values()),
            ]
            device_room = 0
            if plan.device_bytes:
                gpus = await asyncio.to_thread(self._gpus)
                device_room = sum(max(0, f - overhead) for f in self._device_free(gpus))
            victims = plan_evictions(
                residents,
                plan.size_bytes,
                self.limits,
                pending=pending,
                need_device=sum(plan.device_bytes),
                device_room=device_room,
            )
            if victims is not None:
                self._reserved[model_id] = plan  # decided and reserved with no await between
                return [self._begin_unload(self._loaded[v], "making room") for v in victims]
            log.info("%s waits for room (%d MiB needed)", model_id, plan.size_bytes >> 20)
            await self._wait_for_change()

    async def _start_engine(self, entry: ModelEntry, plan: LoadPlan) -> LoadedModel:
        engine_settings = plan.engine
        log.info("loading %s from %s (~%d MiB)", entry.model_id, entry.path, plan.size_bytes >> 20)
        started = time.monotonic()
        try:
            backend = await asyncio.to_thread(self._loader, entry.path, engine_settings)
        except Exception as exc:
            raise ModelLoadError(f"could not load model '{entry.model_id}': {exc}") from exc
        facts = backend.facts
        # A created model's own template replaces the one in its file.
        preset = entry.preset
        source = preset.template if preset and preset.template else facts.chat_template
        template = (
            ChatTemplate(source, bos_token=facts.bos_text, eos_token=facts.eos_text)
            if source
            else None
        )
        limits = EngineLimits(
            max_running=backend.num_sequences,
            max_waiting=engine_settings.max_waiting,
            context_per_sequence=backend.context_per_sequence,
            max_step_tokens=engine_settings.max_step_tokens,
            step_target_seconds=engine_settings.step_target_ms / 1000,
            kv_pool_cells=getattr(backend, "kv_pool_cells", None),
        )
        observer = self.events.engine_observer(entry.model_id) if self.events else None
        engine = AsyncEngine(backend, limits, observer=observer, snapshots=self.snapshots)
        engine.start()
        loaded = LoadedModel(
            entry,
            backend,
            engine,
            template,
            size_bytes=plan.size_bytes,
            device_bytes=plan.device_bytes,
            keep_alive=self.settings.keep_alive,
            load_duration=time.monotonic() - started,
            idle_since=self._clock(),
            last_used=next(self._ticks),
        )
        self._loaded[entry.model_id] = loaded
        if self.events is not None:
            self.events.model_loaded(entry.model_id, loaded.load_duration)
        return loaded

    # -- unloading -----------------------------------------------------------------------

    def _touch(self, loaded: LoadedModel, keep_alive: float | None) -> None:
        loaded.keep_alive = self.settings.keep_alive if keep_alive is None else keep_alive
        loaded.last_used = next(self._ticks)
        if loaded.in_flight == 0:
            loaded.idle_since = self._clock()
        self._changed()

    def _begin_unload(self, loaded: LoadedModel, reason: str) -> asyncio.Task[None]:
        """Forget ``loaded`` now (no new request can get it) and free it in the background."""
        if self._loaded.get(loaded.model_id) is loaded:
            del self._loaded[loaded.model_id]
        log.info("unloading %s (%s)", loaded.model_id, reason)
        self._freeing[id(loaded)] = loaded
        task = asyncio.ensure_future(self._free(loaded))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _free(self, loaded: LoadedModel) -> None:
        try:
            await loaded.engine.close()
        except Exception:
            log.exception("error while unloading %s", loaded.model_id)
        finally:
            self._freeing.pop(id(loaded), None)
            self._changed()
            if self.events is not None:
                self.events.model_unloaded(loaded.model_id, loaded.engine.stats)

    # -- change notification and the keep-alive task ------------------------------------

    def _changed(self) -> None:
        """Something that a waiting load or the keep-alive task cares about happened."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._reaper_wake is not None:
            self._reaper_wake.set()

    async def _wait_for_change(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _start_background(self) -> None:
        """Start the keep-alive task and the metadata warm-up, once, on the running loop."""
        if self._reaper is not None or self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the event loop (scripts, sync tests): nothing to start
        self._reaper_wake = asyncio.Event()
        self._reaper = asyncio.ensure_future(self._keep_alive_loop())
        warm = asyncio.ensure_future(asyncio.to_thread(self._warm_up))
        self._tasks.add(warm)
        warm.add_done_callback(self._tasks.discard)

    def _warm_up(self) -> None:
        """Read every model's header and digest once, off the event loop, so listings and
        ``show`` answer at once later (both are cached on disk or in memory)."""
        for entry in self.registry.entries().values():
            if self._closed:
                return
            try:
                self.registry.gguf_info(entry.path)
                _ = entry.digest
            except OSError as exc:
                log.warning("cannot read %s: %s", entry.path, exc)

    async def _keep_alive_loop(self) -> None:
        assert self._reaper_wake is not None
        while not self._closed:
            self.expire_idle()
            deadlines = [
                m.idle_since + m.keep_alive
                for m in self._loaded.values()
                if m.in_flight == 0 and m.keep_alive >= 0
            ]
            timeout = max(0.0, min(deadlines) - self._clock()) if deadlines else None
            self._reaper_wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._reaper_wake.wait(), timeout)

    # -- KV snapshots ---------------------------------------------------------------------

    @property
    def snapshots(self) -> SnapshotStore | None:
        """The KV snapshot store shared by every model's engine (None when turned off);
        opened, and its directory indexed, on first use."""
        if self._snapshots is None and self.settings.kv_disk_budget > 0:
            self._snapshots = SnapshotStore(
                self.settings.kv_dir,
                budget_bytes=self.settings.kv_disk_budget,
                runtime=self._runtime(),
            )
        return self._snapshots

    async def forget_conversation(self, tag: str) -> None:
        """A chat was deleted: drop its cached KV from every engine and from disk."""
        for loaded in self._loaded.values():
            loaded.engine.forget_conversation(tag)
        store = self.snapshots
        if store is not None:
            await asyncio.to_thread(store.delete_tag, tag)

    async def close(self) -> None:
        """Stop every engine and free every model."""
        self._closed = True
        self._puller.cancel_all()
        self._changed()
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        await asyncio.gather(*self._loading.values(), return_exceptions=True)
        for loaded in list(self._loaded.values()):
            self._begin_unload(loaded, "shutting down")
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _retrieve_exception(task: asyncio.Future[LoadedModel]) -> None:
    # A load whose every waiter went away must not log "exception was never retrieved";
    # waiters that remain get the exception through the shield.
    if not task.cancelled():
        task.exception()
