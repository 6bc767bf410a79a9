"""The durable state of one emulated card, and its JSON form.

The JSON is meant to be read (and, carefully, edited) by a person. It never holds
the PIN digits: only a salted SHA-256. The hash is cheap on purpose: a 6-digit PIN
cannot be shielded by a slow hash from whoever holds the file, so the file's mode
(0600) is the protection.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from cardio.errors import UsageError
from cardio.issuer import KEYS, KeyName, card_keys, fixture_issuer
from cardio.model import SPEC_VERSIONS, Algorithm, Category, LifeCycle, PinState

__all__ = [
    "CardData",
    "CardFileError",
    "CardState",
    "Category",
    "Holder",
    "LifeCycle",
    "PinHash",
    "PinState",
]

FORMAT = "shebao-pos/card"
# 2 (issue 11): top-level "real_only" and "algorithm", section "medical" with "flags"
# and "region", names up to 50 GBK bytes on 2.00/3.00 cards (tag 09 + tag 4E).
# Version 1 files are still read: real_only false, SM4, flags 00000, the insured region
# from the identification code; spec_version and atr_historical as they store them.
# 3 (issue 12): "secrets.keys" (the card's own keys, dispersed from its issuer's
# masters: cardio/issuer.py) instead of "secrets.card_key"; "key_tries" (EXTERNAL
# AUTHENTICATE's counter of each key); "application_blocked" (DF04, APPLICATION BLOCK).
# Older files get the test issuer's keys (theirs were the test master's too), full
# counters and an unblocked application.
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
KEY_TRY_LIMIT = 3  # the reader API's -25536..-25538: 63C0..63C2 (docs/card.md §4)
AUTH_KEYS = tuple(k.name for k in KEYS if k.name is not KeyName.IRK)  # have a counter
NAME_BYTES = 30  # EF06 tag 09 (V2.0 table 9)
NAME_EXTENSION_BYTES = 20  # EF06 tag 4E, 2.00 and later


def split_name(name: str) -> tuple[bytes, bytes]:
    """The name in GBK as records 09 and 4E hold it: 09 the longest run of whole
    characters that fits its 30 bytes, 4E the rest (V2.0 table 9), so that neither
    record ends in half a character."""
    head = b""
    for i, char in enumerate(name):
        code = char.encode("gbk")
        if len(head) + len(code) > NAME_BYTES:
            return head, name[i:].encode("gbk")
        head += code
    return head, b""


MEDICAL_FLAGS = 5  # DF04/EF05 tag 81 characters 4-8 (V2.0 §8.5.1.1, tables 43-47)
MAX_TRY_LIMIT = 15  # 63Cx has one nibble for the tries left
MIN_YEAR = 1000  # dates go on the card as 8 BCD digits: the year needs all four
MAX_PROFILE_CHARS = 64
# ASCII digits only: str.isdigit() and date.fromisoformat() take other scripts' digits
# (Arabic-Indic, full-width) and other ISO forms (20190101), which the card cannot encode.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DIGITS = re.compile(r"[0-9]*")
_SSN = re.compile(r"[0-9]{17}[0-9X]")


class CardFileError(UsageError, ValueError):
    """A card file that cannot be used; the message is one line naming file and field."""

    api_code = None  # a card file is ours: the reader API has no number for it

    def __init__(self, path: str, where: str, reason: str) -> None:
        self.path = path
        self.where = where
        self.reason = reason
        super().__init__(
            f"{path}: {where} {reason}; fix the file or make a new one with 'cardio card new'"
        )


# The 13 historical bytes, laid out as part 2 §8.4 table 16 lays them out.
CHIP_PROVIDER = bytes(2)  # T1-T2: chip provider's registration number (none: emulated)
PROVIDER_DEFINED = b"SBP"  # T3-T5: the chip/COS provider's own (shebao-pos)
CARD_MANUFACTURER = bytes(2)  # T6-T7: card manufacturer's registration number (none)


def historical_bytes(identification_code: bytes) -> bytes:
    """T1-T7 fixed; T8-T9 the first 4 digits of the region code and TA-TD the card serial,
    both taken from the identification code (V2.0 §8.1.1.1 table 10: region cn3 ‖ RID cn5
    ‖ serial cn4 ‖ check cn4), so that each card differs and keeps its own."""
    region, serial = identification_code[:2], identification_code[8:12]
    return CHIP_PROVIDER + PROVIDER_DEFINED + CARD_MANUFACTURER + region + serial


@dataclass(frozen=True)
class PinHash:
    # Out of reprs: a salted hash of a 6-digit PIN is found by trying a million PINs.
    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)

    @classmethod
    def of(cls, pin: str, salt: bytes | None = None) -> PinHash:
        salt = salt if salt is not None else secrets.token_bytes(16)
        return cls(salt, _digest(salt, pin))

    def matches(self, pin: str) -> bool:
        return hmac.compare_digest(self.digest, _digest(self.salt, pin))


def _digest(salt: bytes, pin: str) -> bytes:
    return hashlib.sha256(salt + pin.encode("ascii")).digest()


@dataclass(frozen=True)
class CardData:
    """SSSE/EF05."""

    identification_code: bytes  # 16 bytes: BCD region(3) RID(5) serial(4) check(4)
    category: Category
    spec_version: str  # '1.00' / '2.00' / '3.00' (`SPEC_VERSIONS`)
    issuer_id: bytes  # 12 bytes
    issue_date: dt.date
    expiry_date: dt.date
    card_number: str  # 9 ASCII characters


@dataclass(frozen=True)
class Holder:
    """SSSE/EF06."""

    ssn: str  # the 18-character resident ID
    name: str  # GBK, at most 30 bytes (1.00) or 50 (tag 09 + tag 4E)
    sex: str  # '1' male, '2' female
    ethnic: str  # 2 BCD digits, '01' = Han
    birthplace: str  # 6-digit region code
    birth_date: dt.date


@dataclass(frozen=True)
class CardState:
    profile: str
    life_cycle: LifeCycle
    pin_state: PinState
    tries_left: int
    try_limit: int
    pin: PinHash
    keys: dict[KeyName, bytes] = field(repr=False)  # the card's own (cardio/issuer.py)
    t0_style: bool
    historical: bytes  # 13 historical ATR bytes
    card: CardData
    holder: Holder
    scheme: str  # national insurance scheme code, DF04/EF05: any 3 digits, `Scheme` if known
    medical_flags: str = "00000"  # DF04/EF05 tag 81 characters 4-8, each '0' or '1'
    insured_region: str = ""  # DF04/EF05 tag 84, 6 digits; "" = the identification code's
    real_only: bool = False  # answer our extensions 6D00, as a real card (docs/card.md §9)
    algorithm: Algorithm = Algorithm.SM4  # the SSSE's FCI, 9F0C { 86 01 xx }
    # EXTERNAL AUTHENTICATE's tries left per key (0 = locked); missing = KEY_TRY_LIMIT
    key_tries: dict[KeyName, int] = field(default_factory=dict)
    application_blocked: bool = False  # DF04 after APPLICATION BLOCK: 9303 for good

    def tries_of(self, key: KeyName) -> int:
        return self.key_tries.get(key, KEY_TRY_LIMIT)

    @property
    def region(self) -> str:
        """The insured region: as stored, else the identification code's region code."""
        return self.insured_region or self.card.identification_code[:3].hex().upper()

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0

    def with_(self, **changes: Any) -> CardState:
        return replace(self, **changes)

    # --- JSON ---------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        c, h = self.card, self.holder
        return {
            "format": FORMAT,
            "version": VERSION,
            "profile": self.profile,
            "life_cycle": self.life_cycle.value,
            "pin_state": self.pin_state.value,
            "tries_left": self.tries_left,
            "try_limit": self.try_limit,
            "t0_style": self.t0_style,
            "real_only": self.real_only,
            "algorithm": self.algorithm.value,
            "atr_historical": self.historical.hex().upper(),
            "key_tries": {k.value: self.tries_of(k) for k in AUTH_KEYS},
            "application_blocked": self.application_blocked,
            "card": {
                "identification_code": c.identification_code.hex().upper(),
                "category": c.category,
                "spec_version": c.spec_version,
                "issuer_id": c.issuer_id.hex().upper(),
                "issue_date": c.issue_date.isoformat(),
                "expiry_date": c.expiry_date.isoformat(),
                "card_number": c.card_number,
            },
            "holder": {
                "ssn": h.ssn,
                "name": h.name,
                "sex": h.sex,
                "ethnic": h.ethnic,
                "birthplace": h.birthplace,
                "birth_date": h.birth_date.isoformat(),
            },
            "medical": {
                "scheme": self.scheme,
                "flags": self.medical_flags,
                "region": self.region,
            },
            "secrets": {
                "pin_salt": self.pin.salt.hex(),
                "pin_sha256": self.pin.digest.hex(),
                "keys": {k.value: v.hex().upper() for k, v in sorted(self.keys.items())},
            },
        }

    @classmethod
    def from_json(cls, doc: Any, path: str) -> CardState:
        r = _Fields(doc, path, "")
        if r.text("format") != FORMAT:
            raise CardFileError(path, "field 'format'", f"must be {FORMAT!r}")
        version = r.integer("version", READABLE_VERSIONS[0], READABLE_VERSIONS[-1])
        try_limit = r.integer("try_limit", 1, MAX_TRY_LIMIT)
        tries_left = r.integer("tries_left", 0, try_limit)
        c = r.section("card")
        h = r.section("holder")
        m = r.section("medical")
        s = r.section("secrets")
        card = CardData(
            identification_code=c.hexbytes("identification_code", 16),
            category=Category(c.choice("category", tuple(Category))),
            spec_version=c.choice("spec_version", SPEC_VERSIONS),
            issuer_id=c.hexbytes("issuer_id", 12),
            issue_date=c.date("issue_date"),
            expiry_date=c.date("expiry_date"),
            card_number=c.ascii("card_number", 9),
        )
        holder = Holder(
            ssn=h.ssn("ssn"),
            name=h.name(
                "name",
                NAME_BYTES
                if version == 1 or card.spec_version == "1.00"
                else NAME_BYTES + NAME_EXTENSION_BYTES,
            ),
            sex=h.choice("sex", ("1", "2")),
            ethnic=h.digits("ethnic", 2),
            birthplace=h.digits("birthplace", 6),
            birth_date=h.date("birth_date"),
        )
        historical = r.hexbytes("atr_historical", 13)
        return cls(
            profile=r.label("profile", MAX_PROFILE_CHARS),
            life_cycle=LifeCycle(r.choice("life_cycle", tuple(LifeCycle))),
            pin_state=PinState(r.choice("pin_state", tuple(PinState))),
            tries_left=tries_left,
            try_limit=try_limit,
            pin=PinHash(s.hexbytes("pin_salt", None), s.hexbytes("pin_sha256", 32)),
            keys=(
                _keys(s.section("keys"))
                if version >= 3
                else card_keys(
                    fixture_issuer(_old_algorithm(r, version)),
                    card.identification_code,
                    historical,
                )
            ),
            t0_style=r.boolean("t0_style"),
            historical=historical,
            card=card,
            holder=holder,
            scheme=m.digits("scheme", 3),
            **(_version_2(r, m) if version >= 2 else {}),
            **(_version_3(r) if version >= 3 else {}),
        )


def _version_2(r: _Fields, m: _Fields) -> dict[str, Any]:
    """The fields a version 1 file lacks (their defaults stand in for them)."""
    flags = m.text("flags")
    if len(flags) != MEDICAL_FLAGS or set(flags) - {"0", "1"}:
        raise m._fail("flags", f"must be {MEDICAL_FLAGS} characters, each 0 or 1")
    return {
        "real_only": r.boolean("real_only"),
        "algorithm": Algorithm(r.choice_int("algorithm", tuple(Algorithm))),
        "medical_flags": flags,
        "insured_region": m.digits("region", 6),
    }


def _old_algorithm(r: _Fields, version: int) -> Algorithm:
    """An older file's algorithm (version 2 stores it; version 1 cards are SM4), so that
    its keys come from the test issuer's masters of that algorithm."""
    if version >= 2 and r.choice_int("algorithm", tuple(Algorithm)) == Algorithm.DES:
        return Algorithm.DES
    return Algorithm.SM4


def _keys(k: _Fields) -> dict[KeyName, bytes]:
    return {name: k.hexbytes(name.value, 16) for name in KeyName}


def _version_3(r: _Fields) -> dict[str, Any]:
    t = r.section("key_tries")
    return {
        "key_tries": {name: t.integer(name.value, 0, KEY_TRY_LIMIT) for name in AUTH_KEYS},
        "application_blocked": r.boolean("application_blocked"),
    }


@dataclass
class _Fields:
    """Typed reads from a JSON object, each failure naming its field."""

    doc: Any
    path: str
    prefix: str

    def __post_init__(self) -> None:
        if not isinstance(self.doc, dict):
            where = f"section '{self.prefix[:-1]}'" if self.prefix else "the top level"
            raise CardFileError(self.path, where, "must be a JSON object")

    def _fail(self, key: str, reason: str) -> CardFileError:
        return CardFileError(self.path, f"field '{self.prefix}{key}'", reason)

    def _get(self, key: str) -> Any:
        if key not in self.doc:
            raise self._fail(key, "is missing")
        return self.doc[key]

    def section(self, key: str) -> _Fields:
        return _Fields(self._get(key), self.path, f"{self.prefix}{key}.")

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._fail(key, "must be a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): not text
            raise self._fail(key, "must be valid Unicode text") from None
        return value

    def label(self, key: str, max_chars: int) -> str:
        """Text shown to people as is: printable, one line, not empty."""
        value = self.text(key)
        if not 0 < len(value) <= max_chars or not value.isprintable():
            raise self._fail(key, f"must be 1 to {max_chars} printable characters")
        return value

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in options:
            raise self._fail(key, "must be one of " + ", ".join(options))
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self._get(key)
        if type(value) is not int or not low <= value <= high:
            raise self._fail(key, f"must be a whole number from {low} to {high}")
        return value

    def choice_int(self, key: str, options: tuple[int, ...]) -> int:
        value = self._get(key)
        if type(value) is not int or value not in options:
            raise self._fail(key, "must be one of " + ", ".join(map(str, options)))
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "must be true or false")
        return value

    def hexbytes(self, key: str, length: int | None) -> bytes:
        value = self.text(key)
        try:
            data = bytes.fromhex(value)
        except ValueError:
            raise self._fail(key, "must be hex digits") from None
        if length is not None and len(data) != length:
            raise self._fail(key, f"must be {length} bytes ({2 * length} hex digits)")
        if length is None and not data:
            raise self._fail(key, "must not be empty")
        return data

    def digits(self, key: str, length: int) -> str:
        value = self.text(key)
        if len(value) != length or not _DIGITS.fullmatch(value):
            raise self._fail(key, f"must be {length} digits 0-9")
        return value

    def ascii(self, key: str, length: int) -> str:
        value = self.text(key)
        if len(value) != length or not value.isascii() or not value.isprintable():
            raise self._fail(key, f"must be {length} printable ASCII characters")
        return value

    def ssn(self, key: str) -> str:
        value = self.text(key)
        if not _SSN.fullmatch(value):
            raise self._fail(key, "must be 17 digits 0-9 and a digit or X")
        return value

    def gbk(self, key: str, max_bytes: int) -> str:
        value = self.text(key)
        try:
            size = len(value.encode("gbk"))
        except UnicodeEncodeError:
            raise self._fail(key, "must be written in characters GBK can encode") from None
        if not 0 < size <= max_bytes:
            raise self._fail(key, f"must take 1 to {max_bytes} bytes in GBK")
        if not value.isprintable():
            raise self._fail(key, "must be printable characters on one line")
        return value

    def name(self, key: str, max_bytes: int) -> str:
        """A holder's name: GBK, split between characters into 09 and 4E."""
        value = self.gbk(key, max_bytes)
        head, rest = split_name(value)
        if len(rest) > NAME_EXTENSION_BYTES:
            raise self._fail(
                key,
                f"must fit records 09 and 4E ({NAME_BYTES} + {NAME_EXTENSION_BYTES} "
                "bytes in GBK, split between characters)",
            )
        return value

    def date(self, key: str) -> dt.date:
        value = self.text(key)
        try:
            if not _DATE.fullmatch(value):
                raise ValueError(value)
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise self._fail(key, "must be a date written YYYY-MM-DD") from None
        if day.year < MIN_YEAR:
            raise self._fail(key, f"must be a date from {MIN_YEAR}-01-01 on")
        return day
