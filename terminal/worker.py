"""The terminal's core without the TUI: run a flow's command against the reader and the
host (the terminal's `Equipment`, terminal/equipment.py), and hand the answer back to
the flow. No Textual here (Harlequin's rule); the app runs `execute` in a worker thread
and `deliver` on its message, tests call both directly.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cardio.keysource import KeySourceError
from cardio.outlet import Operation, Outcome, Outlet, OutletError, OutletLog
from cardio.pin import PinFormatError
from cardio.protocol import (
    CardCommandError,
    CardInfo,
    CounterfeitCardError,
    NotASocialSecurityCard,
    PinOutcome,
    SocialSecurityCard,
    UncheckableCardError,
)
from cardio.readers.base import Reader
from cardio.readers.errors import (
    CardRemovedError,
    NoCardError,
    NoReaderError,
    NoResponseError,
    NoServiceError,
    ProtocolError,
    ReaderBusyError,
    ReaderError,
    ReaderGoneError,
    SharingViolationError,
)
from cardio.resources import private_folders
from cardio.trace import failure
from host.api import HostError
from host.client import Cancellation, PlatformRefused, Settlement
from terminal.equipment import (
    BUSY_WAIT,
    Equipment,
)
from terminal.flow.base import CardFlow
from terminal.flow.clerk import (
    CLERK_COMMANDS,
    ClerkFlow,
    DayEnd,
    Found,
    reconciliation_file_name,
    reconciliation_text,
)
from terminal.flow.commands import (
    Account,
    CancelSettlement,
    ChangePin,
    Command,
    FindSettlement,
    Presettle,
    ReadCard,
    Reconcile,
    RunOutlet,
    Settle,
    Verify,
)
from terminal.flow.outlet import OutletFlow
from terminal.flow.pharmacy import PharmacyFlow
from terminal.flow.receipt import Receipt
from terminal.flow.view import Stage
from terminal.settlement import NotThrough, Reconciliation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardRead:
    """The card's facts and what the host says of the holder."""

    info: CardInfo
    account: Account | None


class WorkFailed(Exception):
    """An unexpected error in card work; only its type is kept (its details may hold PINs)."""


Result = CardRead | PinOutcome | Outcome | Settlement | Found | Cancellation | DayEnd | Exception
EXPECTED_ERRORS = (
    ReaderError,
    NotASocialSecurityCard,
    CounterfeitCardError,
    UncheckableCardError,
    KeySourceError,
    PinFormatError,
    OutletError,
    CardCommandError,
    HostError,
    NotThrough,
)


def execute(equipment: Equipment, command: Command) -> tuple[Result, bool]:
    """One command; never raises. Returns the result and whether the card is still in."""
    result: Result
    try:
        if isinstance(command, CLERK_COMMANDS):  # the host only: no card
            result = _clerk(equipment, command)
        elif isinstance(command, Settle):  # the host's answer is waited for: money may move
            result = _settle(equipment, command)
        elif isinstance(command, Presettle):  # the host only: the card waits meanwhile
            result = _presettle(equipment, command)
        elif isinstance(command, ReadCard):  # the host is asked after the card: its own time
            info = equipment.slot.call(
                lambda: _read(equipment), deadline=equipment.card_timeout or None
            )
            result = CardRead(info, _account(equipment, info))
        else:
            result = equipment.slot.call(
                lambda: _run(equipment, command), deadline=equipment.card_timeout or None
            )
    except (NoResponseError, ReaderBusyError) as e:
        return e, True  # the reader cannot be asked while a call is stuck on it
    except EXPECTED_ERRORS as e:
        result = e
    except Exception as e:  # never a crash: a traceback's locals could show PIN digits
        log.error("card work failed: %s", failure(e))
        result = WorkFailed(type(e).__name__)
    return result, (_present(equipment.reader) if isinstance(result, Exception) else True)


def _present(reader: Reader) -> bool:
    try:
        return reader.card_present()
    except ReaderError:
        return False


def _read(equipment: Equipment) -> CardInfo:
    equipment.reader.reset()  # a fresh card session for each transaction
    # At the outlet the operation checks the card itself, and logs a refusal (Outlet.run)
    keys = None if equipment.outlet is not None else equipment.keys
    return SocialSecurityCard(equipment.reader).read_info(keys)


def _run(equipment: Equipment, command: Command) -> Result:
    card = SocialSecurityCard(equipment.reader)
    if isinstance(command, RunOutlet):
        return _outlet(equipment).run(command.operation, command.id_number, command.new_pin)
    if isinstance(command, Verify):
        return card.verify(command.pin)
    if isinstance(command, ChangePin):
        return card.change_pin(command.old, command.new)
    raise TypeError(f"not a card command: {type(command).__name__}")


def _account(equipment: Equipment, info: CardInfo) -> Account | None:
    """What the platform says of the card's holder (1101): a lost card, the phone."""
    if equipment.host is None or not info.ssn:
        return None
    try:
        person = equipment.host.person(info.ssn, info.card_number or "")
    except PlatformRefused as e:
        if e.kind == "lost":
            return Account(lost=True)
        raise
    if person is None:
        return Account()
    return Account(lost=False, phone=person.phone, person=person)


def _presettle(equipment: Equipment, command: Presettle) -> Settlement:
    if equipment.host is None:
        raise HostError("this terminal has no settlement host")
    return equipment.host.presettle(command.person, command.amount_fen, command.card_number)


def _settle(equipment: Equipment, command: Settle) -> Settlement:
    """The settlement, only while the card is still there; its receipt when it went through."""
    if equipment.host is None:
        raise HostError("this terminal has no settlement host")
    if not equipment.slot.call(equipment.reader.card_present):
        raise CardRemovedError()  # pulled out after authorisation: nothing is paid
    settlement = equipment.host.settle(command.person, command.amount_fen, command.card_number)
    if equipment.receipts is not None:
        try:
            write_receipt(equipment.receipts, equipment.terminal_id, command, settlement)
        except OSError:  # the money moved: the screen still shows the receipt
            log.exception("the receipt file could not be written")
    return settlement


def _clerk(equipment: Equipment, command: FindSettlement | CancelSettlement | Reconcile) -> Result:
    """The clerk's (terminal/flow/clerk.py): a lookup in the day-book, a cancellation
    (2103, sent once: no answer is reported, never retried), the end of day."""
    link = equipment.host
    if link is None:
        raise HostError("this terminal has no settlement host")
    if isinstance(command, FindSettlement):
        return Found(tuple(link.todays(command.digits)))
    if isinstance(command, CancelSettlement):
        return link.cancel(command.entry)
    reconciliation = link.reconcile()
    printed: bool | None = None
    if equipment.receipts is not None:
        try:
            write_reconciliation(
                equipment.receipts, equipment.terminal_id, reconciliation, link.client.clock()
            )
            printed = True
        except OSError:  # the screen still shows it, and says it was not printed
            log.exception("the reconciliation file could not be written")
            printed = False
    return DayEnd(reconciliation, printed)


def _outlet(equipment: Equipment) -> Outlet:
    setup = equipment.outlet
    if setup is None:
        raise OutletError("this terminal is not a service outlet; start it with --outlet")

    def phone_of(ssn: str) -> str | None:
        if equipment.host is None:
            return None
        try:
            person = equipment.host.person(ssn, "")
        except HostError:  # S15's phone rule is checked without it
            return None
        return person.phone if person else None

    return Outlet(
        equipment.reader,
        setup.keys,
        operator=setup.operator,
        log=OutletLog(setup.log),
        phone_of=phone_of,
    )


def deliver(
    flow: CardFlow,
    result: Result,
    present: bool = True,
) -> Command | None:
    """Hand a command's result to the flow; returns the flow's next command, if any.
    Every failure becomes a catalogue key: the screen never shows an exception's text."""
    if isinstance(flow, ClerkFlow):  # the host's answer (or none) to the clerk's command
        if isinstance(result, HostError):
            log.warning("clerk's command, the host: %s", result)
        elif isinstance(result, Exception):
            log.warning("clerk's command failed: %s", failure(result))
        flow.answer(result)
        return None
    if isinstance(result, CardRead):
        return flow.card_read(result.info, result.account)
    if isinstance(result, PinOutcome) and isinstance(flow, PharmacyFlow):
        return flow.card_answer(result)
    if isinstance(result, Settlement) and isinstance(flow, PharmacyFlow):
        if flow.view.stage is Stage.SETTLING:
            flow.settled(result)
        else:
            return flow.presettled(result)
    elif isinstance(result, NotThrough) and isinstance(flow, PharmacyFlow):
        flow.not_through(result.confirmed)
    elif isinstance(result, PlatformRefused) and isinstance(flow, PharmacyFlow):
        log.warning("settlement host refused: %s", result)
        flow.refused(result.kind, _balance_of(result))
    elif isinstance(result, HostError) and isinstance(flow, PharmacyFlow):
        log.warning("settlement host: %s", result)
        if flow.view.stage is Stage.SETTLING:
            flow.settle_failed()
        else:
            flow.host_unavailable()
    elif isinstance(result, Outcome) and isinstance(flow, OutletFlow):
        flow.outlet_done(result)
    elif isinstance(result, OutletError) and isinstance(flow, OutletFlow):
        log.warning("outlet: %s", result)
        flow.outlet_failed(result)
    elif isinstance(result, NotASocialSecurityCard):
        flow.not_a_card()
    elif isinstance(result, CounterfeitCardError):
        log.warning("a card failed the authenticity check")
        flow.counterfeit()
    elif (
        isinstance(result, CardRemovedError)
        and isinstance(flow, PharmacyFlow)
        and flow.view.stage is Stage.SETTLING
    ):
        flow.removed_before_debit()
    elif (
        isinstance(result, ReaderError)
        and isinstance(flow, PharmacyFlow)
        and flow.view.stage is Stage.SETTLING
    ):
        flow.settle_card_failed(reader_error_key(result))
    elif isinstance(result, ReaderError) and not present:
        flow.removed()
    elif isinstance(result, ReaderError):
        flow.card_failed(reader_error_key(result))
    elif isinstance(result, (CardCommandError, PinFormatError, UncheckableCardError)):
        flow.card_failed("card_unreadable")  # rule 1
    elif isinstance(result, KeySourceError):
        log.warning("the PSAM: %s", result)
        flow.card_failed("psam_failed")  # the reader API's -2201/-2202/-27272
    else:
        flow.card_failed("work_failed")
    return None


def reader_error_key(error: ReaderError) -> str:
    """The catalogue key of a reader error, so the screen speaks the terminal's language."""
    for cls in type(error).__mro__:
        key = READER_ERROR_KEYS.get(cls)
        if key is not None:
            return key
    return "reader_failed"


READER_ERROR_KEYS: dict[type, str] = {
    NoServiceError: "reader_no_service",
    NoReaderError: "reader_none",
    NoCardError: "reader_no_card",
    CardRemovedError: "reader_removed",
    ReaderGoneError: "reader_gone",
    SharingViolationError: "reader_shared",
    ProtocolError: "reader_protocol",
    NoResponseError: "reader_no_response",
    ReaderBusyError: "reader_busy",
}


def _balance_of(refusal: PlatformRefused) -> int | None:
    """The balance a refusal for a short account names (output.setlinfo.balc)."""
    from host.wire import WireError, fen_of

    info = refusal.output.get("setlinfo")
    if not isinstance(info, dict) or "balc" not in info:
        return None
    try:
        return fen_of(info["balc"], "balc")
    except WireError:
        return None


def write_receipt(folder: Path, terminal_id: str, command: Settle, settlement: Settlement) -> Path:
    """The receipt as a text file (terminal/flow/receipt.py): masked, never a PIN."""
    receipt = Receipt.of(terminal_id, settlement, command.card_number, command.holder_name)
    path = folder / receipt.file_name()
    write_private(path, receipt.text().encode("utf-8"))
    return path


def write_reconciliation(
    folder: Path, terminal_id: str, reconciliation: Reconciliation, when: dt.datetime
) -> Path:
    """The end of day as a text file beside the receipts (0600): never overwritten; a
    second one in the same second gets a number."""
    data = reconciliation_text(terminal_id, reconciliation, when).encode("utf-8")
    name = reconciliation_file_name(reconciliation, when)
    for n in range(1, 100):
        path = folder / (name if n == 1 else name.replace(".txt", f"-{n}.txt"))
        try:
            write_private(path, data)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(folder / name)


def write_private(path: Path, data: bytes) -> None:
    """A new file only its owner can read (names and card numbers are personal data), in
    a folder made 0700 if it is new; never through a symlink planted at its name."""
    private_folders(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


__all__ = [
    "BUSY_WAIT",
    "CardRead",
    "Operation",
    "WorkFailed",
    "deliver",
    "execute",
    "reader_error_key",
    "write_receipt",
    "write_reconciliation",
]
