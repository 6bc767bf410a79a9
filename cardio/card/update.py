"""What UPDATE RECORD writes (part 5 §6.13; docs/card.md §5): a record's new value, in
the format of the V2.0 notice's table 9, becomes the card-file field the record is
built from (cardio/card/files.py builds the records back from the fields).

A value that its field cannot hold is `6A80`, with nothing written. The identification
code (EF05 01) is refused with `6985`: the card's keys and ATR serial come from it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cardio.card.state import MIN_YEAR, NAME_BYTES, CardState, split_name
from cardio.model import SPEC_VERSIONS, Category, MedicalTag, Tag
from cardio.sw import CardError, Sw

SSSE_EF05, SSSE_EF06, DF04_EF05 = "SSSE/EF05", "SSSE/EF06", "DF04/EF05"
_SSN = re.compile(r"[0-9]{17}[0-9X]")
_MEDICAL = re.compile(r"[0-9]{3}[01]{5}")


def _bad() -> CardError:
    return CardError(Sw.WRONG_DATA)


def _an(value: bytes) -> str:
    """An `an` value: ASCII, 00 padding after it (V2.0 §7)."""
    text = value.rstrip(b"\x00")
    if not text.isascii() or not text.decode("ascii").isprintable():
        raise _bad()
    return text.decode("ascii")


def _cn(value: bytes) -> str:
    digits = value.hex()
    if not digits.isdigit():
        raise _bad()
    return digits


def _date(value: bytes) -> dt.date:
    digits = _cn(value)
    try:
        day = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise _bad() from None
    if day.year < MIN_YEAR:  # the card file holds no earlier date (CardFileError)
        raise _bad()
    return day


def _gbk(value: bytes) -> str:
    try:
        return value.rstrip(b"\x00").decode("gbk")
    except UnicodeDecodeError:
        raise _bad() from None


def _name(state: CardState, head: bytes, rest: bytes) -> CardState:
    """09 ‖ 4E make the name; it must split back the same way (whole characters)."""
    name = _gbk(head.rstrip(b"\x00") + rest.rstrip(b"\x00"))
    if (
        not name
        or not name.isprintable()
        or split_name(name)
        != (
            head.rstrip(b"\x00"),
            rest.rstrip(b"\x00"),
        )
    ):
        raise _bad()
    return state.with_(holder=replace(state.holder, name=name))


def _card(state: CardState, **changes: Any) -> CardState:
    return state.with_(card=replace(state.card, **changes))


def _holder(state: CardState, **changes: Any) -> CardState:
    return state.with_(holder=replace(state.holder, **changes))


def _category(state: CardState, value: bytes) -> CardState:
    text = _an(value)
    if text not in tuple(Category):
        raise _bad()
    return _card(state, category=Category(text))


def _version(state: CardState, value: bytes) -> CardState:
    text = _an(value)
    if text not in SPEC_VERSIONS:
        raise _bad()
    if text == "1.00" and len(state.holder.name.encode("gbk")) > NAME_BYTES:
        raise _bad()  # a 1.00 card has no 4E for the rest of the name
    return _card(state, spec_version=text)


def _card_number(state: CardState, value: bytes) -> CardState:
    text = value.decode("ascii", "replace")
    if len(text) != 9 or not (text.isascii() and text.isprintable()):
        raise _bad()
    return _card(state, card_number=text)


def _ssn(state: CardState, value: bytes) -> CardState:
    text = _an(value)
    if not _SSN.fullmatch(text):
        raise _bad()
    return _holder(state, ssn=text)


def _sex(state: CardState, value: bytes) -> CardState:
    text = _an(value)
    if text not in ("1", "2"):
        raise _bad()
    return _holder(state, sex=text)


def _scheme(state: CardState, value: bytes) -> CardState:
    text = _an(value)
    if not _MEDICAL.fullmatch(text):
        raise _bad()
    return state.with_(scheme=text[:3], medical_flags=text[3:])


def _identification(state: CardState, value: bytes) -> CardState:
    raise CardError(Sw.CONDITIONS_NOT_SATISFIED)


Updater = Callable[[CardState, bytes], CardState]
UPDATERS: dict[tuple[str, int], Updater] = {
    (SSSE_EF05, Tag.IDENTIFICATION_CODE): _identification,
    (SSSE_EF05, Tag.CATEGORY): _category,
    (SSSE_EF05, Tag.SPEC_VERSION): _version,
    (SSSE_EF05, Tag.ISSUER): lambda s, v: _card(s, issuer_id=bytes(v)),
    (SSSE_EF05, Tag.ISSUE_DATE): lambda s, v: _card(s, issue_date=_date(v)),
    (SSSE_EF05, Tag.EXPIRY_DATE): lambda s, v: _card(s, expiry_date=_date(v)),
    (SSSE_EF05, Tag.CARD_NUMBER): _card_number,
    (SSSE_EF06, Tag.SSN): _ssn,
    (SSSE_EF06, Tag.NAME): lambda s, v: _name(s, v, split_name(s.holder.name)[1]),
    (SSSE_EF06, Tag.NAME_EXTENSION): lambda s, v: _name(s, split_name(s.holder.name)[0], v),
    (SSSE_EF06, Tag.SEX): _sex,
    (SSSE_EF06, Tag.ETHNIC): lambda s, v: _holder(s, ethnic=_cn(v)),
    (SSSE_EF06, Tag.BIRTHPLACE): lambda s, v: _holder(s, birthplace=_cn(v)),
    (SSSE_EF06, Tag.BIRTH_DATE): lambda s, v: _holder(s, birth_date=_date(v)),
    (DF04_EF05, MedicalTag.SCHEME): _scheme,
    (DF04_EF05, MedicalTag.INSURED_REGION): lambda s, v: s.with_(insured_region=_cn(v)),
}


def apply(state: CardState, where: str, tag: int, value: bytes) -> CardState:
    """The state with record `tag` of file `where` holding `value` (its length checked
    by the caller); CardError 6A80 when the field cannot hold it."""
    updater = UPDATERS.get((where, tag))
    if updater is None:
        raise _bad()
    return updater(state, value)
