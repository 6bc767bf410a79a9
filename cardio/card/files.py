"""The card's file tree (docs/card.md §2, "Application and files"), built from its state.

The tree and its records follow the V2.0 notice on files and data items (§5 tables 3
and 7, table 9) and part 3 of the standard: a record EF holds its records in creation
order (record number 1 first, part 3 §5.3.2), each a simple TLV `tag len value` whose
first byte is its record identifier (part 3 §5.3.1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cardio.card.state import NAME_BYTES, NAME_EXTENSION_BYTES, CardState, split_name
from cardio.issuer import KeyName
from cardio.model import (
    MEDICAL_AID,
    MEDICAL_LABEL,
    SSSE_NAME,
    DirTag,
    Fid,
    MedicalTag,
    Sfi,
    Tag,
)

__all__ = ["SSSE_NAME", "Df", "Ef", "build"]

FINGERPRINT_BYTES = 0x300  # SSSE/EF07 (V2.0 table 9)
PHOTO_BYTES = 0x1000  # SSSE/EF08 (V2.0 §8.1.4 table 15)
_AN_PAD = b"\x00"  # an items: left-aligned, 00 after (V2.0 §7)
_DIR_SFI = 0x88  # FCI: the SFI of the directory file (part 5 table 36)
_ALGORITHM_DATA = 0x9F0C  # FCI issuer discretionary data (part 5 table 36)
_ALGORITHM_TAG = 0x86  # inside it: the algorithm identifier (reader API §10.1)


@dataclass(frozen=True)
class Ef:
    """An elementary file: a linear record file (`records`) or a transparent one (`size`).
    The directory file has no FID (part 3 §6.3 names it by its SFI only)."""

    fid: int | None
    sfi: int
    records: tuple[bytes, ...] = ()  # whole TLV records, record number 1 first
    size: int | None = None  # a transparent file's size; None = a record file
    # Its read condition (V2.0 tables 3 and 7): free (None), or this key's EXTERNAL
    # AUTHENTICATE, or (or_pin) either that or the verified PIN
    read_key: KeyName | None = None
    or_pin: bool = False
    # Its write condition: this key's EXTERNAL AUTHENTICATE; None: never written
    write_key: KeyName | None = None
    where: str = ""  # "SSSE/EF05" ...: which records UPDATE RECORD maps to fields

    @property
    def holds_records(self) -> bool:
        return self.size is None


@dataclass(frozen=True)
class Df:
    fid: int | None
    name: bytes | None
    children: tuple[Ef | Df, ...] = field(default=())
    proprietary: bytes | None = None  # the FCI's A5 template body; None = no A5

    def child_by_fid(self, fid: int) -> Ef | Df | None:
        return next((c for c in self.children if c.fid == fid), None)

    def ef_by_sfi(self, sfi: int) -> Ef | None:
        return next((c for c in self.children if isinstance(c, Ef) and c.sfi == sfi), None)

    def df_by_name(self, name: bytes) -> Df | None:
        if self.name == name:
            return self
        for child in self.children:
            if isinstance(child, Df) and (found := child.df_by_name(name)):
                return found
        return None

    def fci(self) -> bytes:
        """`6F { 84 DF name, A5 {...} }` (part 5 §6.11.4 tables 36-38); the MF, which has
        no DF name, `6F { 83 3F00 }` as ISO 7816-4 has it."""
        if self.name is None:
            body = _tlv(0x83, (self.fid or 0).to_bytes(2, "big"))
        else:
            body = _tlv(0x84, self.name)
        if self.proprietary is not None:
            body += _tlv(0xA5, self.proprietary)
        return _tlv(0x6F, body)


def _tlv(tag: int, value: bytes) -> bytes:
    head = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    return head + bytes((len(value),)) + value


def _bcd_date(day: dt.date) -> bytes:
    return bytes.fromhex(day.strftime("%Y%m%d"))


def _an(text: str | bytes, length: int, encoding: str = "ascii") -> bytes:
    raw = text if isinstance(text, bytes) else text.encode(encoding)
    return raw[:length].ljust(length, _AN_PAD)


def _records(*items: tuple[int, bytes]) -> tuple[bytes, ...]:
    return tuple(_tlv(tag, value) for tag, value in items)


def build(state: CardState) -> Df:
    """MF 3F00 / SSSE (by name) / DIR, EF05, EF06, EF07, (EF08), DF04 / EF05."""
    c, h = state.card, state.holder
    v1 = c.spec_version == "1.00"
    card_data = Ef(
        Fid.EF05,
        Sfi.EF05,
        _records(
            (Tag.IDENTIFICATION_CODE, c.identification_code),
            (Tag.CATEGORY, c.category.encode("ascii")),
            (Tag.SPEC_VERSION, c.spec_version.encode("ascii")),
            (Tag.ISSUER, c.issuer_id),
            (Tag.ISSUE_DATE, _bcd_date(c.issue_date)),
            (Tag.EXPIRY_DATE, _bcd_date(c.expiry_date)),
            (Tag.CARD_NUMBER, c.card_number.encode("ascii")),
        ),
        write_key=KeyName.UK,  # V2.0 table 3: UKSSSE
        where="SSSE/EF05",
    )
    name, rest = split_name(h.name)
    name_items = [(Tag.NAME, _an(name, NAME_BYTES))]
    if not v1:  # V2.0 table 9: 4E carries what does not fit in 09; zeros otherwise
        name_items.append((Tag.NAME_EXTENSION, _an(rest, NAME_EXTENSION_BYTES)))
    holder = Ef(
        Fid.EF06,
        Sfi.EF06,
        _records(
            (Tag.SSN, h.ssn.encode("ascii")),
            *name_items,
            (Tag.SEX, h.sex.encode("ascii")),
            (Tag.ETHNIC, bytes.fromhex(h.ethnic)),
            (Tag.BIRTHPLACE, bytes.fromhex(h.birthplace)),
            (Tag.BIRTH_DATE, _bcd_date(h.birth_date)),
        ),
        read_key=KeyName.RKSSSE if c.spec_version == "3.00" else None,  # reader API §10.2
        write_key=KeyName.UK,
        where="SSSE/EF06",
    )
    transparent = [Ef(Fid.EF07, Sfi.EF07, size=FINGERPRINT_BYTES, read_key=KeyName.RKSSSE)]
    if not v1:
        transparent.append(Ef(Fid.EF08, Sfi.EF08, size=PHOTO_BYTES, read_key=KeyName.RKSSSE))
    medical_basic = Ef(  # V2.0 table 7: read after the PIN or RK1DF04
        Fid.EF05,
        Sfi.EF05,
        _records(
            (MedicalTag.SCHEME, _an(state.scheme + state.medical_flags, 8)),
            (MedicalTag.INSURED_REGION, bytes.fromhex(state.region)),
        ),
        read_key=KeyName.RK1DF04,
        or_pin=True,
        write_key=KeyName.UK1DF04,  # V2.0 table 7
        where="DF04/EF05",
    )
    medical = Df(Fid.DF04, MEDICAL_AID, (medical_basic,))
    # The directory lists the applications the card holds, so a terminal that reads it
    # (part 3 §6.5.2) does not take the card to hold every one (§5.1.4).
    entry = _tlv(DirTag.AID, MEDICAL_AID) + _tlv(DirTag.LABEL, MEDICAL_LABEL)
    directory = Ef(None, Sfi.DIR, (_tlv(DirTag.APPLICATION, entry),))
    proprietary = _tlv(_DIR_SFI, bytes((Sfi.DIR,))) + _tlv(
        _ALGORITHM_DATA, _tlv(_ALGORITHM_TAG, bytes((state.algorithm,)))
    )
    ssse = Df(None, SSSE_NAME, (directory, card_data, holder, *transparent, medical), proprietary)
    return Df(Fid.MF, None, (ssse,))
