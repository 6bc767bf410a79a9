"""The service outlet's steps on the keypad (`pos-terminal --outlet`).

Holder's ID first (凭本人身份证件), then the card; the ID must match the card before
any privileged command; a reset asks for the new PIN twice, checked against S15 (the
stage diagram is in terminal/flow/__init__.py).
"""

from __future__ import annotations

from cardio import identity
from cardio.outlet import (
    IdMismatchError,
    Operation,
    Outcome,
    OutletError,
    PinPolicyError,
    WrongKeyError,
    same_id,
)
from cardio.protocol import CardInfo
from terminal.flow.base import CardFlow
from terminal.flow.commands import Account, ReadCard, RunOutlet
from terminal.flow.view import Stage, Tone, View, line

TITLES = {
    Operation.RESET_PIN: "menu_reset",
    Operation.RESTORE_INITIAL: "menu_restore",
    Operation.CANCEL_PIN: "menu_cancel",
    Operation.ACTIVATE: "menu_activate",
    Operation.UNBLOCK: "menu_unblock",
}


class OutletFlow(CardFlow):
    """One outlet operation for one holder."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.title = TITLES[operation]
        self.id_number: str | None = None
        self.info: CardInfo | None = None
        self.account: Account | None = None  # the host's phone for the holder (S15)
        self._new: str | None = None
        self.view = View(Stage.ID_NUMBER, (line("enter_id"),))

    def entered(self, text: str) -> ReadCard | RunOutlet | None:
        stage = self.view.stage
        if stage is Stage.ID_NUMBER:
            if identity.id_problem(text) is not None:
                self._ask(Stage.ID_NUMBER, line("id_invalid", Tone.ERROR), line("enter_id"))
                return None
            self.id_number = text
            self._ask(Stage.INSERT, line("insert_card"))
            return ReadCard()
        if stage is Stage.NEW_PIN:
            self._new_pin(text)
            return None
        if stage is Stage.CONFIRM_PIN:
            new = self._confirmed(text)
            return None if new is None else self._run(new)
        return None

    def _run(self, new_pin: str | None) -> RunOutlet | None:
        if self.id_number is None:
            return None
        self._new = None
        self._ask(Stage.WORKING, line("working"))
        return RunOutlet(self.operation, self.id_number, new_pin)

    def card_read(self, info: CardInfo, account: Account | None = None) -> RunOutlet | None:
        self.info = info
        self.account = account
        # A 3.00 card's holder data is read under the outlet's key when the operation runs
        # (Outlet.run): unknown here (None) is no mismatch.
        if info.ssn is not None and not same_id(self.id_number or "", info.ssn):
            # The outlet itself refuses it, so the refusal is logged like any other.
            return self._run(None)
        if self.operation is Operation.RESET_PIN:
            self._ask_new_pin()
            return None
        return self._run(None)

    def outlet_done(self, outcome: Outcome) -> None:
        lines = [line(f"done_{self.operation.value}", Tone.OK)]
        if outcome.query_password:
            lines.append(line("query_password", password=outcome.query_password))
        self._result(True, *lines)

    def outlet_failed(self, error: OutletError) -> None:
        if isinstance(error, IdMismatchError):
            self._result(False, line("id_mismatch", Tone.ERROR))
        elif isinstance(error, WrongKeyError):
            self._result(False, line("key_wrong", Tone.ERROR))
        elif isinstance(error, PinPolicyError):
            self._result(False, line(f"v_{error.violation.value}", Tone.ERROR))
        else:
            self._result(False, line("outlet_failed", Tone.ERROR))
