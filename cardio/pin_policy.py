"""S15: what a new PIN must not be. Checked on the host before the card is touched.

Shared by the terminal (forced and holder changes) and the service outlet (reset).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from cardio.pin import PIN_LENGTH


class Violation(StrEnum):
    """S15, in the order they are checked and shown."""

    NOT_SIX_DIGITS = "not-six-digits"
    SAME_DIGITS = "same-digits"
    CONSECUTIVE = "consecutive"
    BIRTH_DATE = "birth-date"
    PHONE = "phone"


def _windows(digits: str) -> set[str]:
    return {digits[i : i + PIN_LENGTH] for i in range(len(digits) - PIN_LENGTH + 1)}


def _birth_date_forms(born: dt.date) -> set[str]:
    """Every 6-digit window of YYYYMMDD, and MMDDYY, DDMMYY."""
    return _windows(born.strftime("%Y%m%d")) | {born.strftime("%m%d%y"), born.strftime("%d%m%y")}


def _consecutive(pin: str) -> bool:
    steps = {int(b) - int(a) for a, b in zip(pin, pin[1:], strict=False)}
    return steps in ({1}, {-1})


def check_new_pin(
    pin: str, *, birth_date: dt.date | None = None, phone: str | None = None
) -> Violation | None:
    """S15, checked before the card is touched, so a bad choice never costs a try."""
    if len(pin) != PIN_LENGTH or not (pin.isascii() and pin.isdigit()):
        return Violation.NOT_SIX_DIGITS
    if len(set(pin)) == 1:
        return Violation.SAME_DIGITS
    if _consecutive(pin):
        return Violation.CONSECUTIVE
    if birth_date is not None and pin in _birth_date_forms(birth_date):
        return Violation.BIRTH_DATE
    if phone:
        digits = "".join(c for c in phone if c.isdigit())
        if pin in _windows(digits):
            return Violation.PHONE
    return None
