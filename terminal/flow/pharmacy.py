"""The pharmacy's transactions on the pad: a payment, a PIN change, the card's
information (the stage diagram is in terminal/flow/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from cardio.pin import PinFormatError, check_format
from cardio.protocol import CardInfo, PinOutcome
from host.api import format_fen
from host.client import Settlement
from terminal import rules
from terminal.flow.base import CardFlow
from terminal.flow.commands import (
    Account,
    ChangePin,
    Command,
    Presettle,
    ReadCard,
    Settle,
    Verify,
)
from terminal.flow.receipt import Receipt, split_line
from terminal.flow.view import MAX_AMOUNT_DIGITS, Line, Stage, Tone, View, line
from terminal.rules import CardFacts, Decision, Settings


class Purpose(StrEnum):
    PAY = "pay"
    CHANGE = "change"
    INFO = "info"


TITLES = {Purpose.PAY: "pay", Purpose.CHANGE: "change", Purpose.INFO: "info"}


def facts_of(info: CardInfo, lost: bool = False) -> CardFacts:
    s = info.status
    return CardFacts(
        category=info.category,
        scheme=info.scheme,
        life_cycle=s.life_cycle,
        pin_state=s.pin_state,
        tries_left=s.tries_left,
        try_limit=s.try_limit,
        birth_date=info.birth_date,
        lost=lost,
    )


_REFUSALS: dict[Decision, tuple[str, ...]] = {
    Decision.LOST: ("lost",),
    Decision.NOT_ACTIVATED: ("not_activated",),
    Decision.BLOCKED: ("locked", "go_outlet"),
}


class PharmacyFlow(CardFlow):
    """One transaction: payment, PIN change or card information."""

    def __init__(
        self,
        purpose: Purpose,
        settings: Settings,
        *,
        phone_of: Callable[[str], str | None] = lambda ssn: None,
        settles: bool = False,
        terminal_id: str = "POS-0001",
    ) -> None:
        self.purpose = purpose
        self.title = TITLES[purpose]
        self.settings = settings
        self._phone_of = phone_of
        self.settles = settles  # a host settles the payment; else authorising ends it
        self.terminal_id = terminal_id
        self.account: Account | None = None
        self.split: Settlement | None = None  # the pre-settlement (2101), shown before the PIN
        self._after_split: Decision | None = None  # what the card rules said, until then
        self._before: tuple[Line, ...] = ()
        self.amount_fen: int | None = None
        self.info: CardInfo | None = None
        self._forced = False
        self._current: str | None = None  # the holder's current PIN, until the change is sent
        self._new: str | None = None  # the chosen new PIN, until confirmed and sent
        self.view = (
            View(Stage.AMOUNT, (line("enter_amount"),))
            if purpose is Purpose.PAY
            else View(Stage.INSERT, (line("insert_card"),))
        )

    # --- helpers ------------------------------------------------------------------

    def _forget_pins(self) -> None:
        self._current = self._new = None

    def _amount_line(self) -> Line:
        return line("amount", amount=format_fen(self.amount_fen or 0))

    def _context(self) -> tuple[Line, ...]:
        if not self.amount_fen:
            return ()
        return (self._amount_line(), *self._split_lines())

    def _split_lines(self) -> tuple[Line, ...]:
        """The pre-settlement's split and what the holder pays, on every prompt after it."""
        s = self.split
        if s is None:
            return ()
        return (
            split_line(s.fund_fen, s.acct_fen, s.cash_fen),
            line("holder_pays", amount=format_fen(s.acct_fen + s.cash_fen)),
        )

    def _removed_lines(self) -> tuple[Line, ...]:
        if self.purpose is Purpose.PAY:
            return (
                line("removed", Tone.ERROR),
                self._amount_line(),
                line("not_debited", Tone.ERROR),
            )
        return super()._removed_lines()

    def _pin_prompt(self) -> Line:
        return line("enter_old_pin" if self.purpose is Purpose.CHANGE else "enter_pin")

    def _authorised(self, *before: Line) -> Command | None:
        """The card rules said yes: settle at the host, or end here when there is none."""
        info = self.info
        if not self.settles:
            self._result(True, *before, "authorised", self._amount_line())
            return None
        person = self.account.person if self.account else None
        if info is None or not info.card_number or person is None or not self.amount_fen:
            self._result(False, *before, "card_unreadable")
            return None
        self._forget_pins()
        self._before = before
        self._ask(Stage.SETTLING, line("settling"))
        return Settle(self.amount_fen, info.card_number, person, info.name)

    def settled(self, settlement: Settlement) -> None:
        """The host's answer to Settle (2102): the receipt."""
        info = self.info
        receipt = Receipt.of(
            self.terminal_id,
            settlement,
            info.card_number if info else None,
            info.name if info else None,
        )
        self._result(True, *self._before, *receipt.lines(), keep=True)

    def refused(self, kind: str, balance_fen: int | None) -> None:
        """The platform refused the pre-settlement or the settlement: nothing was paid."""
        if kind == "insufficient":
            balance = format_fen(balance_fen or 0)
            self._result(
                False,
                *self._before,
                line("insufficient", Tone.ERROR, balance=balance),
                self._amount_line(),
            )
        elif kind == "lost":
            self._result(False, line("lost", Tone.ERROR))
        elif kind == "unknown_person":
            self._result(False, line("no_account", Tone.ERROR))
        elif self.view.stage is Stage.SETTLING:
            self.settle_failed()
        else:
            self.host_unavailable()

    def not_through(self, confirmed: bool) -> None:
        """No answer to the settlement: it was reversed (or will be): the holder did not pay."""
        self._result(
            False,
            *self._before,
            line("reversed" if confirmed else "reversal_pending", Tone.ERROR),
            self._amount_line(),
            "not_debited",
        )

    def presettled(self, settlement: Settlement) -> Command | None:
        """The split (2101) is in: shown, then what the card rules asked for."""
        self.split = settlement
        decision, self._after_split = self._after_split, None
        return self._go_on(decision)

    def removed_before_debit(self) -> None:
        """The card was gone when the debit was due: nothing was debited. What the card
        did before (a changed PIN) is still said."""
        self._result(False, *self._before, *self._removed_lines())

    def host_unavailable(self) -> None:
        """The host could not be asked about the holder (a lost card?): no payment, no PIN
        change, no information without it."""
        if self.purpose is Purpose.PAY:
            self._result(False, "host_unavailable", self._amount_line())
        else:
            self._result(False, "host_unavailable_check")

    def settle_card_failed(self, key: str) -> None:
        """The card or reader failed when the debit was due: nothing was debited."""
        self._result(False, *self._before, key, self._amount_line(), "not_debited")

    def settle_failed(self) -> None:
        self._result(False, *self._before, "settle_failed", self._amount_line())

    def start(self) -> Command | None:
        return None if self.purpose is Purpose.PAY else ReadCard()

    # --- inputs ---------------------------------------------------------------------

    def entered(self, text: str) -> Command | None:
        """Enter on an entry stage; anything else ignores it."""
        stage = self.view.stage
        if stage is Stage.AMOUNT:
            return self._amount(text)
        if stage is Stage.PIN:
            if not self._six_digits(text):
                return None
            if self.purpose is not Purpose.CHANGE:
                self._ask(Stage.WORKING, line("working"))
                return Verify(text)
            self._current = text
            self._ask_new_pin()
            return None
        if stage is Stage.NEW_PIN:
            self._new_pin(text)
            return None
        if stage is Stage.CONFIRM_PIN:
            return self._change(text)
        if stage is Stage.CONFIRM_AMOUNT:
            return self._authorised(line("no_pin"))
        return None

    def _phone(self) -> str | None:
        """S15's phone rule: the host's phone for the holder, else --holders'."""
        phone = super()._phone()
        if phone:
            return phone
        info = self.info
        return self._phone_of(info.ssn) if info and info.ssn else None

    def _new_pin_reason(self) -> tuple[Line, ...]:
        """While a forced change is asked again, the reason stays on screen."""
        return (line("forced_change"),) if self._forced else ()

    def _six_digits(self, text: str) -> bool:
        """A short entry is refused here: it never reaches the card, never costs a try."""
        try:
            check_format(text)
        except PinFormatError:
            self._ask(Stage.PIN, line("v_not-six-digits", Tone.ERROR), self._pin_prompt())
            return False
        return True

    def _amount(self, text: str) -> Command | None:
        digits = text.isascii() and text.isdigit()
        if not digits or int(text) == 0 or len(text) > MAX_AMOUNT_DIGITS:
            self._ask(Stage.AMOUNT, line("bad_amount", Tone.ERROR), line("enter_amount"))
            return None
        self.amount_fen = int(text)
        self._ask(Stage.INSERT, line("insert_card"))
        return ReadCard()

    def _change(self, text: str) -> Command | None:
        """The new PIN typed again: the change goes to the card, from the current PIN the
        holder typed, or from the initial one in a forced change (S1)."""
        new = self._confirmed(text)
        if new is None:
            return None
        old = rules.current_pin_for_forced_change() if self._forced else self._current
        if old is None:  # cannot happen: the flow asked for it first
            self._result(False, "refused")
            return None
        command = ChangePin(old, new)
        self._forget_pins()
        self._ask(Stage.WORKING, line("working"))
        return command

    # --- the card's answers ---------------------------------------------------------------

    def card_read(self, info: CardInfo, account: Account | None = None) -> Command | None:
        self.info = info
        self.account = account
        facts = facts_of(info, lost=account is not None and account.lost)
        if self.purpose is Purpose.INFO:
            self.view = View(Stage.INFO, (), info, lost=facts.lost)
            return None
        decision = rules.decide(facts, self.settings)
        if decision in _REFUSALS:
            self._result(False, *_REFUSALS[decision])
            return None
        if self.purpose is Purpose.PAY and self.settles:
            person = account.person if account else None
            if person is None or not info.card_number or not self.amount_fen:
                self._result(False, line("no_account", Tone.ERROR), self._amount_line())
                return None
            # 2101 before any PIN: the holder sees the split and what they pay first.
            self._after_split = decision
            self._ask(Stage.PRESETTLING, line("presettling"))
            return Presettle(self.amount_fen, info.card_number, person)
        return self._go_on(decision)

    def _go_on(self, decision: Decision | None) -> Command | None:
        facts = facts_of(self.info, lost=False) if self.info else None
        if decision is Decision.FORCED_CHANGE:
            # S8: a payment or a change, the initial PIN is sent for the holder.
            self._forced = True
            self._ask_new_pin()
        elif decision is Decision.ASK_PIN or self.purpose is Purpose.CHANGE:
            hint = self._tries_hint(facts) if facts else ()
            self._ask(Stage.PIN, *hint, self._pin_prompt())
        else:
            self._ask(Stage.CONFIRM_AMOUNT, line("no_pin"), line("confirm_amount"))
        return None

    @staticmethod
    def _tries_hint(facts: CardFacts) -> tuple[Line, ...]:
        """A real card that does not report its PIN state: show the tries the empty
        VERIFY reported before asking (rule 8)."""
        if facts.pin_state is None and facts.tries_left is not None:
            return (line("tries_left", n=facts.tries_left),)
        return ()

    def card_answer(self, outcome: PinOutcome) -> Command | None:
        """The card's answer to the Verify or ChangePin this flow asked for."""
        if outcome.ok:
            if self.purpose is Purpose.PAY and self._forced:
                return self._authorised(line("changed", Tone.OK))
            if self.purpose is Purpose.PAY:
                return self._authorised()
            self._result(True, "changed")
        elif outcome.blocked:
            self._result(False, "locked", "go_outlet")
        elif outcome.not_activated:
            self._result(False, "not_activated")
        elif outcome.wrong:
            self._forget_pins()
            wrong = line("wrong_pin", Tone.ERROR, n=outcome.tries_left)
            if self._forced:  # the card was not on its initial PIN after all: S14
                self._result(False, wrong, "restore_at_window")
            else:
                self._ask(Stage.PIN, wrong, self._pin_prompt())
        else:
            self._result(False, line("card_refused", Tone.ERROR, sw=f"{outcome.sw:04X}"))
        return None

    def _ends_on_removal(self) -> bool:
        """Once the debit is on its way to the host, its answer is what counts: the money
        may have moved, so the terminal waits and shows it."""
        return super()._ends_on_removal() and self.view.stage is not Stage.SETTLING
