"""The PIN codec: 6 digits <-> 3 bytes of packed BCD, and the host-side format check.

The host checks the format before anything is sent (as OpenSC does), so a malformed
PIN never reaches the card and never costs a try.
"""

from __future__ import annotations

from cardio.errors import UsageError

INITIAL_PIN = "123456"
PIN_LENGTH = 6
CHANGE_SEPARATOR = 0xFF


class PinFormatError(UsageError, ValueError):
    """A PIN that is not exactly six digits. The message never contains the digits."""

    api_code = -33  # 输入密码长度错 (reader API appendix A)


def check_format(pin: str) -> None:
    if len(pin) != PIN_LENGTH or not pin.isascii() or not pin.isdigit():
        raise PinFormatError("a PIN is exactly 6 digits")


def encode(pin: str) -> bytes:
    """'123456' -> 12 34 56."""
    check_format(pin)
    return bytes.fromhex(pin)


def decode(block: bytes) -> str | None:
    """12 34 56 -> '123456'; None when the block is not 3 bytes of decimal nibbles."""
    if len(block) != PIN_LENGTH // 2:
        return None
    text = block.hex()
    return text if text.isdigit() else None


def change_block(old: str, new: str) -> bytes:
    """Data of CHANGE PIN (80 5E 01 00): old(3) || FF || new(3)."""
    return encode(old) + bytes((CHANGE_SEPARATOR,)) + encode(new)


# The standard's PIN coding (part 5 §6.3, §6.14): compressed numeric, two digits a
# byte, an odd last digit followed by F; 4 to 16 digits (the reader API's range).
CN_DIGITS = range(4, 17)
_PAD = "f"


def decode_cn(block: bytes) -> str | None:
    """12 34 5F -> '12345'; None unless 4-16 decimal digits, F only as the last nibble."""
    text = block.hex()
    if text.endswith(_PAD):
        text = text[:-1]
    if len(text) not in CN_DIGITS or not text.isdigit():
        return None
    return text
