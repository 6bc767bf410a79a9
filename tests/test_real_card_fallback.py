"""Rule 8 with a card like a real one: it does not answer GET DATA C1 (6D00).

The terminal then treats the PIN as ENABLED, shows the tries left that the empty VERIFY
reported before asking, and never sends a guessed PIN (docs/card.md §8)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cardio.card import profiles, store
from cardio.protocol import SocialSecurityCard
from cardio.readers.virtual import VirtualReader
from terminal import strings
from terminal.app import Options, PosApp
from terminal.equipment import Equipment
from terminal.flow.commands import ReadCard
from terminal.flow.pharmacy import PharmacyFlow, Purpose
from terminal.flow.view import Stage
from terminal.rules import Settings
from terminal.worker import deliver, execute

AFTER_UPGRADE = Settings(dt.date(2020, 4, 13), dt.date(2026, 11, 27))
GET_DATA = bytes((0x80, 0xCA))


class RealLikeReader(VirtualReader):
    """The emulated card, minus the emulator convention GET DATA C1."""

    def _exchange(self, apdu: bytes) -> bytes:
        if apdu[:2] == GET_DATA:
            return bytes((0x6D, 0x00))
        return super()._exchange(apdu)


def reader_for(tmp_path: Path, profile: str, lines: list[str]) -> tuple[Path, RealLikeReader]:
    path = tmp_path / f"{profile}.json"
    profiles.new_card(profile, path)
    return path, RealLikeReader(path, trace=lines.append)


def test_protocol_falls_back_to_the_empty_verify(tmp_path: Path):
    lines: list[str] = []
    path, reader = reader_for(tmp_path, "employee-enabled", lines)
    reader.connect()
    card = SocialSecurityCard(reader)
    card.verify("000000")  # one wrong try, so the count is not the limit
    status = card.read_info().status
    assert (status.life_cycle, status.pin_state, status.tries_left, status.try_limit) == (
        None,
        None,
        5,
        None,
    )
    assert "> 00 20 00 00" in lines  # the status query, which costs no try
    reader.close()
    assert store.read(path).tries_left == 5


def test_payment_treats_the_pin_as_enabled_and_shows_the_tries_first(tmp_path: Path):
    lines: list[str] = []
    # employee-new is INITIAL on the card, but this card does not say so: rule 8, not S8.
    path, reader = reader_for(tmp_path, "employee-new", lines)
    flow = PharmacyFlow(Purpose.PAY, AFTER_UPGRADE)
    command = flow.entered("1250")
    assert command == ReadCard()
    flow.reading()
    result, present = execute(Equipment(reader), command)
    assert deliver(flow, result, present) is None
    assert flow.view.stage is Stage.PIN
    assert [ln.key for ln in flow.view.lines] == ["amount", "tries_left", "enter_pin"]
    assert dict(flow.view.lines[1].params) == {"n": 6}
    # nothing but reads and the empty status query so far: no guessed PIN
    sent = [ln for ln in lines if ln.startswith("> ")]
    assert [ln for ln in sent if ln.startswith("> 00 20")] == ["> 00 20 00 00"]
    assert not any(ln.startswith("> 80 5E") for ln in sent)
    reader.close()
    state = store.read(path)
    assert (state.tries_left, state.pin_state.value) == (6, "INITIAL")


async def test_the_screen_shows_the_tries_before_asking(tmp_path: Path):
    lines: list[str] = []
    path, reader = reader_for(tmp_path, "employee-enabled", lines)
    app = PosApp(reader, Options(AFTER_UPGRADE))
    async with app.run_test(size=(80, 24)) as pilot:
        for key in ["1", "5", "0", "0", "enter"]:
            await pilot.press(key)
        for _ in range(5):
            await app.workers.wait_for_complete()
            await pilot.pause()
        text = "\n".join(str(w.render()) for w in app.screen.query("Static"))
        assert strings.text("zh", "tries_left", n=6) in text
        assert strings.text("zh", "enter_pin") in text
        assert strings.text("zh", "forced_change") not in text
    assert store.read(path).tries_left == 6
