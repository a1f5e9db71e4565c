"""Readiness: can this server answer a chat now? The default model must be loaded or
loadable (known, its file readable) and the database must answer ``SELECT 1``.

Cheap enough for a probe every few seconds: nothing is loaded, one short query is run.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ollm.errors import OllmError
from ollm.services.models.service import ModelService

DATABASE_TIMEOUT = 2.0  # seconds


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``ok`` and a short detail a person can act on."""

    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "fail", "detail": self.detail}


async def check_database(engine: AsyncEngine | None, timeout: float = DATABASE_TIMEOUT) -> Check:
    """The database answers a trivial query within ``timeout`` seconds."""
    if engine is None:
        return Check(False, "the database is not open")
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except TimeoutError:
        return Check(False, f"the database did not answer within {timeout:g} s")
    except Exception as exc:  # any driver error means "not reachable"
        return Check(False, f"the database is not reachable: {type(exc).__name__}")
    return Check(True, f"{engine.dialect.name} reachable")


def check_default_model(models: ModelService | None, name: str) -> Check:
    """The default model is loaded, or known with a readable file (so it can load)."""
    if models is None:
        return Check(False, "the model manager is not running")
    try:
        entry = models.resolve(name)
    except OllmError as exc:
        return Check(False, exc.message)
    if any(m.model_id == entry.model_id for m in models.loaded_models()):
        return Check(True, f"{entry.model_id} loaded")
    if not os.access(entry.path, os.R_OK):
        return Check(False, f"{entry.model_id}: cannot read {entry.path}")
    return Check(True, f"{entry.model_id} loadable (not loaded)")
