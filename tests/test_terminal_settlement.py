"""Pilot tests of pos-terminal's settlement: the card is read, the platform (host/
platform.py, embedded over a SqliteHost) finds the person (1101) and pre-settles the
bill (2101) before any PIN, the card rules ask for the PIN (or a forced change, or 确认),
then the settlement (2102) takes the holder's share from the personal account and a
receipt is shown and filed (docs/host.md §7).

Every app runs at 80x24 on a VirtualReader over a card file made from a profile in
tmp_path, with a fresh SqliteHost in tmp_path seeded from fixtures/holders/holders.json
(balances in fen; terminal_helpers.new_host, what make_app gives every terminal test),
terminal id POS-0042 and receipts written to tmp_path/rc. The embedded default policy
(host/policy.py) has no pooled fund and refuses a short account: a bill is paid from the
account alone. Phrases and balances are written out exactly, so a wrong word or a wrong
fen fails.

The card pulled out between authorisation and settlement is made deterministic in two
ways: a reader that pulls the card at the very check the terminal makes before settling,
and a watched link whose 2102 answer is held (the host has settled) while the test
removes the card (or presses F2) at the SETTLING stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from terminal_helpers import (
    AFTER_UPGRADE,
    ENABLED_PIN,
    INITIAL_PIN,
    NEW_PIN,
    UPGRADE_DATE,
    cancel,
    card_state,
    confirm,
    enter,
    file_bytes,
    forced_change,
    holders,
    host_of,
    make_app,
    make_card,
    new_host,
    screen_text,
    settle,
    settled_rows,
    start_payment,
)
from textual.pilot import Pilot

from cardio.readers.virtual import VirtualReader
from host import wire
from host.api import HostError
from host.client import DEFAULT_INSTITUTION
from host.sqlite import SqliteHost, seed_file
from host.store import psn_no_of
from host.transport import Transport
from terminal.app import PosApp
from terminal.cli import build, parse_args
from terminal.flow.view import Stage

pytestmark = pytest.mark.slow  # Pilot through whole flows, key by key: ~0.3-2 s a test

SIZE = (80, 24)
TERMINAL = "POS-0042"
SENDER = f"{DEFAULT_INSTITUTION}/{TERMINAL}"  # who the platform records a settlement from

# docs/terminal-rules.md §6, exact
LOST = "此卡已挂失"
REMOVED = "卡片已拔出"
ENTER_PIN = "请输入密码"
FORCED = "请修改初始密码"
NO_PIN = "未启用密码"
CHANGED = "密码修改成功"
CONFIRM_AMOUNT = "请核对金额，按 确认 付款"  # the phrase: a card without PIN
# the terminal's own catalogue (terminal/strings.py), exact
AUTHORISED = "消费授权成功"
SETTLING = "正在结算，请稍候"
NOT_DEBITED = "未扣款"
SETTLE_FAILED = "结算失败，未扣款"

# fixtures/cards/*.json and fixtures/holders/holders.json
CARD_NUMBERS = {
    "employee-enabled": "A14933182",
    "employee-new": "A93230742",
    "resident-new": "A50366370",
    "pension-new": "A92703142",
    "disabled": "A88183079",
}
MASKED_CARDS = {
    "employee-enabled": "A14***182",
    "employee-new": "A93***742",
    "resident-new": "A50***370",
    "pension-new": "A92***142",
    "disabled": "A88***079",
}
MASKED_NAMES = {
    "employee-enabled": "李**",
    "employee-new": "张*",
    "resident-new": "王*",
    "pension-new": "陈**",
    "disabled": "吴*",
}
BALANCES = {  # fen, as seeded
    "employee-enabled": 128050,
    "employee-new": 50000,
    "resident-new": 3000,
    "pension-new": 0,
    "disabled": 80000,
}


def ssn_of(profile: str) -> str:
    return holders()[profile]["ssn"]


def name_of(profile: str) -> str:
    return holders()[profile]["name"]


def pos(
    card: Path,
    host: SqliteHost,
    tmp_path: Path,
    *,
    lang: str = "zh",
    trace_file: Path | None = None,
    reader: VirtualReader | None = None,
) -> PosApp:
    return make_app(
        card,
        lang=lang,
        today=AFTER_UPGRADE,
        upgrade_date=UPGRADE_DATE,
        host=host,
        terminal_id=TERMINAL,
        receipts=tmp_path / "rc",
        trace_file=trace_file,
        reader=reader,
    )


def balance(host: SqliteHost, profile: str) -> int:
    holder = host.holder(ssn_of(profile))
    assert holder is not None
    return holder.balance_fen


def receipt_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "rc"
    return sorted(folder.iterdir()) if folder.exists() else []


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


# --- what the platform recorded, and what the terminal sent it ------------------------------


@dataclass(frozen=True)
class Setl:
    """One settlement as the platform's database holds it (host/store.py `settlements`)."""

    setl_id: str
    time: str  # setl_time, yyyy-MM-dd HH:mm:ss
    msgid: str  # the terminal's 2102
    sender: str
    medfee_fen: int
    fund_fen: int  # the pooled fund's share (hifp)
    acct_fen: int
    cash_fen: int
    balance_after_fen: int
    status: str


def settlements(host: SqliteHost, profile: str) -> list[Setl]:
    """Every settlement of the holder's at the host, whatever its status, in order."""
    with host.atomic() as sql:
        rows = sql.rows(
            "SELECT setl_id, setl_time, msgid, sender, medfee_fen, hifp_fen, acct_fen, "
            "cash_fen, balc_fen, status FROM settlements WHERE ssn = ? "
            "ORDER BY setl_time, rowid",
            (ssn_of(profile),),
        )
    return [
        Setl(str(r[0]), str(r[1]), str(r[2]), str(r[3]), *(int(str(x)) for x in r[4:9]), str(r[9]))
        for r in rows
    ]


def standing(host: SqliteHost, profile: str) -> list[tuple[int, int, str]]:
    """The holder's settlements that stand: (bill, balance after, sender)."""
    return settled_rows(host, ssn_of(profile))


def money_fen(host: SqliteHost) -> int:
    """Every holder's balance plus what the standing settlements took from the accounts:
    a settlement moves money out of an account, it never makes or loses any."""
    with host.atomic() as sql:
        row = sql.one(
            "SELECT (SELECT COALESCE(SUM(balance_fen), 0) FROM holders) + (SELECT "
            "COALESCE(SUM(acct_fen), 0) FROM settlements WHERE status = 'settled')"
        )
    assert row is not None
    return int(str(row[0]))


def answers(host: SqliteHost, infno: str) -> list[tuple[str, dict[str, Any]]]:
    """The platform's stored answers to `infno` (refusals too), with their sender, in order."""
    with host.atomic() as sql:
        rows = sql.rows(
            "SELECT sender, answer FROM messages WHERE infno = ? ORDER BY received, rowid",
            (infno,),
        )
    return [(str(sender), wire.loads(str(answer))) for sender, answer in rows]


class Wire:
    """The link's real transport, watched: every envelope the terminal sends, in order.
    `hold()`: a 2102's answer waits on its way back (the host has settled) until the test
    opens the gate, so the terminal's worker waits on the host, not on the reader."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[dict[str, Any]] = []
        self.held = False
        self.entered = threading.Event()  # a 2102 was handled and its answer is held
        self.gate = threading.Event()

    def hold(self) -> None:
        self.held = True

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(request)
        answer = self.inner.send(request)
        if request.get("infno") == "2102" and self.held:
            self.entered.set()
            if not self.gate.wait(10):
                raise HostError("test gate never opened")
        return answer

    def close(self) -> None:
        self.inner.close()

    def infnos(self) -> list[str]:
        return [str(r.get("infno")) for r in self.sent]

    def settles(self) -> list[dict[str, Any]]:
        """The 2102s sent: what the terminal asked the platform to settle."""
        return [r for r in self.sent if r.get("infno") == "2102"]


def watch(app: PosApp) -> Wire:
    """The app's link to the platform, watched from now on (the same link, its transport
    wrapped)."""
    link = app.options.host
    assert link is not None
    watched = Wire(link.client.transport)
    link.client.transport = watched
    return watched


def assert_one_settle_for(watched: Wire, profile: str, amount_fen: int) -> None:
    """Exactly one 2102 went out, for this card's holder and this bill."""
    [request] = watched.settles()
    info = request["input"]["druginfo"]
    assert info["psn_no"] == psn_no_of(ssn_of(profile))
    assert info["mdtrt_cert_no"] == CARD_NUMBERS[profile]
    assert str(info["medfee_sumamt"]) == yuan(amount_fen)


def split_lines(acct_fen: int) -> list[str]:
    """The 2101's split and what the holder pays, shown before the PIN (the default policy:
    the account pays it all)."""
    return [f"统筹 0.00  个账 {yuan(acct_fen)}  现金 0.00", f"个人支付 {yuan(acct_fen)} 元"]


def receipt_screen_lines(s: Setl, profile: str) -> list[str]:
    """The receipt lines the result screen shows (settlement id, time and split from the
    platform's record)."""
    return [
        f"统筹 {yuan(s.fund_fen)}  个账 {yuan(s.acct_fen)}  现金 {yuan(s.cash_fen)}",
        f"个人账户余额 {yuan(s.balance_after_fen)} 元",
        f"结算号 {s.setl_id}",
        f"终端 {TERMINAL}  {s.time[:19].replace('T', ' ')}",
        f"卡号 {MASKED_CARDS[profile]}  {MASKED_NAMES[profile]}",
    ]


def assert_receipt_file(path: Path, s: Setl, profile: str, pins: tuple[str, ...]) -> None:
    text = path.read_text("utf-8")
    lines = text.splitlines()
    for expected in (
        f"终端 Terminal      {TERMINAL}",
        f"时间 Time          {s.time}",
        f"结算号 Settlement  {s.setl_id}",
        f"卡号 Card          {MASKED_CARDS[profile]}",
        f"姓名 Name          {MASKED_NAMES[profile]}",
        f"金额 Amount        {yuan(s.medfee_fen)} 元",
        f"统筹 Pooled fund   {yuan(s.fund_fen)} 元",
        f"个账 Account       {yuan(s.acct_fen)} 元",
        f"现金 Cash          {yuan(s.cash_fen)} 元",
        f"余额 Balance       {yuan(s.balance_after_fen)} 元",
    ):
        assert expected in lines, (expected, lines)
    for secret in pins:
        assert secret not in text
    assert ssn_of(profile) not in text
    assert name_of(profile) not in text
    assert CARD_NUMBERS[profile] not in text


async def wait_until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Pause the app in small steps until `condition` holds (never waits on workers)."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition never held")


async def back_to_menu(pilot: Pilot) -> None:
    await pilot.press("enter")
    await settle(pilot)


# --- hosts and readers that let a test land exactly between authorisation and debit --------


FAULT = "the settlements disk failed"  # the host's own reason: the log's, never the screen's


def fail_settlements(host: SqliteHost) -> None:
    """The engine's database fails when a settlement is written (after the account was
    updated in the same unit of work): SQLite itself aborts the INSERT."""
    with host.atomic() as sql:
        sql.run(
            "CREATE TRIGGER fail_settlements BEFORE INSERT ON settlements "
            f"BEGIN SELECT RAISE(ABORT, '{FAULT}'); END"
        )


class PullAtDebitReader(VirtualReader):
    """Pulls the card out (VirtualReader.remove, what F2 does) the first time a worker
    thread asks whether it is there once armed: in a payment that is the terminal's
    check just before the debit, right after the PIN was accepted."""

    armed = False
    pulled = False

    def card_present(self) -> bool:
        if self.armed and threading.current_thread() is not threading.main_thread():
            self.armed = False
            self.pulled = True
            self.remove()
        return super().card_present()


# --- a payment end to end --------------------------------------------------------------------

BEFORE_THE_PIN = ["1101", "9001", "2101"]  # the person, the day's sign-in, the split


async def test_enabled_card_pays_and_the_host_debits_once(tmp_path: Path) -> None:
    """build(parse_args(--card --host-db --terminal-id --receipts)): employee-enabled pays
    12.50 with its PIN. The split is shown with the PIN prompt and nothing is settled
    before the PIN; then exactly one settlement stands and the account is down by 12.50;
    the screen, the host's database and the receipt file all agree."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    db = tmp_path / "h.db"
    app = build(
        parse_args(
            [
                "--card",
                str(card),
                "--host-db",
                str(db),
                "--terminal-id",
                TERMINAL,
                "--receipts",
                str(tmp_path / "rc"),
            ]
        )
    )
    host = host_of(app)
    assert host.path == db
    watched = watch(app)
    assert balance(host, profile) == 128050
    money_before = money_fen(host)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        text = screen_text(app)
        assert ENTER_PIN in text
        assert "金额 12.50 元" in text
        for expected in split_lines(1250):
            assert expected in text
        assert watched.infnos() == BEFORE_THE_PIN  # pre-settled, not settled
        assert settlements(host, profile) == []  # nothing before the PIN
        assert balance(host, profile) == 128050
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is True
        assert AUTHORISED in text
        assert "金额 12.50 元" in text
        assert "个人账户余额 1268.00 元" in text
        [s] = settlements(host, profile)
        for expected in receipt_screen_lines(s, profile):
            assert expected in text
        assert name_of(profile) not in text
        assert CARD_NUMBERS[profile] not in text
        assert ENABLED_PIN not in text
    assert watched.infnos() == [*BEFORE_THE_PIN, "2102"]
    assert_one_settle_for(watched, profile, 1250)
    assert s.msgid == watched.settles()[0]["msgid"]
    assert (s.status, s.sender, s.medfee_fen, s.fund_fen, s.acct_fen, s.cash_fen) == (
        "settled",
        SENDER,
        1250,
        0,
        1250,
        0,
    )
    assert s.balance_after_fen == 126800
    assert balance(host, profile) == 128050 - 1250
    assert money_fen(host) == money_before
    # committed: another connection to the same database file sees it
    other = SqliteHost(db)
    try:
        assert standing(other, profile) == [(1250, 126800, SENDER)]
        assert balance(other, profile) == 126800
    finally:
        other.close()
    files = receipt_files(tmp_path)
    assert len(files) == 1
    assert_receipt_file(files[0], s, profile, (ENABLED_PIN,))
    assert card_state(card).tries_left == 6


async def test_forced_change_then_payment_debits_once(tmp_path: Path) -> None:
    """S8 then settlement: employee-new sees the split, changes its initial PIN, then the
    12.50 is settled once: 500.00 -> 487.50; one receipt; no PIN in it."""
    profile = "employee-new"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    watched = watch(app)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        text = screen_text(app)
        assert FORCED in text
        for expected in split_lines(1250):
            assert expected in text
        assert watched.settles() == []
        assert settlements(host, profile) == []
        await forced_change(pilot)
        text = screen_text(app)
        assert CHANGED in text
        assert AUTHORISED in text
        assert "金额 12.50 元" in text
        assert "个人账户余额 487.50 元" in text
        [s] = settlements(host, profile)
        for expected in receipt_screen_lines(s, profile):
            assert expected in text
    assert (s.status, s.sender, s.medfee_fen, s.acct_fen, s.balance_after_fen) == (
        "settled",
        SENDER,
        1250,
        1250,
        48750,
    )
    assert_one_settle_for(watched, profile, 1250)
    assert balance(host, profile) == 50000 - 1250
    files = receipt_files(tmp_path)
    assert len(files) == 1
    assert_receipt_file(files[0], s, profile, (NEW_PIN, INITIAL_PIN))
    assert card_state(card).pin.matches(NEW_PIN)


@pytest.mark.parametrize(("profile", "after"), [("resident-new", "17.50"), ("disabled", "787.50")])
async def test_no_pin_payment_is_debited(tmp_path: Path, profile: str, after: str) -> None:
    """S4 (390, INITIAL) and S16 (DISABLED): no PIN asked; the amount and its split are
    confirmed with 确认 (nothing is settled before), then exactly one settlement stands,
    the account is down by the amount, and the card file is untouched."""
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    watched = watch(app)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        assert app.flow is not None and app.flow.view.stage is Stage.CONFIRM_AMOUNT
        text = screen_text(app)
        assert NO_PIN in text
        assert CONFIRM_AMOUNT in text
        assert "金额 12.50 元" in text
        for expected in split_lines(1250):
            assert expected in text
        assert AUTHORISED not in text
        assert ENTER_PIN not in text
        assert watched.infnos() == BEFORE_THE_PIN  # nothing settled before 确认
        assert settlements(host, profile) == []
        assert balance(host, profile) == BALANCES[profile]
        assert receipt_files(tmp_path) == []
        await confirm(pilot)
        text = screen_text(app)
        assert NO_PIN in text
        assert AUTHORISED in text
        assert "金额 12.50 元" in text
        assert f"个人账户余额 {after} 元" in text
        assert ENTER_PIN not in text
        [s] = settlements(host, profile)
        for expected in receipt_screen_lines(s, profile):
            assert expected in text
    assert_one_settle_for(watched, profile, 1250)
    assert standing(host, profile) == [(1250, BALANCES[profile] - 1250, SENDER)]
    assert s.status == "settled"
    assert balance(host, profile) == BALANCES[profile] - 1250
    assert len(receipt_files(tmp_path)) == 1
    assert file_bytes(card) == before


# --- refusals: nothing debited ---------------------------------------------------------------


def assert_refused_short(host: SqliteHost, balance_fen: int) -> None:
    """The platform answered the terminal's one 2101 with a refusal for a short account
    naming the balance, and keeps that answer (the refusal is recorded)."""
    [(sender, answer)] = answers(host, "2101")
    assert sender == SENDER
    assert answer["infcode"] == -1
    assert answer["err_type"] == "insufficient"
    assert str(answer["output"]["setlinfo"]["balc"]) == yuan(balance_fen)


async def test_insufficient_balance_is_refused(tmp_path: Path) -> None:
    """resident-new has 30.00 yuan: 30.01 is refused at the pre-settlement, before any
    PIN or 确认 is asked, with the balance shown; nothing is settled, the card is
    untouched, and the refusal is recorded; 30.00 exactly then goes through."""
    profile = "resident-new"
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    watched = watch(app)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "3001")
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
        text = screen_text(app)
        assert "个人账户余额不足（30.00 元），未扣款" in text
        assert "金额 30.01 元" in text
        for absent in (NO_PIN, CONFIRM_AMOUNT, ENTER_PIN, FORCED, AUTHORISED, "个人账户余额 "):
            assert absent not in text
        assert watched.infnos() == BEFORE_THE_PIN  # refused there: no 2102
        assert settlements(host, profile) == []
        assert balance(host, profile) == 3000
        assert_refused_short(host, 3000)
        assert receipt_files(tmp_path) == []
        assert file_bytes(card) == before
        await back_to_menu(pilot)
        await start_payment(pilot, "3000")
        assert app.flow is not None and app.flow.view.stage is Stage.CONFIRM_AMOUNT
        text = screen_text(app)
        assert CONFIRM_AMOUNT in text
        for expected in split_lines(3000):
            assert expected in text
        assert watched.settles() == []  # nothing settled before 确认
        assert settlements(host, profile) == []
        await confirm(pilot)
        text = screen_text(app)
        assert AUTHORISED in text
        assert "个人账户余额 0.00 元" in text
    assert_one_settle_for(watched, profile, 3000)
    assert standing(host, profile) == [(3000, 0, SENDER)]
    assert [s.status for s in settlements(host, profile)] == ["settled"]
    assert balance(host, profile) == 0
    assert len(receipt_files(tmp_path)) == 1


async def test_pension_card_with_nothing_in_the_account_is_refused(tmp_path: Path) -> None:
    """pension-new (170, balance 0): the pre-settlement is refused as soon as the card is
    read, so no PIN, no forced change and no 确认 is asked, no VERIFY is sent and the card
    is untouched; nothing is settled. (That its card rule is S4's no-PIN, S8 not forcing
    a 170 card, is checked where it shows: test_terminal_app's S4/S8 tests.)"""
    profile = "pension-new"
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    host = new_host(tmp_path)
    trace = tmp_path / "trace.log"
    app = pos(card, host, tmp_path, trace_file=trace)
    watched = watch(app)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "100")
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
        text = screen_text(app)
        assert "个人账户余额不足（0.00 元），未扣款" in text
        assert "金额 1.00 元" in text
        for absent in (NO_PIN, CONFIRM_AMOUNT, ENTER_PIN, FORCED, AUTHORISED):
            assert absent not in text
        assert watched.infnos() == BEFORE_THE_PIN
    lines = trace.read_text("utf-8").splitlines()
    assert any(x.startswith("> 00 A4") for x in lines), lines  # the card was read
    assert not [x for x in lines if x.startswith("> 00 20")], lines  # no VERIFY
    assert file_bytes(card) == before
    assert balance(host, profile) == 0
    assert settlements(host, profile) == []
    assert_refused_short(host, 0)
    assert receipt_files(tmp_path) == []


@pytest.mark.parametrize("profile", ["employee-enabled", "employee-new"])
async def test_s18_lost_card_is_refused_before_any_pin(tmp_path: Path, profile: str) -> None:
    """S18 and decision 2: reported lost at the host (no PIN needed for that), the card is
    refused as soon as it is read: no PIN or forced change asked, no VERIFY sent, tries
    untouched, nothing debited."""
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    tries = card_state(card).tries_left
    host = new_host(tmp_path)
    assert host.report_loss(ssn_of(profile)).lost
    trace = tmp_path / "trace.log"
    app = pos(card, host, tmp_path, trace_file=trace)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        text = screen_text(app)
        assert LOST in text
        assert ENTER_PIN not in text
        assert FORCED not in text
        assert AUTHORISED not in text
        # Enter or digits do nothing more: the refusal is final
        await pilot.press(*ENABLED_PIN)
        await settle(pilot)
        assert LOST in screen_text(app)
    lines = trace.read_text("utf-8").splitlines()
    assert any(x.startswith("> 00 A4") for x in lines), lines  # the card was read
    assert not [x for x in lines if x.startswith("> 00 20")], lines
    assert card_state(card).tries_left == tries
    assert file_bytes(card) == before
    assert settlements(host, profile) == []
    assert balance(host, profile) == BALANCES[profile]
    assert receipt_files(tmp_path) == []


async def test_host_failure_is_not_debited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The host's database fails when the settlement is due (the 2102's unit of work is
    rolled back and answered host_error): 结算失败，未扣款 and the amount, from the
    catalogue only; the host's reason goes to the log, never to the screen. The 2102 is
    sent once, nothing is settled, the account is untouched, nothing is left to reverse."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    fail_settlements(host)
    watched = watch(app)
    money_before = money_fen(host)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        assert ENTER_PIN in screen_text(app)  # the pre-settlement went through
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        assert SETTLE_FAILED in text.splitlines()  # the whole line: no ": reason" tail
        assert "金额 12.50 元" in text
        assert FAULT not in text
        assert f"{SETTLE_FAILED}：" not in text and f"{SETTLE_FAILED}:" not in text
        assert AUTHORISED not in text
        assert "个人账户余额 " not in text
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
    assert watched.infnos() == [*BEFORE_THE_PIN, "2102"]  # asked once, never again
    assert FAULT in caplog.text
    assert settlements(host, profile) == []
    assert balance(host, profile) == 128050
    assert money_fen(host) == money_before
    link = app.options.host
    assert link is not None and link.journal.pending() == []  # answered: nothing to reverse
    assert receipt_files(tmp_path) == []


# --- the card pulled out between authorisation and debit --------------------------------------


async def test_card_gone_when_the_debit_is_due_is_not_debited(tmp_path: Path) -> None:
    """The PIN is accepted, then the card is out when the terminal is about to settle:
    卡片已拔出 and 未扣款, no 2102 is sent, no receipt."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = SqliteHost(tmp_path / "h.db", seed=seed_file())
    reader = PullAtDebitReader(card)
    app = pos(card, host, tmp_path, reader=reader)
    wire = watch(app)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        assert ENTER_PIN in screen_text(app)
        reader.armed = True
        await enter(pilot, ENABLED_PIN)
        assert reader.pulled
        assert not reader.card_present()
        text = screen_text(app)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
        assert REMOVED in text
        assert NOT_DEBITED in text
        assert AUTHORISED not in text
        assert "个人账户余额 " not in text
        assert not app.card_present
    assert "2101" in wire.infnos() and wire.settles() == []
    assert settlements(host, profile) == []
    assert balance(host, profile) == 128050
    assert receipt_files(tmp_path) == []


async def test_card_pulled_while_the_host_debits_keeps_the_receipt(tmp_path: Path) -> None:
    """The settlement is already at the host (settled there, its answer on the way) when
    the card comes out: the terminal waits for the answer (still 正在结算, not ended),
    then shows the receipt; exactly one settlement stands."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    reader = VirtualReader(card)
    app = pos(card, host, tmp_path, reader=reader)
    watched = watch(app)
    watched.hold()
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        await pilot.press(*ENABLED_PIN, "enter")
        try:
            await wait_until(pilot, watched.entered.is_set)
            assert app.flow is not None and app.flow.view.stage is Stage.SETTLING
            assert SETTLING in screen_text(app)
            assert standing(host, profile) == [(1250, 126800, SENDER)]  # the money moved
            reader.remove()  # the worker is at the host, not at the reader
            await wait_until(pilot, lambda: not app.card_present)
            await pilot.pause()
            assert app.flow is not None and app.flow.view.stage is Stage.SETTLING
            text = screen_text(app)
            assert SETTLING in text
            assert REMOVED not in text
        finally:
            watched.gate.set()
        await settle(pilot)
        text = screen_text(app)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert AUTHORISED in text
        assert "个人账户余额 1268.00 元" in text
        [s] = settlements(host, profile)
        for expected in receipt_screen_lines(s, profile):
            assert expected in text
        assert NOT_DEBITED not in text
    assert_one_settle_for(watched, profile, 1250)
    assert s.status == "settled"
    assert standing(host, profile) == [(1250, 126800, SENDER)]
    assert balance(host, profile) == 126800
    assert len(receipt_files(tmp_path)) == 1


async def test_f2_while_settling_does_not_end_the_flow(tmp_path: Path) -> None:
    """F2 (pull the card) while 正在结算: the flow stays at SETTLING until the host
    answers; then the receipt is shown, one settlement stands, and the card is out."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    watched = watch(app)
    watched.hold()
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        await pilot.press(*ENABLED_PIN, "enter")
        try:
            await wait_until(pilot, watched.entered.is_set)
            await pilot.press("f2")
            for _ in range(5):
                await pilot.pause(0.02)
            assert app.flow is not None and app.flow.view.stage is Stage.SETTLING
            text = screen_text(app)
            assert SETTLING in text
            assert REMOVED not in text
        finally:
            watched.gate.set()
        await settle(pilot)
        text = screen_text(app)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert AUTHORISED in text
        assert "个人账户余额 1268.00 元" in text
        [s] = settlements(host, profile)
        assert f"结算号 {s.setl_id}" in text
        assert not app.reader.card_present()
        assert not app.card_present
    assert_one_settle_for(watched, profile, 1250)
    assert s.status == "settled"
    assert standing(host, profile) == [(1250, 126800, SENDER)]
    assert balance(host, profile) == 126800
    assert len(receipt_files(tmp_path)) == 1


# --- more than one payment; English -----------------------------------------------------------


async def test_two_payments_get_two_transactions(tmp_path: Path) -> None:
    """Two payments in a row on one card: two standing settlements with different
    settlement ids (and 2102 message ids), two receipts, and the balance down by both
    amounts."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    watched = watch(app)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        assert "个人账户余额 1268.00 元" in text
        [first] = settlements(host, profile)
        assert f"结算号 {first.setl_id}" in text
        await back_to_menu(pilot)
        assert app.flow is None
        await start_payment(pilot, "700")
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        assert AUTHORISED in text
        assert "金额 7.00 元" in text
        assert "个人账户余额 1261.00 元" in text
        second = settlements(host, profile)[-1]
        for expected in receipt_screen_lines(second, profile):
            assert expected in text
    rows = settlements(host, profile)
    assert rows == [first, second]
    assert [s.status for s in rows] == ["settled", "settled"]
    assert first.setl_id != second.setl_id
    assert first.msgid != second.msgid
    assert [r["msgid"] for r in watched.settles()] == [first.msgid, second.msgid]
    assert standing(host, profile) == [(1250, 126800, SENDER), (700, 126100, SENDER)]
    assert balance(host, profile) == 128050 - 1250 - 700
    files = receipt_files(tmp_path)
    assert len(files) == 2
    texts = "\n".join(f.read_text("utf-8") for f in files)
    for s in rows:
        assert f"结算号 Settlement  {s.setl_id}" in texts


async def test_en_payment_and_refusal(tmp_path: Path) -> None:
    """--lang en: the split before the PIN and the balance after a payment; then a card
    without PIN refused for want of money at the pre-settlement, before any prompt, and
    (an amount it can pay) the no-PIN prompt with its split."""
    card = make_card(tmp_path, "employee-enabled")
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        text = screen_text(app)
        assert "Please enter your PIN" in text
        assert "Fund 0.00  account 12.50  cash 0.00" in text
        assert "The holder pays 12.50 yuan" in text
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        [s] = settlements(host, "employee-enabled")
        assert "Payment authorised" in text
        assert "Amount 12.50 yuan" in text
        assert "Fund 0.00  account 12.50  cash 0.00" in text
        assert "Account balance 1268.00 yuan" in text
        assert f"Settlement {s.setl_id}" in text
        assert f"Terminal {TERMINAL}  " in text
        assert "Card A14***182  李**" in text
    assert balance(host, "employee-enabled") == 126800

    poor = make_card(tmp_path, "resident-new", name="r.json")
    app = pos(poor, host, tmp_path, lang="en")
    watched = watch(app)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "3001")
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        text = screen_text(app)
        assert "Not enough in the personal account (30.00 yuan); nothing debited" in text
        assert "Amount 30.01 yuan" in text
        assert "No PIN enabled" not in text
        assert "Check the amount, press Enter to pay" not in text
        assert "Payment authorised" not in text
        await back_to_menu(pilot)
        await start_payment(pilot, "3000")
        text = screen_text(app)
        assert "No PIN enabled" in text
        assert "Check the amount, press Enter to pay" in text
        assert "Amount 30.00 yuan" in text
        assert "Fund 0.00  account 30.00  cash 0.00" in text
        assert "The holder pays 30.00 yuan" in text
        await cancel(pilot)
    assert watched.settles() == []
    assert balance(host, "resident-new") == 3000
    assert settlements(host, "resident-new") == []
