"""The terminal on a PC/SC reader: `cardio serve` + pcscd + vpcd, driven with --reader."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cardio.card import profiles, store
from terminal.cli import build, parse_args

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


class MuteCard:
    """A card in vpcd's slot that answers the ATR and then never answers an APDU (issue
    9, item 19): a real vpcd peer, speaking vpcd's frames, that goes silent."""

    ATR = bytes.fromhex("3B6D000000814A4446866051990000 01AC".replace(" ", ""))

    def __init__(self, port: int) -> None:
        import socket
        import threading

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.apdus = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from cardio.vpcd import read_frame, write_frame

        try:
            while not self.stopped.is_set():
                payload = read_frame(self.sock)
                if payload == b"\x04":
                    write_frame(self.sock, self.ATR)
                elif len(payload) > 1:
                    self.apdus += 1
                    self.stopped.wait()  # mute: the reader waits for an answer in vain
        except (OSError, EOFError, ValueError):
            pass

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        self.thread.join(5)


async def test_a_card_that_never_answers_through_pcscd(tmp_path: Path, pcsc_stack, served):
    """Issue 9 (19): the ATR comes, then silence. After --card-timeout the screen says the
    card does not respond; the stuck reader is reported busy; once the mute card is gone
    and a real one is in, the next transaction works."""
    import pcsc_stack as stack_module

    reader = stack_module.slot_name(0)
    mute = MuteCard(pcsc_stack.port)
    try:
        stack_module.wait_for(lambda: stack_module.card_present(reader), "the mute card")
        app = build(parse_args(["--reader", reader, "--card-timeout", "1", "--timeout", "0"]))
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.card_present, "the insert event")
            for key in ["1", "1", "5", "0", "enter"]:
                await pilot.press(key)
            await _until(pilot, lambda: "卡片无应答" in _text(app), "no response")
            assert mute.apdus >= 1
            await pilot.press("enter")
            await _until(pilot, lambda: app.flow is None, "back to idle")
            await pilot.press("3")
            await _until(pilot, lambda: "读卡器忙" in _text(app), "reader busy")
            assert app.flow is None
            mute.close()  # the card goes; the stuck call ends with an error, ignored
            await _until(pilot, lambda: not app.equipment.slot.busy, "the reader to free")
            path = tmp_path / "card.json"
            profiles.new_card("employee-enabled", path)
            served(path)
            await _until(pilot, lambda: app.card_present, "the real card")
            await pilot.press("3")
            await _until(pilot, lambda: "密码剩余次数: 6" in _text(app), "card information")
    finally:
        mute.close()
