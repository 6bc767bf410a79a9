"""The counter's link to the medical-insurance platform: the person (1101), the pre-
settlement (2101), the settlement (2102) under a pending reversal, the reversal (2601)
of a settlement whose answer never came, and the recovery of those left by a crash.

The order is the card's anti-tearing order: the pending reversal is on disk before the
settlement leaves (terminal/journal.py), and it goes only once the answer is recorded
or the host has confirmed the reversal. No textual here.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from host.api import HostError
from host.client import Cancellation, InsuranceClient, Person, PlatformRefused, Settlement
from host.daybook import DayBook, Entry, Totals
from host.transport import HostUnreachable
from terminal.journal import Journal, Pending

log = logging.getLogger(__name__)
T = TypeVar("T")
CANCEL = "2103"

# Seconds between the tries of a reversal: quick at first (a lost answer on a healthy
# host), then patient; about a minute in all before the holder is told and the terminal
# goes on trying at its next payment and its next start.
REVERSAL_WAITS = (0.0, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


# The refusals a reversal meets for good; any other (a host's passing fault, a refusal
# without a kind) is tried again.
FINAL_REFUSALS = frozenset({"bad_request", "msgid_reused", "insufficient", "host_data"})


class NotThrough(Exception):
    """No answer came to the settlement: it was reversed (`confirmed`), or the reversal
    is still pending and will be sent again; either way the holder did not pay."""

    def __init__(self, confirmed: bool, msgid: str = "") -> None:
        super().__init__(f"{msgid} {'reversed' if confirmed else 'reversal pending'}")
        self.confirmed = confirmed
        self.msgid = msgid  # the message without an answer


@dataclass(frozen=True)
class Reconciliation:
    """The end of day: this terminal's totals, the platform's word on them (3201) and,
    when they disagree, the settlements that differ (3202)."""

    day: dt.date
    totals: Totals
    balanced: bool
    description: str
    host_totals: dict[str, Any]
    differences: list[dict[str, Any]]


@dataclass
class PlatformLink:
    client: InsuranceClient
    journal: Journal
    daybook: DayBook
    waits: tuple[float, ...] = REVERSAL_WAITS
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    # --- before the PIN -----------------------------------------------------------------

    def person(self, ssn: str, card_number: str) -> Person | None:
        """The insured person of this card; None when the platform knows none. A card
        reported lost is PlatformRefused with kind "lost"."""
        try:
            return self.client.person(ssn, card_number)
        except PlatformRefused as e:
            if e.kind == "unknown_person":
                return None
            raise

    def presettle(self, person: Person, amount_fen: int, card_number: str) -> Settlement:
        self.recover()
        return self.client.presettle(person, amount_fen, card_number)

    # --- the settlement -------------------------------------------------------------------

    def settle(self, person: Person, amount_fen: int, card_number: str) -> Settlement:
        return self._signed(lambda: self._settle_once(person, amount_fen, card_number))

    def _signed(self, once: Callable[[], T]) -> T:
        """Once signed in for the day; again, once, when the host has forgotten the
        sign-in (refused: nothing moved)."""
        self.client.signed_in()
        try:
            return once()
        except PlatformRefused as e:
            if e.kind != "sign_in":
                raise
        self.client.sign_in()
        return once()

    def _settle_once(self, person: Person, amount_fen: int, card_number: str) -> Settlement:
        msgid = self.client.new_msgid()
        pending = Pending(msgid, person.psn_no)
        settlement = self._pending(
            pending, lambda: self.client.settle(person, amount_fen, card_number, msgid)
        )
        self.daybook.settled(self.today(), settlement)  # before the pending reversal goes
        self.journal.remove(msgid)
        return settlement

    def _pending(self, pending: Pending, send: Callable[[], T]) -> T:
        """`send()` with its reversal written down first; the pending file stays for the
        caller to remove once the answer is recorded."""
        self.journal.add(pending)
        try:
            return send()
        except (HostUnreachable, PlatformRefused):
            self.journal.remove(pending.msgid)  # never arrived, or refused: nothing moved
            raise
        except HostError:  # NoAnswer, or an answer that cannot be used: it may have gone
            log.warning("no usable answer to %s %s: reversing it", pending.infno, pending.msgid)
            raise NotThrough(self._reverse(pending), pending.msgid) from None

    def today(self) -> dt.date:
        return self.client.clock().date()

    # --- reversals -------------------------------------------------------------------------

    def _reverse(self, pending: Pending) -> bool:
        """2601 until the host confirms it (True), or the waits run out (False: it stays
        in the journal for the next try)."""
        msgid = self.client.new_msgid()  # one reversal, the same message on every try
        for wait in self.waits:
            self.sleep(wait)
            try:
                self.client.call(
                    "2601",
                    {
                        "data": {
                            "psn_no": pending.psn_no,
                            "omsgid": pending.msgid,
                            "oinfno": pending.infno,
                        }
                    },
                    msgid,
                )
            except PlatformRefused as e:
                if e.kind not in FINAL_REFUSALS:
                    continue  # a passing fault of the host's: the same reversal again
                # Refused for good (a message the host cannot reverse): a person must look.
                log.error("reversal of %s refused: %s", pending.msgid, e)
                self.journal.release(pending.msgid)
                return False
            except HostError:  # no answer, unreachable, an answer that cannot be used
                continue
            if pending.infno == CANCEL:
                self.daybook.restored(self.today(), pending.setl_id)  # if it was recorded
            else:
                self.daybook.reversed(self.today(), pending.msgid)  # if it was recorded
            self.journal.remove(pending.msgid)
            log.info("settlement %s reversed", pending.msgid)
            return True
        self.journal.release(pending.msgid)  # recover() sends it again later
        return False

    def recover(self) -> int:
        """Reverse what an earlier run left pending; how many are still pending."""
        left = 0
        for pending in self.journal.pending():
            if not self._reverse_now(pending):
                left += 1
        return left

    def _reverse_now(self, pending: Pending) -> bool:
        waits, self.waits = self.waits, (0.0,)
        try:
            return self._reverse(pending)
        finally:
            self.waits = waits

    # --- the clerk's: a cancellation, the end of day -----------------------------------------

    def todays(self, digits: str) -> list[Entry]:
        """Today's standing settlements of this terminal whose id ends with `digits`."""
        return self.daybook.find(self.today(), digits)

    def cancel(self, entry: Entry) -> Cancellation:
        """2103 under a pending reversal, like a settlement: no answer, and the cancellation
        is reversed (the settlement stands, as the day-book says)."""
        return self._signed(lambda: self._cancel_once(entry))

    def _cancel_once(self, entry: Entry) -> Cancellation:
        msgid = self.client.new_msgid()
        pending = Pending(msgid, entry.psn_no, CANCEL, entry.setl_id)
        cancellation = self._pending(
            pending,
            lambda: self.client.cancel(entry.setl_id, entry.mdtrt_id, entry.psn_no, msgid),
        )
        self.daybook.cancelled(self.today(), entry.setl_id)
        self.journal.remove(msgid)
        return cancellation

    def reconcile(self, day: dt.date | None = None) -> Reconciliation:
        day = day or self.today()
        self.recover()
        totals = self.daybook.totals(day)
        statement = self.client.totals(
            day, totals.medfee_fen, totals.fund_fen, totals.acct_fen, totals.count
        )
        differences: list[dict[str, Any]] = []
        if not statement.balanced:
            differences = self.client.details(day, self.daybook.rows(day))
        return Reconciliation(
            day,
            totals,
            statement.balanced,
            statement.description,
            statement.host_totals,
            differences,
        )
