"""The FastAPI application: ``create_app(settings)`` and nothing at import time.

Services are built by the lifespan and kept on ``app.state``, so several apps (tests,
one per settings) can live in one process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ollm import __version__
from ollm.api.errors import install_error_handlers
from ollm.api.ollama.routes import router as ollama_router
from ollm.api.openai.routes import router as openai_router
from ollm.errors import OllmError
from ollm.services.completions import CompletionService
from ollm.services.models import ModelService
from ollm.settings import Settings

log = logging.getLogger(__name__)


async def _preload(models: ModelService, name: str) -> None:
    """Load the default model before serving, so the first reply does not pay for it.

    A missing or broken default model is logged, not fatal: other models still serve.
    """
    try:
        await models.get(name)
    except OllmError as exc:
        log.warning("default model %s not preloaded: %s", name, exc.message)


def create_app(settings: Settings, *, models: ModelService | None = None) -> FastAPI:
    """Build the app. ``models`` lets tests inject a registry with a fake backend."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = models if models is not None else ModelService(settings)
        app.state.settings = settings
        app.state.models = registry
        app.state.completions = CompletionService(registry)
        if settings.preload_default_model:
            await _preload(registry, settings.default_model)
        try:
            yield
        finally:
            await registry.close()

    app = FastAPI(
        title="ollm",
        version=__version__,
        description="A self-hosted LLM server with an OpenAI-compatible API.",
        lifespan=lifespan,
        strict_content_type=False,  # a JSON body without a Content-Type is still JSON
    )
    install_error_handlers(app)
    app.include_router(openai_router)
    app.include_router(ollama_router)

    @app.get("/health", tags=["system"])
    async def health() -> dict[str, str]:
        """Liveness: the server answers."""
        return {"status": "ok"}

    return app
