"""The platform's messages as bytes: JSON, UTF-8, money as decimal numbers.

The medical-insurance platform writes amounts as JSON numbers in yuan with two decimals
(`"medfee_sumamt": 12.50`). They are read here as `Decimal`, never as floats, and written
back exactly, so the embedded host and `pos-host serve` give byte-identical answers. Inside
the host money is whole fen (`int`); `fen_of` and `yuan` convert at the edge.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from host.api import HostError

CENT = Decimal("0.01")


class WireError(HostError):
    """A message that is not the platform's JSON: the sentence says what is wrong."""


def dumps(message: object) -> bytes:
    """One message as compact UTF-8 JSON (Chinese as itself, not \\u escapes)."""
    parts: list[str] = []
    _write(message, parts, 0)
    return "".join(parts).encode("utf-8")


_MAX_DEPTH = 64


def _write(value: object, out: list[str], depth: int) -> None:
    # By hand: the stdlib encoder writes floats only, and money must keep its digits.
    if depth > _MAX_DEPTH:
        raise WireError("the message is nested too deep; send a flatter message")
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None or isinstance(value, bool):
        out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise WireError("an amount is not a number; send a finite amount")
        out.append(format(value, "f"))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_string(str(key)))
            out.append(":")
            _write(item, out, depth + 1)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} cannot be sent")


# The stdlib encoder's own string function (ensure_ascii=False): one call, no new encoder
_string = json.encoder.encode_basestring


def loads(data: bytes | str) -> Any:
    """A message from bytes; anything that is not a JSON object is a WireError."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        message = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise WireError("the message is not UTF-8 text; send it as UTF-8 JSON") from None
    except (ValueError, RecursionError):
        raise WireError("the message is not JSON; send one JSON object") from None
    if not isinstance(message, dict):
        raise WireError("the message is not a JSON object; send one JSON object")
    return message


def _no_constant(name: str) -> object:
    raise ValueError(name)  # NaN and Infinity are not money


def fen_of(value: object, what: str) -> int:
    """An amount in yuan (a JSON number, or its text) as whole fen; more than two decimals,
    a negative amount or anything else is a WireError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise WireError(f"{what} must be an amount in yuan, such as 12.50")
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise WireError(f"{what} must be an amount in yuan, such as 12.50") from None
    if not amount.is_finite() or amount < 0:
        raise WireError(f"{what} must be an amount in yuan at or above 0")
    if amount.adjusted() > 17 or amount != amount.quantize(CENT):
        raise WireError(f"{what} must be in yuan with at most two decimals, such as 12.50")
    return int(amount * 100)


def yuan(fen: int) -> Decimal:
    """Whole fen as the platform's yuan amount with two decimals."""
    return (Decimal(fen) / 100).quantize(CENT)
