"""Status words of the card contract (card-apdu.md §6) and the exception that carries one."""

from __future__ import annotations

OK = 0x9000
WRONG_LENGTH = 0x6700
SECURITY_NOT_SATISFIED = 0x6982
PIN_BLOCKED = 0x6983
NO_CHALLENGE = 0x6984
CONDITIONS_NOT_SATISFIED = 0x6985
NO_CURRENT_EF = 0x6986
MAC_MISSING = 0x6987
MAC_WRONG = 0x6988
WRONG_DATA = 0x6A80
FILE_NOT_FOUND = 0x6A82
RECORD_NOT_FOUND = 0x6A83
WRONG_P1P2 = 0x6A86
DATA_NOT_FOUND = 0x6A88
INS_NOT_SUPPORTED = 0x6D00
CLA_NOT_SUPPORTED = 0x6E00

_MEANINGS: dict[int, str] = {
    OK: "success",
    WRONG_LENGTH: "wrong length",
    SECURITY_NOT_SATISFIED: "security status not satisfied",
    PIN_BLOCKED: "PIN blocked",
    NO_CHALLENGE: "no valid challenge",
    CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    NO_CURRENT_EF: "no current EF",
    MAC_MISSING: "MAC missing",
    MAC_WRONG: "MAC wrong",
    WRONG_DATA: "wrong data",
    FILE_NOT_FOUND: "file not found",
    RECORD_NOT_FOUND: "record not found",
    WRONG_P1P2: "wrong P1/P2",
    DATA_NOT_FOUND: "referenced data not found",
    INS_NOT_SUPPORTED: "INS not supported",
    CLA_NOT_SUPPORTED: "CLA not supported",
}


def wrong_pin(tries_left: int) -> int:
    """63Cx: wrong PIN, x tries left."""
    return 0x63C0 | (tries_left & 0x0F)


def bytes_available(n: int) -> int:
    """61xx: xx bytes wait for GET RESPONSE (00 stands for 256)."""
    return 0x6100 | (n & 0xFF)


def wrong_le(n: int) -> int:
    """6Cxx: resend with Le = xx."""
    return 0x6C00 | (n & 0xFF)


def split(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def meaning(sw: int) -> str:
    hi = sw >> 8
    if hi == 0x61:
        return f"{sw & 0xFF or 256} bytes available"
    if hi == 0x6C:
        return f"wrong Le, use {sw & 0xFF:02X}"
    if sw & 0xFFF0 == 0x63C0:
        return f"wrong PIN, {sw & 0x0F} tries left"
    return _MEANINGS.get(sw, "unknown status")


class CardError(Exception):
    """Raised inside a command handler; the dispatcher turns it into its status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X} {meaning(sw)}")
        self.sw = sw

# Not in §6: the host under the emulated card could not write its file. A real card
# answers 6581 when its EEPROM write fails, and nothing was compared.
MEMORY_FAILURE = 0x6581
# Not in §6 either: an emulator bug. Hypothesis tests make sure no input reaches it.
NO_DIAGNOSIS = 0x6F00
_MEANINGS[MEMORY_FAILURE] = "memory failure"
_MEANINGS[NO_DIAGNOSIS] = "no precise diagnosis"
