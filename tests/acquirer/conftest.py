"""An acquirer instance per test, loaded from a private copy of the session's test world."""

from __future__ import annotations

from firmware.world.layout import World


def user_password(world: World, role: str) -> tuple[str, str]:
    user = next(u for u in world.users() if u["role"] == role)
    return user["username"], user["password"]
