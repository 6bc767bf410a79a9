"""The terminal on a PC/SC reader: `cardio serve` + pcscd + vpcd, driven with --reader."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cardio.card import profiles, store
from terminal.app import build, parse_args

ENABLED_PIN = "802613"  # fixtures/README.md


async def _until(pilot, condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause()
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _text(app) -> str:
    return "\n".join(str(w.render()) for w in app.screen.query("Static"))


async def test_payment_through_pcscd_with_reader(tmp_path: Path, served, pcsc_stack):
    path = tmp_path / "card.json"
    profiles.new_card("employee-enabled", path)
    card = served(path)
    app = build(parse_args(["--reader", card.reader, "--upgrade-date", "2020-04-13"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await _until(pilot, lambda: app.card_present, "the insert event")
        assert "已插卡" in _text(app)
        for key in ["1", "1", "5", "0", "enter"]:
            await pilot.press(key)
        await _until(pilot, lambda: "请输入密码" in _text(app), "the PIN prompt")
        for key in [*"111111", "enter"]:
            await pilot.press(key)
        await _until(pilot, lambda: "密码错误，还可输入5次" in _text(app), "the wrong-PIN message")
        for key in [*ENABLED_PIN, "enter"]:
            await pilot.press(key)
        await _until(pilot, lambda: "消费授权成功" in _text(app), "the authorisation")
        assert "金额 1.50 元" in _text(app)
        assert ENABLED_PIN not in _text(app)
        await pilot.press("enter")
        card.stop()
        await _until(pilot, lambda: not app.card_present, "the remove event")
        assert "请插入社会保障卡" in _text(app)
    state = store.read(path)
    assert (state.tries_left, state.try_limit) == (6, 6)  # the right PIN restored the counter
