"""Snapshots of every screen of pos-terminal at 80x24, in zh and en.

As `pos-terminal` runs: with a settlement host (terminal_helpers.make_app), so a payment
ends on the host's receipt; `-no-host` screens are the `--no-host` configuration, where it
ends at the card's authorisation.

Deterministic: fixed dates (Settings.today), card files from profiles (the fresh PIN salt
is never shown), the platform's clock and ids fixed for the receipt (host.platform's
local_now and random_digits), no other clock on screen. Update with
`pytest tests/test_snapshots.py --snapshot-update` and look at the SVGs before accepting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from terminal_helpers import (
    ENABLED_PIN,
    NEW_PIN,
    SNAPSHOT_TODAY,
    Default,
    enter,
    make_app,
    make_card,
    settle,
    start_payment,
    toggle_card,
    type_digits,
)
from textual.pilot import Pilot

import host.platform
from terminal.app import PosApp

Steps = Callable[[Pilot], Awaitable[None]]

# The platform's clock (SNAPSHOT_TODAY), on a receipt
RECEIPT_TIME = dt.datetime(2024, 6, 1, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))


async def nothing(pilot: Pilot) -> None:
    await settle(pilot)


async def amount(pilot: Pilot) -> None:
    await pilot.press("1")
    await settle(pilot)
    await type_digits(pilot, "1250")


async def pay(pilot: Pilot) -> None:
    await start_payment(pilot)


async def pin_three_digits(pilot: Pilot) -> None:
    await start_payment(pilot)
    await type_digits(pilot, ENABLED_PIN[:3])


async def confirm_new(pilot: Pilot) -> None:
    await start_payment(pilot)
    await enter(pilot, NEW_PIN)


async def violation(pilot: Pilot) -> None:
    await start_payment(pilot)
    await enter(pilot, "111111")


async def mismatch(pilot: Pilot) -> None:
    await start_payment(pilot)
    await enter(pilot, NEW_PIN)
    await enter(pilot, "947261")


async def changed(pilot: Pilot) -> None:
    await start_payment(pilot)
    await enter(pilot, NEW_PIN)
    await enter(pilot, NEW_PIN)


async def wrong_pin(pilot: Pilot) -> None:
    await start_payment(pilot)
    await enter(pilot, "111222")


async def authorised(pilot: Pilot) -> None:
    await start_payment(pilot)
    await enter(pilot, ENABLED_PIN)


async def no_pin_authorised(pilot: Pilot) -> None:
    await start_payment(pilot)
    await enter(pilot, "")  # 确认 on the amount


async def cancelled(pilot: Pilot) -> None:
    await start_payment(pilot)
    await type_digits(pilot, "80")
    await pilot.press("escape")
    await settle(pilot)


async def change_current_pin(pilot: Pilot) -> None:
    await pilot.press("2")
    await settle(pilot)


async def card_info(pilot: Pilot) -> None:
    await pilot.press("3")
    await settle(pilot)


async def removed(pilot: Pilot) -> None:
    await start_payment(pilot)
    await type_digits(pilot, "80")
    await toggle_card(pilot)


async def quit_question(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("escape")
    await settle(pilot)


async def trace_open(pilot: Pilot) -> None:
    await pilot.press("f12")
    await start_payment(pilot)
    await type_digits(pilot, ENABLED_PIN[:3])


async def _paid_for_the_clerk(pilot: Pilot) -> str:
    """A payment with the platform's clock and ids fixed, and the terminal's day too (the
    client's clock names the day-book's day); the receipt closed. Its settlement id."""
    app = pilot.app
    assert isinstance(app, PosApp) and app.options.host is not None
    link = app.options.host
    link.client.clock = lambda: RECEIPT_TIME
    await start_payment(pilot)
    await enter(pilot, ENABLED_PIN)
    await enter(pilot, "")  # the receipt: 确认
    return str(link.todays("7777")[0].setl_id)


async def setl_cancel_confirm(pilot: Pilot) -> None:
    setl_id = await _paid_for_the_clerk(pilot)
    await pilot.press("4")
    await settle(pilot)
    await enter(pilot, setl_id[-6:])


async def setl_cancel_done(pilot: Pilot) -> None:
    await setl_cancel_confirm(pilot)
    await enter(pilot, "")


async def day_end_balanced(pilot: Pilot) -> None:
    await _paid_for_the_clerk(pilot)
    await pilot.press("5")
    await settle(pilot)


# name: (profile, inserted, steps); a name ending in -no-host runs without a settlement host
SCREENS: dict[str, tuple[str, bool, Steps]] = {
    "menu-card-in": ("employee-enabled", True, nothing),
    "menu-no-card": ("employee-enabled", False, nothing),
    "amount": ("employee-enabled", True, amount),
    "insert-card": ("employee-enabled", False, pay),
    "pin-entry-3-digits": ("employee-enabled", True, pin_three_digits),
    "forced-change-new-pin": ("employee-new", True, pay),
    "forced-change-confirm": ("employee-new", True, confirm_new),
    "s15-violation": ("employee-new", True, violation),
    "mismatch": ("employee-new", True, mismatch),
    "changed-and-authorised": ("employee-new", True, changed),
    "wrong-pin": ("employee-enabled", True, wrong_pin),
    "locked": ("locked", True, pay),
    "authorised": ("employee-enabled", True, authorised),
    "authorised-no-host": ("employee-enabled", True, authorised),
    "no-pin-confirm-amount": ("resident-new", True, pay),
    "no-pin-authorised": ("resident-new", True, no_pin_authorised),
    "cancelled": ("employee-enabled", True, cancelled),
    "change-current-pin": ("employee-enabled", True, change_current_pin),
    "card-info-locked": ("locked", True, card_info),
    "card-info": ("employee-new", True, card_info),
    "not-activated": ("not-activated", True, pay),
    "card-removed": ("employee-enabled", True, removed),
    "quit-question": ("employee-enabled", True, quit_question),
    "trace-open": ("employee-enabled", True, trace_open),
    "setl-cancel-confirm": ("employee-enabled", True, setl_cancel_confirm),
    "setl-cancel-done": ("employee-enabled", True, setl_cancel_done),
    "day-end-balanced": ("employee-enabled", True, day_end_balanced),
}


@pytest.mark.parametrize("name", list(SCREENS))
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_screen(
    snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lang: str, name: str
) -> None:
    profile, inserted, steps = SCREENS[name]
    monkeypatch.setattr(host.platform, "local_now", lambda: RECEIPT_TIME)
    monkeypatch.setattr(host.platform, "random_digits", lambda n: "7" * n)
    card = make_card(tmp_path, profile)
    app = make_app(
        card,
        lang=lang,
        today=SNAPSHOT_TODAY,
        inserted=inserted,
        host=None if name.endswith("-no-host") else Default.HOST,
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_screen_too_small(snap_compare, tmp_path: Path, lang: str) -> None:
    """Under 60x18 the pad says so instead of cutting the PIN field (issue 9, 9)."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card, lang=lang, today=SNAPSHOT_TODAY)
    assert snap_compare(app, terminal_size=(50, 16), run_before=pay)
