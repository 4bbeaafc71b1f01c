"""Hooks: the App that registers event handlers."""

from __future__ import annotations

import pytest

from headwater import App
from headwater.events.event import Event


def test_app_on_registers_named_handlers() -> None:
    app = App()

    @app.on("orders.insert", "orders.update")
    async def ship(event: Event) -> None:
        return None

    @app.on("#", name="audit")
    async def audit(event: Event) -> None:
        return None

    assert set(app.subscriptions) == {f"{__name__}.test_app_on_registers_named_handlers."
                                      f"<locals>.ship", "audit"}
    assert app.subscriptions["audit"].patterns == ("#",)
    with pytest.raises(ValueError, match="named"):
        app.on("#", name="audit")(audit)
    with pytest.raises(ValueError, match="pattern"):
        app.on()
