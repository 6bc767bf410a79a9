"""What a virtual PSAM holds, and its JSON file (docs/psam.md).

    {"format": 1, "kind": "psam", "terminal_number": "<12 digits>",
     "serial": "<20 digits>", "issuer": {"algorithm": "SM4", "keys": {"IRK": "<32 hex>", ...}}}

The keys are the issuer's national roots (part 9 §7.3 fig. 12, 一级根密钥), each needing
three dispersions; the file is as secret as a master-key file and is kept mode 0600.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cardio.errors import UsageError
from cardio.issuer import KEYS, Issuer, IssuerFileError, KeyName, parse_issuer
from cardio.model import Algorithm

FORMAT = 1
KIND = "psam"
TERMINAL_DIGITS = 12  # part 9 §5.3 table 3: cn 6
SERIAL_DIGITS = 20  # part 9 §5.2 table 2: cn 10
DEFAULT_TERMINAL_NUMBER = "310000000001"  # part 9 §7.3: city 310000, then the issuer's 000001
_DIGITS = re.compile(r"[0-9]+")

# Part 9 §6.2 names 00 (3DES, 16-byte key), 01 (DES) and 02 (SSF33). It has no SM4
# environment; ours keeps SM4 keys in the one environment, marked 03, the code SM4 has in
# the user card's FCI (reader API §10.1). Every key here is 16 bytes, so DES is 3DES.
ALGORITHM_BYTES = {Algorithm.DES: 0x00, Algorithm.SM4: 0x03}


class PsamFileError(UsageError, ValueError):
    """A PSAM file that cannot be used; one line naming the file and what to do."""

    api_code = None  # ours: the reader API has no number for a file


@dataclass(frozen=True)
class KeyRecord:
    """One key as the PSAM's key file holds it, part 9 §6.1 format 1: usage, identifier,
    algorithm, key. `usage` b8-b6 are the dispersions the key needs, b5-b1 its type."""

    name: KeyName
    usage: int
    ident: int
    algorithm: int
    key: bytes = field(repr=False)  # never in a repr, a log or an error

    @property
    def key_type(self) -> int:
        return self.usage & 0x1F

    @property
    def level(self) -> int:
        return self.usage >> 5


def valid_terminal_number(text: str) -> bool:
    return len(text) == TERMINAL_DIGITS and bool(_DIGITS.fullmatch(text))


def serial_of(terminal_number: str) -> str:
    """The PSAM serial we give a new PSAM: its terminal number, then 00000001 (20 digits)."""
    return terminal_number + "1".rjust(SERIAL_DIGITS - TERMINAL_DIGITS, "0")


@dataclass(frozen=True)
class PsamState:
    terminal_number: str
    serial: str
    issuer: Issuer  # its repr names the keys, never their bytes

    @property
    def algorithm(self) -> Algorithm:
        return self.issuer.algorithm

    def records(self) -> tuple[KeyRecord, ...]:
        """The key file: the catalogue's keys (cardio/issuer.py, part 9 appendix B), each
        a national root with its type and identifier."""
        algorithm = ALGORITHM_BYTES[self.issuer.algorithm]
        return tuple(
            KeyRecord(
                spec.name, spec.psam_usage, spec.psam_id, algorithm, self.issuer.masters[spec.name]
            )
            for spec in KEYS
            if spec.name in self.issuer.masters
        )

    def find(self, key_type: int, ident: int) -> KeyRecord | None:
        """The key of that type (b5-b1 of a usage byte) and identifier, if held."""
        for record in self.records():
            if (record.key_type, record.ident) == (key_type, ident):
                return record
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": KIND,
            "terminal_number": self.terminal_number,
            "serial": self.serial,
            "issuer": {
                "algorithm": self.issuer.algorithm.name,
                "keys": {
                    name.value: key.hex().upper() for name, key in self.issuer.masters.items()
                },
            },
        }

    @classmethod
    def from_json(cls, doc: Any, name: str) -> PsamState:
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise PsamFileError(
                f"{name} is not a PSAM file; make one with 'cardio card new --profile psam {name}'"
            )
        if doc.get("format") != FORMAT:
            raise PsamFileError(
                f"{name}: PSAM file format {doc.get('format')!r} is not {FORMAT}; "
                f"make it anew with 'cardio card new --profile psam --force {name}'"
            )
        terminal = doc.get("terminal_number")
        if not isinstance(terminal, str) or not valid_terminal_number(terminal):
            raise PsamFileError(f'{name}: "terminal_number" must be 12 digits; correct it')
        serial = doc.get("serial")
        if (
            not isinstance(serial, str)
            or len(serial) != SERIAL_DIGITS
            or not _DIGITS.fullmatch(serial)
        ):
            raise PsamFileError(f'{name}: "serial" must be 20 digits; correct it')
        section = doc.get("issuer")
        if not isinstance(section, dict):
            raise PsamFileError(
                f'{name}: "issuer" must be {{"algorithm": "SM4", "keys": {{...}}}}; correct it'
            )
        try:
            issuer = parse_issuer(json.dumps(section), f"{name} (its issuer keys)")
        except IssuerFileError as e:
            raise PsamFileError(str(e)) from None
        return cls(terminal, serial, issuer)


def make(issuer: Issuer, terminal_number: str = DEFAULT_TERMINAL_NUMBER) -> PsamState:
    """A new PSAM holding `issuer`'s masters as national roots: each needs DISPERSIONS
    (3) dispersion factors, as its usage byte says (issuer.KeySpec.psam_usage)."""
    if not valid_terminal_number(terminal_number):
        raise UsageError(
            f"{terminal_number!r} is not a terminal number; give 12 digits, e.g. "
            f"{DEFAULT_TERMINAL_NUMBER} (part 9 §7.3: the city code, then 6 of the issuer's)"
        )
    return PsamState(terminal_number, serial_of(terminal_number), issuer)
