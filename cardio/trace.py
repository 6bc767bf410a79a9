"""APDU lines for people: hex with every PIN byte shown as `**`.

Used by the CLI, the vpcd bridge log and the terminal's trace, so one rule decides
what is masked. Responses never carry PINs; commands that do are listed here.
"""

from __future__ import annotations

from cardio.apdu import to_hex

MASK = "**"
_HEADER = 5  # CLA INS P1 P2 Lc


def _pin_positions(command: bytes) -> range | list[int]:
    """Indexes into the data field that may hold PIN digits."""
    if len(command) <= _HEADER:
        return []
    cla, ins = command[0], command[1]
    n = len(command) - _HEADER
    if ins == 0x20:  # VERIFY: all data is PIN
        return range(n)
    if ins == 0x5E and cla == 0x84:  # outlet reset: new PIN(3) || MAC(4): the MAC is public
        return range(max(0, n - 4)) if n > 4 else range(n)
    if ins in (0x5E, 0x24, 0x2C):  # CHANGE PIN and friends: keep only the FF separator
        data = command[_HEADER:]
        return [i for i in range(n) if not (i == 3 and data[i] == 0xFF)]
    return []


def mask_command(command: bytes) -> str:
    """Hex of a command APDU with PIN bytes replaced by `**`."""
    cells = to_hex(command).split(" ") if command else []
    for i in _pin_positions(command):
        cells[_HEADER + i] = MASK
    return " ".join(cells)


def command_line(command: bytes) -> str:
    return "> " + mask_command(command)


def response_line(response: bytes) -> str:
    return "< " + to_hex(response)
