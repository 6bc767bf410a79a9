"""Pilot tests of the counter's edges (issue 9): pulled cards, stray keys, timeouts,
the toolkit's own keys, small screens, beeps, unreadable cards and cards that stop
answering. Each test names the item of the issue it proves.

Every app runs on a VirtualReader over a card file made from a profile in tmp_path, with
a real SqliteHost in tmp_path. Where a test needs to land exactly between two steps it
uses a reader whose card answers wait on a threading.Event (a card that is slow, or
mute), or whose presence the test pulls as a PC/SC reader would report it; never a
sleep to hope for an order.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from terminal_helpers import (
    AFTER_UPGRADE,
    ENABLED_PIN,
    NEW_PIN,
    OTHER_PIN,
    UPGRADE_DATE,
    card_state,
    embedded_link,
    enter,
    entry_text,
    file_bytes,
    holders,
    issuer_keys,
    make_card,
    new_host,
    screen_text,
    settle,
    settled_rows,
    start_payment,
    toggle_card,
)
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.screen import ModalScreen

from cardio.card.state import PinState
from cardio.readers.base import CardEvent, EventKind
from cardio.readers.virtual import VirtualReader
from host.sqlite import SqliteHost, seed_file
from terminal import strings
from terminal.app import Options, PosApp
from terminal.flow.view import Stage
from terminal.messages import CardChanged
from terminal.rules import Settings
from terminal.screens.confirm import ConfirmScreen
from terminal.screens.menu import MenuScreen

pytestmark = pytest.mark.slow  # Pilot through whole flows, key by key: ~0.3-2 s a test

SIZE = (80, 24)
ZH = {
    key: strings.text("zh", key)
    for key in (
        "changed",
        "removed",
        "not_debited",
        "authorised",
        "take_card",
        "cancelled",
        "timed_out",
        "enter_old_pin",
        "forced_change",
        "enter_pin",
        "new_pin",
        "confirm_pin",
        "lost",
        "state_LOCKED",
        "card_unreadable",
        "card_in_use",
        "reader_no_response",
        "reader_busy",
        "too_small",
        "no_pin",
        "confirm_amount",
        "reading",
        "quit_question",
    )
}
# docs/terminal-rules.md §6, exact
assert ZH["changed"] == "密码修改成功"
assert ZH["removed"] == "卡片已拔出"
assert ZH["cancelled"] == "交易已取消"
assert ZH["timed_out"] == "操作超时"
assert ZH["take_card"] == "请取回卡片"
assert ZH["enter_old_pin"] == "请输入原密码"
assert ZH["state_LOCKED"] == "已锁定"
assert ZH["card_unreadable"].startswith("卡片无法读取")
assert ZH["quit_question"] == "退出终端？"


def amount_line(amount: str = "12.50", lang: str = "zh") -> str:
    return strings.text(lang, "amount", amount=amount)


def tries_line(n: int) -> str:
    return f"密码剩余次数: {n}"


def ssn_of(profile: str) -> str:
    return holders()[profile]["ssn"]


class Counter:
    """Counts calls (the app's bell)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


class GatedReader(VirtualReader):
    """A virtual card whose answers can be held back, as a slow or mute card would.

    `hold(ins)` makes the card execute the command with that INS, then wait on `gate`
    before answering (so the card's state has changed, as on a real card). `pulled`
    makes the reader report the card gone, as a PC/SC reader reports a card pulled out
    in the middle of a command: independently of the command in flight.
    """

    def __init__(self, path: Path, **kwargs) -> None:
        super().__init__(path, **kwargs)
        self.held: int | None = None
        self.holding = threading.Event()
        self.gate = threading.Event()
        self.pulled = False

    def hold(self, ins: int) -> None:
        self.held = ins
        self.gate.clear()
        self.holding.clear()

    def card_present(self) -> bool:
        return not self.pulled and super().card_present()

    def _exchange(self, apdu: bytes) -> bytes:
        response = super()._exchange(apdu)
        if self.held is not None and len(apdu) > 1 and apdu[1] == self.held:
            self.holding.set()
            self.gate.wait(10)
        return response


def pos(
    card: Path | None,
    tmp_path: Path,
    *,
    host: SqliteHost | None = None,
    reader: VirtualReader | None = None,
    lang: str = "zh",
    timeout: float = 0,
    card_timeout: float = 10.0,
    quiet: bool = False,
    inserted: bool = True,
) -> PosApp:
    """timeout 0 (no timer) unless a test is about timeouts: nothing here races a clock."""
    settings = Settings(upgrade_date=UPGRADE_DATE, today=AFTER_UPGRADE)
    options = Options(
        settings,
        lang=lang,
        host=embedded_link(host or new_host(tmp_path), "POS-0001"),
        keys=issuer_keys(),
        timeout=timeout,
        card_timeout=card_timeout,
        quiet=quiet,
    )
    if reader is None:
        assert card is not None
        reader = VirtualReader(card, inserted=inserted)
    return PosApp(reader, options)


async def wait_until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Pause the app in small steps until `condition` holds."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition never held")


def debits(host: SqliteHost, profile: str) -> int:
    return len(settled_rows(host, ssn_of(profile)))


def on_menu(app: PosApp) -> bool:
    return isinstance(app.screen, MenuScreen) and app.flow is None


# --- 1. a PIN change is never hidden ------------------------------------------------------


async def test_1_forced_change_then_card_pulled_at_once_says_changed_and_not_debited(
    tmp_path: Path,
) -> None:
    """Issue 9 (1): the card changed its PIN, then left before the debit: the screen says
    密码修改成功 and that nothing was debited; the host has no debit."""
    card = make_card(tmp_path, "employee-new")
    host = new_host(tmp_path)
    reader = GatedReader(card)
    app = pos(None, tmp_path, host=host, reader=reader)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, NEW_PIN)
        reader.hold(0x5E)  # CHANGE PIN: executed by the card, the answer held back
        await pilot.press(*NEW_PIN, "enter")
        await wait_until(pilot, reader.holding.is_set)
        # pulled now: the reader reports it while the command is in flight
        reader.pulled = True
        app.post_message(CardChanged(CardEvent(EventKind.REMOVED, reader.name)))
        await pilot.pause()
        assert app.pending is not None  # the answer is awaited, not dropped
        reader.gate.set()
        await settle(pilot)
        text = screen_text(app)
        assert ZH["changed"] in text
        assert ZH["removed"] in text
        assert ZH["not_debited"] in text
        assert amount_line() in text
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
    state = card_state(card)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)
    assert debits(host, "employee-new") == 0


async def test_1_a_pin_change_answer_is_shown_even_if_the_card_left_during_it(
    tmp_path: Path,
) -> None:
    """Issue 9 (1), menu 2: the removal during CHANGE PIN does not hide its success."""
    card = make_card(tmp_path, "employee-enabled")
    reader = GatedReader(card)
    app = pos(None, tmp_path, reader=reader)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await enter(pilot, ENABLED_PIN)
        await enter(pilot, NEW_PIN)
        reader.hold(0x5E)
        await pilot.press(*NEW_PIN, "enter")
        await wait_until(pilot, reader.holding.is_set)
        reader.pulled = True
        app.post_message(CardChanged(CardEvent(EventKind.REMOVED, reader.name)))
        await pilot.pause()
        reader.gate.set()
        await settle(pilot)
        assert ZH["changed"] in screen_text(app)
    assert card_state(card).pin.matches(NEW_PIN)


# --- 2. a debit is never hidden -------------------------------------------------------------


async def test_2_escape_right_after_enter_never_hides_the_debit(tmp_path: Path) -> None:
    """Issue 9 (2): a card without PIN: Enter on the amount's confirmation, Escape a moment
    later. Keys typed while the debit runs are dropped; the receipt shows and closes only
    with 确认."""
    card = make_card(tmp_path, "disabled")
    host = new_host(tmp_path)
    app = pos(card, tmp_path, host=host)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.CONFIRM_AMOUNT
        assert debits(host, "disabled") == 0  # nothing before 确认
        await pilot.press("enter", "escape", "escape", "1")
        await settle(pilot)
        text = screen_text(app)
        assert ZH["authorised"] in text
        assert app.flow is not None and app.flow.view.keep
        await pilot.press("escape", "1", "2")
        await settle(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT  # still there
        await pilot.press("enter")
        await settle(pilot)
        assert on_menu(app)
    assert debits(host, "disabled") == 1


async def test_2_keys_during_a_card_command_are_dropped(tmp_path: Path) -> None:
    """Issue 9 (2): while VERIFY runs, digits, Escape and Enter do nothing."""
    card = make_card(tmp_path, "employee-enabled")
    reader = GatedReader(card)
    host = new_host(tmp_path)
    app = pos(None, tmp_path, host=host, reader=reader)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        reader.hold(0x20)
        await pilot.press(*ENABLED_PIN, "enter")
        await wait_until(pilot, reader.holding.is_set)
        await pilot.press("escape", "1", "2", "enter", "escape")
        assert app.entry == ""
        assert app.flow is not None and app.flow.view.stage is Stage.WORKING
        reader.gate.set()
        await settle(pilot)
        assert ZH["authorised"] in screen_text(app)
    assert debits(host, "employee-enabled") == 1


# --- 3. PIN digits never leave the PIN field ---------------------------------------------


async def test_3_card_pulled_mid_pin_lands_on_a_result_that_swallows_digits(tmp_path: Path) -> None:
    """Issue 9 (3): pull the card in the middle of the PIN and keep typing: the rest of
    the PIN never starts a payment or shows as an amount."""
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    app = pos(card, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await pilot.press(*ENABLED_PIN[:2])
        await toggle_card(pilot)
        await pilot.press(*ENABLED_PIN[2:])
        await settle(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        text = screen_text(app)
        assert ZH["removed"] in text
        assert ZH["not_debited"] in text
        assert ENABLED_PIN[2:] not in text
        assert strings.text("zh", "enter_amount") not in text
        assert app.entry == ""
        await pilot.press("enter")
        await settle(pilot)
        assert on_menu(app)
    assert file_bytes(card) == before


# --- 4. menu 2 --------------------------------------------------------------------------


async def test_4_change_on_a_card_due_for_the_forced_change_asks_the_new_pin(
    tmp_path: Path,
) -> None:
    """Issue 9 (4), S8: menu 2 on a card still on its initial PIN after the upgrade goes
    straight to 请修改初始密码; the initial PIN is sent for the holder."""
    card = make_card(tmp_path, "employee-new")
    app = pos(card, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
        assert ZH["forced_change"] in text
        assert ZH["new_pin"] in text
        assert ZH["enter_old_pin"] not in text
        await enter(pilot, NEW_PIN)
        await enter(pilot, NEW_PIN)
        assert ZH["changed"] in screen_text(app)
    state = card_state(card)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)


@pytest.mark.parametrize(
    ("lang", "prompt"), [("zh", "请输入原密码"), ("en", "Please enter your current PIN")]
)
async def test_4_change_asks_for_the_current_pin_first(
    tmp_path: Path, lang: str, prompt: str
) -> None:
    """Issue 9 (4): otherwise the first prompt is the current PIN, not the payment's."""
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path, lang=lang)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
        assert prompt in text
        assert strings.text(lang, "enter_pin") not in text
        await enter(pilot, OTHER_PIN)
        await enter(pilot, NEW_PIN)
        await enter(pilot, NEW_PIN)
        text = screen_text(app)
        assert prompt in text  # a wrong current PIN: asked again, as the current PIN
        assert strings.text(lang, "wrong_pin", n=5) in text


# --- 5. card information -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "state", "tries"),
    [
        ("locked", "已锁定", 0),
        ("employee-enabled", "已启用", 6),
    ],
)
async def test_5_info_shows_locked_and_tries(
    tmp_path: Path, profile: str, state: str, tries: int
) -> None:
    """Issue 9 (5): a locked card shows 已锁定 and 密码剩余次数: 0."""
    card = make_card(tmp_path, profile)
    app = pos(card, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        text = screen_text(app)
        assert f"密码状态: {state}" in text
        assert tries_line(tries) in text
        if tries == 0:
            assert "已启用" not in text


async def test_5_info_of_a_lost_card_says_so_and_leaves_when_pulled(tmp_path: Path) -> None:
    """Issue 9 (5), S18: 此卡已挂失 on the information screen; pulling the card leaves it."""
    card = make_card(tmp_path, "employee-enabled")
    host = new_host(tmp_path)
    host.report_loss(ssn_of("employee-enabled"))
    app = pos(card, tmp_path, host=host)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.INFO
        text = screen_text(app)
        assert ZH["lost"] in text
        assert ZH["take_card"] in text
        await toggle_card(pilot)
        assert on_menu(app)


# --- 6. timeouts, cancel, take your card -------------------------------------------------


@pytest.mark.parametrize(
    ("where", "profile"),
    [("amount", "employee-enabled"), ("pin", "employee-enabled"), ("result", "locked")],
)
async def test_6_every_prompt_times_out_to_idle_and_sends_nothing(
    tmp_path: Path, where: str, profile: str
) -> None:
    """Issue 9 (6): amount entry, PIN entry and a 'press 确认' screen time out, say 操作超时
    and go back to idle; nothing is sent to the card or the host."""
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, tmp_path, host=host, timeout=1.0)
    sent: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await settle(pilot)
        if where != "amount":
            await enter(pilot, "1250")
        if where == "pin":
            await pilot.press(*ENABLED_PIN[:3])
        expected = {"amount": Stage.AMOUNT, "pin": Stage.PIN, "result": Stage.RESULT}[where]
        assert app.flow is not None and app.flow.view.stage is expected
        before = file_bytes(card)
        app.reader.trace = sent.append
        if where != "result":  # a prompt: a notice first, that swallows digits
            await wait_until(pilot, lambda: app.flow is not None and app.flow.view.brief, timeout=5)
            await pilot.press(*"987")
            assert ZH["timed_out"] in screen_text(app)
            assert app.entry == ""
        await wait_until(pilot, lambda: on_menu(app), timeout=5)
        await pilot.pause()
        assert ZH["timed_out"] in screen_text(app)
        assert ZH["take_card"] in screen_text(app)
        assert sent == []
        assert app.entry == ""
        # the reader API's -32 in the trace for a PIN entry only (docs/card.md §8)
        timed_out = "# api -32 PIN entry timed out"
        assert (timed_out in app.trace_lines) is (where == "pin")
    assert file_bytes(card) == before
    assert debits(host, profile) == 0


async def test_6_activity_restarts_the_clock_and_0_turns_it_off(tmp_path: Path) -> None:
    """Issue 9 (6): --timeout 0 is for demos: a prompt waits for ever."""
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path, timeout=0)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await pilot.pause(0.4)
        assert app.flow is not None and app.flow.view.stage is Stage.PIN
        assert app._timer is None


async def test_6_escape_cancels_and_says_so(tmp_path: Path) -> None:
    """Issue 9 (6): Escape in a transaction shows 交易已取消; the PIN typed so far is gone,
    and digits typed on are swallowed by the notice; then the menu, still saying it."""
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    app = pos(card, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await pilot.press(*ENABLED_PIN[:4], "escape", *ENABLED_PIN[4:], "1")
        await settle(pilot)
        assert app.flow is not None and app.flow.view.brief
        text = screen_text(app)
        assert ZH["cancelled"] in text
        assert ZH["take_card"] in text  # the card is still in
        assert app.entry == ""
        await pilot.press("enter")
        await settle(pilot)
        assert on_menu(app)
        text = screen_text(app)
        assert ZH["cancelled"] in text
        assert ZH["take_card"] in text
        await toggle_card(pilot)
        text = screen_text(app)
        assert ZH["take_card"] not in text
        assert strings.text("zh", "insert_card") in text
    assert file_bytes(card) == before


async def test_6_result_says_take_your_card_until_it_is_pulled(tmp_path: Path) -> None:
    """Issue 9 (6): the end of a transaction says 请取回卡片; pulling the card goes idle."""
    card = make_card(tmp_path, "locked")
    app = pos(card, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert ZH["take_card"] in screen_text(app)
        await toggle_card(pilot)
        assert on_menu(app)


async def test_6_a_receipt_stays_when_the_card_is_pulled(tmp_path: Path) -> None:
    """Issue 9 (2, 6): money moved: the receipt stays until 确认, without 请取回卡片 once
    the card is out."""
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path, timeout=2.0)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, ENABLED_PIN)
        assert ZH["take_card"] in screen_text(app)
        assert app._timer is None  # a receipt does not time out
        await toggle_card(pilot)
        assert app._timer is None
        text = screen_text(app)
        assert ZH["authorised"] in text
        assert ZH["take_card"] not in text
        await pilot.press("enter")
        await settle(pilot)
        assert on_menu(app)


# --- 7. the amount stays on screen -------------------------------------------------------


async def test_7_amount_on_every_pin_prompt_of_a_payment(tmp_path: Path) -> None:
    """Issue 9 (7): the forced change's prompts show the amount being paid."""
    card = make_card(tmp_path, "employee-new")
    app = pos(card, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        for prompt in ("new_pin", "confirm_pin"):
            text = screen_text(app)
            assert ZH[prompt] in text
            assert amount_line() in text
            await enter(pilot, NEW_PIN)


async def test_7_a_card_without_pin_confirms_the_amount_first(tmp_path: Path) -> None:
    """Issue 9 (7): 未启用密码, the amount, and 确认 before the debit; Escape debits nothing."""
    card = make_card(tmp_path, "resident-new")
    host = new_host(tmp_path)
    app = pos(card, tmp_path, host=host)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        text = screen_text(app)
        assert ZH["no_pin"] in text
        assert ZH["confirm_amount"] in text
        assert amount_line() in text
        await pilot.press("1", "2")  # digits do nothing here
        assert app.entry == ""
        await pilot.press("escape")
        await settle(pilot)
        assert ZH["cancelled"] in screen_text(app)
    assert debits(host, "resident-new") == 0


# --- 8. the toolkit's own keys ----------------------------------------------------------


@pytest.mark.parametrize("stage", ["menu", "pin"])
async def test_8_toolkit_keys_do_nothing_and_quit_asks(tmp_path: Path, stage: str) -> None:
    """Issue 9 (8): Ctrl+P, Ctrl+C, Tab do nothing; Ctrl+Q asks 退出终端？ in every state."""
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        if stage == "pin":
            await start_payment(pilot)
            await pilot.press("1")
        screen = app.screen
        await pilot.press("ctrl+p", "ctrl+c", "tab", "shift+tab", "ctrl+s", "f1")
        await pilot.pause()
        assert app.screen is screen
        assert not any(isinstance(s, CommandPalette) for s in app.screen_stack)
        assert list(app._notifications) == []
        assert app.focused is None
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert ZH["quit_question"] in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        if stage == "pin":
            assert app.entry == "1"  # the PIN typed so far is still there
        assert app.is_running


async def test_8_no_quit_while_a_card_command_runs(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    reader = GatedReader(card)
    app = pos(None, tmp_path, reader=reader)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        reader.hold(0x20)
        await pilot.press(*ENABLED_PIN, "enter")
        await wait_until(pilot, reader.holding.is_set)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not isinstance(app.screen, ModalScreen)
        reader.gate.set()
        await settle(pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_code == 0


# --- 9. screen size -------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "size"), [("zh", (59, 24)), ("en", (80, 17))])
async def test_9_a_screen_too_small_says_so(
    tmp_path: Path, lang: str, size: tuple[int, int]
) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path, lang=lang)
    async with app.run_test(size=size) as pilot:
        await pilot.press("1")
        await settle(pilot)
        text = screen_text(app)
        assert strings.text(lang, "too_small") in text
        assert not app.screen.query_one("#pad").display
        assert app.flow is None  # nothing is typed blind
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert app.screen.query_one("#pad").display
        await start_payment(pilot)
        assert entry_text(app) == "_ _ _ _ _ _"
        await pilot.press("8", "0")
        await pilot.resize_terminal(*size)
        await pilot.pause()
        await pilot.press("2", "6")
        assert app.entry == "80"  # typed while too small: dropped
        assert strings.text(lang, "too_small") in screen_text(app)


async def test_9_the_trace_waits_for_room(tmp_path: Path) -> None:
    """Issue 9 (9): at 60x18 the APDU trace would push the PIN field off: it is not
    shown until the window has 24 rows."""
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path)
    async with app.run_test(size=(60, 18)) as pilot:
        await pilot.press("f12")
        await start_payment(pilot)
        assert not app.screen.query_one("#trace").display
        assert entry_text(app) == "_ _ _ _ _ _"
        assert app.screen.query_one("#entry").region.area > 0
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert app.screen.query_one("#trace").display


async def test_9_a_big_screen_centres_the_pad(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        region = app.screen.query_one("#pad").region
        assert region.width < 200 and region.height < 60
        assert abs(region.x - (200 - region.right)) <= 1
        assert abs(region.y - (60 - region.bottom)) <= 1


# --- 10. beeps ------------------------------------------------------------------------------


@pytest.mark.parametrize("quiet", [False, True])
async def test_10_bell_on_wrong_pin_lock_and_refusal(tmp_path: Path, quiet: bool) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path, quiet=quiet)
    bell = Counter()
    app.bell = bell  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert bell.calls == 0
        await enter(pilot, OTHER_PIN)
        assert bell.calls == (0 if quiet else 1)
        for _ in range(5):
            await enter(pilot, OTHER_PIN)
        assert strings.text("zh", "locked") in screen_text(app)
        assert bell.calls == (0 if quiet else 6)
        await pilot.press("enter")
        await settle(pilot)
        await start_payment(pilot)  # refused: locked
        assert bell.calls == (0 if quiet else 7)


# --- 11. an unreadable card ----------------------------------------------------------------


async def test_11_a_damaged_card_file_at_f2_is_unreadable_in_chinese(tmp_path: Path) -> None:
    """Issue 9 (11), rule 1: not 'in use', and never an English tail."""
    card = make_card(tmp_path, "employee-enabled")
    app = pos(card, tmp_path, inserted=False)
    async with app.run_test(size=SIZE) as pilot:
        card.write_text('{"format": "broken', encoding="utf-8")
        await toggle_card(pilot)
        text = screen_text(app)
        assert ZH["card_unreadable"] in text
        assert ZH["card_in_use"] not in text
        assert not any(
            c.isascii() and c.isalpha()
            for c in text.split("=" * 20)[0]
            .replace("F2", "")
            .replace("F12", "")
            .replace("APDU", "")
            .replace("Enter", "")
            .replace("Backspace", "")
            .replace("Esc", "")
            .replace("Delete", "")
        )
        # in a payment waiting for the card: the result says it
        await pilot.press("1")
        await settle(pilot)
        await enter(pilot, "1250")
        await toggle_card(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert ZH["card_unreadable"] in screen_text(app)


@pytest.mark.parametrize(
    "damage", ["folder-gone", "directory", "empty", "not-utf8", "huge-number", "unreadable"]
)
async def test_11_f2_never_crashes_the_app(tmp_path: Path, damage: str) -> None:
    """Issue 9 (13): F2, whatever the card file or its folder has become."""
    folder = tmp_path / "cards"
    folder.mkdir()
    card = make_card(folder, "employee-enabled")
    app = pos(card, tmp_path, inserted=False)
    async with app.run_test(size=SIZE) as pilot:
        if damage == "folder-gone":
            shutil.rmtree(folder)
        elif damage == "directory":
            card.unlink()
            card.mkdir()
        elif damage == "empty":
            card.write_bytes(b"")
        elif damage == "not-utf8":
            card.write_bytes(b"\xff\xfe\x00")
        elif damage == "huge-number":
            card.write_text(
                card.read_text("utf-8").replace('"try_limit": 6', '"try_limit": ' + "9" * 5000)
            )
        else:
            card.chmod(0)
        await toggle_card(pilot)
        await toggle_card(pilot)
        assert app.is_running
        assert app.card_present is False or damage == "unreadable"
        await pilot.press("3")
        await settle(pilot)
        assert app.is_running


async def test_11_a_card_in_use_elsewhere_says_so_in_chinese(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    holder = VirtualReader(card)  # another program holds the card file
    try:
        app = pos(card, tmp_path, reader=VirtualReader(card, inserted=False))
        async with app.run_test(size=SIZE) as pilot:
            await toggle_card(pilot)
            text = screen_text(app)
            assert ZH["card_in_use"] in text
            assert "pid" not in text
    finally:
        holder.close()


# --- 19. a card that stops answering -------------------------------------------------------


async def test_19_a_mute_card_times_out_then_busy_then_works(tmp_path: Path) -> None:
    """Issue 9 (19): past --card-timeout the screen says the card does not respond; the
    reader still stuck is reported busy; once it frees, the next transaction works, and
    the late answer is ignored."""
    card = make_card(tmp_path, "employee-enabled")
    reader = GatedReader(card)
    app = pos(None, tmp_path, reader=reader, card_timeout=1.5)
    async with app.run_test(size=SIZE) as pilot:
        reader.hold(0xB2)  # READ RECORD never answers
        await pilot.press("1")
        await settle(pilot)
        await pilot.press(*"1250", "enter")
        await wait_until(pilot, reader.holding.is_set)
        assert app.pending is not None
        await wait_until(pilot, lambda: app.pending is None, timeout=5)
        await settle(pilot)
        assert ZH["reader_no_response"] in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        assert ZH["reader_busy"] in screen_text(app)
        assert app.flow is None
        reader.held = None
        reader.gate.set()  # the late answer comes; nobody waits for it
        await wait_until(pilot, lambda: not app.equipment.slot.busy, timeout=3)
        await pilot.press("3")
        await settle(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.INFO
        assert tries_line(6) in screen_text(app)


# --- 13, 17: pos-terminal's own bad inputs and private files -----------------------------


def _run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from terminal.cli import main

    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "directory",
        "missing",
        "damaged",
        "trace-dir",
        "holders-bad",
        "holders-not-utf8",
        "timeout-negative",
    ],
)
def test_13_pos_terminal_bad_input_is_one_line(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 9 (13): one line saying what to do, a non-zero exit, never a traceback."""
    card = make_card(tmp_path, "employee-enabled")
    args = ["--card", str(card)]
    if case == "empty":
        args = ["--card", ""]
    elif case == "directory":
        args = ["--card", str(tmp_path)]
    elif case == "missing":
        args = ["--card", str(tmp_path / "nope.json")]
    elif case == "damaged":
        card.write_text("{", encoding="utf-8")
    elif case == "trace-dir":
        args += ["--trace", str(tmp_path)]
    elif case == "holders-bad":
        bad = tmp_path / "h.json"
        bad.write_text('{"holders": [{"phone": "1"}]}', encoding="utf-8")
        args += ["--holders", str(bad)]
    elif case == "holders-not-utf8":
        bad = tmp_path / "h.json"
        bad.write_bytes(b"\xff\xfe{")
        args += ["--holders", str(bad)]
    listing = sorted(p.name for p in tmp_path.iterdir())
    if case == "timeout-negative":
        with pytest.raises(SystemExit) as exit_info:
            _run_main(args + ["--timeout", "-1"], capsys)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
    else:
        code, err = _run_main(args, capsys)
        assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[-1].startswith("pos-terminal")
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


async def test_17_trace_and_receipts_are_private(tmp_path: Path) -> None:
    """Issue 9 (17): the trace file and receipts are 0600, in 0700 folders we make."""
    import stat

    card = make_card(tmp_path, "employee-enabled")
    settings = Settings(upgrade_date=UPGRADE_DATE, today=AFTER_UPGRADE)
    trace = tmp_path / "logs" / "apdu.log"
    receipts = tmp_path / "rc"
    options = Options(
        settings,
        host=embedded_link(new_host(tmp_path), "POS-0001"),
        keys=issuer_keys(),
        trace_file=trace,
        receipts=receipts,
        timeout=0,
    )
    app = PosApp(VirtualReader(card), options)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, ENABLED_PIN)
        assert ZH["authorised"] in screen_text(app)
    files = list(receipts.iterdir())
    assert len(files) == 1
    for path in (trace, files[0]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
    assert ENABLED_PIN not in trace.read_text("utf-8")


async def test_1_f2_during_change_pin_keeps_the_result(tmp_path: Path) -> None:
    """Issue 9 (1), menu 2 with a real F2 during CHANGE PIN: the virtual card leaves after
    the answer, and 密码修改成功 stays on screen (without 请取回卡片) until 确认."""
    card = make_card(tmp_path, "employee-enabled")
    reader = GatedReader(card)
    app = pos(None, tmp_path, reader=reader)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await enter(pilot, ENABLED_PIN)
        await enter(pilot, NEW_PIN)
        reader.hold(0x5E)
        await pilot.press(*NEW_PIN, "enter")
        await wait_until(pilot, reader.holding.is_set)
        await pilot.press("f2")
        reader.gate.set()
        await settle(pilot)
        await wait_until(pilot, lambda: not app.card_present)
        await settle(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        text = screen_text(app)
        assert ZH["changed"] in text
        assert ZH["take_card"] not in text
        await pilot.press("enter")
        await settle(pilot)
        assert on_menu(app)
    assert card_state(card).pin.matches(NEW_PIN)


class DownHost(SqliteHost):
    """A real host, seeded and its tables made, whose database then fails (`down`), as a
    host that is down would: every unit of work of the platform engine raises, so every
    transaction is answered host_error."""

    down = False
    failures = 0

    def atomic(self):  # type: ignore[override]
        if self.down:
            from host.api import HostError

            self.failures += 1
            raise HostError("connection refused")
        return super().atomic()


@pytest.mark.parametrize(
    ("key", "expected"),
    [("1", "host_unavailable"), ("2", "host_unavailable_check"), ("3", "host_unavailable_check")],
)
async def test_11_host_down_says_what_could_not_be_checked(
    tmp_path: Path, key: str, expected: str
) -> None:
    """The host's database is down when the card is read (1101 answered host_error): a
    payment, a PIN change or card information cannot check a lost card either. It says
    so (a payment with 未扣款 and the amount, the others without it: nothing was being
    paid), without the host's English reason, and ends there: no PIN asked, the card
    untouched, nothing settled."""
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    host = DownHost(tmp_path / "h.db", seed=seed_file())
    app = pos(card, tmp_path, host=host)
    host.down = True
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(key)
        await settle(pilot)
        if key == "1":
            await enter(pilot, "1250")
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
        text = screen_text(app)
        assert strings.text("zh", expected) in text
        assert "connection refused" not in text
        assert ("未扣款" in text) == (key == "1")
        assert (amount_line() in text) == (key == "1")
        for absent in (ZH["enter_pin"], ZH["enter_old_pin"], ZH["new_pin"], ZH["no_pin"]):
            assert absent not in text, absent
        assert ZH["authorised"] not in text
        assert ZH["lost"] not in text
    assert host.failures >= 1  # the engine met the failing database
    assert file_bytes(card) == before
    host.down = False
    assert debits(host, "employee-enabled") == 0
