"""ISO 7816-4 short APDUs: parsing, building, hex text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cardio.errors import UsageError
from cardio.sw import CardError, Sw

_HEX_SEPARATORS = re.compile(r"[\s:]+")


class HexError(UsageError, ValueError):
    """Text that is not a whole number of hex bytes."""


def parse_hex(text: str) -> bytes:
    """'00 A4 04 00' / '00a40400' / '00:A4' -> bytes; raises HexError with a reason."""
    compact = _HEX_SEPARATORS.sub("", text)
    if not compact:
        raise HexError("no bytes given")
    if len(compact) % 2:
        raise HexError(f"odd number of hex digits ({len(compact)})")
    try:
        return bytes.fromhex(compact)
    except ValueError:
        bad = next(c for c in compact if c not in "0123456789abcdefABCDEF")
        raise HexError(f"{bad!r} is not a hex digit") from None


def to_hex(data: bytes) -> str:
    """Upper-case hex, bytes separated by spaces."""
    return data.hex(" ").upper()


@dataclass(frozen=True)
class Apdu:
    """A parsed command APDU. `le` is None when absent; a short Le byte 00 means 256."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    @property
    def lc(self) -> int:
        return len(self.data)

    @property
    def has_data(self) -> bool:
        return bool(self.data)

    @classmethod
    def parse(cls, raw: bytes) -> Apdu:
        """Short APDUs only; anything else raises CardError(6700)."""
        n = len(raw)
        if n < 4:
            raise CardError(Sw.WRONG_LENGTH)
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2)
        if n == 5:
            return cls(cla, ins, p1, p2, le=raw[4] or 256)
        lc = raw[4]
        if lc == 0:  # extended length: not supported (docs/card.md §3)
            raise CardError(Sw.WRONG_LENGTH)
        if n == 5 + lc:
            return cls(cla, ins, p1, p2, data=bytes(raw[5:]))
        if n == 6 + lc:
            return cls(cla, ins, p1, p2, data=bytes(raw[5:-1]), le=raw[-1] or 256)
        raise CardError(Sw.WRONG_LENGTH)

    def to_bytes(self) -> bytes:
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out.append(len(self.data))
            out += self.data
        if self.le is not None:
            out.append(self.le & 0xFF)
        return bytes(out)


def command(
    cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> bytes:
    """Build a short APDU's bytes."""
    if len(data) > 255:
        raise ValueError("short APDU data is at most 255 bytes")
    return Apdu(cla, ins, p1, p2, data, le).to_bytes()


def split_response(response: bytes) -> tuple[bytes, int]:
    """Response bytes -> (data, SW)."""
    if len(response) < 2:
        raise ValueError("a response has at least the two status bytes")
    return response[:-2], int.from_bytes(response[-2:], "big")


SFI_RFU = 0x1F  # SFI 11111: RFU


def binary_address(apdu: Apdu) -> tuple[int | None, int]:
    """READ BINARY's P1 P2 (part 5 §6.9 table 29): P1 b8 = 1, an SFI in b5-b1 (b7-b6
    00) and the offset in P2; else the current EF (None) at offset P1 P2. CardError
    6A86 for an SFI that cannot be one."""
    if apdu.p1 & 0x80:
        sfi = apdu.p1 & 0x1F
        if apdu.p1 & 0x60 or sfi in (0, SFI_RFU):
            raise CardError(Sw.WRONG_P1P2)
        return sfi, apdu.p2
    return None, (apdu.p1 << 8) | apdu.p2


def historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of an ATR (ISO 7816-3 §8.2; part 2 §8.3): T0's low nibble K
    of them, after the interface bytes that T0 and each TDi announce."""
    if len(atr) < 2:
        return b""
    k = atr[1] & 0x0F
    index, y = 2, atr[1] >> 4
    while True:
        present = [bit for bit in range(4) if y & (1 << bit)]  # TA, TB, TC, TD
        index += len(present)
        if 3 not in present or index - 1 >= len(atr):
            break
        y = atr[index - 1] >> 4  # TDi: the next interface bytes
    return atr[index : index + k]
