"""`cardio read-bas`: the card's basic information as the reader API's iReadCardBas
gives it (四川省社会保障卡读写终端规范 V2.0 §1.1.2; docs/card.md §8).

Eleven fields, each followed by `|` (the last one too):

 1 region code: the first 6 digits of the card identification code (EF05 01)
 2 social security number (EF06 08)
 3 card number, its first 9 characters (EF05 07; API §10.4)
 4 card identification code, 32 upper-case hex digits (EF05 01)
 5 name: EF06 09 ‖ 4E on a 2.0x/3.0x card, 00 padding stripped, GBK (API §10.2)
 6 the ATR's historical bytes, upper-case hex (API §1.1.2: 仅取历史字节)
 7 spec version (EF05 03)
 8 issue date, CCYYMMDD (EF05 05)
 9 expiry date, CCYYMMDD (EF05 06)
10 terminal number: read from the PSAM (--psam); without one, 12 zeros: what the
   API's reading without a PSAM (iReadCardBas_HSM_Step2, §1.3.2 note) answers
11 terminal device number: none, so empty (API §1.1.2 note)

The SSN and the name are the holder's personal data. This output is the integrator's
tool for comparing with their own DLL, so it prints them unmasked, on standard output
only; they never go to a log or a trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardio.apdu import historical_bytes
from cardio.protocol import Basics

SEPARATOR = "|"
NO_PSAM_TERMINAL_NUMBER = "0" * 12  # 6 bytes 00 as hex (API §1.3.2)
NO_DEVICE_NUMBER = ""
REGION_BYTES = 3  # cn 3: the city code at the start of the identification code (V2.0 table 10)
CARD_NUMBER_LENGTH = 9  # API §10.4


@dataclass(frozen=True)
class BasicInfo:
    """The eleven fields, named as in `--json`."""

    region_code: str
    ssn: str
    card_number: str
    identification_code: str
    name: str
    historical_bytes: str
    spec_version: str
    issue_date: str
    expiry_date: str
    terminal_number: str
    device_number: str

    @classmethod
    def of(cls, basics: Basics, atr: bytes, terminal_number: str | None = None) -> BasicInfo:
        return cls(
            region_code=basics.identification_code[:REGION_BYTES].hex().upper(),
            ssn=basics.ssn,
            card_number=basics.card_number[:CARD_NUMBER_LENGTH],
            identification_code=basics.identification_code.hex().upper(),
            name=basics.name,
            historical_bytes=historical_bytes(atr).hex().upper(),
            spec_version=basics.spec_version,
            issue_date=basics.issue_date,
            expiry_date=basics.expiry_date,
            terminal_number=terminal_number or NO_PSAM_TERMINAL_NUMBER,
            device_number=NO_DEVICE_NUMBER,
        )

    def fields(self) -> list[str]:
        return [
            self.region_code,
            self.ssn,
            self.card_number,
            self.identification_code,
            self.name,
            self.historical_bytes,
            self.spec_version,
            self.issue_date,
            self.expiry_date,
            self.terminal_number,
            self.device_number,
        ]

    def line(self) -> str:
        """pOutInfo: every field followed by `|`."""
        return "".join(field + SEPARATOR for field in self.fields())
