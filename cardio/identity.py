"""Resident ID numbers (GB 11643, ISO 7064 MOD 11-2 check digit) and masking for screens."""

from __future__ import annotations

import datetime as dt

_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK = "10X98765432"


def check_digit(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def id_problem(number: str) -> str | None:
    """Why `number` is not a valid 18-character resident ID, or None when it is."""
    if not number.isascii():  # full-width ３１０… pass isdigit(), but are not the number
        return "must be written in ASCII digits 0-9 and X (switch the keyboard out of full-width)"
    if len(number) != 18:
        return "must have 18 characters"
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        return "must be 17 digits and a digit or X"
    if check_digit(number[:17]) != number[17]:
        return "has a wrong check digit"
    try:
        birth_date_of(number)
    except ValueError:
        return "has an impossible birth date"
    return None


def birth_date_of(number: str) -> dt.date:
    return dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def query_password(number: str) -> str:
    """S7: the initial online query password: last 8 characters, a final X read as 0.

    It is not the card PIN and must never be accepted as one.
    """
    tail = number[-8:]
    return tail[:-1] + ("0" if tail[-1] == "X" else tail[-1])


def mask_id(number: str) -> str:
    """First 4 and last 4 shown: 3101**********1234."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_card_number(number: str) -> str:
    """First and last 3 shown: A93***742."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 6) + number[-3:]


def mask_name(name: str) -> str:
    """Family name shown, the rest as *: 张*, 欧阳**."""
    if len(name) <= 1:
        return name
    keep = 2 if len(name) >= 4 else 1
    return name[:keep] + "*" * (len(name) - keep)
