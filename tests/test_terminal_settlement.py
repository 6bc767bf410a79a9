"""Pilot tests of pos-terminal's settlement: the holder's personal account is debited at
the host (host/sqlite.py) once the card rules said yes, and a receipt is shown and filed.

Every app runs at 80x24 on a VirtualReader over a card file made from a profile in
tmp_path, with a fresh SqliteHost in tmp_path seeded from fixtures/holders/holders.json
(balances in fen; terminal_helpers.new_host, what make_app gives every terminal test),
terminal id POS-0042 and receipts written to tmp_path/rc. Phrases and
balances are written out exactly, so a wrong word or a wrong fen fails.

The card pulled out between authorisation and debit is made deterministic in two ways:
a reader that pulls the card at the very check the terminal makes before debiting, and
a host whose debit waits on a threading.Event while the test removes the card (or
presses F2) at the SETTLING stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from terminal_helpers import (
    AFTER_UPGRADE,
    ENABLED_PIN,
    INITIAL_PIN,
    NEW_PIN,
    UPGRADE_DATE,
    card_state,
    confirm,
    enter,
    file_bytes,
    forced_change,
    holders,
    make_app,
    make_card,
    new_host,
    screen_text,
    settle,
    start_payment,
)
from textual.pilot import Pilot

from cardio.readers.virtual import VirtualReader
from host.api import Debit, DebitStatus, HostError, Transaction
from host.sqlite import SqliteHost, seed_file
from terminal.app import PosApp
from terminal.cli import build, parse_args
from terminal.flow.view import Stage

pytestmark = pytest.mark.slow  # Pilot through whole flows, key by key: ~0.3-2 s a test

SIZE = (80, 24)
TERMINAL = "POS-0042"

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


def debited(host: SqliteHost, profile: str) -> list[Transaction]:
    return [t for t in host.history(ssn_of(profile)) if t.status is DebitStatus.DEBITED]


def receipt_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "rc"
    return sorted(folder.iterdir()) if folder.exists() else []


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def receipt_screen_lines(txn: Transaction, profile: str) -> list[str]:
    """The two receipt lines the result screen shows (time from the host's record)."""
    return [
        f"终端 {TERMINAL}  {txn.time[:19].replace('T', ' ')}",
        f"卡号 {MASKED_CARDS[profile]}  {MASKED_NAMES[profile]}",
    ]


def assert_receipt_file(path: Path, txn: Transaction, profile: str, pins: tuple[str, ...]) -> None:
    text = path.read_text("utf-8")
    lines = text.splitlines()
    for expected in (
        f"终端 Terminal      {TERMINAL}",
        f"时间 Time          {txn.time}",
        f"交易号 Transaction {txn.txn_id}",
        f"卡号 Card          {MASKED_CARDS[profile]}",
        f"姓名 Name          {MASKED_NAMES[profile]}",
        f"金额 Amount        {yuan(txn.amount_fen)} 元",
        f"余额 Balance       {yuan(txn.balance_after_fen or 0)} 元",
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


class GatedHost(SqliteHost):
    """A real SqliteHost whose debit waits until the test opens the gate."""

    def __init__(self, path: Path, *, seed: Path | None = None) -> None:
        super().__init__(path, seed=seed)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.calls = 0

    def debit(
        self, txn_id: str, terminal_id: str, card_number: str, ssn: str, amount_fen: int
    ) -> Debit:
        self.calls += 1
        self.entered.set()
        if not self.gate.wait(10):
            raise HostError("test gate never opened")
        return super().debit(txn_id, terminal_id, card_number, ssn, amount_fen)


class FailingHost(SqliteHost):
    """A real SqliteHost that is unreachable when a debit is due."""

    def __init__(self, path: Path, *, seed: Path | None = None) -> None:
        super().__init__(path, seed=seed)
        self.calls = 0

    def debit(
        self, txn_id: str, terminal_id: str, card_number: str, ssn: str, amount_fen: int
    ) -> Debit:
        self.calls += 1
        raise HostError("host unreachable")


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


async def test_enabled_card_pays_and_the_host_debits_once(tmp_path: Path) -> None:
    """build(parse_args(--card --host-db --terminal-id --receipts)): employee-enabled pays
    12.50 with its PIN; the screen, the host's database and the receipt file all agree."""
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
    host = app.options.host
    assert isinstance(host, SqliteHost)
    assert balance(host, profile) == 128050
    total_before = sum(host.total_fen())
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        text = screen_text(app)
        assert ENTER_PIN in text
        assert "金额 12.50 元" in text
        assert host.history(ssn_of(profile)) == []  # nothing before the PIN
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert AUTHORISED in text
        assert "金额 12.50 元" in text
        assert "个人账户余额 1268.00 元" in text
        history = host.history(ssn_of(profile))
        assert len(history) == 1
        txn = history[0]
        for expected in receipt_screen_lines(txn, profile):
            assert expected in text
        assert name_of(profile) not in text
        assert CARD_NUMBERS[profile] not in text
        assert ENABLED_PIN not in text
    assert txn.status is DebitStatus.DEBITED
    assert txn.terminal_id == TERMINAL
    assert txn.card_number == CARD_NUMBERS[profile]
    assert txn.ssn == ssn_of(profile)
    assert txn.amount_fen == 1250
    assert txn.balance_after_fen == 126800
    assert balance(host, profile) == 128050 - 1250
    assert sum(host.total_fen()) == total_before
    # committed: another connection to the same database file sees it
    other = SqliteHost(db)
    assert [t.status for t in other.history(ssn_of(profile))] == [DebitStatus.DEBITED]
    assert balance(other, profile) == 126800
    other.close()
    files = receipt_files(tmp_path)
    assert len(files) == 1
    assert_receipt_file(files[0], txn, profile, (ENABLED_PIN,))
    assert card_state(card).tries_left == 6


async def test_forced_change_then_payment_debits_once(tmp_path: Path) -> None:
    """S8 then settlement: employee-new changes its initial PIN, then the 12.50 is debited
    once: 500.00 -> 487.50; one receipt; no PIN in it."""
    profile = "employee-new"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        assert FORCED in screen_text(app)
        assert host.history(ssn_of(profile)) == []
        await forced_change(pilot)
        text = screen_text(app)
        assert CHANGED in text
        assert AUTHORISED in text
        assert "金额 12.50 元" in text
        assert "个人账户余额 487.50 元" in text
        txns = host.history(ssn_of(profile))
        assert len(txns) == 1
        for expected in receipt_screen_lines(txns[0], profile):
            assert expected in text
    assert [t.status for t in txns] == [DebitStatus.DEBITED]
    assert txns[0].card_number == CARD_NUMBERS[profile]
    assert txns[0].terminal_id == TERMINAL
    assert balance(host, profile) == 50000 - 1250
    files = receipt_files(tmp_path)
    assert len(files) == 1
    assert_receipt_file(files[0], txns[0], profile, (NEW_PIN, INITIAL_PIN))
    assert card_state(card).pin.matches(NEW_PIN)


@pytest.mark.parametrize(("profile", "after"), [("resident-new", "17.50"), ("disabled", "787.50")])
async def test_no_pin_payment_is_debited(tmp_path: Path, profile: str, after: str) -> None:
    """S4 (390, INITIAL) and S16 (DISABLED): no PIN asked; the amount is confirmed with
    确认 (nothing is debited before), then the account is debited once and the card file
    is untouched."""
    card = make_card(tmp_path, profile)
    before = file_bytes(card)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        assert app.flow is not None and app.flow.view.stage is Stage.CONFIRM_AMOUNT
        text = screen_text(app)
        assert NO_PIN in text
        assert CONFIRM_AMOUNT in text
        assert "金额 12.50 元" in text
        assert AUTHORISED not in text
        assert ENTER_PIN not in text
        assert host.history(ssn_of(profile)) == []  # nothing before 确认
        assert balance(host, profile) == BALANCES[profile]
        assert receipt_files(tmp_path) == []
        await confirm(pilot)
        text = screen_text(app)
        assert NO_PIN in text
        assert AUTHORISED in text
        assert "金额 12.50 元" in text
        assert f"个人账户余额 {after} 元" in text
        assert ENTER_PIN not in text
    txns = debited(host, profile)
    assert len(txns) == 1 and len(host.history(ssn_of(profile))) == 1
    assert txns[0].card_number == CARD_NUMBERS[profile]
    assert txns[0].terminal_id == TERMINAL
    assert balance(host, profile) == BALANCES[profile] - 1250
    assert len(receipt_files(tmp_path)) == 1
    assert file_bytes(card) == before


# --- refusals: nothing debited ---------------------------------------------------------------


async def test_insufficient_balance_is_refused(tmp_path: Path) -> None:
    """resident-new has 30.00 yuan: 30.01 is refused (once the holder confirmed the
    amount) with the balance shown, nothing is debited, and the refusal is recorded;
    30.00 exactly then goes through."""
    profile = "resident-new"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "3001")
        assert app.flow is not None and app.flow.view.stage is Stage.CONFIRM_AMOUNT
        assert "金额 30.01 元" in screen_text(app)
        assert host.history(ssn_of(profile)) == []  # the host is asked only after 确认
        await confirm(pilot)
        text = screen_text(app)
        assert "个人账户余额不足（30.00 元），未扣款" in text
        assert "金额 30.01 元" in text
        assert AUTHORISED not in text
        assert "个人账户余额 " not in text
        assert app.flow is not None and app.flow.view.success is False
        assert balance(host, profile) == 3000
        history = host.history(ssn_of(profile))
        assert [(t.status, t.amount_fen, t.balance_after_fen) for t in history] == [
            (DebitStatus.INSUFFICIENT, 3001, 3000)
        ]
        assert history[0].terminal_id == TERMINAL
        assert receipt_files(tmp_path) == []
        await back_to_menu(pilot)
        await start_payment(pilot, "3000")
        assert CONFIRM_AMOUNT in screen_text(app)
        assert len(host.history(ssn_of(profile))) == 1  # still only the refusal
        await confirm(pilot)
        text = screen_text(app)
        assert AUTHORISED in text
        assert "个人账户余额 0.00 元" in text
    assert balance(host, profile) == 0
    assert len(debited(host, profile)) == 1
    assert len(receipt_files(tmp_path)) == 1


async def test_pension_card_with_nothing_in_the_account_is_refused(tmp_path: Path) -> None:
    """pension-new (170, balance 0): no PIN asked (S8 does not force 170); the amount is
    confirmed with 确认, then the host refuses."""
    profile = "pension-new"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "100")
        text = screen_text(app)
        assert NO_PIN in text
        assert CONFIRM_AMOUNT in text
        assert ENTER_PIN not in text
        assert host.history(ssn_of(profile)) == []  # nothing asked of the host before 确认
        await confirm(pilot)
        text = screen_text(app)
        assert "个人账户余额不足（0.00 元），未扣款" in text
        assert AUTHORISED not in text
        assert ENTER_PIN not in text
    assert balance(host, profile) == 0
    assert debited(host, profile) == []
    assert [t.status for t in host.history(ssn_of(profile))] == [DebitStatus.INSUFFICIENT]
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
    assert debited(host, profile) == []
    assert balance(host, profile) == BALANCES[profile]
    assert receipt_files(tmp_path) == []


async def test_host_failure_is_not_debited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that fails (HostError) when the debit is due: 结算失败，未扣款 and the amount,
    from the catalogue only; the host's reason goes to the log, never to the screen."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = FailingHost(tmp_path / "h.db", seed=seed_file())
    app = pos(card, host, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        assert SETTLE_FAILED in text.splitlines()  # the whole line: no ": reason" tail
        assert "金额 12.50 元" in text
        assert "host unreachable" not in text
        assert f"{SETTLE_FAILED}：" not in text and f"{SETTLE_FAILED}:" not in text
        assert AUTHORISED not in text
        assert "个人账户余额 " not in text
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
    assert host.calls == 1
    assert "host unreachable" in caplog.text
    assert host.history(ssn_of(profile)) == []
    assert balance(host, profile) == 128050
    assert receipt_files(tmp_path) == []


# --- the card pulled out between authorisation and debit --------------------------------------


async def test_card_gone_when_the_debit_is_due_is_not_debited(tmp_path: Path) -> None:
    """The PIN is accepted, then the card is out when the terminal is about to debit:
    卡片已拔出 and 未扣款, the host is never asked, no receipt."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = GatedHost(tmp_path / "h.db", seed=seed_file())
    host.gate.set()  # a debit, if one were asked for, would go straight through
    reader = PullAtDebitReader(card)
    app = pos(card, host, tmp_path, reader=reader)
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
    assert host.calls == 0
    assert host.history(ssn_of(profile)) == []
    assert balance(host, profile) == 128050
    assert receipt_files(tmp_path) == []


async def test_card_pulled_while_the_host_debits_keeps_the_receipt(tmp_path: Path) -> None:
    """The debit is already at the host when the card comes out: the terminal waits for
    the host (still 正在结算, not ended), then shows the receipt; debited exactly once."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = GatedHost(tmp_path / "h.db", seed=seed_file())
    reader = VirtualReader(card)
    app = pos(card, host, tmp_path, reader=reader)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        await pilot.press(*ENABLED_PIN, "enter")
        try:
            await wait_until(pilot, host.entered.is_set)
            assert app.flow is not None and app.flow.view.stage is Stage.SETTLING
            assert SETTLING in screen_text(app)
            reader.remove()  # the worker is at the host, not at the reader
            await wait_until(pilot, lambda: not app.card_present)
            await pilot.pause()
            assert app.flow is not None and app.flow.view.stage is Stage.SETTLING
            text = screen_text(app)
            assert SETTLING in text
            assert REMOVED not in text
        finally:
            host.gate.set()
        await settle(pilot)
        text = screen_text(app)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert AUTHORISED in text
        assert "个人账户余额 1268.00 元" in text
        txns = host.history(ssn_of(profile))
        assert len(txns) == 1
        for expected in receipt_screen_lines(txns[0], profile):
            assert expected in text
        assert NOT_DEBITED not in text
    assert host.calls == 1
    assert [t.status for t in txns] == [DebitStatus.DEBITED]
    assert balance(host, profile) == 126800
    assert len(receipt_files(tmp_path)) == 1


async def test_f2_while_settling_does_not_end_the_flow(tmp_path: Path) -> None:
    """F2 (pull the card) while 正在结算: the flow stays at SETTLING until the host
    answers; then the receipt is shown, the debit recorded once, and the card is out."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = GatedHost(tmp_path / "h.db", seed=seed_file())
    app = pos(card, host, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        await pilot.press(*ENABLED_PIN, "enter")
        try:
            await wait_until(pilot, host.entered.is_set)
            await pilot.press("f2")
            for _ in range(5):
                await pilot.pause(0.02)
            assert app.flow is not None and app.flow.view.stage is Stage.SETTLING
            text = screen_text(app)
            assert SETTLING in text
            assert REMOVED not in text
        finally:
            host.gate.set()
        await settle(pilot)
        text = screen_text(app)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert AUTHORISED in text
        assert "个人账户余额 1268.00 元" in text
        assert not app.reader.card_present()
        assert not app.card_present
    assert host.calls == 1
    assert [t.status for t in host.history(ssn_of(profile))] == [DebitStatus.DEBITED]
    assert balance(host, profile) == 126800
    assert len(receipt_files(tmp_path)) == 1


# --- more than one payment; English -----------------------------------------------------------


async def test_two_payments_get_two_transactions(tmp_path: Path) -> None:
    """Two payments in a row on one card: two DEBITED records with different transaction
    ids, two receipts, and the balance down by both amounts."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        await enter(pilot, ENABLED_PIN)
        assert "个人账户余额 1268.00 元" in screen_text(app)
        await back_to_menu(pilot)
        assert app.flow is None
        await start_payment(pilot, "700")
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        assert AUTHORISED in text
        assert "金额 7.00 元" in text
        assert "个人账户余额 1261.00 元" in text
    txns = debited(host, profile)
    assert len(txns) == 2
    assert txns[0].txn_id != txns[1].txn_id
    assert sorted(t.amount_fen for t in txns) == [700, 1250]
    assert balance(host, profile) == 128050 - 1250 - 700
    files = receipt_files(tmp_path)
    assert len(files) == 2
    texts = "\n".join(f.read_text("utf-8") for f in files)
    for txn in txns:
        assert f"交易号 Transaction {txn.txn_id}" in texts


async def test_en_payment_and_refusal(tmp_path: Path) -> None:
    """--lang en: the balance after a payment, then (a card without PIN, its amount
    confirmed) a refusal for want of money."""
    card = make_card(tmp_path, "employee-enabled")
    host = new_host(tmp_path)
    app = pos(card, host, tmp_path, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        await enter(pilot, ENABLED_PIN)
        text = screen_text(app)
        assert "Payment authorised" in text
        assert "Amount 12.50 yuan" in text
        assert "Account balance 1268.00 yuan" in text
        assert f"Terminal {TERMINAL}  " in text
        assert "Card A14***182  李**" in text
    assert balance(host, "employee-enabled") == 126800

    poor = make_card(tmp_path, "resident-new", name="r.json")
    app = pos(poor, host, tmp_path, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "3001")
        text = screen_text(app)
        assert "No PIN enabled" in text
        assert "Check the amount, press Enter to pay" in text
        assert "Amount 30.01 yuan" in text
        assert host.history(ssn_of("resident-new")) == []  # nothing before Enter
        await confirm(pilot)
        text = screen_text(app)
        assert "Not enough in the personal account (30.00 yuan); nothing debited" in text
        assert "Payment authorised" not in text
    assert balance(host, "resident-new") == 3000
    assert debited(host, "resident-new") == []
