"""The clerk's two menu items on the pharmacy's pad (not at the outlet, not without a
host): 4 撤销结算, a cancellation (2103) of one of today's settlements of this
terminal, found by the last digits of its id as printed on the receipt; 5 日结对账, the
end of day (3201, and 3202 naming what differs when the totals do not agree). No card
is needed for either, and none of the holder's personal data is shown.

Stages (the stage diagram's words, terminal/flow/__init__.py):

Cancel a settlement (menu 4: CancelFlow)
    ID_NUMBER       --Enter, fewer than 4 digits------------> ID_NUMBER (setl_digits_short)
    ID_NUMBER       --Enter, 4 digits or more---------------> WORKING [FindSettlement]
    WORKING         --none, or more than one of today's-----> ID_NUMBER (setl_none, setl_many)
    WORKING         --exactly one--------------------------> CONFIRM_AMOUNT (its id, time, amount)
    CONFIRM_AMOUNT  --Enter---------------------------------> WORKING [CancelSettlement]
    CONFIRM_AMOUNT  --Escape--------------------------------> RESULT, brief (nothing cancelled)
    WORKING         --cancelled, refused, no host, unknown---> RESULT

End of day (menu 5: DayEndFlow)
    WORKING [Reconcile] --the platform's word, or none------> RESULT

The card plays no part: inserting or pulling one changes nothing here. A cancellation
whose answer never came is never sent again on its own (a new message id would be a
new request): like a settlement, it is reversed (2601 of the 2103, terminal/settlement.py),
so the settlement stands and the clerk may cancel it again. Only a terminal failure after
sending leaves the outcome unknown: the clerk is told to check with 日结对账.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cardio.protocol import CardInfo
from host.api import format_fen
from host.client import Cancellation, PlatformRefused
from host.daybook import Entry
from host.transport import HostUnreachable
from terminal.flow.base import CardFlow
from terminal.flow.commands import Account, CancelSettlement, FindSettlement, Reconcile
from terminal.flow.receipt import split_line
from terminal.flow.view import Line, Stage, Tone, View, line
from terminal.settlement import NotThrough, Reconciliation

MIN_DIGITS = 4  # the end of a settlement id the clerk types, at the least
# The settlements that differ, on screen: this many rows of headings and ids at most
# (80x24 leaves the panel 18 rows), then "... and N more"; the printed file names all.
SHOWN_ROWS = 5
DESCRIPTION_LIMIT = 100  # the platform's description, on screen: three rows at most

# The commands of this module: they need the host, never the card.
CLERK_COMMANDS = (FindSettlement, CancelSettlement, Reconcile)


class Clerk(StrEnum):
    CANCEL = "cancel-settlement"
    DAY_END = "day-end"


MENU = {Clerk.CANCEL: "menu_setl_cancel", Clerk.DAY_END: "menu_day_end"}
TITLES = {Clerk.CANCEL: "setl_cancel", Clerk.DAY_END: "day_end"}

# PlatformRefused.kind of a 2103 -> what the clerk reads; other kinds: setl_refused
REFUSALS = {
    "not_settled": "setl_not_settled",
    "not_today": "setl_not_today",
    "not_found": "setl_not_found",
    "sign_in": "setl_sign_in",
}

# host/platform.py's memo of a 3202 row -> the heading of those settlements; another
# memo is shown as the platform sent it (day_end_other)
MEMOS = {
    "not settled at the host": "day_end_not_at_host",
    "not in the institution's details": "day_end_not_in_book",
    "amounts differ": "day_end_amounts",
}


@dataclass(frozen=True)
class Found:
    """FindSettlement's answer: today's standing settlements ending in the digits."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class DayEnd:
    """Reconcile's answer, and whether it was printed (--receipts): None without a folder."""

    reconciliation: Reconciliation
    printed: bool | None = None


class ClerkFlow(CardFlow):
    """A clerk's transaction: the host only, no card."""

    def card_read(self, info: CardInfo, account: Account | None = None) -> None:
        return None  # never asked for

    def card_inserted(self) -> None:
        return None

    def removed(self) -> bool:
        """A card pulled out (or put in) changes nothing in a clerk's transaction."""
        return False

    def answer(self, result: object) -> None:
        """The worker's answer to this flow's command (terminal/worker.py deliver)."""
        raise NotImplementedError


class CancelFlow(ClerkFlow):
    """撤销结算: the id's last digits, the one settlement they name, 确认, then 2103."""

    title = TITLES[Clerk.CANCEL]

    def __init__(self) -> None:
        self.info: CardInfo | None = None
        self.entry: Entry | None = None  # the settlement found, until cancelled
        self.digits = ""  # what was looked up last
        self.view = View(Stage.ID_NUMBER, (line("enter_setl_digits"),))

    def entered(self, text: str) -> FindSettlement | CancelSettlement | None:
        stage = self.view.stage
        if stage is Stage.ID_NUMBER:
            if len(text) < MIN_DIGITS or not (text.isascii() and text.isdigit()):
                self._again(line("setl_digits_short", Tone.ERROR))
                return None
            self.digits = text
            self._ask(Stage.WORKING, line("setl_looking"))
            return FindSettlement(text)
        if stage is Stage.CONFIRM_AMOUNT and self.entry is not None:
            self._ask(Stage.WORKING, line("setl_cancelling"), *self._entry_lines(self.entry))
            return CancelSettlement(self.entry)
        return None

    def _again(self, *problem: Line) -> None:
        self.entry = None
        self._ask(Stage.ID_NUMBER, *problem, line("enter_setl_digits"))

    @staticmethod
    def _entry_lines(entry: Entry) -> tuple[Line, ...]:
        return (
            line("receipt_setl", setl_id=entry.setl_id),
            line("setl_time", time=entry.time[:19].replace("T", " ")),
            line("amount", amount=format_fen(entry.medfee_fen)),
            split_line(entry.fund_fen, entry.acct_fen, entry.cash_fen),
        )

    def answer(self, result: object) -> None:
        entry = self.entry
        if isinstance(result, Found):
            self.found(result.entries)
        elif entry is None:
            self._result(False, "daybook_failed")  # the lookup failed: nothing was sent
        elif isinstance(result, Cancellation):
            self.cancelled(entry, result)
        elif isinstance(result, PlatformRefused):
            key = REFUSALS.get(result.kind)
            refusal = (
                line(key, Tone.ERROR)
                if key
                else line("setl_refused", Tone.ERROR, kind=result.kind or "-")
            )
            self._result(False, refusal, line("receipt_setl", setl_id=entry.setl_id))
        elif isinstance(result, HostUnreachable):
            self._result(False, "setl_unreachable", line("receipt_setl", setl_id=entry.setl_id))
        elif isinstance(result, NotThrough):
            # No answer: the cancellation itself was reversed (or will be), as a settlement
            # without an answer is (terminal/settlement.py): the settlement stands.
            key = "setl_cancel_reversed" if result.confirmed else "setl_cancel_pending"
            self._result(
                False,
                line(key, Tone.ERROR),
                *self._entry_lines(entry),
                line("setl_cancel_again"),
                keep=True,
            )
        else:
            # No answer (or an unusable one, or the terminal failed after sending): the
            # platform may have cancelled it. Never sent again on its own.
            self._result(
                False,
                line("setl_unknown", Tone.ERROR),
                *self._entry_lines(entry),
                line("setl_unknown_check"),
                keep=True,
            )

    def found(self, entries: tuple[Entry, ...]) -> None:
        digits = self.digits
        if not entries:
            self._again(line("setl_none", Tone.ERROR, digits=digits))
        elif len(entries) > 1:
            self._again(line("setl_many", Tone.ERROR, n=len(entries), digits=digits))
        else:
            self.entry = entries[0]
            self._ask(Stage.CONFIRM_AMOUNT, *self._entry_lines(entries[0]), line("setl_confirm"))

    def cancelled(self, entry: Entry, cancellation: Cancellation) -> None:
        lines = [
            line("setl_cancelled", Tone.OK),
            line("setl_cancel_id", cancel_id=cancellation.setl_id),
            line("setl_of", setl_id=entry.setl_id),
            line("amount", amount=format_fen(entry.medfee_fen)),
            line("setl_refund_account", amount=format_fen(entry.acct_fen)),
        ]
        if entry.cash_fen:
            lines.append(line("setl_refund_cash", amount=format_fen(entry.cash_fen)))
        lines.append(line("balance_after", amount=format_fen(cancellation.balance_after_fen)))
        self._result(True, *lines, keep=True)  # money moved: only 确认 closes it

    def ended(self, key: str) -> None:
        """Escape or the clerk's time ran out: nothing was sent, and the screen says so in
        words that cannot be read as "the settlement was cancelled"."""
        lines: tuple[Line, ...] = (line("setl_nothing_cancelled", Tone.ERROR),)
        if key != "cancelled":
            lines = (line(key, Tone.ERROR), *lines)
        self.entry = None
        self.view = View(Stage.RESULT, lines, None, success=False, brief=True)


class DayEndFlow(ClerkFlow):
    """日结对账: this terminal's day-book against the platform, at once."""

    title = TITLES[Clerk.DAY_END]

    def __init__(self, terminal_id: str = "POS-0001") -> None:
        self.info: CardInfo | None = None
        self.terminal_id = terminal_id
        self.view = View(Stage.WORKING, (line("day_end_working"),))

    def start(self) -> Reconcile:
        return Reconcile()

    def entered(self, text: str) -> None:
        return None

    def answer(self, result: object) -> None:
        if isinstance(result, DayEnd):
            self.reconciled(result)
        elif isinstance(result, PlatformRefused):
            self._result(False, line("day_end_refused", Tone.ERROR, kind=result.kind or "-"))
        elif isinstance(result, HostUnreachable):
            self._result(False, "day_end_unreachable")
        else:  # no answer, or the terminal failed: a reconciliation changes nothing
            self._result(False, "day_end_failed")

    def reconciled(self, day_end: DayEnd) -> None:
        r = day_end.reconciliation
        t = r.totals
        lines = [
            line("day_end_of", day=r.day.isoformat(), terminal=self.terminal_id),
            line("day_end_totals", count=t.count, total=format_fen(t.medfee_fen)),
            split_line(t.fund_fen, t.acct_fen, t.cash_fen),
        ]
        if r.balanced:
            lines.append(line("day_end_balanced", Tone.OK))
        else:
            lines.append(line("day_end_unbalanced", Tone.ERROR))
            lines.append(line("day_end_platform", description=_short(r.description)))
            lines.extend(difference_lines(r.differences))
        if day_end.printed is True:
            lines.append(line("day_end_printed"))
        elif day_end.printed is False:
            lines.append(line("day_end_print_failed", Tone.ERROR))
        self._result(r.balanced, *lines, keep=True)  # the day's record: only 确认 closes it


def difference_lines(rows: list[dict[str, Any]]) -> list[Line]:
    """The settlements that differ (3202's rows), under a heading for each reason, in the
    clerk's words when the platform's memo is one of ours: SHOWN_ROWS rows at most, then
    how many more."""
    order = list(MEMOS)

    def reason(row: dict[str, Any]) -> tuple[int, str]:
        memo = _cell(row, "memo")
        return (order.index(memo), "") if memo in MEMOS else (len(order), memo)

    lines: list[Line] = []
    heading: Line | None = None
    shown = 0
    for row in sorted(rows, key=reason):
        memo = _cell(row, "memo")
        key = MEMOS.get(memo)
        this = line(key) if key else line("day_end_other", memo=memo)
        new = this != heading
        if len(lines) + (2 if new else 1) > SHOWN_ROWS:
            break
        if new:
            lines.append(this)
            heading = this
        lines.append(line("day_end_id", setl_id=_cell(row, "setl_id")))
        shown += 1
    if shown < len(rows):
        lines.append(line("day_end_more", n=len(rows) - shown))
    return lines


def _short(description: str) -> str:
    if not description:
        return "-"
    if len(description) <= DESCRIPTION_LIMIT:
        return description
    return description[: DESCRIPTION_LIMIT - 3] + "..."


def reconciliation_text(terminal_id: str, r: Reconciliation, when: dt.datetime) -> str:
    """The reconciliation as --receipts files it ("printed"), in both languages: totals,
    the platform's word, every settlement that differs. No person's number or name."""
    t = r.totals
    lines = [
        "社会保障卡 日结对账单 / Social security card end of day",
        f"终端 Terminal      {terminal_id}",
        f"日期 Day           {r.day.isoformat()}",
        f"打印 Printed       {when:%Y-%m-%d %H:%M:%S}",
        f"笔数 Count         {t.count}",
        f"金额 Total         {format_fen(t.medfee_fen)} 元",
        f"统筹 Pooled fund   {format_fen(t.fund_fen)} 元",
        f"个账 Account       {format_fen(t.acct_fen)} 元",
        f"现金 Cash          {format_fen(t.cash_fen)} 元",
        "结果 Result        " + ("平账 balanced" if r.balanced else "不平 NOT balanced"),
        f"平台 Platform      {r.description or '-'}",
    ]
    if r.differences:
        lines.append(f"不符 Differing     {len(r.differences)}")
    for row in r.differences:
        lines.append(
            f"  {_cell(row, 'setl_id')}  {_cell(row, 'medfee_sumamt')}  {_cell(row, 'memo')}"
        )
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    return "-" if value is None or value == "" else str(value)


def reconciliation_file_name(r: Reconciliation, when: dt.datetime) -> str:
    return f"reconciliation-{r.day.isoformat()}-{when:%H%M%S}.txt"
