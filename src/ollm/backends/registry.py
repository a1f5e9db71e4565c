"""Which backend loads which model format: one small table, format -> factory.

The model service asks :meth:`BackendRegistry.load` for a backend and never names an engine
class itself, so a new engine (transformers, onnxruntime-genai, a plugin's) is one
:meth:`BackendRegistry.register` call. A factory's module is imported only when a model of
its format is first loaded: importing ``llama_cpp`` costs a second and a native library.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ollm.backends.base import Backend
from ollm.errors import ModelLoadError
from ollm.settings import EngineSettings

__all__ = ["BackendFactory", "BackendRegistry", "default_registry", "detect_format"]

GGUF_MAGIC = b"GGUF"

LoadFn = Callable[[Path, EngineSettings], Backend]


@dataclass(frozen=True, slots=True)
class BackendFactory:
    """How to load one model format.

    ``target`` is ``"package.module:Class"``; the class has ``load(path, engine_settings)``
    and its module a ``runtime_version()`` naming the exact runtime (KV snapshots are tied to
    it), and optionally ``supports_gpu_offload()``. All are imported on first use.
    """

    name: str
    formats: tuple[str, ...]
    target: str

    def _resolve(self) -> tuple[LoadFn, Callable[[], str]]:
        module_name, _, class_name = self.target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, class_name).load, module.runtime_version

    def load(self, path: Path, engine: EngineSettings) -> Backend:
        """Load the model at ``path`` (blocking: call it off the event loop)."""
        load, _ = self._resolve()
        return load(path, engine)

    def runtime(self) -> str:
        """The exact runtime this factory's backend runs on, e.g. ``llama.cpp b1234``."""
        _, runtime = self._resolve()
        return runtime()

    def offloads(self) -> bool:
        """Whether this backend's build can put layers on a GPU: its module's
        ``supports_gpu_offload()``, False when it has none or it cannot be imported."""
        try:
            module = importlib.import_module(self.target.partition(":")[0])
        except Exception:  # no wheel, or a native library this CPU cannot load
            return False
        check = getattr(module, "supports_gpu_offload", None)
        return bool(check()) if callable(check) else False


def detect_format(path: Path) -> str:
    """A weights file's format from its first bytes (the name may lie): ``gguf`` or
    ``unknown``."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return "unknown"
    return "gguf" if head == GGUF_MAGIC else "unknown"


class BackendRegistry:
    """Model format -> the factory that loads it."""

    def __init__(self, factories: tuple[BackendFactory, ...] = ()) -> None:
        self._by_format: dict[str, BackendFactory] = {}
        self._lock = threading.Lock()
        for factory in factories:
            self.register(factory)

    def register(self, factory: BackendFactory, *, replace: bool = False) -> None:
        """Serve ``factory.formats`` with ``factory``; a format already taken is an error
        unless ``replace``."""
        with self._lock:
            for fmt in factory.formats:
                taken = self._by_format.get(fmt)
                if taken is not None and not replace:
                    raise ValueError(f"format {fmt!r} is already served by {taken.name}")
            for fmt in factory.formats:
                self._by_format[fmt] = factory

    def formats(self) -> list[str]:
        """The formats some backend can load, sorted."""
        return sorted(self._by_format)

    def for_format(self, fmt: str) -> BackendFactory:
        """The factory for ``fmt``; :class:`ModelLoadError` when none serves it."""
        factory = self._by_format.get(fmt)
        if factory is None:
            known = ", ".join(self.formats()) or "none"
            raise ModelLoadError(f"no backend loads {fmt!r} models (known formats: {known})")
        return factory

    def load(self, path: Path, engine: EngineSettings) -> Backend:
        """Load ``path`` with the backend of its format (blocking)."""
        return self.for_format(detect_format(path)).load(path, engine)


LLAMA_CPP = BackendFactory(
    name="llama.cpp",
    formats=("gguf",),
    target="ollm.backends.llamacpp.backend:LlamaCppBackend",
)


def default_registry() -> BackendRegistry:
    """The backends ollm ships: llama.cpp for GGUF."""
    return BackendRegistry((LLAMA_CPP,))
