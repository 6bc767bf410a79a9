"""The issuer's keys: which keys a card holds, how they are named on the card and in a
PSAM, the master-key file, and the dispersion of a card's own keys (docs/security.md).

A card holds its own keys, each dispersed from the issuer's master key of the same name
with the card's three factors (part 9 §7.3: province, city, card), so that no two cards
share a key. The masters are national roots here: our test issuer (and our virtual PSAM)
keep every key at that level, which part 9 §8 allows, so each card key is three
dispersion steps from its master.

Master-key file (JSON; a private one must be mode 0600):

    {"algorithm": "SM4", "keys": {"IRK": "<32 hex>", "RKSSSE": "...", "PUK": "...", ...}}
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cardio import resources, security
from cardio.errors import UsageError
from cardio.model import Algorithm

__all__ = [
    "KEYS",
    "Issuer",
    "IssuerFileError",
    "KeyName",
    "KeySpec",
    "card_keys",
    "counterfeit_issuer",
    "load_issuer",
    "fixture_issuer",
]


class KeyName(StrEnum):
    """The card keys we model (part 6 table 3, V2.0 tables 3 and 7, part 10 §6.4.2)."""

    IRK = "IRK"  # internal authentication: the card proves it is genuine
    RKSSSE = "RKSSSE"  # reads the SSSE's protected files (EF07, EF08; EF06 on 3.00 cards)
    PUK = "PUK"  # PIN reload and unblock (84 24), and our activation extension
    STKSSSE = "STKSSSE"  # MACs of the SSSE's maintenance commands
    UK = "UK"  # updates the SSSE's files (UKSSSE)
    BK = "BK"  # controls CARD BLOCK
    RK1DF04 = "RK1DF04"  # reads DF04's files (with or instead of the PIN)
    UK1DF04 = "UK1DF04"  # updates DF04/EF05
    STKDF04 = "STKDF04"  # MACs of DF04's maintenance commands (APPLICATION BLOCK)
    LKDF04 = "LKDF04"  # controls APPLICATION BLOCK of DF04


SSSE, DF04 = "SSSE", "DF04"


@dataclass(frozen=True)
class KeySpec:
    """One key: where the card holds it, how a command names it, how a PSAM names it.

    `reference` is EXTERNAL AUTHENTICATE's P2 (part 5 §6.4 table 14: b8 = 0 a key of
    the SSSE, b8 = 1 a key of the current DF), from part 9 appendix B table B1; RKSSSE
    has none there and takes 07 (docs/security.md). `psam_type` and `psam_id` are the
    PSAM's key type (part 9 §6.2: 06 MAC, 07 encryption, 08 MAC and encryption) and key
    identifier (part 9 appendix B; the reader API's appendix B where part 9 leaves a key
    to the provinces)."""

    name: KeyName
    df: str
    reference: int
    psam_type: int
    psam_id: int

    @property
    def psam_usage(self) -> int:
        """BF DE's P1: b8-b6 the dispersions the stored key needs (3: a national root),
        b5-b1 its type (part 9 §6.2)."""
        return DISPERSIONS << 5 | self.psam_type


DISPERSIONS = 3  # national root -> province -> city -> card (part 9 §7.3)

KEYS: tuple[KeySpec, ...] = (
    KeySpec(KeyName.IRK, SSSE, 0x00, 0x07, 0x08),
    KeySpec(KeyName.STKSSSE, SSSE, 0x02, 0x06, 0x09),
    KeySpec(KeyName.UK, SSSE, 0x04, 0x08, 0x12),
    KeySpec(KeyName.BK, SSSE, 0x05, 0x08, 0x11),
    KeySpec(KeyName.PUK, SSSE, 0x06, 0x08, 0x10),
    KeySpec(KeyName.RKSSSE, SSSE, 0x07, 0x07, 0x0A),
    KeySpec(KeyName.STKDF04, DF04, 0x82, 0x06, 0x23),
    KeySpec(KeyName.LKDF04, DF04, 0x83, 0x08, 0x41),
    KeySpec(KeyName.RK1DF04, DF04, 0x84, 0x07, 0x2D),
    KeySpec(KeyName.UK1DF04, DF04, 0x85, 0x08, 0x49),
)
SPEC: dict[KeyName, KeySpec] = {k.name: k for k in KEYS}
KEY_LENGTH = 16  # SM4 keys, and DES keys of double length (3DES); part 9 appendix B


class IssuerFileError(UsageError):
    """A master-key file that cannot be used; one line naming the file and what to do."""

    api_code = None  # ours, not the reader API's


@dataclass(frozen=True)
class Issuer:
    """An issuer's algorithm and master keys (national roots)."""

    algorithm: Algorithm
    masters: dict[KeyName, bytes]

    def __repr__(self) -> str:  # never the keys
        return f"Issuer({self.algorithm.name}, {sorted(self.masters)})"


def card_keys(
    issuer: Issuer, identification_code: bytes, historical: bytes
) -> dict[KeyName, bytes]:
    """A card's own keys: every master dispersed with the card's factors (part 9 §7.3)."""
    return {
        name: security.card_key(issuer.algorithm, master, identification_code, historical)
        for name, master in issuer.masters.items()
    }


_ALGORITHMS = {"SM4": Algorithm.SM4, "DES": Algorithm.DES}


def parse_issuer(text: str, where: str) -> Issuer:
    """An Issuer from the master-key file's text; `where` names the file in errors."""
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: a file nested too deep
        raise IssuerFileError(f"{where}: not a JSON master-key file; check the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise IssuerFileError(
            f"{where}: not a master-key file; write it as "
            '{"algorithm": "SM4", "keys": {"IRK": "<32 hex>", ...}}'
        )
    algorithm = _ALGORITHMS.get(str(data.get("algorithm", "")).upper())
    if algorithm is None:
        raise IssuerFileError(
            f'{where}: "algorithm" is not "SM4" or "DES" (SSF33 is unavailable); set one of them'
        )
    masters: dict[KeyName, bytes] = {}
    for name, value in data["keys"].items():
        if name not in KeyName.__members__:
            known = ", ".join(KeyName)
            raise IssuerFileError(f"{where}: unknown key {name!r}; the keys are {known}")
        try:
            key = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            key = b""
        if len(key) != KEY_LENGTH:
            raise IssuerFileError(
                f"{where}: key {name} is not 32 hex digits (16 bytes); write it in full"
            )
        masters[KeyName(name)] = key
    missing = [k for k in KeyName if k not in masters]
    if missing:
        raise IssuerFileError(f"{where}: keys missing: {', '.join(missing)}; add them to the file")
    return Issuer(algorithm, masters)


def load_issuer(path: Path) -> Issuer:
    """A private master-key file: its owner's only (mode 0600), as the outlet's --key."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise IssuerFileError(f"{path}: no such master-key file; check the path") from None
    except OSError as e:
        raise IssuerFileError(f"{path} cannot be read ({e.strerror}); check it") from None
    if not stat.S_ISREG(mode):
        raise IssuerFileError(f"{path} is not a regular file; give the master-key file itself")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IssuerFileError(
            f"{path} can be read by others; make it private (chmod 600 {path}) and try again"
        )
    try:  # never a fifo that would hang us, nor a huge file
        text = resources.read_small_file(path, "master-key file")
    except resources.UnusableFileError as e:
        raise IssuerFileError(str(e)) from None
    return parse_issuer(text, str(path))


TEST_ISSUER_FILE = "TEST-ONLY-issuer.json"
TEST_DES_ISSUER_FILE = "TEST-ONLY-issuer-des.json"
COUNTERFEIT_ISSUER_FILE = "TEST-ONLY-other-issuer.json"


def _fixture(name: str) -> Issuer:
    path = resources.data_dir("keys") / name
    return parse_issuer(path.read_text("utf-8"), str(path))


def fixture_issuer(algorithm: Algorithm = Algorithm.SM4) -> Issuer:
    """The public test issuer of the fixture cards (TEST ONLY; its mode does not matter):
    its SM4 masters, or those of its DES cards (double-length keys: two-key 3DES)."""
    if algorithm is Algorithm.DES:
        return _fixture(TEST_DES_ISSUER_FILE)
    if algorithm is not Algorithm.SM4:
        raise IssuerFileError(f"the test issuer has no {algorithm.name} keys; use SM4 or DES")
    return _fixture(TEST_ISSUER_FILE)


def counterfeit_issuer() -> Issuer:
    """Another issuer's keys: cards made with them fail the authenticity check."""
    return _fixture(COUNTERFEIT_ISSUER_FILE)
