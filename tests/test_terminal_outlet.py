"""Pilot tests of `pos-terminal --outlet`: the service outlet's operations on the keypad
(the same operations as `cardio outlet`), against docs/terminal-rules.md S6, S7, S13, S14,
S15, S16 and S17, and docs/card.md §5.

Every app is built the way the command line builds it (`build(parse_args([...]))`) on a
card file made from a profile in tmp_path, with the fixtures' public test issuer's keys
(--test-key), a private JSON master-key file of other keys (--key), or a PSAM (--psam;
by default the virtual PSAM beside the default card, which the pharmacy side reads every
card with), an outlet log in tmp_path and the operator "wang"; it runs at 80x24. The
phrases are written out here exactly; the card file and the outlet log are read back
from disk.

The terminal's outlet screens read the card at the flow's READING stage without keys;
the operation, when it runs, reads it again with the outlet's key source, which checks it
(INTERNAL AUTHENTICATE, 00 88, before the holder's data; a counterfeit card or another
issuer's keys are refused there and logged), compares the ID, then sends GET CHALLENGE,
the PUK's EXTERNAL AUTHENTICATE (00 82 00 06), GET CHALLENGE, the MAC-protected command
(docs/card.md §5). "Privileged" here means what can change the card: CLA 84 commands and
the PUK's 00 82 00 06 (a wrong key spends one of its tries).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from terminal_helpers import (
    cancel,
    card_state,
    enter,
    entry_text,
    file_bytes,
    make_card,
    screen_text,
    settle,
    start_payment,
    toggle_card,
    trace_pane_lines,
    type_digits,
)
from textual.widgets import Static

from cardio.card.state import LifeCycle, PinState
from cardio.identity import check_digit, id_problem, mask_id
from cardio.issuer import Issuer, KeyName, counterfeit_issuer, fixture_issuer
from cardio.keysource import MasterKeySource, PsamKeySource
from cardio.psam import state as psam_state
from cardio.psam import store as psam_store
from terminal.app import PosApp
from terminal.cli import build, main, parse_args
from terminal.screens.menu import MenuScreen
from terminal.screens.stages import IdScreen, PinScreen, ResultScreen

pytestmark = pytest.mark.slow  # Pilot through whole flows, key by key: ~0.3-2 s a test

SIZE = (80, 24)
OPERATOR = "wang"

INITIAL_PIN = "123456"  # fixtures/README.md: INITIAL cards
ENABLED_PIN = "802613"  # fixtures/README.md: employee-enabled, and locked before it locked
NEW_PIN = "384950"  # breaks no S15 rule for any fixture holder
OTHER_PIN = "947261"
ALL_PINS = (INITIAL_PIN, ENABLED_PIN, NEW_PIN, OTHER_PIN)

# The fixture holders (fixtures/holders/holders.json), written out.
LOCKED_SSN = "310106197012050397"  # born 1970-12-05
ENABLED_SSN = "310101197911020480"  # born 1979-11-02
NOT_ACTIVATED_SSN = "310112200104080624"  # born 2001-04-08
EMPLOYEE_NEW_SSN = "310104198503122174"  # born 1985-03-12
X_SSN = "31010419850312118X"  # born 1985-03-12 too, check digit X
COUNTERFEIT_SSN = "310109198306141933"  # the counterfeit profile's holder
KEY_TRY_LIMIT = 3  # the PUK's EXTERNAL AUTHENTICATE tries (docs/card.md §4)

# operation -> (menu key, the profile it is meant for, that holder's ID)
TARGETS = {
    "reset-pin": ("1", "locked", LOCKED_SSN),
    "restore-initial": ("2", "employee-enabled", ENABLED_SSN),
    "cancel-pin": ("3", "employee-enabled", ENABLED_SSN),
    "activate": ("4", "not-activated", NOT_ACTIVATED_SSN),
    "unblock": ("5", "locked", LOCKED_SSN),
}
# operation -> head (CLA INS P1 P2 Lc) of its MAC-protected command (docs/card.md §5;
# part 5 §6.8: 16 bytes of encrypted PIN block and 4 of MAC, or the MAC alone)
APDU_HEADS = {
    "reset-pin": "84 24 00 01 14",
    "restore-initial": "84 24 00 01 14",
    "cancel-pin": "84 24 00 01 04",
    "activate": "84 18 00 00 04",
    "unblock": "84 24 00 00 04",
}
INTERNAL_AUTH = "00 88 00 00 10"
GET_CHALLENGE = "00 84 00 00 08"
PUK_AUTH = "00 82 00 06 10"


def outlet_sequence(operation: str) -> list[str]:
    """The heads of what the outlet sends after its own read of the card."""
    return [INTERNAL_AUTH, GET_CHALLENGE, PUK_AUTH, GET_CHALLENGE, APDU_HEADS[operation]]


# docs/terminal-rules.md §6, exact
ZH_RULES = {
    "insert_card": "请插入社会保障卡",
    "enter_pin": "请输入密码",
    "forced_change": "请修改初始密码",
    "new_pin": "请输入新密码",
    "confirm_pin": "请再次输入新密码",
    "mismatch": "两次输入的密码不一致",
    "not-six-digits": "密码必须为6位数字",
    "same-digits": "不能使用6位相同数字",
    "consecutive": "不能使用连续数字",
    "birth-date": "不能使用出生日期",
    "no_pin": "未启用密码",
    "removed": "卡片已拔出",
}
EN_RULES = {
    "new_pin": "Enter a new PIN",
    "confirm_pin": "Enter the new PIN again",
    "removed": "Card removed",
}
# the outlet's own words (terminal/strings.py), exact
ZH = {
    **ZH_RULES,
    "outlet_title": "社会保障卡 服务网点",
    "menu": [
        "1  密码重置/解锁",
        "2  恢复初始密码",
        "3  取消密码",
        "4  激活卡片",
        "5  解锁（不改密码）",
    ],
    "enter_id": "请输入持卡人身份证号码（X 键输入 X）",
    "id_invalid": "身份证号码有误，请核对证件",
    "id_mismatch": "身份证号码与卡片不符，未对卡片做任何操作",
    "done_reset-pin": "密码已重置，卡片已解锁",
    "done_restore-initial": "已恢复为原始密码",
    "done_cancel-pin": "密码已取消",
    "done_activate": "卡片已激活",
    "done_unblock": "卡片已解锁，密码不变",
    "query_password": "初始查询密码（网上查询用，不是社保卡密码）：{password}",
    "key_wrong": "卡片未通过网点密钥校验：伪卡、其他发卡机构的卡，"
    "或网点密钥有误（请检查PSAM卡或密钥文件）",
    "counterfeit": "此卡未通过真伪校验，请勿受理，请持卡人到社保卡服务网点核实",
    "authorised": "消费授权成功",
    "pharmacy_menu": ["消费", "修改密码", "卡片信息"],
}
EN = {
    **EN_RULES,
    "outlet_title": "Social security card  Service outlet",
    "menu": [
        "1  Reset and unblock the PIN",
        "2  Restore the initial PIN",
        "3  Cancel the PIN",
        "4  Activate the card",
        "5  Unblock (PIN unchanged)",
    ],
    "enter_id": "Enter the holder's ID number (X key for X)",
    "id_mismatch": "The ID number does not match the card; nothing was done to the card",
    "done_reset-pin": "PIN reset, card unblocked",
    "done_unblock": "Card unblocked; the PIN is unchanged",
    "key_wrong": "The card refused the outlet's keys: they are not its issuer's; "
    "check the PSAM or the key file",
    "query_password": "Initial online query password (not the card PIN): {password}",
    "pharmacy_menu": ["Payment", "Change PIN", "Card information"],
}
TEXT = {"zh": ZH, "en": EN}


def s7(ssn: str) -> str:
    """S7 written out: the last 8 characters of the ID, a final X read as 0."""
    tail = ssn[-8:]
    return tail[:7] + ("0" if tail[7] in "Xx" else tail[7])


def bcd(pin: str) -> str:
    """How a PIN would look in an APDU line: '384950' -> '38 49 50'."""
    return " ".join(pin[i : i + 2] for i in range(0, len(pin), 2))


# --- building and driving the apps ------------------------------------------------------


def outlet_app(
    card: Path,
    log: Path,
    *,
    lang: str = "zh",
    key: Path | None = None,
    trace: Path | None = None,
    keys: list[str] | None = None,
) -> PosApp:
    """`pos-terminal --card CARD --outlet (--test-key | --key KEY | KEYS) --outlet-log LOG
    --operator wang`, as the command line builds it (KEYS: such as --psam FILE)."""
    argv = ["--card", str(card), "--outlet"]
    if keys is not None:
        argv += keys
    else:
        argv += ["--key", str(key)] if key is not None else ["--test-key"]
    argv += ["--outlet-log", str(log), "--operator", OPERATOR, "--lang", lang]
    if trace is not None:
        argv += ["--trace", str(trace)]
    return build(parse_args(argv))


def pharmacy_app(card: Path) -> PosApp:
    """The pharmacy mode (no --outlet) on the same card file."""
    return build(parse_args(["--card", str(card)]))


def key_file(tmp_path: Path, issuer: Issuer, mode: int = 0o600, name: str = "issuer.json") -> Path:
    """A master-key file (cardio/issuer.py's JSON) of `issuer`'s masters, private."""
    path = tmp_path / name
    doc = {
        "algorithm": issuer.algorithm.name,
        "keys": {k.value: v.hex().upper() for k, v in issuer.masters.items()},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", "ascii")
    path.chmod(mode)
    return path


def changed_puk_issuer() -> Issuer:
    """The fixture issuer with only its PUK master changed (one bit): a card passes the
    check with these keys, then refuses the PUK."""
    issuer = fixture_issuer()
    masters = dict(issuer.masters)
    masters[KeyName.PUK] = bytes((masters[KeyName.PUK][0] ^ 0x01,)) + masters[KeyName.PUK][1:]
    return Issuer(issuer.algorithm, masters)


def psam_file(tmp_path: Path, issuer: Issuer | None = None, name: str = "psam.json") -> Path:
    """A PSAM file (what `cardio card new --profile psam` makes) of the test issuer."""
    path = tmp_path / name
    psam_store.create(path, psam_state.make(issuer or fixture_issuer()))
    return path


async def choose(pilot, menu_key: str) -> None:
    await pilot.press(menu_key)
    await settle(pilot)


async def type_id(pilot, id_number: str) -> None:
    """The holder's ID on the keyboard (the key "x" types X), without Enter."""
    await pilot.press(*[c.lower() for c in id_number])


async def enter_id(pilot, id_number: str) -> None:
    await type_id(pilot, id_number)
    await pilot.press("enter")
    await settle(pilot)


def log_entries(log: Path) -> list[dict[str, object]]:
    """One entry per operation: its result line (a "started" line of intent precedes a
    command that is sent: see test_started_line_comes_before_the_result)."""
    entries = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    return [e for e in entries if e["result"] != "started"]


def assert_no_pins(text: str, *pins: str) -> None:
    for secret in {*ALL_PINS, *pins}:
        assert secret not in text, f"PIN {secret} found in {text!r}"
        assert bcd(secret) not in text, f"PIN {secret} (BCD) found in {text!r}"


def trace_lines(trace: Path) -> list[str]:
    return trace.read_text("utf-8").splitlines() if trace.exists() else []


def privileged(lines: list[str]) -> list[str]:
    """The commands in a trace that can change the card: the MAC-protected ones (CLA 84)
    and the PUK's EXTERNAL AUTHENTICATE. The terminal's read of a card sends INTERNAL
    AUTHENTICATE, GET CHALLENGE and RK1DF04's 00 82 00 84, which are not counted."""
    return [ln for ln in lines if ln.startswith(("> 84 ", f"> {PUK_AUTH} "))]


def authentication(lines: list[str]) -> list[str]:
    """The heads of every authentication command and protected command in a trace."""
    heads = ("> 84 ", "> 00 84 ", "> 00 82 ", "> 00 88 ")
    return [ln[2:16] for ln in lines if ln.startswith(heads)]


def result_lines(app: PosApp) -> str:
    """The result screen's message lines only (not the title bar nor the keypad)."""
    return str(app.screen.query_one("#lines", Static).render())


# --- the menu ---------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_outlet_menu_lists_the_five_operations(tmp_path: Path, lang: str) -> None:
    card = make_card(tmp_path, "locked")
    app = outlet_app(card, tmp_path / "outlet.log", lang=lang)
    words = TEXT[lang]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, MenuScreen)
        text = screen_text(app)
        assert words["outlet_title"] in text
        lines = result_lines(app)
        positions = [lines.find(item) for item in words["menu"]]
        assert all(p >= 0 for p in positions), (words["menu"], lines)
        assert positions == sorted(positions)
        for pharmacy_item in words["pharmacy_menu"]:
            assert pharmacy_item not in lines
        # the pharmacy's menu keys lead to the outlet's operations
        await choose(pilot, "1")
        assert isinstance(app.screen, IdScreen)
        assert words["enter_id"] in screen_text(app)


# --- S17/S6: reset and unblock ------------------------------------------------------------


async def test_s17_s6_reset_pin_unblocks_the_locked_card(tmp_path: Path) -> None:
    """1 密码重置/解锁 on the locked card: the holder's ID, the new PIN twice →
    密码已重置，卡片已解锁 and the S7 query password; on disk ENABLED, 6 of 6 tries, the
    new PIN; one log line; then a pharmacy payment asks for the new PIN and takes it."""
    card = make_card(tmp_path, "locked")
    before = card_state(card)
    assert (before.pin_state, before.tries_left, before.try_limit) == (PinState.ENABLED, 0, 6)
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "1")
        assert ZH["enter_id"] in screen_text(app)
        await type_id(pilot, LOCKED_SSN)
        assert entry_text(app) == LOCKED_SSN
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PinScreen)
        text = screen_text(app)
        assert ZH["new_pin"] in text
        assert ZH["id_mismatch"] not in text
        await type_digits(pilot, NEW_PIN)
        assert entry_text(app) == "* * * * * *"
        assert NEW_PIN not in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert ZH["confirm_pin"] in screen_text(app)
        assert card_state(card).tries_left == 0  # nothing sent yet
        await enter(pilot, NEW_PIN)
        assert isinstance(app.screen, ResultScreen)
        text = screen_text(app)
        assert ZH["done_reset-pin"] in text
        assert ZH["query_password"].format(password="12050397") in text
        assert s7(LOCKED_SSN) == "12050397"
        assert NEW_PIN not in text
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MenuScreen)
    after = card_state(card)
    assert after.pin_state is PinState.ENABLED
    assert after.life_cycle is LifeCycle.ACTIVE
    assert after.tries_left == after.try_limit == 6
    assert after.pin.matches(NEW_PIN)
    assert not after.pin.matches(ENABLED_PIN)
    (entry,) = log_entries(log)
    assert entry["operator"] == OPERATOR
    assert entry["operation"] == "reset-pin"
    assert entry["card_number"] == after.card.card_number
    assert str(entry["result"]).split()[0] == "9000"
    assert_no_pins(log.read_text("utf-8"))

    pharmacy = pharmacy_app(card)
    async with pharmacy.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        assert ZH["enter_pin"] in screen_text(pharmacy)
        await enter(pilot, NEW_PIN)
        assert ZH["authorised"] in screen_text(pharmacy)
    assert card_state(card).tries_left == 6


LOCKED_S15 = [
    ("777777", "same-digits"),
    ("000000", "same-digits"),
    ("123456", "consecutive"),
    ("654321", "consecutive"),
    ("345678", "consecutive"),
    ("197012", "birth-date"),  # windows of YYYYMMDD 19701205
    ("701205", "birth-date"),
    ("120570", "birth-date"),  # MMDDYY
    ("051270", "birth-date"),  # DDMMYY
    ("12345", "not-six-digits"),
]


@pytest.mark.parametrize(("bad", "rule"), LOCKED_S15, ids=[b for b, _ in LOCKED_S15])
async def test_s15_reset_pin_violation_named_and_nothing_sent(
    tmp_path: Path, bad: str, rule: str
) -> None:
    """S15 on the outlet's new PIN: the rule broken is named, the new PIN asked again,
    nothing privileged is sent, the card file is byte for byte as before."""
    card = make_card(tmp_path, "locked")
    before = file_bytes(card)
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, tmp_path / "outlet.log", trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "1")
        await enter_id(pilot, LOCKED_SSN)
        await enter(pilot, bad)
        text = screen_text(app)
        assert ZH_RULES[rule] in text
        assert ZH["new_pin"] in text
        assert ZH["confirm_pin"] not in text
        assert ZH["done_reset-pin"] not in text
        assert bad not in text
        assert isinstance(app.screen, PinScreen)
        assert entry_text(app) == "_ _ _ _ _ _"
        assert file_bytes(card) == before
        await cancel(pilot)
        assert isinstance(app.screen, MenuScreen)
    assert file_bytes(card) == before
    lines = trace_lines(trace)
    assert lines, "the card must have been read to check the ID"
    assert privileged(lines) == []


async def test_s15_reset_pin_mismatch_then_a_good_pin_one_log_line(tmp_path: Path) -> None:
    """Two different entries: 两次输入的密码不一致 and the new PIN asked again, nothing
    sent; a broken rule, then the same good PIN twice: done, and the operation is one
    line in the outlet log."""
    card = make_card(tmp_path, "locked")
    before = file_bytes(card)
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "1")
        await enter_id(pilot, LOCKED_SSN)
        await enter(pilot, NEW_PIN)
        await enter(pilot, OTHER_PIN)
        text = screen_text(app)
        assert ZH["mismatch"] in text
        assert ZH["new_pin"] in text
        assert ZH["done_reset-pin"] not in text
        assert isinstance(app.screen, PinScreen)
        assert file_bytes(card) == before
        assert privileged(trace_lines(trace)) == []
        # the first entry is not kept: OTHER_PIN alone is a new first entry
        await enter(pilot, "111111")
        assert ZH["same-digits"] in screen_text(app)
        await enter(pilot, OTHER_PIN)
        assert ZH["confirm_pin"] in screen_text(app)
        await enter(pilot, OTHER_PIN)
        assert ZH["done_reset-pin"] in screen_text(app)
    state = card_state(card)
    assert state.pin.matches(OTHER_PIN)
    assert not state.pin.matches(NEW_PIN)
    assert state.pin_state is PinState.ENABLED and state.tries_left == 6
    (entry,) = log_entries(log)
    assert entry["operation"] == "reset-pin"
    assert str(entry["result"]).split()[0] == "9000"
    assert_no_pins(log.read_text("utf-8"), "111111")


# --- S14: restore the initial PIN, then the pharmacy forces a change -----------------------


async def test_s14_restore_initial_then_the_pharmacy_forces_a_change(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    assert card_state(card).pin_state is PinState.ENABLED
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "2")
        await enter_id(pilot, ENABLED_SSN)
        assert isinstance(app.screen, ResultScreen)
        text = screen_text(app)
        assert ZH["done_restore-initial"] in text
        assert ZH["query_password"].format(password="11020480") in text
        assert ZH["new_pin"] not in text  # no PIN is asked for a restore
    after = card_state(card)
    assert after.pin_state is PinState.INITIAL
    assert after.tries_left == after.try_limit == 6
    assert after.pin.matches(INITIAL_PIN)
    assert not after.pin.matches(ENABLED_PIN)
    (entry,) = log_entries(log)
    assert (entry["operation"], str(entry["result"]).split()[0]) == ("restore-initial", "9000")

    pharmacy = pharmacy_app(card)
    async with pharmacy.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        text = screen_text(pharmacy)
        assert ZH["forced_change"] in text
        assert ZH["new_pin"] in text
        assert ZH["authorised"] not in text
    assert card_state(card).pin_state is PinState.INITIAL


# --- S16: cancel the PIN, then no PIN at the pharmacy --------------------------------------


async def test_s16_cancel_pin_then_the_pharmacy_asks_for_no_pin(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "3")
        await enter_id(pilot, ENABLED_SSN)
        text = screen_text(app)
        assert ZH["done_cancel-pin"] in text
        assert ZH["query_password"].format(password="11020480") in text
    after = card_state(card)
    assert after.pin_state is PinState.DISABLED
    assert after.life_cycle is LifeCycle.ACTIVE
    assert after.tries_left == after.try_limit == 6
    (entry,) = log_entries(log)
    assert (entry["operation"], str(entry["result"]).split()[0]) == ("cancel-pin", "9000")

    pharmacy = pharmacy_app(card)
    async with pharmacy.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        text = screen_text(pharmacy)
        assert ZH["no_pin"] in text
        assert ZH["authorised"] not in text  # the holder confirms the amount first
        await enter(pilot, "")
        text = screen_text(pharmacy)
        assert ZH["authorised"] in text
        assert ZH["enter_pin"] not in text
        assert ZH["forced_change"] not in text
    assert card_state(card).pin_state is PinState.DISABLED


# --- S13: activate ---------------------------------------------------------------------------


async def test_s13_activate_a_card_that_is_not_activated(tmp_path: Path) -> None:
    card = make_card(tmp_path, "not-activated")
    assert card_state(card).life_cycle is LifeCycle.NOT_ACTIVATED
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "4")
        await enter_id(pilot, NOT_ACTIVATED_SSN)
        text = screen_text(app)
        assert ZH["done_activate"] in text
        assert ZH["query_password"].format(password="04080624") in text
    after = card_state(card)
    assert after.life_cycle is LifeCycle.ACTIVE
    assert after.pin_state is PinState.INITIAL
    assert after.tries_left == after.try_limit == 6
    assert after.pin.matches(INITIAL_PIN)
    (entry,) = log_entries(log)
    assert (entry["operation"], str(entry["result"]).split()[0]) == ("activate", "9000")


# --- 5: unblock, the PIN unchanged -----------------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_unblock_a_locked_card_keeps_its_pin(tmp_path: Path, lang: str) -> None:
    """5 解锁（不改密码） on the locked card: the ID, no PIN asked → 卡片已解锁，密码不变;
    on disk the tries back to 6 and the holder's PIN unchanged; then the pharmacy takes
    that PIN."""
    card = make_card(tmp_path, "locked")
    assert card_state(card).tries_left == 0
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, lang=lang, trace=trace)
    words = TEXT[lang]
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "5")
        assert isinstance(app.screen, IdScreen)
        await enter_id(pilot, LOCKED_SSN)
        assert isinstance(app.screen, ResultScreen)
        text = result_lines(app)
        assert words["done_unblock"] in text
        assert words["new_pin"] not in screen_text(app)
    after = card_state(card)
    assert after.tries_left == after.try_limit == 6
    assert after.pin_state is PinState.ENABLED
    assert after.pin.matches(ENABLED_PIN)
    lines = trace_lines(trace)
    assert authentication(lines)[-5:] == outlet_sequence("unblock")
    assert "> 84 24 00 00 04 ** ** ** **" in lines  # the MAC is not shown
    (entry,) = log_entries(log)
    assert (entry["operation"], str(entry["result"]).split()[0]) == ("unblock", "9000")

    pharmacy = pharmacy_app(card)
    async with pharmacy.run_test(size=SIZE) as pilot:
        await start_payment(pilot)
        await enter(pilot, ENABLED_PIN)
        assert ZH["authorised"] in screen_text(pharmacy)


@pytest.mark.parametrize("operation", list(TARGETS))
async def test_each_operation_sends_the_outlet_flow_after_the_read(
    tmp_path: Path, operation: str
) -> None:
    """After the terminal's read (with its PSAM) and the outlet's own: 00 88, GET
    CHALLENGE, 00 82 00 06, GET CHALLENGE, the protected command, each answered 90 00;
    only the last two of them can change the card; one intent line, then 9000."""
    _, profile, ssn = TARGETS[operation]
    card = make_card(tmp_path, profile)
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, operation, ssn)
        assert ZH[f"done_{operation}"] in result_lines(app)
    lines = trace_lines(trace)
    assert authentication(lines)[-5:] == outlet_sequence(operation)
    assert [ln[2:16] for ln in privileged(lines)] == [PUK_AUTH, APDU_HEADS[operation]]
    assert lines[-1] == "< 90 00"
    raw = [json.loads(ln) for ln in log.read_text("utf-8").splitlines()]
    assert [str(e["result"]).split()[0] for e in raw] == ["started", "9000"]
    assert card_state(card).tries_of(KeyName.PUK) == KEY_TRY_LIMIT


# --- the holder's ID ------------------------------------------------------------------------


def make_x_card(tmp_path: Path) -> Path:
    """employee-new with its holder's ID changed to a valid one ending in X."""
    assert check_digit(X_SSN[:17]) == "X"
    assert id_problem(X_SSN) is None
    path = make_card(tmp_path, "employee-new", "x-holder.json")
    doc = json.loads(path.read_text("utf-8"))
    doc["holder"]["ssn"] = X_SSN
    assert doc["holder"]["birth_date"] == "1985-03-12"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", "utf-8")
    assert card_state(path).holder.ssn == X_SSN
    return path


async def test_the_x_key_types_x_for_an_id_ending_in_x(tmp_path: Path) -> None:
    """The keyboard key x types X: the holder whose ID ends in X is served, and the S7
    query password reads the final X as 0."""
    card = make_x_card(tmp_path)
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "3")
        await type_digits(pilot, X_SSN[:17])
        await pilot.press("x")
        await pilot.pause()
        assert entry_text(app) == X_SSN
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
        assert ZH["id_invalid"] not in text
        assert ZH["id_mismatch"] not in text
        assert ZH["done_cancel-pin"] in text
        assert ZH["query_password"].format(password="03121180") in text
    assert card_state(card).pin_state is PinState.DISABLED
    (entry,) = log_entries(log)
    assert str(entry["result"]).split()[0] == "9000"


async def test_the_x_button_only_as_the_last_character(tmp_path: Path) -> None:
    """Issue 9 (12): the outlet's keypad has an X key; X is taken only as the 18th
    character of an ID number."""
    card = make_x_card(tmp_path)
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        assert app.screen.query_one("#key-X")
        await choose(pilot, "3")
        await pilot.click("#key-X")
        await pilot.press("x")
        assert app.entry == ""  # not as the first character
        await type_digits(pilot, X_SSN[:10])
        await pilot.click("#key-X")
        assert app.entry == X_SSN[:10]  # nor in the middle
        await type_digits(pilot, X_SSN[10:17])
        await pilot.click("#key-X")
        await pilot.pause()
        assert entry_text(app) == X_SSN
        await pilot.press("x")
        assert app.entry == X_SSN  # nothing after the 18th
        await pilot.press("enter")
        await settle(pilot)
        assert ZH["done_cancel-pin"] in screen_text(app)


async def test_the_outlet_log_records_the_id_that_was_typed(tmp_path: Path) -> None:
    """Issue 9 (12): the log keeps the ID the operator typed (masked), not the card's: on
    a mismatch the two differ, and the log must show what the outlet was shown."""
    card = make_card(tmp_path, "employee-enabled")
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "2")
        await enter_id(pilot, LOCKED_SSN)
        assert ZH["id_mismatch"] in screen_text(app)
    (entry,) = log_entries(log)
    assert entry["holder_id"] == mask_id(LOCKED_SSN)
    assert entry["holder_id"] != mask_id(ENABLED_SSN)
    assert LOCKED_SSN not in log.read_text("utf-8")


def wrong_check_digit(ssn: str) -> str:
    good = check_digit(ssn[:17])
    bad = next(c for c in "0123456789X" if c != good)
    return ssn[:17] + bad


INVALID_IDS = [
    pytest.param(wrong_check_digit(LOCKED_SSN), id="wrong-check-digit"),
    pytest.param(LOCKED_SSN[:17], id="17-characters"),
    pytest.param(
        "310106197013450391"[:17] + check_digit("31010619701345039"), id="impossible-birth-date"
    ),
]


@pytest.mark.parametrize("bad_id", INVALID_IDS)
async def test_invalid_id_is_asked_again_without_touching_the_card(
    tmp_path: Path, bad_id: str
) -> None:
    """An ID that is not a valid resident ID: 身份证号码有误 and the ID asked again; the
    card is not even read (empty trace), nothing logged; the right ID then goes on."""
    assert id_problem(bad_id) is not None
    card = make_card(tmp_path, "locked")
    before = file_bytes(card)
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "1")
        await enter_id(pilot, bad_id)
        assert isinstance(app.screen, IdScreen)
        text = screen_text(app)
        assert ZH["id_invalid"] in text
        assert ZH["enter_id"] in text
        assert ZH["new_pin"] not in text
        assert entry_text(app) == "_"
        assert trace_lines(trace) == []
        assert list(app.trace_lines) == []
        # checked writable at start-up, so it may exist, but empty: nothing logged
        assert not log.exists() or log.read_bytes() == b""
        assert file_bytes(card) == before
        await enter_id(pilot, LOCKED_SSN)
        text = screen_text(app)
        assert ZH["new_pin"] in text
        assert ZH["id_invalid"] not in text
    assert file_bytes(card) == before


@pytest.mark.parametrize("operation", list(TARGETS))
async def test_id_mismatch_nothing_done_card_identical_logged_refused(
    tmp_path: Path, operation: str
) -> None:
    """A valid ID that is not the card holder's: 身份证号码与卡片不符，未对卡片做任何操作,
    no privileged APDU, the card file byte for byte as before, and the refusal in the
    outlet log."""
    menu_key, profile, _ = TARGETS[operation]
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    number = card_state(card).card.card_number
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, menu_key)
        await enter_id(pilot, EMPLOYEE_NEW_SSN)
        assert isinstance(app.screen, ResultScreen)
        text = screen_text(app)
        assert ZH["id_mismatch"] in text
        assert ZH["new_pin"] not in text  # a reset does not even ask for the new PIN
        assert ZH[f"done_{operation}"] not in text
        assert "查询密码" not in text
    assert file_bytes(card) == before
    lines = trace_lines(trace)
    assert lines, "the card must have been read to compare the ID"
    assert privileged(lines) == []
    assert log.exists(), "the refused operation (ID mismatch) left no line in the outlet log"
    (entry,) = log_entries(log)
    assert entry["operator"] == OPERATOR
    assert entry["operation"] == operation
    assert entry["card_number"] == number
    assert str(entry["result"]).startswith("refused")


# --- the key ------------------------------------------------------------------------------


async def run_operation(pilot, operation: str, ssn: str, new_pin: str = NEW_PIN) -> None:
    """The operation's menu key, the holder's ID, and for a reset the new PIN twice."""
    await choose(pilot, TARGETS[operation][0])
    await enter_id(pilot, ssn)
    if operation == "reset-pin" and isinstance(pilot.app.screen, PinScreen):
        await enter(pilot, new_pin)
        await enter(pilot, new_pin)


@pytest.mark.parametrize("operation", list(TARGETS))
async def test_keys_of_another_issuer_the_card_check_fails_nothing_sent(
    tmp_path: Path, operation: str
) -> None:
    """--key FILE (mode 600) of another issuer: the terminal's read passes (its PSAM is the
    card's issuer's), the outlet's check of the card does not (NotOurCardError): the
    result screen says 卡片未通过网点密钥校验, nothing that can change the card is sent (no
    challenge after the check, no 00 82 00 06), the card file byte for byte as before, and
    the refusal in the log without an intent line."""
    _, profile, ssn = TARGETS[operation]
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    key = key_file(tmp_path, counterfeit_issuer())
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, key=key, trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, operation, ssn)
        assert isinstance(app.screen, ResultScreen)
        text = result_lines(app)
        assert ZH["key_wrong"] in text
        assert ZH[f"done_{operation}"] not in text
        assert "查询密码" not in text
        assert NEW_PIN not in screen_text(app)
    assert file_bytes(card) == before
    lines = trace_lines(trace)
    assert privileged(lines) == []
    assert authentication(lines)[-1] == INTERNAL_AUTH  # the outlet's check, then nothing
    (entry,) = log_entries(log)
    assert entry["operation"] == operation
    assert str(entry["result"]).startswith(
        "refused: the card failed the authenticity check with this outlet's keys"
    )
    assert [json.loads(ln)["result"] for ln in log.read_text("utf-8").splitlines()] == [
        entry["result"]
    ]  # no "started" line: nothing was to be sent
    assert_no_pins(log.read_text("utf-8") + trace.read_text("utf-8"))


@pytest.mark.parametrize("operation", list(TARGETS))
async def test_a_changed_puk_is_refused_by_the_card_one_puk_try_spent(
    tmp_path: Path, operation: str
) -> None:
    """Keys with the issuer's IRK but another PUK: the check passes, the PUK's EXTERNAL
    AUTHENTICATE gets 63C2; 卡片未通过网点密钥校验; the card file differs only by the PUK's
    counter; the log has the intent line, then 63C2 as the outlet key's refusal."""
    _, profile, ssn = TARGETS[operation]
    card = make_card(tmp_path, profile)
    expected = json.loads(file_bytes(card))
    expected["key_tries"]["PUK"] = KEY_TRY_LIMIT - 1
    key = key_file(tmp_path, changed_puk_issuer())
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, key=key, trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, operation, ssn)
        assert isinstance(app.screen, ResultScreen)
        text = result_lines(app)
        assert ZH["key_wrong"] in text
        assert ZH[f"done_{operation}"] not in text
    assert json.loads(file_bytes(card)) == expected
    lines = trace_lines(trace)
    assert [ln[2:16] for ln in privileged(lines)] == [PUK_AUTH]
    assert authentication(lines)[-3:] == [INTERNAL_AUTH, GET_CHALLENGE, PUK_AUTH]
    assert lines[-1] == "< 63 C2"
    raw = [json.loads(ln) for ln in log.read_text("utf-8").splitlines()]
    assert [e["result"] for e in raw] == ["started", "63C2 outlet key refused, 2 tries left"]
    assert_no_pins(log.read_text("utf-8") + trace.read_text("utf-8"))


async def test_a_counterfeit_card_at_the_outlet_costs_no_puk_try(tmp_path: Path) -> None:
    """The counterfeit profile (its keys from another issuer) at `pos-terminal --outlet`
    with its default PSAM: the terminal's read at READING has no keys (its ID matches, the
    new PIN is asked for); the operation's own read checks the card and refuses it
    (NotOurCardError: the key_wrong line), logged; no privileged command, the card file
    byte for byte as before."""
    card = make_card(tmp_path, "counterfeit")
    before = file_bytes(card)
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, "reset-pin", COUNTERFEIT_SSN)
        assert isinstance(app.screen, ResultScreen)
        text = result_lines(app)
        assert ZH["key_wrong"] in text
        assert ZH["done_reset-pin"] not in text
        assert "查询密码" not in text
    assert file_bytes(card) == before
    assert card_state(card).tries_of(KeyName.PUK) == KEY_TRY_LIMIT
    lines = trace_lines(trace)
    assert authentication(lines) == [INTERNAL_AUTH]  # the outlet's check, and only it
    assert privileged(lines) == []
    (entry,) = log_entries(log)
    assert entry["operation"] == "reset-pin"
    assert str(entry["result"]).startswith(
        "refused: the card failed the authenticity check with this outlet's keys"
    )
    assert_no_pins(log.read_text("utf-8") + trace.read_text("utf-8"))


async def test_a_counterfeit_card_refused_at_the_terminal_outlet_is_logged(
    tmp_path: Path,
) -> None:
    card = make_card(tmp_path, "counterfeit")
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, "cancel-pin", COUNTERFEIT_SSN)
        assert isinstance(app.screen, ResultScreen)
    assert log.exists()
    (entry,) = log_entries(log)
    assert entry["operation"] == "cancel-pin"
    assert str(entry["result"]).startswith("refused")


async def test_the_trace_names_the_counterfeit_cards_api_number(tmp_path: Path) -> None:
    card = make_card(tmp_path, "counterfeit")
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, tmp_path / "outlet.log", trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, "cancel-pin", COUNTERFEIT_SSN)
    (api,) = [ln for ln in trace_lines(trace) if ln.startswith("# api ")]
    assert api.startswith("# api -21 ")
    assert "unknown" not in api


async def test_a_counterfeit_card_without_a_psam_is_refused_by_the_outlet(
    tmp_path: Path,
) -> None:
    """`--no-psam --test-key`: the terminal reads the card unchecked, the outlet checks it
    (NotOurCardError): the key_wrong line, the refusal logged, no PUK try spent."""
    card = make_card(tmp_path, "counterfeit")
    before = file_bytes(card)
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace, keys=["--no-psam", "--test-key"])
    assert app.options.keys is None
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, "cancel-pin", COUNTERFEIT_SSN)
        assert isinstance(app.screen, ResultScreen)
        text = result_lines(app)
        assert ZH["key_wrong"] in text
        assert ZH["done_cancel-pin"] not in text
    assert file_bytes(card) == before
    lines = trace_lines(trace)
    assert authentication(lines) == [INTERNAL_AUTH]  # the outlet's check, and only it
    assert privileged(lines) == []
    (entry,) = log_entries(log)
    assert str(entry["result"]).startswith("refused: the card failed the authenticity check")


def test_outlet_without_a_key_uses_the_psam_and_no_psam_needs_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = make_card(tmp_path, "locked")
    # --outlet alone: the PSAM (the default virtual one) is the outlet's key source too
    args = parse_args(["--card", str(card), "--outlet"])
    assert (args.key, args.test_key, args.psam, args.no_psam) == (None, False, None, False)
    # --outlet --no-psam without the issuer's keys: a usage error, one line
    with pytest.raises(SystemExit) as info:
        parse_args(["--card", str(card), "--outlet", "--no-psam"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("pos-terminal: --outlet --no-psam needs the issuer's keys")
    assert "--key" in err
    assert err.count("\n") == 1  # one line, not the usage block
    with pytest.raises(SystemExit) as info:
        main(["--card", str(card), "--outlet", "--no-psam", "--operator", OPERATOR])
    assert info.value.code == 2
    capsys.readouterr()
    # --key and --test-key together, --psam and --no-psam together: usage errors too
    key = key_file(tmp_path, fixture_issuer())
    for argv in (
        ["--key", str(key), "--test-key"],
        ["--psam", str(psam_file(tmp_path)), "--no-psam", "--test-key"],
    ):
        with pytest.raises(SystemExit) as info:
            parse_args(["--card", str(card), "--outlet", *argv])
        assert info.value.code == 2, argv
        assert "not allowed with argument" in capsys.readouterr().err


# --- the PSAM (--psam) --------------------------------------------------------------------


async def test_reset_pin_through_a_psam_file_given_with_psam(tmp_path: Path) -> None:
    """`pos-terminal --outlet --psam PSAMFILE`: the PSAM checks every card the terminal
    reads and is the outlet's key source; a full reset of the locked card through it."""
    card = make_card(tmp_path, "locked")
    psam = psam_file(tmp_path)
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace, keys=["--psam", str(psam)])
    assert isinstance(app.options.keys, PsamKeySource)
    assert app.options.outlet is not None
    assert app.options.outlet.keys is app.options.keys
    assert app.options.outlet.operator == OPERATOR
    assert app.options.terminal_id == psam_state.DEFAULT_TERMINAL_NUMBER
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, "reset-pin", LOCKED_SSN)
        text = result_lines(app)
        assert ZH["done_reset-pin"] in text
        assert ZH["query_password"].format(password="12050397") in text
    after = card_state(card)
    assert after.pin_state is PinState.ENABLED and after.pin.matches(NEW_PIN)
    assert after.tries_left == after.try_limit == 6
    assert after.tries_of(KeyName.PUK) == KEY_TRY_LIMIT
    lines = trace_lines(trace)
    assert authentication(lines)[-5:] == outlet_sequence("reset-pin")
    assert [ln[2:16] for ln in privileged(lines)] == [PUK_AUTH, APDU_HEADS["reset-pin"]]
    (entry,) = log_entries(log)
    assert str(entry["result"]).split()[0] == "9000"
    assert_no_pins(log.read_text("utf-8") + trace.read_text("utf-8"))


async def test_a_psam_of_another_issuer_refuses_the_card_at_the_read(tmp_path: Path) -> None:
    """A PSAM holding another issuer's keys, the outlet's key source: the terminal's read
    at READING has no keys; the operation's read of the card fails the check with the
    PSAM (the key_wrong line), the refusal logged; nothing privileged is sent, the card
    file as before."""
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    psam = psam_file(tmp_path, counterfeit_issuer(), "other-psam.json")
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace, keys=["--psam", str(psam)])
    async with app.run_test(size=SIZE) as pilot:
        await run_operation(pilot, "cancel-pin", ENABLED_SSN)
        text = result_lines(app)
        assert ZH["key_wrong"] in text
        assert ZH["done_cancel-pin"] not in text
    assert file_bytes(card) == before
    lines = trace_lines(trace)
    assert authentication(lines) == [INTERNAL_AUTH]  # the outlet's check, and only it
    assert privileged(lines) == []
    (entry,) = log_entries(log)
    assert entry["operation"] == "cancel-pin"
    assert str(entry["result"]).startswith("refused: the card failed the authenticity check")


@pytest.mark.parametrize("given", ["missing", "a-user-card"])
def test_a_psam_that_is_no_psam_file_stops_the_outlet_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """`pos-terminal --outlet --psam FILE` where FILE is not there, or a user card: one
    line, exit 2, before any card is read; no outlet log made."""
    card = make_card(tmp_path, "locked")
    before = file_bytes(card)
    psam = tmp_path / "psam.json" if given == "missing" else make_card(tmp_path, "locked", "u.json")
    log = tmp_path / "outlet.log"
    code = main(["--card", str(card), "--outlet", "--psam", str(psam), "--outlet-log", str(log)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("pos-terminal: ") and err.count("\n") == 1, err
    assert str(psam) in err
    assert ("no such PSAM file" if given == "missing" else "is not a PSAM file") in err
    assert file_bytes(card) == before
    assert not log.exists()


def test_build_gives_the_outlet_the_key_it_was_given(tmp_path: Path) -> None:
    """--test-key, --key FILE: the outlet's keys; the PSAM still reads the cards."""
    log = tmp_path / "outlet.log"
    app = outlet_app(make_card(tmp_path, "locked", "a.json"), log)
    assert app.options.outlet is not None
    assert isinstance(app.options.outlet.keys, MasterKeySource)
    assert isinstance(app.options.keys, PsamKeySource)
    key = key_file(tmp_path, fixture_issuer())
    app = outlet_app(make_card(tmp_path, "locked", "b.json"), log, key=key)
    assert app.options.outlet is not None
    assert isinstance(app.options.outlet.keys, MasterKeySource)
    assert "keys" not in repr(app.options.outlet)  # never shown, nor logged with it


# --- the outlet log -------------------------------------------------------------------------


async def test_every_operation_appends_one_log_line_without_pins(tmp_path: Path) -> None:
    """One shared outlet log, one JSON line per operation, done or refused; the operator,
    the operation and the card; never a PIN; mode 600."""
    log = tmp_path / "audit" / "outlet.log"
    other = key_file(tmp_path, counterfeit_issuer(), name="other.json")
    puk = key_file(tmp_path, changed_puk_issuer(), name="puk.json")
    runs = [
        # operation, profile, ID, new PIN, key file, result's first word
        ("reset-pin", "locked", LOCKED_SSN, NEW_PIN, None, "9000"),
        ("restore-initial", "employee-enabled", ENABLED_SSN, None, None, "9000"),
        ("cancel-pin", "employee-enabled", ENABLED_SSN, None, None, "9000"),
        ("activate", "not-activated", NOT_ACTIVATED_SSN, None, None, "9000"),
        ("unblock", "locked", LOCKED_SSN, None, None, "9000"),
        ("cancel-pin", "employee-enabled", EMPLOYEE_NEW_SSN, None, None, "refused:"),
        ("reset-pin", "locked", LOCKED_SSN, OTHER_PIN, other, "refused:"),
        ("reset-pin", "locked", LOCKED_SSN, OTHER_PIN, puk, "63C2"),
    ]
    numbers: list[str | None] = []
    counts = []
    for i, (operation, profile, ssn, new_pin, key_path, _) in enumerate(runs):
        card = make_card(tmp_path, profile, f"card{i}.json")
        numbers.append(card_state(card).card.card_number)
        app = outlet_app(card, log, key=key_path)
        async with app.run_test(size=SIZE) as pilot:
            await choose(pilot, TARGETS[operation][0])
            await enter_id(pilot, ssn)
            if new_pin is not None:
                await enter(pilot, new_pin)
                await enter(pilot, new_pin)
            assert isinstance(app.screen, ResultScreen)
        counts.append(len(log_entries(log)) if log.exists() else 0)
    # lines in the log after each run: one more each time
    assert counts == list(range(1, len(runs) + 1))
    text = log.read_text("utf-8")
    assert text.endswith("\n")
    entries = log_entries(log)
    assert [e["operation"] for e in entries] == [r[0] for r in runs]
    assert [str(e["result"]).split()[0] for e in entries] == [r[5] for r in runs]
    # another issuer's keys: the card failed its check during the operation's read; its
    # line still names it (what the card says of itself, unchecked)
    for entry, number in zip(entries, numbers, strict=True):
        assert entry["operator"] == OPERATOR
        assert entry["card_number"] == number
        assert entry["holder_id"]
        assert entry["time"]
    assert_no_pins(text)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


RESET_LINE = "> 84 24 00 01 14" + " **" * 20


# --- PIN digits are never shown --------------------------------------------------------------


async def test_pin_digits_are_never_on_screen_nor_in_the_trace(tmp_path: Path) -> None:
    """The new PIN is shown as * while typed and is nowhere on screen, in the trace pane
    (F12: the reset APDU's PIN bytes as **), the trace file or the outlet log."""
    card = make_card(tmp_path, "locked")
    log = tmp_path / "outlet.log"
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, log, trace=trace)
    seen: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f12")
        await choose(pilot, "1")
        await enter_id(pilot, LOCKED_SSN)
        for i in range(1, 7):
            await type_digits(pilot, NEW_PIN[i - 1])
            assert entry_text(app) == " ".join(["*"] * i + ["_"] * (6 - i))
            seen.append(screen_text(app))
        await pilot.press("enter")
        await settle(pilot)
        await type_digits(pilot, NEW_PIN)
        seen.append(screen_text(app))
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
        seen.append(text)
        assert ZH["done_reset-pin"] in text
        # the trace pane: the encrypted PIN block and the MAC masked
        assert RESET_LINE in trace_pane_lines(app)
    for shown in seen:
        assert_no_pins(shown)
    assert_no_pins(trace.read_text("utf-8") + log.read_text("utf-8"))
    assert RESET_LINE in trace_lines(trace)
    assert card_state(card).pin.matches(NEW_PIN)


# --- the card comes and goes (F2) --------------------------------------------------------------


@pytest.mark.parametrize("typed", [0, 1], ids=["at-new-pin", "at-confirm"])
async def test_f2_removed_in_the_middle_ends_the_operation(tmp_path: Path, typed: int) -> None:
    """The card pulled out after the ID was checked, while the new PIN is typed (or
    before the repeat): 卡片已拔出 on a result screen that swallows the digits still
    typed, then back to the menu; nothing sent, card file unchanged (issue 9, 3)."""
    card = make_card(tmp_path, "locked")
    before = file_bytes(card)
    trace = tmp_path / "apdu.log"
    app = outlet_app(card, tmp_path / "outlet.log", trace=trace)
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "1")
        await enter_id(pilot, LOCKED_SSN)
        if typed:
            await enter(pilot, NEW_PIN)
            assert ZH["confirm_pin"] in screen_text(app)
        await type_digits(pilot, NEW_PIN[:3])
        await toggle_card(pilot)
        assert isinstance(app.screen, ResultScreen)
        text = screen_text(app)
        assert ZH["removed"] in text
        assert not app.reader.card_present()
        # the rest of the PIN goes nowhere; Enter does not finish the abandoned reset
        await type_digits(pilot, NEW_PIN[3:])
        assert app.entry == ""
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MenuScreen)
        assert app.flow is None
        text = screen_text(app)
        assert ZH["insert_card"] in text
        assert ZH["done_reset-pin"] not in text
    assert file_bytes(card) == before
    assert privileged(trace_lines(trace)) == []


async def test_card_inserted_after_the_id_resumes_the_operation(tmp_path: Path) -> None:
    """No card in the slot: after the ID, 请插入社会保障卡; F2 inserts it and the
    operation goes on."""
    card = make_card(tmp_path, "employee-enabled")
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log)
    async with app.run_test(size=SIZE) as pilot:
        await toggle_card(pilot)
        assert not app.reader.card_present()
        await choose(pilot, "3")
        await enter_id(pilot, ENABLED_SSN)
        assert ZH["insert_card"] in screen_text(app)
        assert card_state(card).pin_state is PinState.ENABLED
        await toggle_card(pilot)
        assert ZH["done_cancel-pin"] in screen_text(app)
    assert card_state(card).pin_state is PinState.DISABLED
    assert len(log_entries(log)) == 1


# --- English ------------------------------------------------------------------------------------


async def test_en_reset_pin(tmp_path: Path) -> None:
    card = make_card(tmp_path, "locked")
    log = tmp_path / "outlet.log"
    app = outlet_app(card, log, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "1")
        assert EN["enter_id"] in screen_text(app)
        await enter_id(pilot, LOCKED_SSN)
        assert EN["new_pin"] in screen_text(app)
        await enter(pilot, NEW_PIN)
        assert EN["confirm_pin"] in screen_text(app)
        await enter(pilot, NEW_PIN)
        text = screen_text(app)
        assert EN["done_reset-pin"] in text
        assert EN["query_password"].format(password="12050397") in text
        assert NEW_PIN not in text
    state = card_state(card)
    assert state.pin_state is PinState.ENABLED
    assert state.tries_left == 6 and state.pin.matches(NEW_PIN)
    (entry,) = log_entries(log)
    assert str(entry["result"]).split()[0] == "9000"


async def test_en_id_mismatch_and_card_removed(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    app = outlet_app(card, tmp_path / "outlet.log", lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await choose(pilot, "2")
        await enter_id(pilot, LOCKED_SSN)
        assert EN["id_mismatch"] in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        await choose(pilot, "1")
        await enter_id(pilot, ENABLED_SSN)
        assert EN["new_pin"] in screen_text(app)
        await toggle_card(pilot)
        assert isinstance(app.screen, ResultScreen)
        assert EN["removed"] in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, MenuScreen)
    assert file_bytes(card) == before
