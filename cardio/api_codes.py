"""The reader API's error numbers, for our failures (docs/card.md §8, "Reader API numbers").

Integrators compare what `cardio` reports with what their own reader DLL returns, so a
failure that the reader API specification numbers (四川省社会保障卡读写终端规范 V2.0,
appendix A table A.1, and part 8 appendix A1 table A1.2 for -1..-15) carries that number:
in `cardio read-bas`'s output and JSON, and as a `# api N what` line in an APDU trace.

The mapping lives here and on the error classes (`api_code`, cardio.errors.CardioError):
a reader error says its own number, a card's status word becomes -(SW) where the table
lists that word, and a PIN answer becomes -51 / -52. A failure the table does not name
has no number (None, `null` in JSON): the table's "other: unknown error".

It imports only `cardio.sw` (a leaf), so the trace and the errors can use it.
"""

from __future__ import annotations

from enum import IntEnum

from cardio import sw
from cardio.sw import Sw


class ApiCode(IntEnum):
    """The numbers for failures that are not a card's status word."""

    WRONG_CARD_TYPE = -1  # 卡类型不对: not a social security card (no SSSE)
    NO_CARD = -2  # 无卡
    NOT_POWERED = -3  # 有卡未上电
    NO_RESPONSE = -4  # 卡无应答
    READER_CONNECTION = -11  # 读卡器连接错
    BAD_PARAMETER = -14  # 命令参数错
    NOT_GENUINE = -21  # 内部认证失败（用户卡不合法）: INTERNAL AUTHENTICATE's answer wrong
    KEY_LEVEL = -24  # PSAM卡密钥级别不够: the PSAM's key wants other dispersion factors
    NO_PSAM = -2201  # 无PSAM卡: no PSAM, or it cannot be used
    PIN_CANCELLED = -31  # 用户取消密码输入
    PIN_TIMEOUT = -32  # 密码输入操作超时
    PIN_LENGTH = -33  # 输入密码长度错
    WRONG_PIN = -51  # PIN校验失败，剩余次数N次
    PIN_BLOCKED = -52  # PIN锁定


MEANINGS: dict[int, str] = {
    ApiCode.WRONG_CARD_TYPE: "wrong card type",
    ApiCode.NO_CARD: "no card",
    ApiCode.NOT_POWERED: "card not powered",
    ApiCode.NO_RESPONSE: "card does not respond",
    ApiCode.READER_CONNECTION: "reader connection error",
    ApiCode.BAD_PARAMETER: "bad parameter",
    ApiCode.NOT_GENUINE: "internal authentication failed (card not genuine)",
    ApiCode.KEY_LEVEL: "PSAM key level insufficient",
    ApiCode.NO_PSAM: "no PSAM",
    ApiCode.PIN_CANCELLED: "PIN entry cancelled",
    ApiCode.PIN_TIMEOUT: "PIN entry timed out",
    ApiCode.PIN_LENGTH: "PIN length wrong",
    ApiCode.WRONG_PIN: "wrong PIN",
    ApiCode.PIN_BLOCKED: "PIN blocked",
}

# The card status words that table A.1 numbers as -(SW as a 16-bit integer): 6A82 is
# -27266 and so on. Named where cardio.sw names the word; table A.1's other words
# (which our card never answers) by their hex.
_TABLE_A1: dict[int, str] = {
    sw.wrong_pin(0): "external authentication failed",  # 63C0..63C2: external auth only
    sw.wrong_pin(1): "external authentication failed",
    sw.wrong_pin(2): "external authentication failed",
    Sw.WRONG_LENGTH: "Lc/Le wrong",
    Sw.NOT_ACCEPTED: "command not accepted (invalid state)",
    Sw.INCOMPATIBLE_FILE: "command incompatible with the file structure",
    Sw.SECURITY_NOT_SATISFIED: "security status not satisfied",
    Sw.PIN_BLOCKED: "authentication method blocked",
    Sw.NO_CHALLENGE: "referenced data invalid",
    Sw.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    Sw.MAC_WRONG: "secure messaging data wrong",
    Sw.WRONG_DATA: "wrong data field",
    Sw.FUNCTION_NOT_SUPPORTED: "function not supported",
    Sw.FILE_NOT_FOUND: "file not found",
    Sw.RECORD_NOT_FOUND: "record not found",
    Sw.DATA_NOT_FOUND: "referenced data not found",
    0x9302: "MAC invalid",
    Sw.APPLICATION_BLOCKED: "application blocked",
    0x9403: "key index not supported",
    0x9406: "MAC not available",
}
CARD_CODES: dict[int, str] = {-word: text for word, text in _TABLE_A1.items()}


def of_sw(status: int) -> int | None:
    """A card's refusal of a command other than VERIFY: -(SW) where table A.1 lists the
    word (6A82 -> -27266, 6A83 -> -27267 …), else None."""
    return -status if -status in CARD_CODES else None


def of_pin_sw(status: int) -> int | None:
    """A failed VERIFY or CHANGE PIN: 63Cx with x > 0 -> -51; 63C0 or 6983 -> -52."""
    left = sw.tries_left(status)
    if left is not None:
        return ApiCode.WRONG_PIN if left else ApiCode.PIN_BLOCKED
    if status == Sw.PIN_BLOCKED:
        return ApiCode.PIN_BLOCKED
    return of_sw(status)


def of(failure: object) -> int | None:
    """The number an error or a PIN answer carries (its `api_code`), or None."""
    code = getattr(failure, "api_code", None)
    return int(code) if code is not None else None


def meaning(code: int) -> str:
    """A few words for a number, for a trace line or a JSON field."""
    if code in MEANINGS:
        return MEANINGS[code]
    return CARD_CODES.get(code, "unknown error")


def describe(code: int, tries_left: int | None = None) -> str:
    """`-51 wrong PIN, 2 tries left`, `-2 no card`: never a PIN digit."""
    text = f"{code} {meaning(code)}"
    if code == ApiCode.WRONG_PIN and tries_left is not None:
        text += f", {tries_left} {'try' if tries_left == 1 else 'tries'} left"
    return text
