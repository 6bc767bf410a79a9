"""Pilot tests of pos-terminal against docs/terminal-rules.md (S1-S18, the decision order, the
phrases and the keys). Each test names the rule it proves.

Every app runs on a VirtualReader over a card file made from a profile in tmp_path, at
80x24, with fixed dates, and with a settlement host as `pos-terminal` has one
(terminal_helpers.make_app: a SqliteHost in tmp_path seeded with the fixture holders): a
payment the card authorised is debited at the host and ends on its receipt, which the
tests read on screen and in the host's database. The `--no-host` configuration (a
payment ends at the card's authorisation) is tested in test_terminal_no_host.py. Rule
phrases are written out here exactly as docs/terminal-rules.md has them; the terminal's own
words (menu, "payment authorised", the receipt) come from its catalogue.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from terminal_helpers import (
    AFTER_UPGRADE,
    BEFORE_UPGRADE,
    ENABLED_PIN,
    INITIAL_PIN,
    NEW_PIN,
    ON_UPGRADE,
    OTHER_PIN,
    UPGRADE_DATE,
    balance_fen,
    cancel,
    card_state,
    confirm,
    enter,
    entry_text,
    file_bytes,
    forced_change,
    holders,
    host_of,
    make_app,
    make_card,
    rendered_text,
    screen_text,
    settle,
    settled_rows,
    start_payment,
    toggle_card,
    trace_pane_lines,
    type_digits,
)
from textual.screen import ModalScreen
from textual.widgets import Button

from cardio.card import store
from cardio.card.state import CardFileError, LifeCycle, PinState
from host.api import format_fen
from terminal import strings
from terminal.app import PosApp
from terminal.cli import build, main, parse_args
from terminal.flow.view import Stage
from terminal.screens.menu import MenuScreen
from terminal.screens.stages import ResultScreen

pytestmark = pytest.mark.slow  # Pilot through whole flows, key by key: ~0.3-2 s a test

SIZE = (80, 24)

# docs/terminal-rules.md §6: exact.
ZH_RULES = {
    "insert_card": "请插入社会保障卡",
    "enter_pin": "请输入密码",
    "wrong_pin": "密码错误，还可输入{n}次",
    "locked": "密码已锁定",
    "go_outlet": "请持本人身份证件和社会保障卡到服务网点办理密码重置",
    "forced_change": "请修改初始密码",
    "new_pin": "请输入新密码",
    "confirm_pin": "请再次输入新密码",
    "mismatch": "两次输入的密码不一致",
    "not_six": "密码必须为6位数字",
    "same": "不能使用6位相同数字",
    "consecutive": "不能使用连续数字",
    "birth": "不能使用出生日期",
    "phone": "不能使用电话号码",
    "changed": "密码修改成功",
    "not_activated": "卡片未激活，请到社保卡服务窗口办理激活",
    "no_pin": "未启用密码",
    "lost": "此卡已挂失",
    "removed": "卡片已拔出",
}
EN_RULES = {
    "insert_card": "Please insert your social security card",
    "enter_pin": "Please enter your PIN",
    "wrong_pin": "Wrong PIN, {n} tries left",
    "locked": "PIN locked",
    "go_outlet": "Please bring your ID and card to a service outlet to reset the PIN",
    "forced_change": "Please change your initial PIN",
    "new_pin": "Enter a new PIN",
    "confirm_pin": "Enter the new PIN again",
    "mismatch": "The two PINs do not match",
    "not_six": "PIN must be 6 digits",
    "same": "not six equal digits",
    "consecutive": "not consecutive digits",
    "birth": "not your birth date",
    "phone": "not your phone number",
    "changed": "PIN changed",
    "not_activated": "Card not activated: please activate it at a service window",
    "no_pin": "No PIN enabled",
    "lost": "This card has been reported lost",
    "removed": "Card removed",
}
RULES = {"zh": ZH_RULES, "en": EN_RULES}
ZH = ZH_RULES
AUTHORISED = {lang: strings.text(lang, "authorised") for lang in ("zh", "en")}
# the issue's phrases, exact: menu 2's first prompt, and a card without PIN's confirmation
ENTER_OLD_PIN = {"zh": "请输入原密码", "en": "Please enter your current PIN"}
CONFIRM_AMOUNT = {"zh": "请核对金额，按 确认 付款", "en": "Check the amount, press Enter to pay"}
TAKE_CARD = {"zh": "请取回卡片", "en": "Please take your card"}
NOT_DEBITED = {lang: strings.text(lang, "not_debited") for lang in ("zh", "en")}


def amount_line(lang: str, amount: str = "12.50") -> str:
    return strings.text(lang, "amount", amount=amount)


def seeded_fen(profile: str) -> int:
    """The holder's personal account as the host is seeded (fixtures/holders)."""
    return int(holders()[profile]["balance_fen"])


def debits(app: PosApp, profile: str) -> list[int]:
    """What the host debited from the holder's account, in fen, in order."""
    ssn = holders()[profile]["ssn"]
    return [fen for fen, _, _ in settled_rows(host_of(app), ssn)]


def receipt_lines(lang: str, amount_fen: int, after_fen: int) -> list[str]:
    """The receipt's lines that say what moved: authorised, the amount, the balance after."""
    return [
        AUTHORISED[lang],
        amount_line(lang, format_fen(amount_fen)),
        strings.text(lang, "balance_after", amount=format_fen(after_fen)),
    ]


def assert_receipt(
    app: PosApp, profile: str, paid: tuple[int, ...] = (1250,), lang: str = "zh"
) -> str:
    """A payment as the shipping terminal ends it: the host debited exactly `paid` (fen,
    in order) from the seeded account, and the screen is the last payment's receipt,
    which only 确认 closes (View.keep). Returns the screen's text."""
    after = seeded_fen(profile) - sum(paid)
    assert app.flow is not None and app.flow.view.stage is Stage.RESULT
    assert app.flow.view.success is True and app.flow.view.keep
    text = screen_text(app)
    for expected in receipt_lines(lang, paid[-1], after):
        assert expected in text, expected
    assert debits(app, profile) == list(paid)
    assert balance_fen(app, profile) == after
    return text


# --- S4, S16, S12, S8 (not forced): no PIN asked, card untouched -----------------------


def assert_paid_without_pin(app: PosApp, profile: str) -> str:
    """After 确认 on a card without PIN (12.50 yuan): the receipt, 未启用密码 kept on it."""
    text = assert_receipt(app, profile)
    assert ZH["no_pin"] in text
    return text


def short_of_money(profile: str) -> bool:
    """The holder's account cannot pay 12.50 (pension-new: it holds 0.00)."""
    return seeded_fen(profile) < 1250


async def assert_refused_first_and_the_rule_without_host(
    card: Path, profile: str, today: dt.date
) -> None:
    """A card without PIN whose account cannot pay the 12.50. With the host, the
    pre-settlement (2101) refuses it as soon as the card is read, before any prompt: no
    PIN, no forced change, no 确认, nothing settled. The card rule it goes by (no PIN: S4,
    S8 not forcing it) shows where the card alone decides, on a --no-host terminal:
    未启用密码 and 确认, then the authorisation."""
    app = make_app(card, today=today)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
        text = screen_text(app)
        assert "个人账户余额不足（0.00 元），未扣款" in text
        assert amount_line("zh") in text
        for absent in (
            ZH["no_pin"],
            CONFIRM_AMOUNT["zh"],
            ZH["enter_pin"],
            ZH["forced_change"],
            ZH["new_pin"],
            AUTHORISED["zh"],
        ):
            assert absent not in text, absent
        assert debits(app, profile) == []
        assert balance_fen(app, profile) == seeded_fen(profile)
    app = make_app(card, today=today, host=None)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.CONFIRM_AMOUNT
        text = screen_text(app)
        assert ZH["no_pin"] in text
        assert CONFIRM_AMOUNT["zh"] in text
        assert amount_line("zh") in text
        for absent in (ZH["enter_pin"], ZH["forced_change"], ZH["new_pin"], AUTHORISED["zh"]):
            assert absent not in text, absent
        await confirm(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is True
        text = screen_text(app)
        assert ZH["no_pin"] in text
        assert AUTHORISED["zh"] in text
        assert amount_line("zh") in text
        for absent in (CONFIRM_AMOUNT["zh"], ZH["enter_pin"], ZH["forced_change"], ZH["new_pin"]):
            assert absent not in text, absent


@pytest.mark.parametrize("profile", ["resident-new", "pension-new", "legacy-medical", "disabled"])
async def test_s4_s8_s12_s16_payment_without_pin(tmp_path: Path, profile: str) -> None:
    """S4 (INITIAL, not forced), S8 (390/170 out of scope), S12 (category L), S16
    (DISABLED): no PIN asked; the amount is shown with 未启用密码 for the holder to
    confirm, nothing is settled before 确认; then the host settles it; card file byte for
    byte as before. pension-new's account holds nothing: the host refuses it before any
    prompt, and its rule is checked without a host."""
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    if short_of_money(profile):
        await assert_refused_first_and_the_rule_without_host(card, profile, AFTER_UPGRADE)
        assert file_bytes(card) == before
        return
    app = make_app(card, today=AFTER_UPGRADE)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.CONFIRM_AMOUNT
        text = screen_text(app)
        assert ZH["no_pin"] in text
        assert CONFIRM_AMOUNT["zh"] in text
        assert amount_line("zh") in text
        assert AUTHORISED["zh"] not in text  # nothing authorised before 确认
        assert ZH["enter_pin"] not in text
        assert ZH["forced_change"] not in text
        assert ZH["new_pin"] not in text
        assert file_bytes(card) == before
        assert debits(app, profile) == []  # nothing before 确认
        await confirm(pilot)
        text = assert_paid_without_pin(app, profile)
        assert CONFIRM_AMOUNT["zh"] not in text
        assert ZH["enter_pin"] not in text
        assert ZH["forced_change"] not in text
        assert ZH["new_pin"] not in text
    assert file_bytes(card) == before


# --- S8: the forced change, by scheme, category and date ---------------------------------

S8_CASES = [
    # profile, today, forced?
    ("employee-new", BEFORE_UPGRADE, False),
    ("employee-new", ON_UPGRADE, True),
    ("employee-new", AFTER_UPGRADE, True),
    ("resident-new", BEFORE_UPGRADE, False),
    ("resident-new", AFTER_UPGRADE, False),
    ("pension-new", BEFORE_UPGRADE, False),
    ("pension-new", AFTER_UPGRADE, False),
    ("legacy-medical", BEFORE_UPGRADE, False),
    ("legacy-medical", AFTER_UPGRADE, False),
]


@pytest.mark.parametrize(
    ("profile", "today", "forced"),
    S8_CASES,
    ids=[
        f"{p}-{'before' if d < UPGRADE_DATE else 'on' if d == UPGRADE_DATE else 'after'}"
        for p, d, _ in S8_CASES
    ],
)
async def test_s8_forced_only_for_310_category_1_from_the_upgrade_date(
    tmp_path: Path, profile: str, today: dt.date, forced: bool
) -> None:
    """S8/S9/S12: only a 310, category 1, INITIAL card on or after the upgrade date is made
    to change its PIN; every other INITIAL card pays with no PIN, as S4 says (the amount
    confirmed with 确认, then settled; pension-new's empty account is refused before any
    prompt, and its rule is checked without a host)."""
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    if short_of_money(profile):
        assert not forced
        await assert_refused_first_and_the_rule_without_host(card, profile, today)
        assert file_bytes(card) == before
        return
    app = make_app(card, today=today)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        text = screen_text(app)
        if forced:
            assert ZH["forced_change"] in text
            assert ZH["new_pin"] in text
            assert AUTHORISED["zh"] not in text
            assert ZH["no_pin"] not in text
            assert entry_text(app) == "_ _ _ _ _ _"
            assert amount_line("zh") in text
        else:
            assert ZH["forced_change"] not in text
            assert ZH["new_pin"] not in text
            assert ZH["no_pin"] in text
            assert CONFIRM_AMOUNT["zh"] in text
            assert amount_line("zh") in text
            assert AUTHORISED["zh"] not in text
            await confirm(pilot)
            text = assert_paid_without_pin(app, profile)
            assert ZH["forced_change"] not in text
            assert ZH["new_pin"] not in text
    assert file_bytes(card) == before


async def test_s8_forced_change_then_payment(tmp_path: Path) -> None:
    """S8/S10: new PIN, again, 密码修改成功, then the payment goes on and is debited (the
    receipt keeps 密码修改成功); the card on disk is ENABLED with the new PIN and all its
    tries."""
    card = make_card(tmp_path, "employee-new")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert ZH["forced_change"] in screen_text(app)
        await enter(pilot, NEW_PIN)
        text = screen_text(app)
        assert ZH["confirm_pin"] in text
        assert ZH["forced_change"] not in text
        assert card_state(card).pin_state is PinState.INITIAL  # nothing sent yet
        assert debits(app, "employee-new") == []  # nothing before the change is through
        await enter(pilot, NEW_PIN)
        text = assert_receipt(app, "employee-new")
        assert ZH["changed"] in text
        assert ZH["enter_pin"] not in text
    state = card_state(card)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)
    assert not state.pin.matches(INITIAL_PIN)
    assert state.tries_left == state.try_limit == 6


async def test_s11_after_the_change_a_payment_asks_for_the_pin(tmp_path: Path) -> None:
    """S11/S5: once changed, the next payment asks 请输入密码 and never forces again; each
    payment is debited once."""
    card = make_card(tmp_path, "employee-new")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await forced_change(pilot)
        assert ZH["changed"] in assert_receipt(app, "employee-new")
        await pilot.press("enter")  # back to the menu
        await settle(pilot)
        assert isinstance(app.screen, MenuScreen)
        await start_payment(pilot, "300")
        text = screen_text(app)
        assert ZH["enter_pin"] in text
        assert ZH["forced_change"] not in text
        assert ZH["new_pin"] not in text
        await enter(pilot, NEW_PIN)
        text = assert_receipt(app, "employee-new", paid=(1250, 300))
        assert ZH["changed"] not in text
    state = card_state(card)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)
    assert state.tries_left == 6


# --- S5: an enabled PIN is asked for ----------------------------------------------------


async def test_s5_enabled_card_asks_for_the_pin(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        text = screen_text(app)
        assert ZH["enter_pin"] in text
        assert ZH["forced_change"] not in text
        assert AUTHORISED["zh"] not in text
        assert entry_text(app) == "_ _ _ _ _ _"
        assert debits(app, "employee-enabled") == []  # nothing before the PIN
        await enter(pilot, ENABLED_PIN)
        assert_receipt(app, "employee-enabled")
    state = card_state(card)
    assert state.pin_state is PinState.ENABLED
    assert state.tries_left == 6
    assert state.pin.matches(ENABLED_PIN)
    assert file_bytes(card) == before  # a right PIN changes nothing on the card


async def test_s5_short_pin_is_refused_before_the_card(tmp_path: Path) -> None:
    """S15's first check applies to the PIN entry too: 5 digits never reach the card."""
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, ENABLED_PIN[:5])
        text = screen_text(app)
        assert ZH["not_six"] in text
        assert ZH["enter_pin"] in text
        assert "密码错误" not in text
        assert card_state(card).tries_left == 6
        await enter(pilot, ENABLED_PIN)
        assert_receipt(app, "employee-enabled")
    assert file_bytes(card) == before


# --- S13: not activated -------------------------------------------------------------------


@pytest.mark.parametrize("menu", ["1", "2"])
async def test_s13_not_activated_is_sent_to_the_window(tmp_path: Path, menu: str) -> None:
    """S13: payment (1) or PIN change (2) on a card that is not activated: the phrase, no
    PIN asked, no try spent, the file unchanged."""
    card = make_card(tmp_path, "not-activated")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        if menu == "1":
            await start_payment(pilot)
        else:
            await pilot.press("2")
            await settle(pilot)
        text = screen_text(app)
        assert ZH["not_activated"] in text
        assert ZH["enter_pin"] not in text
        assert ZH["forced_change"] not in text
        assert ZH["new_pin"] not in text
        assert AUTHORISED["zh"] not in text
        assert debits(app, "not-activated") == []
    state = card_state(card)
    assert state.life_cycle is LifeCycle.NOT_ACTIVATED
    assert state.tries_left == 6
    assert file_bytes(card) == before


# --- S15: the new PIN is checked before the card is touched -------------------------------

EMPLOYEE_NEW = holders()["employee-new"]  # born 1985-03-12, phone 13812345678
S15_CASES = [
    ("12345", "not_six"),  # Enter with 5 digits
    ("111111", "same"),
    ("000000", "same"),
    ("123456", "consecutive"),  # also the initial PIN
    ("654321", "consecutive"),
    ("345678", "consecutive"),
    ("198503", "birth"),  # windows of 19850312
    ("985031", "birth"),
    ("850312", "birth"),
    ("031285", "birth"),  # MMDDYY
    ("120385", "birth"),  # DDMMYY
    ("381234", "phone"),  # windows of 13812345678
    ("138123", "phone"),
    ("812345", "phone"),
]


@pytest.mark.parametrize(("pin", "violation"), S15_CASES, ids=[c[0] for c in S15_CASES])
async def test_s15_forced_change_names_each_violation(
    tmp_path: Path, pin: str, violation: str
) -> None:
    """S15: each bad new PIN is named on screen, asked again, and costs no try; the card
    file is untouched. Then a good PIN goes on to the confirmation."""
    assert EMPLOYEE_NEW["phone"] == "13812345678"
    card = make_card(tmp_path, "employee-new")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, pin)
        text = screen_text(app)
        assert ZH[violation] in text
        for other in ("not_six", "same", "consecutive", "birth", "phone"):
            if other != violation:
                assert ZH[other] not in text
        assert ZH["new_pin"] in text
        assert ZH["confirm_pin"] not in text
        assert entry_text(app) == "_ _ _ _ _ _"
        assert file_bytes(card) == before
        await enter(pilot, NEW_PIN)
        text = screen_text(app)
        assert ZH["confirm_pin"] in text
        assert ZH[violation] not in text
    assert file_bytes(card) == before
    assert card_state(card).tries_left == 6


async def test_s15_mismatch_asks_for_the_new_pin_again(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-new")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, NEW_PIN)
        await enter(pilot, OTHER_PIN)
        text = screen_text(app)
        assert ZH["mismatch"] in text
        assert ZH["new_pin"] in text
        assert ZH["confirm_pin"] not in text
        assert ZH["changed"] not in text
        assert file_bytes(card) == before
        # The first choice is forgotten: the confirmation compares with the new one.
        await enter(pilot, OTHER_PIN)
        assert ZH["confirm_pin"] in screen_text(app)
        await enter(pilot, OTHER_PIN)
        assert ZH["changed"] in screen_text(app)
    state = card_state(card)
    assert state.pin.matches(OTHER_PIN)
    assert not state.pin.matches(NEW_PIN)


@pytest.mark.parametrize(
    ("pin", "violation"),
    [
        ("791102", "birth"),
        ("021179", "birth"),
        ("139876", "phone"),
        ("876543", "consecutive"),
        ("55555", "not_six"),
    ],
)
async def test_s15_holder_change_checks_too(tmp_path: Path, pin: str, violation: str) -> None:
    """S15 in menu 2 (employee-enabled: born 1979-11-02, phone 13987654321): refused
    before the card is touched, current PIN kept, no try spent."""
    assert holders()["employee-enabled"]["phone"] == "13987654321"
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await enter(pilot, ENABLED_PIN)
        assert ZH["new_pin"] in screen_text(app)
        await enter(pilot, pin)
        text = screen_text(app)
        assert ZH[violation] in text
        assert ZH["new_pin"] in text
        assert ZH["confirm_pin"] not in text
    assert file_bytes(card) == before


# --- S17: six wrong PINs lock the card ------------------------------------------------------


async def test_s17_six_wrong_pins_lock_the_card(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        for n in (5, 4, 3, 2, 1):
            await enter(pilot, "111222")
            text = screen_text(app)
            assert ZH["wrong_pin"].format(n=n) in text, n
            assert ZH["enter_pin"] in text
            assert ZH["locked"] not in text
            assert card_state(card).tries_left == n
        await enter(pilot, "111222")
        text = screen_text(app)
        assert ZH["locked"] in text
        assert ZH["go_outlet"] in text
        assert AUTHORISED["zh"] not in text
        assert card_state(card).tries_left == 0
        # The next payment is refused at once: no PIN asked, not even the right one.
        await pilot.press("enter")
        await settle(pilot)
        locked_bytes = file_bytes(card)
        await start_payment(pilot)
        text = screen_text(app)
        assert ZH["locked"] in text
        assert ZH["go_outlet"] in text
        assert ZH["enter_pin"] not in text
        assert file_bytes(card) == locked_bytes
        assert debits(app, "employee-enabled") == []
    state = card_state(card)
    assert state.tries_left == 0
    assert state.pin_state is PinState.ENABLED


async def test_s17_wrong_pins_are_counted_consecutively(tmp_path: Path) -> None:
    """Two wrong, then the right one: debited, and the count is back to 6."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, "111222")
        await enter(pilot, "111222")
        assert ZH["wrong_pin"].format(n=4) in screen_text(app)
        assert card_state(card).tries_left == 4
        await enter(pilot, ENABLED_PIN)
        assert_receipt(app, "employee-enabled")
    assert card_state(card).tries_left == 6


@pytest.mark.parametrize("menu", ["1", "2"])
async def test_s17_locked_card_is_refused_at_once(tmp_path: Path, menu: str) -> None:
    card = make_card(tmp_path, "locked")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        if menu == "1":
            await start_payment(pilot)
        else:
            await pilot.press("2")
            await settle(pilot)
        text = screen_text(app)
        assert ZH["locked"] in text
        assert ZH["go_outlet"] in text
        assert ZH["enter_pin"] not in text
        assert ZH["new_pin"] not in text
        assert debits(app, "locked") == []
    assert file_bytes(card) == before
    assert card_state(card).tries_left == 0


# --- menu 2: change the PIN -------------------------------------------------------------------


async def test_menu2_change_pin(tmp_path: Path) -> None:
    """S2/S3: current PIN (asked as 请输入原密码, not the payment's 请输入密码), new PIN
    twice, 密码修改成功; the card holds the new PIN."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
        assert strings.text("zh", "change") in text
        assert ENTER_OLD_PIN["zh"] in text
        assert ZH["enter_pin"] not in text
        await enter(pilot, ENABLED_PIN)
        assert ZH["new_pin"] in screen_text(app)
        await enter(pilot, NEW_PIN)
        assert ZH["confirm_pin"] in screen_text(app)
        assert card_state(card).pin.matches(ENABLED_PIN)  # not sent before the confirmation
        await enter(pilot, NEW_PIN)
        text = screen_text(app)
        assert ZH["changed"] in text
        assert AUTHORISED["zh"] not in text  # a change is not a payment
    state = card_state(card)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)
    assert state.tries_left == 6


async def test_menu2_change_from_initial_pin_enables_it(tmp_path: Path) -> None:
    """S2/S5: an INITIAL card changed at the terminal becomes ENABLED (before the upgrade
    date, so the change is the holder's own choice)."""
    card = make_card(tmp_path, "resident-new")
    app = make_app(card, today=BEFORE_UPGRADE)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await enter(pilot, INITIAL_PIN)
        await forced_change(pilot)
        assert ZH["changed"] in screen_text(app)
    state = card_state(card)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)


async def test_menu2_wrong_current_pin(tmp_path: Path) -> None:
    """The wrong current PIN costs one try, says how many are left, and keeps the PIN."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await enter(pilot, "111222")
        await forced_change(pilot)
        text = screen_text(app)
        assert ZH["wrong_pin"].format(n=5) in text
        assert ZH["changed"] not in text
    state = card_state(card)
    assert state.tries_left == 5
    assert state.pin.matches(ENABLED_PIN)
    assert not state.pin.matches(NEW_PIN)


# --- menu 3: card information ----------------------------------------------------------------


async def test_menu3_card_information_is_masked(tmp_path: Path) -> None:
    holder = holders()["employee-new"]
    card = make_card(tmp_path, "employee-new")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        text = screen_text(app)
        assert "张*" in text
        assert "3101**********2174" in text
        assert "A93230742" in text
        assert strings.text("zh", "scheme_310") in text
        assert strings.text("zh", "state_INITIAL") in text
        assert "密码剩余次数: 6" in text
        assert strings.text("zh", "tries_left", n=6) not in text  # the PIN prompt's hint only
        assert TAKE_CARD["zh"] in text
        assert holder["ssn"] not in text  # the full ID never
        assert holder["name"] not in text
        assert "19850312" not in text and "1985-03-12" not in text
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MenuScreen)
    assert file_bytes(card) == before


async def test_menu3_shows_tries_left(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, "111222")
        await cancel(pilot)
        await pilot.press("3")
        await settle(pilot)
        text = screen_text(app)
        assert "李**" in text  # three characters: the family name and two stars
        assert "李秀英" not in text
        assert "3101**********0480" in text
        assert "310101197911020480" not in text
        assert strings.text("en", "state_ENABLED") in text
        assert "PIN tries left: 5" in text
        assert strings.text("en", "tries_left", n=5) not in text  # the PIN prompt's hint only


# --- the card comes and goes (F2) ---------------------------------------------------------


async def test_f2_removed_during_pin_entry(tmp_path: Path) -> None:
    """Rule 1: removed mid-entry: a result says 卡片已拔出, the amount and 未扣款 until
    确认 (and nothing is debited), then the menu asks for a card; the card file
    unchanged; F2 puts it back and a payment is debited, once."""
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await type_digits(pilot, ENABLED_PIN[:3])
        await toggle_card(pilot)
        assert isinstance(app.screen, ResultScreen)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        text = screen_text(app)
        assert ZH["removed"] in text
        assert amount_line("zh") in text
        assert NOT_DEBITED["zh"] in text
        assert strings.text("zh", "no_card") in text
        assert TAKE_CARD["zh"] not in text  # the card is already out
        assert ENABLED_PIN[:3] not in text
        assert app.entry == ""
        assert not app.reader.card_present()
        assert file_bytes(card) == before
        assert debits(app, "employee-enabled") == []
        await confirm(pilot)
        assert isinstance(app.screen, MenuScreen)
        assert app.flow is None
        text = screen_text(app)
        assert ZH["insert_card"] in text
        assert strings.text("zh", "no_card") in text
        await toggle_card(pilot)
        text = screen_text(app)
        assert strings.text("zh", "card_present") in text
        assert ZH["insert_card"] not in text
        await start_payment(pilot)
        assert ZH["enter_pin"] in screen_text(app)
        await enter(pilot, ENABLED_PIN)
        assert_receipt(app, "employee-enabled")
    assert card_state(card).tries_left == 6


async def test_f2_removed_after_typing_the_new_pin_twice(tmp_path: Path) -> None:
    """Removed after the new PIN and the repeat were typed, before Enter: nothing half
    done. A result says 卡片已拔出 and 未扣款, and Enter on it only goes back to the menu
    (the typed repeat is never sent). The card is still on its initial PIN, and the next
    payment forces the change."""
    card = make_card(tmp_path, "employee-new")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, NEW_PIN)
        await type_digits(pilot, NEW_PIN)
        await toggle_card(pilot)
        assert isinstance(app.screen, ResultScreen)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        text = screen_text(app)
        assert ZH["removed"] in text
        assert NOT_DEBITED["zh"] in text
        assert amount_line("zh") in text
        assert ZH["changed"] not in text
        assert app.entry == ""
        assert file_bytes(card) == before
        assert debits(app, "employee-new") == []
        await confirm(pilot)  # Enter on the result confirms nothing: back to the menu
        assert isinstance(app.screen, MenuScreen)
        assert app.flow is None
        assert ZH["changed"] not in screen_text(app)
        assert file_bytes(card) == before
        await toggle_card(pilot)
        await start_payment(pilot)
        text = screen_text(app)
        assert ZH["forced_change"] in text
        assert ZH["new_pin"] in text
    state = card_state(card)
    assert state.pin_state is PinState.INITIAL
    assert state.pin.matches(INITIAL_PIN)
    assert state.tries_left == 6


async def test_f2_removed_while_waiting_for_the_amount(tmp_path: Path) -> None:
    """Removed while the amount is typed, before any card was read: the amount entry
    stays as it was (the status says the card is out); after Enter the payment asks for
    the card, and goes on when it is put back."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "5")
        await toggle_card(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.AMOUNT
        text = screen_text(app)
        assert strings.text("zh", "no_card") in text
        assert strings.text("zh", "enter_amount") in text
        assert entry_text(app) == "0.05 " + strings.text("zh", "yuan")
        assert ZH["removed"] not in text
        await confirm(pilot)
        assert app.flow is not None and app.flow.view.stage is Stage.INSERT
        text = screen_text(app)
        assert ZH["insert_card"] in text
        assert amount_line("zh", "0.05") in text
        assert strings.text("zh", "no_card") in text
        await toggle_card(pilot)
        text = screen_text(app)
        assert ZH["enter_pin"] in text
        assert amount_line("zh", "0.05") in text


async def test_f2_insert_resumes_a_payment_waiting_for_the_card(tmp_path: Path) -> None:
    """No card: the menu asks for one; a payment waits with 请插入社会保障卡 and goes on
    when F2 inserts the card, to its debit."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card, inserted=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert ZH["insert_card"] in text
        assert strings.text("zh", "no_card") in text
        await start_payment(pilot)
        text = screen_text(app)
        assert amount_line("zh") in text
        assert ZH["enter_pin"] not in text
        assert ZH["insert_card"] in text
        await toggle_card(pilot)
        text = screen_text(app)
        assert ZH["enter_pin"] in text
        assert strings.text("zh", "card_present") in text
        await enter(pilot, ENABLED_PIN)
        assert_receipt(app, "employee-enabled")


async def test_f2_removed_on_the_result_keeps_the_result(tmp_path: Path) -> None:
    """A finished payment stays finished when the card is taken out: the receipt (money
    moved at the host) stays, without 请取回卡片, until 确认; Escape does not close it."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, ENABLED_PIN)
        text = assert_receipt(app, "employee-enabled")
        assert TAKE_CARD["zh"] in text
        await toggle_card(pilot)
        assert isinstance(app.screen, ResultScreen)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        text = screen_text(app)
        assert AUTHORISED["zh"] in text
        assert amount_line("zh") in text
        assert "个人账户余额 1268.00 元" in text
        assert strings.text("zh", "no_card") in text
        assert TAKE_CARD["zh"] not in text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ResultScreen)
        assert AUTHORISED["zh"] in screen_text(app)
        await confirm(pilot)
        assert isinstance(app.screen, MenuScreen)
        assert app.flow is None
    assert debits(app, "employee-enabled") == [1250]


# --- the APDU trace: F12 and --trace ---------------------------------------------------------

# An APDU line, or a failure's reader API number (docs/card.md §8): never a PIN digit.
HEX_LINE = re.compile(
    r"^([<>]( ([0-9A-F]{2}|\*\*))+|reset( [0-9A-F]{2})+"
    r"|# api -\d+ [A-Za-z/() ]+(, \d tr(y|ies) left)?)$"
)
VERIFY_MASKED = "> 00 20 00 00 03 ** ** **"
CHANGE_MASKED = "> 80 5E 01 00 07 ** ** ** FF ** ** **"


def bcd(pin: str) -> str:
    return " ".join(pin[i : i + 2] for i in range(0, 6, 2))


async def test_f12_shows_the_trace_with_pins_masked(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f12")
        await settle(pilot)
        assert app.screen.query_one("#trace").display
        await start_payment(pilot)
        await enter(pilot, "111222")
        await enter(pilot, ENABLED_PIN)
        assert_receipt(app, "employee-enabled")
        title = strings.text("zh", "trace_title")
        pane = trace_pane_lines(app)
        assert pane[0] == title
        apdus = [line for line in pane if line != title]
        assert all(HEX_LINE.match(line) for line in apdus), apdus
        assert VERIFY_MASKED in apdus  # how often: test_f12_trace_pane_lists_each_apdu_once
        assert apdus[-5:] == [
            VERIFY_MASKED,
            "< 63 C5",
            "# api -51 wrong PIN, 5 tries left",  # docs/card.md §8
            VERIFY_MASKED,
            "< 90 00",
        ]
        text = screen_text(app)
        for pin in ("111222", ENABLED_PIN):
            assert pin not in text
            assert bcd(pin) not in text
        assert VERIFY_MASKED[2:] in rendered_text(app)  # drawn, not only kept
        await pilot.press("f12")
        await settle(pilot)
        assert not app.screen.query_one("#trace").display
        assert VERIFY_MASKED[2:] not in rendered_text(app)


async def test_f12_trace_pane_lists_each_apdu_once(tmp_path: Path) -> None:
    """The pane is the trace: each exchanged APDU once, in order, as in --trace."""
    card = make_card(tmp_path, "employee-enabled")
    log = tmp_path / "trace.log"
    app = make_app(card, trace_file=log)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f12")
        await start_payment(pilot)
        await enter(pilot, ENABLED_PIN)
        assert_receipt(app, "employee-enabled")
        title = strings.text("zh", "trace_title")
        pane = trace_pane_lines(app)
        assert pane.count(title) == 1, pane[:3]
        assert [line for line in pane if line != title] == log.read_text("utf-8").splitlines()


async def test_trace_file_is_masked(tmp_path: Path) -> None:
    """--trace FILE: every line is a masked APDU line; no PIN, old or new, in any form."""
    card = make_card(tmp_path, "employee-new")
    log = tmp_path / "trace.log"
    app = make_app(card, trace_file=log)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await forced_change(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await start_payment(pilot)
        await enter(pilot, "111222")
        await enter(pilot, NEW_PIN)
        assert_receipt(app, "employee-new", paid=(1250, 1250))
    lines = log.read_text("utf-8").splitlines()
    assert lines
    assert all(HEX_LINE.match(line) for line in lines), [x for x in lines if not HEX_LINE.match(x)]
    assert lines.count(CHANGE_MASKED) == 1
    assert lines.count(VERIFY_MASKED) == 2
    raw = log.read_text("utf-8")
    for pin in (INITIAL_PIN, NEW_PIN, "111222"):
        assert pin not in raw
        assert bcd(pin) not in raw
    assert card_state(card).pin.matches(NEW_PIN)


# --- the keypad: clicks, focus ---------------------------------------------------------------


async def test_keypad_clicks_do_what_keys_do(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#key-1")
        await settle(pilot)
        for d in "1250":
            await pilot.click(f"#key-{d}")
        assert entry_text(app) == "12.50 " + strings.text("zh", "yuan")
        await pilot.click("#key-back")
        assert entry_text(app) == "1.25 " + strings.text("zh", "yuan")
        await pilot.click("#key-clear")
        assert entry_text(app) == "0.00 " + strings.text("zh", "yuan")
        for d in "1250":
            await pilot.click(f"#key-{d}")
        await pilot.click("#key-confirm")
        await settle(pilot)
        assert ZH["enter_pin"] in screen_text(app)
        for d in ENABLED_PIN:
            await pilot.click(f"#key-{d}")
        assert entry_text(app) == "* * * * * *"
        await pilot.click("#key-confirm")
        await settle(pilot)
        assert_receipt(app, "employee-enabled")
        await pilot.click("#key-cancel")  # 取消 does not close a receipt
        await settle(pilot)
        assert app.flow is not None and app.flow.view.keep
        await pilot.click("#key-confirm")
        await settle(pilot)
        assert isinstance(app.screen, MenuScreen)
        await pilot.click("#key-cancel")
        await settle(pilot)
        assert isinstance(app.screen, ModalScreen)


async def test_keys_back_and_clear_on_the_pin_entry(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await type_digits(pilot, "8026")
        assert entry_text(app) == "* * * * _ _"
        await pilot.press("backspace")
        assert entry_text(app) == "* * * _ _ _"
        await pilot.press("delete")
        assert entry_text(app) == "_ _ _ _ _ _"
        await type_digits(pilot, ENABLED_PIN + "99")  # a seventh digit is not taken
        assert entry_text(app) == "* * * * * *"
        await pilot.press("enter")
        await settle(pilot)
        assert_receipt(app, "employee-enabled")


async def test_keypad_buttons_never_take_focus(tmp_path: Path) -> None:
    """Enter after a click confirms: it does not press the clicked button again."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        buttons = list(app.screen.query(Button))
        assert len(buttons) == 14
        assert not any(b.focusable for b in buttons)
        await pilot.click("#key-1")
        await settle(pilot)
        for d in "1250":
            await pilot.click(f"#key-{d}")
        assert not isinstance(app.focused, Button)
        await pilot.press("tab")
        assert not isinstance(app.focused, Button)
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
        assert amount_line("zh") in text  # 12.50, not 125.00
        assert ZH["enter_pin"] in text
        await pilot.click("#key-8")
        await pilot.press("enter")  # 1 digit: refused as short; not 88
        await settle(pilot)
        assert ZH["not_six"] in screen_text(app)
        assert not isinstance(app.focused, Button)
        assert card_state(card).tries_left == 6


# --- PIN digits are never shown ---------------------------------------------------------


async def test_pin_digits_are_never_shown(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-new")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await type_digits(pilot, "384")
        assert entry_text(app) == "* * * _ _ _"
        assert "384" not in screen_text(app)
        await type_digits(pilot, "950")
        assert entry_text(app) == "* * * * * *"
        assert NEW_PIN not in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        await type_digits(pilot, NEW_PIN)
        assert entry_text(app) == "* * * * * *"
        assert NEW_PIN not in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        text = assert_receipt(app, "employee-new")
        assert ZH["changed"] in text
        assert NEW_PIN not in text
        assert bcd(NEW_PIN) not in text


# --- Escape ------------------------------------------------------------------------------------


async def test_escape_cancels_amount_entry(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "5", "0")
        await cancel(pilot)
        assert isinstance(app.screen, MenuScreen)
        assert strings.text("zh", "menu_pay") in screen_text(app)


async def test_escape_cancels_pin_entry(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await type_digits(pilot, ENABLED_PIN)
        await cancel(pilot)
        assert isinstance(app.screen, MenuScreen)
        assert AUTHORISED["zh"] not in screen_text(app)
        # the reader API's number for a cancelled PIN entry, in the trace (docs/card.md §8)
        assert list(app.trace_lines)[-1] == "# api -31 PIN entry cancelled"
        # the typed PIN went nowhere: a new payment starts with an empty entry
        await start_payment(pilot)
        assert entry_text(app) == "_ _ _ _ _ _"
    assert file_bytes(card) == before


async def test_escape_cancels_forced_change_at_confirmation(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-new")
    before = file_bytes(card)
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, NEW_PIN)
        await type_digits(pilot, NEW_PIN)
        await cancel(pilot)
        assert isinstance(app.screen, MenuScreen)
        assert ZH["changed"] not in screen_text(app)
    assert file_bytes(card) == before


async def test_escape_on_the_menu_asks_to_quit(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ModalScreen)
        assert strings.text("zh", "quit_question") in screen_text(app)
        await pilot.press("1")  # the pad is behind the question: nothing starts
        await settle(pilot)
        assert isinstance(app.screen, ModalScreen)
        await pilot.press("escape")  # stay
        await settle(pilot)
        assert isinstance(app.screen, MenuScreen)
        assert app.return_code is None
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ModalScreen)
        await pilot.press("enter")  # quit
        await settle(pilot)
        assert app.return_code == 0


# --- English ---------------------------------------------------------------------------------

EN = EN_RULES


async def test_en_forced_change_and_payment(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-new")
    app = make_app(card, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        text = screen_text(app)
        assert EN["forced_change"] in text
        assert EN["new_pin"] in text
        await enter(pilot, "123456")
        assert EN["consecutive"] in screen_text(app)
        await enter(pilot, "12345")
        assert EN["not_six"] in screen_text(app)
        await enter(pilot, "222222")
        assert EN["same"] in screen_text(app)
        await enter(pilot, "850312")
        assert EN["birth"] in screen_text(app)
        await enter(pilot, "381234")
        assert EN["phone"] in screen_text(app)
        await enter(pilot, NEW_PIN)
        assert EN["confirm_pin"] in screen_text(app)
        await enter(pilot, OTHER_PIN)
        assert EN["mismatch"] in screen_text(app)
        await forced_change(pilot)
        text = assert_receipt(app, "employee-new", lang="en")
        assert EN["changed"] in text
        assert "密码" not in text
    assert card_state(card).pin.matches(NEW_PIN)


async def test_en_wrong_pins_and_lock(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert EN["enter_pin"] in screen_text(app)
        for n in (5, 4, 3, 2, 1):
            await enter(pilot, "111222")
            assert EN["wrong_pin"].format(n=n) in screen_text(app)
        await enter(pilot, "111222")
        text = screen_text(app)
        assert EN["locked"] in text
        assert EN["go_outlet"] in text
    assert card_state(card).tries_left == 0


@pytest.mark.parametrize(
    ("profile", "key"),
    [("not-activated", "not_activated"), ("resident-new", "no_pin"), ("locked", "locked")],
)
async def test_en_decisions(tmp_path: Path, profile: str, key: str) -> None:
    card = make_card(tmp_path, profile)
    app = make_app(card, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert EN[key] in screen_text(app)


async def test_en_card_removed(tmp_path: Path) -> None:
    """--lang en: pulled mid-PIN, the result says so in English; Enter, and the menu asks
    for the card."""
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await type_digits(pilot, "80")
        await toggle_card(pilot)
        assert isinstance(app.screen, ResultScreen)
        text = screen_text(app)
        assert EN["removed"] in text
        assert amount_line("en") in text
        assert NOT_DEBITED["en"] in text
        assert "卡" not in text
        await confirm(pilot)
        assert isinstance(app.screen, MenuScreen)
        text = screen_text(app)
        assert EN["insert_card"] in text
        assert "卡" not in text


async def test_en_waiting_for_the_card(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card, lang="en", inserted=False)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert EN["insert_card"] in screen_text(app)


async def test_en_menu2_change(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
        assert ENTER_OLD_PIN["en"] in text
        assert EN["enter_pin"] not in text
        await enter(pilot, ENABLED_PIN)
        assert EN["new_pin"] in screen_text(app)
        await enter(pilot, NEW_PIN)
        assert EN["confirm_pin"] in screen_text(app)
        await enter(pilot, NEW_PIN)
        assert EN["changed"] in screen_text(app)
    assert card_state(card).pin.matches(NEW_PIN)


# --- the command line (no UI is run) -----------------------------------------------------------


def test_main_missing_card_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(store.StoreError) as info:
        build(parse_args(["--card", str(missing)]))
    assert "\n" not in str(info.value).strip()
    assert main(["--card", str(missing)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("pos-terminal: ")
    assert len(err.strip().splitlines()) == 1
    assert "nope.json" in err
    assert not missing.exists()  # nothing made up in its place


def test_main_corrupt_card_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "shebao-pos/card", "version": 1}', "utf-8")
    with pytest.raises(CardFileError):
        build(parse_args(["--card", str(bad)]))
    assert main(["--card", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "bad.json" in err


def test_upgrade_date_parsing(tmp_path: Path) -> None:
    assert parse_args([]).upgrade_date == dt.date(2020, 4, 13)
    args = parse_args(["--upgrade-date", "2024-04-13", "--lang", "en"])
    assert args.upgrade_date == dt.date(2024, 4, 13)
    card = make_card(tmp_path, "employee-new")
    app = build(parse_args(["--card", str(card), "--upgrade-date", "2031-04-13"]))
    try:
        assert app.options.settings.upgrade_date == dt.date(2031, 4, 13)
        # no frozen date: a terminal left running reads the real date at each decision
        assert app.options.settings.today is None
        assert not app.options.settings.upgraded
        assert app.options.lang == "zh"
        assert app.reader.can_toggle  # a virtual card: F2 puts it in and pulls it out
    finally:
        app.reader.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["--upgrade-date", "2024-13-01"],
        ["--upgrade-date", "13/04/2024"],
        ["--upgrade-date"],
        ["--lang", "fr"],
        ["--card", "a.json", "--reader", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "pos-terminal" in capsys.readouterr().err
