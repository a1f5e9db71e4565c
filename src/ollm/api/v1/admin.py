"""``/api/v1/admin``: accounts, for admins only."""

from __future__ import annotations

from fastapi import APIRouter

from ollm.api.http.auth import AdminUser
from ollm.api.http.deps import AccountsDep
from ollm.db.schemas import UserPublic, UserUpdate

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/users")
async def list_users(_admin: AdminUser, accounts: AccountsDep) -> list[UserPublic]:
    """Every account, oldest first."""
    return await accounts.list_users()


@router.patch("/users/{user_id}")
async def update_user(
    user_id: int, body: UserUpdate, admin: AdminUser, accounts: AccountsDep
) -> UserPublic:
    """Change an account's role, disable or enable it, or set a new password (the last
    two end its login sessions)."""
    return await accounts.update_user(actor=admin, user_id=user_id, changes=body)
