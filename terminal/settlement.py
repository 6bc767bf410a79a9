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
from typing import Any

from host.client import Cancellation, InsuranceClient, Person, PlatformRefused, Settlement
from host.daybook import DayBook, Entry, Totals
from host.transport import HostUnreachable, NoAnswer
from terminal.journal import Journal, Pending

log = logging.getLogger(__name__)

# Seconds between the tries of a reversal: quick at first (a lost answer on a healthy
# host), then patient; about a minute in all before the holder is told and the terminal
# goes on trying at its next payment and its next start.
REVERSAL_WAITS = (0.0, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


class NotThrough(Exception):
    """No answer came to the settlement: it was reversed (`confirmed`), or the reversal
    is still pending and will be sent again; either way the holder did not pay."""

    def __init__(self, confirmed: bool) -> None:
        super().__init__("reversed" if confirmed else "reversal pending")
        self.confirmed = confirmed


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
        self.client.signed_in()
        try:
            return self._settle_once(person, amount_fen, card_number)
        except PlatformRefused as e:
            if e.kind != "sign_in":
                raise
        self.client.sign_in()  # the host forgot our sign-in: refused, nothing moved
        return self._settle_once(person, amount_fen, card_number)

    def _settle_once(self, person: Person, amount_fen: int, card_number: str) -> Settlement:
        msgid = self.client.new_msgid()
        pending = Pending(msgid, person.psn_no)
        self.journal.add(pending)
        try:
            settlement = self.client.settle(person, amount_fen, card_number, msgid)
        except NoAnswer:
            log.warning("no answer to settlement %s: reversing it", msgid)
            raise NotThrough(self._reverse(pending)) from None
        except (HostUnreachable, PlatformRefused):
            self.journal.remove(msgid)  # it never arrived, or it was refused: nothing moved
            raise
        self.daybook.settled(self.today(), settlement)  # before the pending reversal goes
        self.journal.remove(msgid)
        return settlement

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
            except (NoAnswer, HostUnreachable):
                continue
            except PlatformRefused as e:
                if e.kind == "host_error":
                    continue
                # Refused for good (a message the host cannot reverse): a person must look.
                log.error("reversal of %s refused: %s", pending.msgid, e)
                return False
            self.daybook.reversed(self.today(), pending.msgid)  # if it was recorded
            self.journal.remove(pending.msgid)
            log.info("settlement %s reversed", pending.msgid)
            return True
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
        cancellation = self.client.cancel(entry.setl_id, entry.mdtrt_id, entry.psn_no)
        self.daybook.cancelled(self.today(), entry.setl_id)
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
