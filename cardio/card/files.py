"""The card's file tree (docs/card.md §2, "Application and files"), built from its state.

Records are addressed by record number = tag and read back as tag(1) len(1) value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cardio.card.state import CardState
from cardio.model import SSSE_NAME, Fid, MedicalTag, Sfi, Tag

NAME_FIELD_LENGTH = 30


@dataclass(frozen=True)
class Ef:
    fid: int
    sfi: int
    records: dict[int, bytes]  # tag -> value

    def record(self, tag: int) -> bytes | None:
        value = self.records.get(tag)
        return None if value is None else bytes((tag, len(value))) + value


@dataclass(frozen=True)
class Df:
    fid: int | None
    name: bytes | None
    children: tuple[Ef | Df, ...] = field(default=())

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
        """A minimal FCI template: 6F { 83 FID, 84 DF name }."""
        body = b""
        if self.fid is not None:
            body += b"\x83\x02" + self.fid.to_bytes(2, "big")
        if self.name is not None:
            body += bytes((0x84, len(self.name))) + self.name
        return bytes((0x6F, len(body))) + body


def _bcd_date(day: dt.date) -> bytes:
    return bytes.fromhex(day.strftime("%Y%m%d"))


def build(state: CardState) -> Df:
    """MF 3F00 / SSSE (by name) / EF05, EF06, DF04 / EF05."""
    c, h = state.card, state.holder
    card_data = Ef(
        Fid.EF05,
        Sfi.EF05,
        {
            Tag.IDENTIFICATION_CODE: c.identification_code,
            Tag.CATEGORY: c.category.encode("ascii"),
            Tag.SPEC_VERSION: c.spec_version.encode("ascii"),
            Tag.ISSUER: c.issuer_id,
            Tag.ISSUE_DATE: _bcd_date(c.issue_date),
            Tag.EXPIRY_DATE: _bcd_date(c.expiry_date),
            Tag.CARD_NUMBER: c.card_number.encode("ascii"),
        },
    )
    holder = Ef(
        Fid.EF06,
        Sfi.EF06,
        {
            Tag.SSN: h.ssn.encode("ascii"),
            Tag.NAME: h.name.encode("gbk").ljust(NAME_FIELD_LENGTH, b"\x00"),
            Tag.SEX: h.sex.encode("ascii"),
            Tag.ETHNIC: bytes.fromhex(h.ethnic),
            Tag.BIRTHPLACE: bytes.fromhex(h.birthplace),
            Tag.BIRTH_DATE: _bcd_date(h.birth_date),
        },
    )
    medical_record = Ef(Fid.EF05, Sfi.EF05, {MedicalTag.SCHEME: state.scheme.encode("ascii")})
    medical = Df(Fid.DF04, None, (medical_record,))
    ssse = Df(None, SSSE_NAME, (card_data, holder, medical))
    return Df(Fid.MF, None, (ssse,))
