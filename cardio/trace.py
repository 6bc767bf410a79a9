"""APDU lines for people: hex with every secret byte shown as `**`.

Used by the CLI (`send`, `script`), the vpcd bridge log (`serve -v`) and the
terminal's trace (its file and the F12 pane), so one rule decides what is masked.
A user card's responses never carry PINs; a PSAM's answer to CIPHER DATA does (the
encrypted PIN block, which with the issuer key and the card's challenge decrypts to the
PIN): `Responses` hides its data, and that of the GET RESPONSEs that fetch it. A
command is secret when it may carry a PIN (VERIFY,
CHANGE / RESET REFERENCE DATA, the PBOC-style PIN change, a PSAM's CIPHER DATA) or a
MAC (secure messaging, CLA 84): a MAC over a PIN, with the card's challenge from the
same trace and the issuer key, gives the 6-digit PIN back by brute force in seconds.
Of a secret command only CLA INS P1 P2 and a length that matches the command stay
visible (and the FF between the old and new PIN of a plain CHANGE PIN, a constant); when the length
does not match (a forgotten Lc, say), everything after the header is masked, since the
byte where Lc should be may be a PIN digit.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from cardio import api_codes
from cardio.apdu import to_hex
from cardio.model import PIN_INS, Ins, PsamCla, PsamIns
from cardio.pin import CHANGE_SEPARATOR

MASK = "**"

_LC = 4
_DATA = 5
_EXT_DATA = 7  # extended length: 00 Lc1 Lc2, then the data


def _secure_messaging(cla: int) -> bool:
    """ISO 7816-4: bits b4 b3 of a first-interindustry CLA (used by the proprietary 8x
    CLAs too, 84 among them), b6 of a further-interindustry one (4x-7x)."""
    if cla & 0xC0 == 0x40:
        return bool(cla & 0x20)
    return bool(cla & 0x0C)


_CIPHER_DATA = (PsamCla.PROPRIETARY, PsamIns.CIPHER_DATA)  # a PSAM encrypts PIN blocks


def secret(command: bytes) -> bool:
    """Whether the command may carry a PIN or a MAC (or, to a PSAM, a PIN to encrypt)."""
    return len(command) > _LC and (
        command[1] in PIN_INS
        or _secure_messaging(command[0])
        or (command[0], command[1]) == _CIPHER_DATA
    )


def _masked(command: bytes) -> set[int]:
    """The indexes of the bytes to hide."""
    n = len(command)
    if not secret(command):
        return set()
    cla, ins, lc = command[0], command[1], command[_LC]
    if n == _DATA:  # a lone byte: Le 00 of a status query is harmless, anything else is not
        return set() if lc == 0 else {_LC}
    if lc and lc in (n - _DATA, n - _DATA - 1):  # short: Lc, data, maybe Le
        hidden = set(range(_DATA, n))
        if (
            ins != Ins.VERIFY
            and lc == 7
            and command[_DATA + 3] == CHANGE_SEPARATOR
            and not _secure_messaging(cla)
        ):
            hidden.discard(_DATA + 3)  # old || FF || new: the separator is no secret
        return hidden
    if lc == 0 and n > _EXT_DATA:  # extended: 00 Lc1 Lc2, data, maybe a 2-byte Le
        extended = int.from_bytes(command[_DATA:_EXT_DATA], "big")
        if extended and extended in (n - _EXT_DATA, n - _EXT_DATA - 2):
            return set(range(_EXT_DATA, n))
    return set(range(_LC, n))


def mask_command(command: bytes) -> str:
    """Hex of a command APDU with its secret bytes replaced by `**`."""
    hidden = _masked(command)
    return " ".join(
        MASK if i in hidden else cell for i, cell in enumerate(to_hex(command).split(" ")) if cell
    )


def command_line(command: bytes) -> str:
    return "> " + mask_command(command)


def response_line(response: bytes, hidden: bool = False) -> str:
    """A response; `hidden`: its data as `**`, the status word shown."""
    if not hidden or len(response) <= 2:
        return "< " + to_hex(response)
    return "< " + " ".join([MASK] * (len(response) - 2) + [to_hex(response[-2:])])


_GET_RESPONSE = (0x00, 0xC0)


class Responses:
    """Which responses of one chip's session to hide: from a PSAM's CIPHER DATA on,
    through the GET RESPONSEs that hand its answer out."""

    def __init__(self) -> None:
        self._hiding = False

    def line(self, command: bytes, response: bytes) -> str:
        head = tuple(command[:2])
        if head == _CIPHER_DATA:
            self._hiding = True
        elif head != _GET_RESPONSE:
            self._hiding = False
        return response_line(response, hidden=self._hiding)


def failure(error: BaseException) -> str:
    """An unexpected error for a log: its type and where it happened, not its message,
    which may quote the bytes being handled (a PIN among them)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}{where}"


def api_line(failure: object) -> str | None:
    """A failure's reader API number as a trace comment, `# api -2 no card`, or None when
    it has none (docs/card.md §8). Made from the number and the tries left only: never a
    PIN, never the error's message."""
    code = api_codes.of(failure)
    if code is None:
        return None
    tries = getattr(failure, "tries_left", None)
    return "# api " + api_codes.describe(code, tries if isinstance(tries, int) else None)
