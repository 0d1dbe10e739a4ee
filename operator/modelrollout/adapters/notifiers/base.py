"""The notifier interface: one method, best effort, never blocking a rollback."""

from __future__ import annotations

from typing import Any, Protocol


class Notifier(Protocol):
    async def notify(self, kind: str, payload: dict[str, Any]) -> None: ...
