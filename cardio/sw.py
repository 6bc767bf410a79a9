"""Status words (docs/card.md §3, "Status words"), named once, and the exception that carries one.

The card raises them, the host side compares against them: both import `Sw` from here.
A status word is an `int` on the wire and in every comparison (`Sw` is an `IntEnum`,
so `status == Sw.OK` holds for the plain int a response is split into). The three
families that carry a number in their low bits (61xx, 63Cx, 6Cxx) are built and
recognised by the functions below, and have no members.
"""

from __future__ import annotations

from enum import IntEnum


class Sw(IntEnum):
    """Every fixed status word the card can answer (its meaning: `MEANINGS`)."""

    OK = 0x9000
    # Not in the first contract: the host under the emulated card could not write its
    # file. A real card answers 6581 when its EEPROM write fails, and nothing was compared.
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    NOT_ACCEPTED = 0x6901  # command not accepted in this state (a PSAM's 80 FA first)
    INCOMPATIBLE_FILE = 0x6981  # READ RECORD on a file that holds no records
    SECURITY_NOT_SATISFIED = 0x6982  # a file read under a key not yet authenticated
    PIN_BLOCKED = 0x6983
    NO_CHALLENGE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    NO_CURRENT_EF = 0x6986
    MAC_MISSING = 0x6987
    MAC_WRONG = 0x6988
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81  # e.g. a key operation under an algorithm we lack
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    LC_INCONSISTENT = 0x6A85  # UPDATE RECORD: Lc does not match the record's TLV
    WRONG_P1P2 = 0x6A86
    DATA_NOT_FOUND = 0x6A88
    WRONG_OFFSET = 0x6B00  # READ BINARY past the end of the EF (part 5 table 30)
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    # Not in the first contract either: an emulator bug. Hypothesis tests make sure no
    # input reaches it.
    NO_DIAGNOSIS = 0x6F00
    APPLICATION_BLOCKED = 0x9303  # after APPLICATION BLOCK, for good (part 5 §6.1)


MEANINGS: dict[int, str] = {
    Sw.OK: "success",
    Sw.MEMORY_FAILURE: "memory failure",
    Sw.WRONG_LENGTH: "wrong length",
    Sw.NOT_ACCEPTED: "command not accepted",
    Sw.INCOMPATIBLE_FILE: "command incompatible with the file structure",
    Sw.SECURITY_NOT_SATISFIED: "security status not satisfied",
    Sw.PIN_BLOCKED: "PIN blocked",
    Sw.NO_CHALLENGE: "no valid challenge",
    Sw.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    Sw.NO_CURRENT_EF: "no current EF",
    Sw.MAC_MISSING: "MAC missing",
    Sw.MAC_WRONG: "MAC wrong",
    Sw.WRONG_DATA: "wrong data",
    Sw.FUNCTION_NOT_SUPPORTED: "function not supported",
    Sw.FILE_NOT_FOUND: "file not found",
    Sw.RECORD_NOT_FOUND: "record not found",
    Sw.LC_INCONSISTENT: "Lc inconsistent with the TLV",
    Sw.WRONG_P1P2: "wrong P1/P2",
    Sw.DATA_NOT_FOUND: "referenced data not found",
    Sw.WRONG_OFFSET: "offset outside the EF",
    Sw.INS_NOT_SUPPORTED: "INS not supported",
    Sw.CLA_NOT_SUPPORTED: "CLA not supported",
    Sw.NO_DIAGNOSIS: "no precise diagnosis",
    Sw.APPLICATION_BLOCKED: "application blocked",
}

# The families: a fixed high part, a number in the low bits.
_BYTES_AVAILABLE = 0x6100  # 61xx
_WRONG_PIN = 0x63C0  # 63Cx
_WRONG_LE = 0x6C00  # 6Cxx


def bytes_available(n: int) -> int:
    """61xx: xx bytes wait for GET RESPONSE (00 stands for 256)."""
    return _BYTES_AVAILABLE | (n & 0xFF)


def wrong_pin(tries_left: int) -> int:
    """63Cx: wrong PIN, x tries left."""
    return _WRONG_PIN | (tries_left & 0x0F)


def wrong_le(n: int) -> int:
    """6Cxx: resend with Le = xx."""
    return _WRONG_LE | (n & 0xFF)


def available(status: int) -> int | None:
    """Of a 61xx: xx, as the card sent it (00 stands for 256); None for any other word."""
    return status & 0xFF if status & 0xFF00 == _BYTES_AVAILABLE else None


def tries_left(status: int) -> int | None:
    """Of a 63Cx: x, the tries left; None for any other word."""
    return status & 0x0F if status & 0xFFF0 == _WRONG_PIN else None


def right_le(status: int) -> int | None:
    """Of a 6Cxx: xx, the Le to resend with; None for any other word."""
    return status & 0xFF if status & 0xFF00 == _WRONG_LE else None


def split(status: int) -> bytes:
    """SW1 SW2, as they end a response."""
    return status.to_bytes(2, "big")


def meaning(status: int) -> str:
    if (waiting := available(status)) is not None:
        return f"{waiting or 256} bytes available"
    if (le := right_le(status)) is not None:
        return f"wrong Le, use {le:02X}"
    if (left := tries_left(status)) is not None:
        return f"wrong PIN, {left} tries left"
    return MEANINGS.get(status, "unknown status")


class CardError(Exception):
    """Raised inside a command handler; the dispatcher turns it into its status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X} {meaning(sw)}")
        self.sw = sw
