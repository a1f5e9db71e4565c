"""The chat and message routes a user must never reach in someone else's chat.

Shared by the isolation tests over the fake backend (tests/unit) and against a real
server (tests/integration), so both always try the same, complete list.
"""

from __future__ import annotations

from typing import Any


def isolation_attempts(
    chat_id: str, message_id: int, own_chat_id: str
) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every chat and message route, aimed at someone else's chat or message."""
    base = f"/api/v1/chats/{chat_id}"
    own = f"/api/v1/chats/{own_chat_id}"
    return [
        ("GET", base, None),
        ("PATCH", base, {"title": "mine now"}),
        ("DELETE", base, None),
        ("GET", f"{base}/export", None),
        ("GET", f"{base}/export?format=markdown", None),
        ("PUT", f"{base}/active-leaf", {"message_id": message_id}),
        ("POST", f"{base}/messages", {"content": "hi"}),
        ("POST", f"{base}/messages", {"content": "hi", "stream": False}),
        ("POST", f"{base}/regenerate", {"message_id": message_id}),
        ("POST", f"{base}/regenerate", None),
        ("POST", f"{base}/edit", {"message_id": message_id, "content": "x"}),
        ("POST", f"{base}/stop", None),
        ("PUT", f"{own}/active-leaf", {"message_id": message_id}),
        ("POST", f"{own}/regenerate", {"message_id": message_id}),
        ("POST", f"{own}/edit", {"message_id": message_id, "content": "x"}),
    ]
