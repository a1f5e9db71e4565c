"""The FastAPI application: ``create_app(settings)`` and nothing at import time.

Services are built by the lifespan and kept on ``app.state``, so several apps (tests,
one per settings) can live in one process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from ollm import __version__
from ollm.api.anthropic.routes import router as anthropic_router
from ollm.api.http.auth import authenticate
from ollm.api.http.errors import install_error_handlers
from ollm.api.http.hosts import install_host_guard
from ollm.api.http.json_body import install_json_body
from ollm.api.http.limits import install_request_limits
from ollm.api.http.ratelimit import install_rate_limit
from ollm.api.http.request_id import RequestIdMiddleware
from ollm.api.http.security_headers import install_security_headers
from ollm.api.http.shutdown import Drain, DrainMiddleware
from ollm.api.http.version_header import VersionHeaderMiddleware
from ollm.api.ollama.embeddings import router as ollama_embed_router
from ollm.api.ollama.routes import router as ollama_router
from ollm.api.openai.embeddings import router as openai_embed_router
from ollm.api.openai.responses import router as responses_router
from ollm.api.openai.routes import router as openai_router
from ollm.api.system import router as system_router
from ollm.api.v1.router import router as v1_router
from ollm.api.web import router as web_router
from ollm.db import create_engine, create_sessionmaker, upgrade_database
from ollm.errors import OllmError
from ollm.observability import Metrics
from ollm.observability.http import HttpMetricsMiddleware
from ollm.services.accounts.service import AccountService
from ollm.services.chats.service import ChatService
from ollm.services.inference.completions import CompletionService
from ollm.services.inference.embeddings import EmbeddingService
from ollm.services.models.service import ModelService
from ollm.services.responses.service import ResponseService
from ollm.services.system.info import SystemInfoService
from ollm.settings import Settings

log = logging.getLogger(__name__)


async def _preload(models: ModelService, name: str) -> None:
    """Load the default model before serving, so the first reply does not pay for it.

    A missing or broken default model is logged, not fatal: other models still serve.
    """
    try:
        await models.get(name, keep_alive=-1)  # the default stays ready, as `make serve` promises
    except OllmError as exc:
        log.warning("default model %s not preloaded: %s", name, exc.message)


async def _open_store(app: FastAPI, settings: Settings) -> AsyncEngine:
    """Migrate the database, build the services over it, mark replies a crash left
    ``streaming`` as interrupted, and (auth off) make sure the local user exists."""
    assert settings.database_url is not None  # always filled in by validation
    await upgrade_database(settings.database_url)
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    app.state.accounts = AccountService(sessions, settings)
    app.state.chats = ChatService(sessions, app.state.completions, settings)
    app.state.responses = ResponseService(sessions)
    if swept := await app.state.chats.recover_interrupted():
        log.warning("%d reply(s) cut off by the last shutdown are marked interrupted", swept)
    if not settings.auth:
        app.state.local_user = await app.state.accounts.ensure_local_user()
    return engine


async def interrupt_running(app: FastAPI) -> None:
    """End of a shutdown's grace: save running chat replies as interrupted, then stop the
    engines so every other stream ends with its "shutting down" error."""
    await app.state.chats.close()
    await app.state.models.close()


def create_app(settings: Settings, *, models: ModelService | None = None) -> FastAPI:
    """Build the app. ``models`` lets tests inject a registry with a fake backend."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = models if models is not None else ModelService(settings)
        app.state.settings = settings
        app.state.models = registry
        app.state.completions = CompletionService(registry)
        app.state.embeddings = EmbeddingService(registry)
        app.state.metrics.attach(registry)
        app.state.system_info = SystemInfoService(registry)
        database = await _open_store(app, settings)
        app.state.database = database  # for the readiness check
        if settings.preload_default_model:
            await _preload(registry, settings.default_model)
        try:
            yield
        finally:
            app.state.drain.begin()  # no-op after a signal's drain (ollm.api.http.shutdown)
            await app.state.chats.close()  # running replies are saved as interrupted
            await registry.close()
            await database.dispose()

    app = FastAPI(
        title="ollm",
        version=__version__,
        description="A self-hosted LLM server with an OpenAI-compatible API.",
        lifespan=lifespan,
        # The interactive docs load Swagger UI from a CDN (not offline, not under the CSP):
        # served only in single-user mode, never to a server with accounts.
        docs_url=None if settings.auth else "/docs",
        redoc_url=None if settings.auth else "/redoc",
        strict_content_type=False,  # a JSON body without a Content-Type is still JSON
    )
    install_error_handlers(app)
    # Middlewares, innermost first: body limits, rate limit, the Host/Origin guard, then CORS +
    # security headers around them, so that their 413s and 429s carry the headers too.
    install_request_limits(app, settings)
    install_json_body(app)  # outside the limits: relabelled JSON bodies get their checks
    install_rate_limit(app, settings)
    install_host_guard(app, settings)  # unknown Host names and foreign pages' writes
    install_security_headers(app, settings)
    app.state.drain = Drain(settings.shutdown_grace)
    app.add_middleware(DrainMiddleware, drain=app.state.drain)
    app.add_middleware(RequestIdMiddleware)  # outermost: 503s of the drain carry an id too
    app.add_middleware(VersionHeaderMiddleware)  # ollm's version on every answer
    # The web UI first: its pages match only requests asking for HTML, so anything else at
    # ``/`` still reaches the Ollama probe. The page needs no login (the app shows its own).
    app.include_router(web_router)
    # With auth on, every dialect needs a session or an API key (a no-op with auth off).
    app.include_router(openai_router, dependencies=[Depends(authenticate)])
    app.include_router(responses_router, dependencies=[Depends(authenticate)])
    app.include_router(openai_embed_router, dependencies=[Depends(authenticate)])
    app.include_router(ollama_router, dependencies=[Depends(authenticate)])
    app.include_router(ollama_embed_router, dependencies=[Depends(authenticate)])
    app.include_router(anthropic_router, dependencies=[Depends(authenticate)])
    app.include_router(v1_router)
    app.include_router(system_router)

    @app.get("/health", tags=["system"])
    async def health() -> dict[str, str]:
        """Liveness: the server answers."""
        return {"status": "ok"}

    # Added last, so outermost: every answer is counted, the middlewares' 413/429/503 too.
    app.state.metrics = Metrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.metrics)
    return app
