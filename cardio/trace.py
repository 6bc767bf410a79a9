"""APDU lines for people: hex with every PIN byte shown as `**`.

Used by the CLI, the vpcd bridge log and the terminal's trace, so one rule decides
what is masked. Responses never carry PINs; the commands that may are listed here.
When such a command is malformed (a forgotten Lc, say), everything after the header
is masked: its bytes may be PIN digits in the wrong place.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from cardio.apdu import to_hex

MASK = "**"
PIN_INS = frozenset((0x20, 0x24, 0x2C, 0x5E))  # VERIFY, CHANGE REFERENCE, RESET RETRY, PBOC
_LC = 4
_DATA = 5
_MAC = 4


def _masked(command: bytes) -> set[int]:
    """Indexes of the bytes to hide."""
    n = len(command)
    if n <= _LC or command[1] not in PIN_INS:
        return set()
    cla, ins, p2, lc = command[0], command[1], command[3], command[_LC]
    if n == _DATA:  # a lone byte: Le 00 of a status query is harmless, anything else is not
        return set() if lc == 0 else {_LC}
    if lc == 0 or lc not in (n - _DATA, n - _DATA - 1):
        return set(range(_LC, n))
    if cla == 0x84 and ins == 0x5E:  # outlet: only reset (P2 00) carries a PIN; MACs are public
        if p2 != 0x00:
            return set()
        return set(range(_DATA, _DATA + lc - _MAC)) if lc > _MAC else set(range(_DATA, n))
    rest = set(range(_DATA, n))  # a trailing Le too: a mistyped PIN may sit there
    if ins != 0x20 and lc == 7 and command[_DATA + 3] == 0xFF:  # old || FF || new
        return rest - {_DATA + 3}
    return rest


def mask_command(command: bytes) -> str:
    """Hex of a command APDU with PIN bytes replaced by `**`."""
    hidden = _masked(command)
    return " ".join(MASK if i in hidden else cell
                    for i, cell in enumerate(to_hex(command).split(" ")) if cell)


def command_line(command: bytes) -> str:
    return "> " + mask_command(command)


def response_line(response: bytes) -> str:
    return "< " + to_hex(response)


def failure(error: BaseException) -> str:
    """An unexpected error for a log: its type and where it happened, not its message,
    which may quote the bytes being handled (a PIN among them)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}{where}"
