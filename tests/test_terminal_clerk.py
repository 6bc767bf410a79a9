"""The clerk's menu items on the pharmacy's pad (terminal/flow/clerk.py): 4 撤销结算, a
cancellation (2103) of one of today's settlements found by the last digits of its id,
and 5 日结对账, the end of day (3201 / 3202), printed to --receipts.

The flows' answers are tested directly (fast); the whole path runs through Pilot on the
embedded host over SQLite (terminal_helpers.make_app): a payment is made on the pad, then
cancelled or reconciled. Phrases are written out exactly, so a wrong word fails.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from terminal_helpers import (
    ENABLED_PIN,
    balance_fen,
    confirm,
    enter,
    holders,
    make_app,
    make_card,
    screen_text,
    settle,
    start_payment,
    toggle_card,
)
from textual.pilot import Pilot

import host.platform
from cardio.resources import user_dir
from host.client import Cancellation, PlatformRefused
from host.daybook import Entry, Totals
from host.transport import HostUnreachable, NoAnswer, Transport
from terminal import strings
from terminal.app import PosApp, menu_choices
from terminal.flow.clerk import (
    MEMOS,
    REFUSALS,
    CancelFlow,
    Clerk,
    DayEnd,
    DayEndFlow,
    Found,
    difference_lines,
    reconciliation_text,
)
from terminal.flow.commands import CancelSettlement, FindSettlement, Reconcile
from terminal.flow.view import Line, Stage, View
from terminal.settlement import NotThrough, Reconciliation
from terminal.worker import WorkFailed, deliver, write_reconciliation

SIZE = (80, 24)
PROFILE = "employee-enabled"  # PIN enabled: 802613; 1280.50 yuan in the account
START = 128050

# the catalogue (terminal/strings.py), exact
MENU_CANCEL = "4  撤销结算"
MENU_DAY_END = "5  日结对账"
ASK_DIGITS = "请输入凭条上结算号的末尾数字（至少4位）"
SHORT = "请至少输入4位数字"
CONFIRM_HINT = "按 确认 撤销此笔结算，按 取消 不撤销"
CANCELLED = "结算已撤销"
NOTHING_CANCELLED = "未撤销结算"
NOT_SETTLED = "此笔结算已撤销或已冲正，未再撤销"
CANCEL_REVERSED = "平台无应答，本次撤销已冲正，此笔结算仍有效"
CANCEL_PENDING = "平台无应答，正在冲正本次撤销，此笔结算仍有效"
UNKNOWN = "平台无应答：此笔结算可能已撤销，也可能未撤销"
UNKNOWN_CHECK = "请先用 日结对账 核实，或再次撤销"
BALANCED = "平账"
UNBALANCED = "不平"


def none_found(digits: str) -> str:
    return f"今日本终端没有结算号以 {digits} 结尾的结算"


def many_found(n: int, digits: str) -> str:
    return f"今日有{n}笔结算号以 {digits} 结尾，请多输入几位"


def entry(setl_id: str = "S20261130101500123456789012345", **fen: int) -> Entry:
    amounts = {"medfee_fen": 1250, "fund_fen": 0, "acct_fen": 1250, "cash_fen": 0, **fen}
    return Entry(
        setl_id,
        "M20261130101500123456789012345",
        "P0001",
        "H3101010000120261130101500001",
        "2026-11-30 10:15:00",
        amounts["medfee_fen"],
        amounts["fund_fen"],
        amounts["acct_fen"],
        amounts["cash_fen"],
    )


def keys(view: View) -> list[str]:
    return [item.key for item in view.lines]


def text_of(item: Line, lang: str = "zh") -> str:
    return strings.text(lang, item.key, **dict(item.params))


def texts(view: View) -> list[str]:
    return [text_of(item) for item in view.lines]


# --- the cancellation's flow, answer by answer ---------------------------------------------


def found_one(e: Entry | None = None) -> CancelFlow:
    flow = CancelFlow()
    assert flow.entered("12345") == FindSettlement("12345")
    flow.answer(Found((e or entry(),)))
    return flow


def test_fewer_than_four_digits_are_asked_again_and_nothing_is_looked_up() -> None:
    flow = CancelFlow()
    assert flow.view.stage is Stage.ID_NUMBER and texts(flow.view) == [ASK_DIGITS]
    for short in ("", "1", "123"):
        assert flow.entered(short) is None
        assert flow.view.stage is Stage.ID_NUMBER
        assert texts(flow.view) == [SHORT, ASK_DIGITS]
    assert flow.entered("123X") is None  # the keyboard's x reaches a long entry only
    assert flow.entered("1234") == FindSettlement("1234")
    assert flow.view.stage is Stage.WORKING


def test_none_or_several_found_ask_again_one_asks_for_confirmation() -> None:
    flow = CancelFlow()
    flow.entered("4321")
    flow.answer(Found(()))
    assert flow.view.stage is Stage.ID_NUMBER
    assert texts(flow.view) == [none_found("4321"), ASK_DIGITS]
    flow.entered("2345")
    flow.answer(Found((entry(), entry("S20261130101600999999999912345"))))
    assert texts(flow.view) == [many_found(2, "2345"), ASK_DIGITS]
    flow.entered("012345")
    e = entry(fund_fen=500, acct_fen=700, cash_fen=50)
    flow.answer(Found((e,)))
    assert flow.view.stage is Stage.CONFIRM_AMOUNT and flow.view.accepts
    assert texts(flow.view) == [
        f"结算号 {e.setl_id}",
        "时间 2026-11-30 10:15:00",
        "金额 12.50 元",
        "统筹 5.00  个账 7.00  现金 0.50",
        CONFIRM_HINT,
    ]
    assert flow.entered("") == CancelSettlement(e)
    assert flow.view.stage is Stage.WORKING


def test_a_cancellation_shows_its_id_what_went_back_and_the_balance() -> None:
    e = entry(medfee_fen=2000, acct_fen=1500, cash_fen=500)
    flow = found_one(e)
    flow.entered("")
    flow.answer(Cancellation("C20261130103000111111111111111", 50000))
    view = flow.view
    assert view.stage is Stage.RESULT and view.success and view.keep  # money moved
    assert texts(view) == [
        CANCELLED,
        "撤销号 C20261130103000111111111111111",
        f"原结算号 {e.setl_id}",
        "金额 20.00 元",
        "退回个人账户 15.00 元",
        "请退还现金 5.00 元",
        "个人账户余额 500.00 元",
    ]


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("not_settled", NOT_SETTLED),
        ("not_today", "只能撤销当日的结算，未撤销"),
        ("not_found", "平台查无此笔结算，未撤销"),
        ("sign_in", "平台签到未通过，未撤销，请重试"),
        ("host_data", "平台拒绝撤销（host_data），未撤销"),
        ("", "平台拒绝撤销（-），未撤销"),
    ],
)
def test_a_refusal_is_one_clear_line(kind: str, phrase: str) -> None:
    e = entry()
    flow = found_one(e)
    flow.entered("")
    assert deliver(flow, PlatformRefused(kind, "the platform's own words")) is None
    view = flow.view
    assert view.stage is Stage.RESULT and not view.success and not view.keep and view.alert
    assert texts(view) == [phrase, f"结算号 {e.setl_id}"]
    assert "the platform's own words" not in " ".join(texts(view))


def test_an_unreachable_platform_cancelled_nothing() -> None:
    flow = found_one()
    flow.entered("")
    deliver(flow, HostUnreachable("refused"))
    assert texts(flow.view)[0] == "无法连接平台，未撤销，请稍后重试"
    assert not flow.view.keep


@pytest.mark.parametrize(
    "failure", [NoAnswer("read timeout"), WorkFailed("OSError")], ids=["no-answer", "failed"]
)
def test_an_unknown_outcome_is_said_and_never_sent_again(failure: Exception) -> None:
    """A failure the link did not resolve (the link turns a lost answer into a reversal,
    NotThrough, below; this is what is left): it may have gone through. The clerk is told
    so; the flow asks nothing more (no second message)."""
    e = entry()
    flow = found_one(e)
    flow.entered("")
    assert deliver(flow, failure) is None
    view = flow.view
    assert view.stage is Stage.RESULT and view.keep and not view.success
    assert texts(view)[0] == UNKNOWN
    assert f"结算号 {e.setl_id}" in texts(view)
    assert texts(view)[-1] == UNKNOWN_CHECK
    assert flow.entered("") is None  # 确认 on the result sends nothing


@pytest.mark.parametrize(("confirmed", "said"), [(True, CANCEL_REVERSED), (False, CANCEL_PENDING)])
def test_a_reversed_cancellation_says_the_settlement_stands(confirmed: bool, said: str) -> None:
    e = entry()
    flow = found_one(e)
    flow.entered("")
    assert deliver(flow, NotThrough(confirmed, "M1")) is None
    view = flow.view
    assert view.stage is Stage.RESULT and view.keep and not view.success
    assert texts(view)[0] == said and f"结算号 {e.setl_id}" in texts(view)
    assert texts(view)[-1] == "可再次撤销"
    assert flow.entered("") is None


def test_a_failed_lookup_sent_nothing() -> None:
    flow = CancelFlow()
    flow.entered("1234")
    deliver(flow, WorkFailed("OSError"))
    assert texts(flow.view) == ["无法读取本终端的结算记录，请重试"]


def test_escape_or_the_clock_says_nothing_was_cancelled() -> None:
    flow = found_one()
    flow.ended("cancelled")
    assert flow.view.brief and texts(flow.view) == [NOTHING_CANCELLED]
    assert flow.entry is None
    flow = found_one()
    flow.ended("timed_out")
    assert texts(flow.view) == ["操作超时", NOTHING_CANCELLED]


def test_the_card_plays_no_part() -> None:
    flow = found_one()
    assert not flow.removed() and flow.card_inserted() is None
    assert flow.view.stage is Stage.CONFIRM_AMOUNT


# --- the end of day's flow -----------------------------------------------------------------


def reconciliation(
    balanced: bool, differences: list[dict[str, Any]] | None = None
) -> Reconciliation:
    return Reconciliation(
        dt.date(2026, 11, 30),
        Totals(2, 2050, 300, 1700, 50),
        balanced,
        "balanced" if balanced else "the host has 3 settlements, 32.50 yuan in all",
        {},
        differences or [],
    )


def test_end_of_day_starts_at_once() -> None:
    flow = DayEndFlow("POS-0042")
    assert flow.view.stage is Stage.WORKING and texts(flow.view) == ["正在对账，请稍候"]
    assert flow.start() == Reconcile()


def test_end_of_day_balanced() -> None:
    flow = DayEndFlow("POS-0042")
    deliver(flow, DayEnd(reconciliation(True), printed=True))
    view = flow.view
    assert view.stage is Stage.RESULT and view.success and view.keep and not view.alert
    assert texts(view) == [
        "2026-11-30  终端 POS-0042",
        "共 2 笔  金额 20.50 元",
        "统筹 3.00  个账 17.00  现金 0.50",
        BALANCED,
        "对账单已打印",
    ]


def test_end_of_day_not_balanced_names_a_few_then_how_many_more() -> None:
    """Five rows at most under their reasons' headings (80x24 leaves no more), then how
    many more; the reasons in the clerk's words, grouped."""
    rows = [
        {"setl_id": "S3", "memo": "amounts differ"},
        {"setl_id": "S1", "memo": "not settled at the host"},
        {"setl_id": "S2", "memo": "not in the institution's details"},
        {"setl_id": "S4", "memo": "amounts differ"},
        {"setl_id": "S5", "memo": "not in the institution's details"},
    ]
    flow = DayEndFlow("POS-0042")
    deliver(flow, DayEnd(reconciliation(False, rows)))
    view = flow.view
    assert not view.success and view.alert and view.keep
    assert texts(view)[3:] == [
        UNBALANCED,
        "平台：the host has 3 settlements, 32.50 yuan in all",
        "平台无此结算：",
        "  S1",
        "本终端无记录：",
        "  S2",
        "  S5",
        "... 另有 2 笔",
    ]


def test_end_of_day_few_differences_are_all_named() -> None:
    rows = [{"setl_id": f"S{i}", "memo": "not settled at the host"} for i in range(4)]
    assert [text_of(i) for i in difference_lines(rows)] == [
        "平台无此结算：",
        "  S0",
        "  S1",
        "  S2",
        "  S3",
    ]
    rows.append({"setl_id": "S9"})  # no memo: its own heading, past the rows shown
    assert [text_of(i) for i in difference_lines(rows)][-1] == "... 另有 1 笔"


def test_end_of_day_an_unknown_memo_is_shown_as_sent_and_a_failed_print_said() -> None:
    flow = DayEndFlow()
    deliver(flow, DayEnd(reconciliation(False, [{"setl_id": "S9", "memo": "odd"}]), False))
    assert texts(flow.view)[-3:] == ["odd：", "  S9", "对账单未能打印，请检查凭条目录"]


def test_a_long_platform_description_is_cut_on_screen() -> None:
    r = reconciliation(False)
    long = Reconciliation(r.day, r.totals, False, "x" * 300, {}, [])
    flow = DayEndFlow()
    deliver(flow, DayEnd(long))
    (platform,) = [t for t in texts(flow.view) if t.startswith("平台：")]
    assert platform == "平台：" + "x" * 97 + "..."


@pytest.mark.parametrize(
    ("failure", "phrase"),
    [
        (HostUnreachable("refused"), "无法连接平台，未对账，请稍后重试"),
        (NoAnswer("timeout"), "平台无应答，未对账，请重试"),
        (PlatformRefused("sign_in", "x"), "平台拒绝对账（sign_in），请稍后重试"),
        (WorkFailed("OSError"), "平台无应答，未对账，请重试"),
    ],
)
def test_end_of_day_without_the_platform(failure: Exception, phrase: str) -> None:
    flow = DayEndFlow()
    deliver(flow, failure)
    assert texts(flow.view) == [phrase] and not flow.view.keep


def test_every_key_the_clerk_uses_exists_in_both_languages() -> None:
    made = [*REFUSALS.values(), *MEMOS.values(), "menu_setl_cancel", "menu_day_end"]
    for lang in ("zh", "en"):
        assert [k for k in made if k not in strings.CATALOGUES[lang]] == []


def test_the_clerks_items_are_the_pharmacys_with_a_host_only() -> None:
    assert menu_choices(outlet=False, clerk=True)["4"] is Clerk.CANCEL
    assert menu_choices(outlet=False, clerk=True)["5"] is Clerk.DAY_END
    assert set(menu_choices(outlet=False)) == {"1", "2", "3"}
    outlet = menu_choices(outlet=True, clerk=False)
    assert not any(isinstance(choice, Clerk) for choice in outlet.values())


# --- the printed reconciliation --------------------------------------------------------------


def test_the_reconciliation_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    r = reconciliation(
        False, [{"setl_id": "S7", "psn_no": "P-SECRET", "medfee_sumamt": "8.00", "memo": "x"}]
    )
    when = dt.datetime(2026, 11, 30, 18, 5, 1)
    first = write_reconciliation(tmp_path / "rc", "POS-0042", r, when)
    second = write_reconciliation(tmp_path / "rc", "POS-0042", r, when)
    assert first.name == "reconciliation-2026-11-30-180501.txt"
    assert second.name == "reconciliation-2026-11-30-180501-2.txt"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    text = first.read_text("utf-8")
    assert text == reconciliation_text("POS-0042", r, when)
    lines = text.splitlines()
    for expected in (
        "终端 Terminal      POS-0042",
        "日期 Day           2026-11-30",
        "笔数 Count         2",
        "金额 Total         20.50 元",
        "统筹 Pooled fund   3.00 元",
        "个账 Account       17.00 元",
        "现金 Cash          0.50 元",
        "结果 Result        不平 NOT balanced",
        "不符 Differing     1",
        "  S7  8.00  x",
    ):
        assert expected in lines, (expected, lines)
    assert "P-SECRET" not in text


# --- through the pad: Pilot on the embedded host --------------------------------------------

slow = pytest.mark.slow  # Pilot through whole flows, key by key


def pos(tmp_path: Path, *, host: Any = None, receipts: bool = True) -> PosApp:
    card = make_card(tmp_path, PROFILE)
    kwargs: dict[str, Any] = {"receipts": tmp_path / "rc" if receipts else None}
    if host is not None:
        kwargs["host"] = host
    return make_app(card, **kwargs)


async def pay(pilot: Pilot, amount: str) -> str:
    """A payment on the pad with the enabled PIN; the settlement id on its receipt."""
    await start_payment(pilot, amount)
    await enter(pilot, ENABLED_PIN)
    app = pilot.app
    assert isinstance(app, PosApp) and app.flow is not None
    view = app.flow.view
    assert view.keep, texts(view)
    setl_id = next(dict(i.params)["setl_id"] for i in view.lines if i.key == "receipt_setl")
    await confirm(pilot)  # the receipt closes: the menu
    assert app.flow is None
    return str(setl_id)


async def cancel_by(pilot: Pilot, digits: str) -> None:
    """Menu 4, the digits, Enter: the lookup's answer is on screen."""
    await pilot.press("4")
    await settle(pilot)
    await enter(pilot, digits)


def view_of(app: PosApp) -> View:
    assert app.flow is not None
    return app.flow.view


def shown(app: PosApp) -> str:
    return screen_text(app)


def daybook_file(terminal_id: str = "POS-0001") -> Path:
    return user_dir() / "daybook" / terminal_id / f"{dt.date.today().isoformat()}.jsonl"


def no_full_id(app: PosApp) -> None:
    assert holders()[PROFILE]["ssn"] not in shown(app)


@slow
async def test_cancel_todays_payment_by_the_receipts_last_digits(tmp_path: Path) -> None:
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert MENU_CANCEL in shown(app) and MENU_DAY_END in shown(app)
        setl_id = await pay(pilot, "1250")
        assert balance_fen(app, PROFILE) == START - 1250
        await cancel_by(pilot, setl_id[-6:])
        view = view_of(app)
        assert view.stage is Stage.CONFIRM_AMOUNT
        text = shown(app)
        for phrase in (f"结算号 {setl_id}", "金额 12.50 元", CONFIRM_HINT, "时间 "):
            assert phrase in text, phrase
        no_full_id(app)
        await confirm(pilot)
        view = view_of(app)
        assert view.stage is Stage.RESULT and view.success and view.keep
        text = shown(app)
        for phrase in (
            CANCELLED,
            f"原结算号 {setl_id}",
            "退回个人账户 12.50 元",
            f"个人账户余额 {(START) // 100}.{START % 100:02d} 元",
        ):
            assert phrase in text, phrase
        cancel_id = next(
            dict(i.params)["cancel_id"] for i in view.lines if i.key == "setl_cancel_id"
        )
        assert str(cancel_id).startswith("C") and f"撤销号 {cancel_id}" in text
        no_full_id(app)
        assert balance_fen(app, PROFILE) == START
        await pilot.press("escape")  # money moved: only 确认 closes it
        await settle(pilot)
        assert view_of(app).keep
        await confirm(pilot)
        assert app.flow is None and MENU_CANCEL in shown(app)
        # the day-book knows: the settlement no longer stands
        assert app.options.host is not None and app.options.host.todays(setl_id[-6:]) == []


@slow
async def test_unknown_and_short_digits_are_asked_again(tmp_path: Path) -> None:
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        setl_id = await pay(pilot, "300")
        other = "".join("1" if c != "1" else "2" for c in setl_id[-6:])  # surely not its end
        await cancel_by(pilot, other)
        assert view_of(app).stage is Stage.ID_NUMBER
        assert none_found(other) in shown(app) and ASK_DIGITS in shown(app)
        await enter(pilot, "123")
        assert SHORT in shown(app) and view_of(app).stage is Stage.ID_NUMBER
        await enter(pilot, setl_id[-4:])  # the right one after all
        assert view_of(app).stage is Stage.CONFIRM_AMOUNT
        assert balance_fen(app, PROFILE) == START - 300


@pytest.fixture
def counted_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every platform id ends in 1234, after a counter: ids stay unique, endings shared."""
    calls = iter(range(1, 10_000))
    monkeypatch.setattr(host.platform, "random_digits", lambda n: f"{next(calls):0{n - 4}d}1234")
    yield


@slow
async def test_ambiguous_digits_ask_for_more(tmp_path: Path, counted_ids: None) -> None:
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        first = await pay(pilot, "500")
        second = await pay(pilot, "700")
        assert first[-4:] == second[-4:] == "1234" and first[-6:] != second[-6:]
        await cancel_by(pilot, "1234")
        assert view_of(app).stage is Stage.ID_NUMBER
        assert many_found(2, "1234") in shown(app)
        await enter(pilot, second[-6:])
        assert view_of(app).stage is Stage.CONFIRM_AMOUNT
        assert f"结算号 {second}" in shown(app) and "金额 7.00 元" in shown(app)
        await confirm(pilot)
        assert CANCELLED in shown(app)
        assert balance_fen(app, PROFILE) == START - 500


@slow
async def test_escape_at_the_confirmation_cancels_nothing(tmp_path: Path) -> None:
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        setl_id = await pay(pilot, "1250")
        await cancel_by(pilot, setl_id[-6:])
        assert view_of(app).stage is Stage.CONFIRM_AMOUNT
        await pilot.press("escape")
        await settle(pilot)
        view = view_of(app)
        assert view.brief and texts(view) == [NOTHING_CANCELLED]
        await confirm(pilot)
        assert app.flow is None and NOTHING_CANCELLED in shown(app)
        assert balance_fen(app, PROFILE) == START - 1250
        link = app.options.host
        assert link is not None and [e.setl_id for e in link.todays(setl_id[-6:])] == [setl_id]


@slow
async def test_cancelling_twice_is_refused(tmp_path: Path) -> None:
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        setl_id = await pay(pilot, "1250")
        await cancel_by(pilot, setl_id[-6:])
        await confirm(pilot)
        assert CANCELLED in shown(app)
        await confirm(pilot)
        # the terminal's own record: it no longer stands
        await cancel_by(pilot, setl_id[-6:])
        assert none_found(setl_id[-6:]) in shown(app)
        await pilot.press("escape")
        await settle(pilot)
        await confirm(pilot)
        assert balance_fen(app, PROFILE) == START


@slow
async def test_the_platform_refuses_what_was_cancelled_elsewhere(tmp_path: Path) -> None:
    """The platform cancelled it (an answer this terminal never saw): its day-book still
    lists it, the platform refuses a second cancellation, and nothing moves twice."""
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        setl_id = await pay(pilot, "1250")
        link = app.options.host
        assert link is not None
        (e,) = link.todays(setl_id[-6:])
        link.client.signed_in()
        msgid = link.client.new_msgid()
        link.client.cancel(e.setl_id, e.mdtrt_id, e.psn_no, msgid)  # behind the day-book's back
        assert balance_fen(app, PROFILE) == START
        await cancel_by(pilot, setl_id[-6:])
        await confirm(pilot)
        view = view_of(app)
        assert view.stage is Stage.RESULT and not view.success
        assert NOT_SETTLED in shown(app) and f"结算号 {setl_id}" in shown(app)
        assert balance_fen(app, PROFILE) == START


class LosesCancellations:
    """The platform's transport, except that each 2103 is carried out and its answer
    lost (NoAnswer): the outcome a clerk cannot know."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.cancellations = 0

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = self.inner.send(request)
        if request.get("infno") == "2103":
            self.cancellations += 1
            raise NoAnswer("the answer was lost")
        return answer

    def close(self) -> None:
        self.inner.close()


@slow
async def test_no_answer_to_a_cancellation_reverses_it_and_the_settlement_stands(
    tmp_path: Path,
) -> None:
    """A 2103 whose answer is lost is reversed (2601 of the 2103), like a settlement
    without an answer: the settlement stands at the platform, as the day-book says, the
    cancellation is never sent again on its own, and the end of day is balanced."""
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        setl_id = await pay(pilot, "1250")
        link = app.options.host
        assert link is not None
        lossy = LosesCancellations(link.client.transport)
        link.client.transport = lossy
        await cancel_by(pilot, setl_id[-6:])
        await confirm(pilot)
        view = view_of(app)
        assert view.stage is Stage.RESULT and view.keep and not view.success
        text = shown(app)
        assert CANCEL_REVERSED in text and f"结算号 {setl_id}" in text
        assert lossy.cancellations == 1  # sent once, never again on its own
        assert not any((user_dir() / "pending").rglob("*.json"))
        await confirm(pilot)
        assert lossy.cancellations == 1
        link.client.transport = lossy.inner
        assert balance_fen(app, PROFILE) == START - 1250  # the settlement stands
        await pilot.press("5")
        await settle(pilot)
        assert BALANCED in shown(app)


@slow
async def test_end_of_day_balanced_after_two_payments_and_a_cancellation(
    tmp_path: Path,
) -> None:
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        first = await pay(pilot, "1250")
        await pay(pilot, "800")
        await cancel_by(pilot, first[-6:])
        await confirm(pilot)
        await confirm(pilot)
        await pilot.press("5")
        await settle(pilot)
        view = view_of(app)
        assert view.stage is Stage.RESULT and view.success and view.keep
        assert texts(view) == [
            f"{dt.date.today().isoformat()}  终端 POS-0001",
            "共 1 笔  金额 8.00 元",
            "统筹 0.00  个账 8.00  现金 0.00",
            BALANCED,
            "对账单已打印",
        ]
        assert BALANCED in shown(app)
        (printed,) = sorted((tmp_path / "rc").glob("reconciliation-*.txt"))
        assert stat.S_IMODE(printed.stat().st_mode) == 0o600
        lines = printed.read_text("utf-8").splitlines()
        assert "结果 Result        平账 balanced" in lines
        assert "笔数 Count         1" in lines
        await confirm(pilot)
        assert app.flow is None


@slow
async def test_end_of_day_not_balanced_names_what_the_day_book_misses(tmp_path: Path) -> None:
    app = pos(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        kept = await pay(pilot, "1250")
        lost = await pay(pilot, "800")
        book = daybook_file()
        records = [json.loads(raw) for raw in book.read_text("utf-8").splitlines()]
        assert {r["setl_id"] for r in records} == {kept, lost}
        book.write_text(
            "".join(json.dumps(r) + "\n" for r in records if r["setl_id"] != lost), "utf-8"
        )
        await pilot.press("5")
        await settle(pilot)
        view = view_of(app)
        assert view.stage is Stage.RESULT and not view.success
        text = shown(app)
        for phrase in (
            "共 1 笔  金额 12.50 元",
            UNBALANCED,
            "平台：the host has 2 settlements",
            "本终端无记录：",
            f"  {lost}",
        ):
            assert phrase in text, phrase
        assert kept not in text
        (printed,) = sorted((tmp_path / "rc").glob("reconciliation-*.txt"))
        body = printed.read_text("utf-8")
        assert "不平 NOT balanced" in body and lost in body


@slow
async def test_without_a_host_the_clerks_items_are_absent(tmp_path: Path) -> None:
    app = make_app(make_card(tmp_path, PROFILE), host=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = shown(app)
        assert "3  卡片信息" in text
        assert MENU_CANCEL not in text and MENU_DAY_END not in text
        for key in ("4", "5"):
            await pilot.press(key)
            await settle(pilot)
            assert app.flow is None and app.pending is None
        assert shown(app) == text


@slow
async def test_the_clerks_items_need_no_card(tmp_path: Path) -> None:
    """Without a card, and with one pulled out on the way, both items work."""
    app = pos(tmp_path, receipts=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        setl_id = await pay(pilot, "1250")
        await toggle_card(pilot)  # the card is out
        assert not app.card_present
        await pilot.press("4")
        await settle(pilot)
        await pilot.press(*setl_id[-5:])
        await toggle_card(pilot)  # in again, while the digits are typed: no reading
        await toggle_card(pilot)
        assert view_of(app).stage is Stage.ID_NUMBER
        await pilot.press("enter")
        await settle(pilot)
        assert view_of(app).stage is Stage.CONFIRM_AMOUNT
        await confirm(pilot)
        assert CANCELLED in shown(app)
        await confirm(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert texts(view_of(app))[-1] == BALANCED  # no --receipts: nothing printed
        assert "请取回卡片" not in shown(app)


@slow
async def test_english(tmp_path: Path) -> None:
    card = make_card(tmp_path, PROFILE)
    app = make_app(card, lang="en")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "4  Cancel a settlement" in shown(app) and "5  End of day" in shown(app)
        setl_id = await pay(pilot, "1250")
        await cancel_by(pilot, setl_id[-6:])
        assert "Press Enter to cancel this settlement, Esc to keep it" in shown(app)
        await confirm(pilot)
        assert "Settlement cancelled" in shown(app)
        await confirm(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert "Balanced" in shown(app)
