"""The terminal's core without the TUI: run a flow's command against the reader and the
host, and hand the answer back to the flow. No Textual here (Harlequin's rule); the app
runs `execute` in a worker thread and `deliver` on its message, tests call both directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cardio import identity
from cardio.outlet import Operation, Outcome, Outlet, OutletError, OutletLog
from cardio.pin import PinFormatError
from cardio.protocol import (
    CardCommandError,
    CardInfo,
    NotASocialSecurityCard,
    PinOutcome,
    SocialSecurityCard,
)
from cardio.readers.base import Reader
from cardio.readers.errors import CardRemovedError, ReaderError
from cardio.trace import failure
from host.api import Debit, HostError, SettlementHost, format_fen
from terminal.flow import Account, Command, Flow, ReadCard, Settle, Stage, Verify
from terminal.outlet_flow import OutletFlow, RunOutlet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutletSetup:
    """`--outlet`: the service outlet's operations instead of the pharmacy's."""

    master_key: bytes = field(repr=False)
    operator: str
    log: Path


@dataclass(frozen=True)
class Desk:
    """What commands run against."""

    reader: Reader
    host: SettlementHost | None = None  # None: payments end at the card's authorisation
    terminal_id: str = "POS-0001"
    receipts: Path | None = None
    outlet: OutletSetup | None = None


@dataclass(frozen=True)
class CardRead:
    """The card's facts and what the host says of the holder."""

    info: CardInfo
    account: Account | None


class WorkFailed(Exception):
    """An unexpected error in card work; only its type is kept (its details may hold PINs)."""


Result = CardRead | PinOutcome | Outcome | Debit | Exception
EXPECTED_ERRORS = (ReaderError, NotASocialSecurityCard, PinFormatError, OutletError,
                   CardCommandError, HostError)


def execute(desk: Desk, command: Command | RunOutlet) -> tuple[Result, bool]:
    """One command; never raises. Returns the result and whether the card is still in."""
    result: Result
    try:
        result = _run(desk, command)
    except EXPECTED_ERRORS as e:
        result = e
    except Exception as e:  # never a crash: a traceback's locals could show PIN digits
        log.error("card work failed: %s", failure(e))
        result = WorkFailed(type(e).__name__)
    return result, (_present(desk.reader) if isinstance(result, Exception) else True)


def _present(reader: Reader) -> bool:
    try:
        return reader.card_present()
    except ReaderError:
        return False


def _run(desk: Desk, command: Command | RunOutlet) -> Result:
    card = SocialSecurityCard(desk.reader)
    if isinstance(command, Settle):
        return _settle(desk, command)
    if isinstance(command, RunOutlet):
        return _outlet(desk).run(command.operation, command.id_number, command.new_pin)
    if isinstance(command, ReadCard):
        desk.reader.reset()  # a fresh card session for each transaction
        info = card.read_info()
        return CardRead(info, _account(desk, info))
    if isinstance(command, Verify):
        return card.verify(command.pin)
    return card.change_pin(command.old, command.new)


def _account(desk: Desk, info: CardInfo) -> Account | None:
    if desk.host is None or not info.ssn:
        return None
    holder = desk.host.holder(info.ssn)
    return Account(lost=holder.lost, phone=holder.phone) if holder else Account()


def _settle(desk: Desk, command: Settle) -> Debit:
    """The debit, only while the card is still there; its receipt when it went through."""
    if desk.host is None:
        raise HostError("this terminal has no settlement host")
    if not desk.reader.card_present():
        raise CardRemovedError()  # pulled out after authorisation: nothing is debited
    debit = desk.host.debit(command.txn_id, desk.terminal_id, command.card_number,
                            command.ssn, command.amount_fen)
    if debit.ok and desk.receipts is not None:
        try:
            write_receipt(desk.receipts, desk.terminal_id, command, debit)
        except OSError:  # the money moved: the screen still shows the receipt
            log.exception("the receipt file could not be written")
    return debit


def _outlet(desk: Desk) -> Outlet:
    setup = desk.outlet
    if setup is None:
        raise OutletError("this terminal is not a service outlet; start it with --outlet")

    def phone_of(ssn: str) -> str | None:
        holder = desk.host.holder(ssn) if desk.host is not None else None
        return holder.phone if holder else None

    return Outlet(desk.reader, setup.master_key, operator=setup.operator,
                  log=OutletLog(setup.log), phone_of=phone_of)


def deliver(
    flow: Flow | OutletFlow,
    result: Result,
    present: bool = True,
    describe: Callable[[ReaderError], str] = str,
) -> Command | RunOutlet | None:
    """Hand a command's result to the flow; returns the flow's next command, if any."""
    if isinstance(result, CardRead):
        return flow.card_read(result.info, result.account)
    if isinstance(result, PinOutcome) and isinstance(flow, Flow):
        return flow.card_answer(result)
    if isinstance(result, Debit) and isinstance(flow, Flow):
        flow.settled(result)
    elif isinstance(result, HostError) and isinstance(flow, Flow):
        if flow.view.stage is Stage.SETTLING:
            flow.settle_failed(str(result))
        else:
            flow.host_unavailable(str(result))
    elif isinstance(result, Outcome) and isinstance(flow, OutletFlow):
        flow.outlet_done(result)
    elif isinstance(result, OutletError) and isinstance(flow, OutletFlow):
        flow.outlet_failed(result)
    elif isinstance(result, NotASocialSecurityCard):
        flow.not_a_card()
    elif (isinstance(result, CardRemovedError) and isinstance(flow, Flow)
          and flow.view.stage is Stage.SETTLING):
        flow.removed_before_debit()
    elif isinstance(result, ReaderError) and not present:
        flow.removed()
    elif isinstance(result, ReaderError):
        flow.card_failed(describe(result))
    else:
        flow.card_failed(str(result))
    return None


def write_receipt(folder: Path, terminal_id: str, command: Settle, debit: Debit) -> Path:
    """A receipt as a text file: masked card and name, never a PIN."""
    name = identity.mask_name(command.holder_name) if command.holder_name else "-"
    lines = [
        "社会保障卡 消费凭条 / Social security card payment receipt",
        f"终端 Terminal      {terminal_id}",
        f"时间 Time          {debit.time}",
        f"交易号 Transaction {command.txn_id}",
        f"卡号 Card          {identity.mask_card_number(command.card_number)}",
        f"姓名 Name          {name}",
        f"金额 Amount        {format_fen(debit.amount_fen)} 元",
        f"余额 Balance       {format_fen(debit.balance_after_fen or 0)} 元",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"receipt-{debit.time[:19].replace(':', '')}-{command.txn_id[:8]}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = ["CardRead", "Desk", "Operation", "OutletSetup", "WorkFailed", "deliver", "execute",
           "write_receipt"]
