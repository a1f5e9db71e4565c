"""Every ``/api/v1`` router under one prefix, for ``create_app`` to include."""

from __future__ import annotations

from fastapi import APIRouter

from ollm.api.v1 import admin, auth, chats, keys, messages

router = APIRouter(prefix="/api/v1")
for module in (auth, keys, admin, chats, messages):
    router.include_router(module.router)
