"""What every transaction on the pad shares, the pharmacy's (pharmacy.py) and the service
outlet's (outlet.py): the view it shows, the card's facts, how it ends (a result, a
notice, a card pulled out), and the new PIN's two steps (S15, then typed again).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from cardio.pin_policy import check_new_pin
from cardio.protocol import CardInfo
from terminal.flow.commands import Account, Command, ReadCard
from terminal.flow.view import Line, Stage, Tone, View, line


class CardFlow(ABC):
    """One transaction on the pad: its view, the card's facts, and PINs kept only while
    they are being collected."""

    view: View
    title: str  # the catalogue key of the transaction's title
    info: CardInfo | None = None
    account: Account | None = None  # what the host says of the holder
    _new: str | None = None  # the chosen new PIN, until confirmed and sent

    # --- what each flow does with the holder's entries and the card ----------------------

    @abstractmethod
    def entered(self, text: str) -> Command | None:
        """Enter on an entry stage; anything else ignores it."""

    @abstractmethod
    def card_read(self, info: CardInfo, account: Account | None = None) -> Command | None:
        """The card's facts (and the host's word on the holder) are in."""

    def start(self) -> Command | None:
        return None

    def _forget_pins(self) -> None:
        """Drop every PIN digit the flow still holds."""
        self._new = None

    def _context(self) -> tuple[Line, ...]:
        """Lines that stay on every prompt of the transaction (a payment's amount)."""
        return ()

    # --- views ------------------------------------------------------------------------

    def _ask(self, stage: Stage, *lines: Line) -> None:
        self.view = View(stage, (*self._context(), *lines), self.info)

    def _result(self, ok: bool, *keys: str | Line, keep: bool = False) -> None:
        self._forget_pins()
        lines = [k if isinstance(k, Line) else line(k, Tone.OK if ok else Tone.ERROR) for k in keys]
        self.view = View(Stage.RESULT, tuple(lines), self.info, success=ok, keep=keep)

    # --- the new PIN: S15, then typed again -------------------------------------------------

    def _phone(self) -> str | None:
        """S15's phone rule: the host's phone for the holder, where the terminal knows it."""
        return self.account.phone if self.account is not None and self.account.phone else None

    def _new_pin_reason(self) -> tuple[Line, ...]:
        """Why a new PIN is asked, kept on screen while it is asked again (a forced change)."""
        return ()

    def _ask_new_pin(self, *problem: Line) -> None:
        self._ask(Stage.NEW_PIN, *self._new_pin_reason(), *problem, line("new_pin"))

    def _new_pin(self, text: str) -> None:
        """NEW_PIN: S15 is checked before the card is touched, so a bad choice never costs a
        try; a good one is asked for again."""
        info = self.info
        violation = check_new_pin(
            text, birth_date=info.birth_date if info else None, phone=self._phone()
        )
        if violation is not None:
            self._ask_new_pin(line(f"v_{violation.value}", Tone.ERROR))
            return
        self._new = text
        self._ask(Stage.CONFIRM_PIN, line("confirm_pin"))

    def _confirmed(self, text: str) -> str | None:
        """CONFIRM_PIN: the new PIN when typed the same twice; else it is asked anew."""
        if text != self._new:
            self._new = None
            self._ask_new_pin(line("mismatch", Tone.ERROR))
            return None
        return text

    # --- the card and the holder's time ---------------------------------------------------

    def card_inserted(self) -> ReadCard | None:
        return ReadCard() if self.view.stage is Stage.INSERT else None

    def reading(self) -> None:
        self._ask(Stage.READING, line("reading"))

    def ended(self, key: str) -> None:
        """Cancelled or timed out: a brief notice that keeps any digits still typed."""
        self._forget_pins()
        self.view = View(
            Stage.RESULT, (line(key, Tone.ERROR),), self.info, success=False, brief=True
        )

    def card_failed(self, key: str) -> None:
        """Rule 1: the card could not be read or did not answer; `key` says why."""
        self._result(False, key)

    def not_a_card(self) -> None:
        self._result(False, "not_ssc")

    def counterfeit(self) -> None:
        """The card failed INTERNAL AUTHENTICATE (part 7 §5.4): refused, nothing more sent."""
        self._result(False, "counterfeit")

    def _ends_on_removal(self) -> bool:
        """Before the card is asked for, a removal changes nothing; after, it ends."""
        return not self.view.final and self.view.stage not in (
            Stage.AMOUNT,
            Stage.ID_NUMBER,
            Stage.INSERT,
        )

    def _removed_lines(self) -> tuple[Line, ...]:
        return (line("removed", Tone.ERROR),)

    def removed(self) -> bool:
        """The card left the reader while no command was in flight. True when this
        ended the flow (on a result screen that keeps any digits still typed)."""
        if not self._ends_on_removal():
            return False
        self.info = None
        self._result(False, *self._removed_lines())
        return True

    def cancel(self) -> None:
        self._forget_pins()
