"""Where the terminal and the outlet get a card's cryptograms: the issuer's master keys,
or a PSAM (docs/psam.md, "The key source").

Both sources answer the same three questions about a user card, and must give the
same bytes: what a genuine card answers to INTERNAL AUTHENTICATE, the cryptogram of an
EXTERNAL AUTHENTICATE, and a MAC-protected command (part 4 §8-§9, part 9 §7.3-§7.4).

- `MasterKeySource` computes them with `cardio.security` from the masters: the card's
  key is the master dispersed province, city, card (part 9 §7.3).
- `PsamKeySource` asks a PSAM through a reader: DELIVERY SESSION KEY (BF DE, part 9
  §9.7) with the three factors and the session factor, then CIPHER DATA (80 FA, §9.8)
  to encrypt or MAC. The terminal pads; the PSAM only encrypts and chains.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from cardio import api_codes, security, sw
from cardio.apdu import command, split_response
from cardio.errors import CardioError, UsageError
from cardio.issuer import SPEC, Issuer, KeyName
from cardio.model import Algorithm, CipherOp, PsamCla, PsamFid, PsamIns
from cardio.readers.base import Reader
from cardio.readers.errors import ReaderError

__all__ = [
    "CardIdentity",
    "KeySource",
    "KeySourceError",
    "MasterKeySource",
    "PsamKeySource",
]

DEFAULT_TERMINAL_NUMBER = "310000000001"
TERMINAL_DIGITS = 12
_MF = PsamFid.MF.to_bytes(2, "big")
_ADF = PsamFid.ADF.to_bytes(2, "big")
_TERMINAL_SFI = 0x16  # 0016, the terminal number (part 9 §5.3): READ BINARY P1 = 80 | SFI
_TERMINAL_LENGTH = 6
_LEVEL_API_CODE = api_codes.ApiCode.KEY_LEVEL  # reader API appendix A


@dataclass(frozen=True)
class CardIdentity:
    """What a key source needs to know about a user card."""

    algorithm: Algorithm
    identification_code: bytes  # 16 bytes, SSSE/EF05 tag 01
    historical: bytes  # the 13 ATR historical bytes (card factor = historical[5:13])


class KeySource(Protocol):
    def terminal_number(self) -> str:
        """The 12-digit terminal number (part 9 §5.3, §7.3)."""
        ...

    def internal_auth(self, card: CardIdentity, r1: bytes, r2: bytes) -> bytes:
        """The 8 bytes a genuine card answers to `00 88 00 00 10 r1 r2` (IRK; r1 the
        session factor, r2 the raw data: part 4 §9, part 5 §6.7)."""
        ...

    def external_auth(
        self, key: KeyName, card: CardIdentity, challenge: bytes, raw: bytes
    ) -> bytes:
        """The 8-byte cryptogram for `00 82 00 <ref> 10 cryptogram raw` after the card's
        `challenge` (part 4 §9, part 5 §6.4)."""
        ...

    def secure_apdu(
        self,
        key: KeyName,
        card: CardIdentity,
        challenge: bytes,
        cla: int,
        ins: int,
        p1: int,
        p2: int,
        pin: str | None,
    ) -> bytes:
        """The whole MAC-protected APDU; with `pin`, its body is the encrypted PIN block
        under the same session key (part 4 §8.3, §8.5; docs/security.md A5)."""
        ...


class KeySourceError(CardioError):
    """A key source that cannot give what was asked: the PSAM refused, or holds other
    keys. One sentence; never a key byte."""


def _unusable(error: ReaderError) -> KeySourceError:
    unusable = KeySourceError(f"the PSAM cannot be used ({error}); check the PSAM and its reader")
    unusable.api_code = api_codes.ApiCode.NO_PSAM
    return unusable


def _check_terminal_number(text: str) -> str:
    if len(text) != TERMINAL_DIGITS or not (text.isascii() and text.isdigit()):
        raise UsageError(
            f"{text!r} is not a terminal number; give 12 digits, e.g. {DEFAULT_TERMINAL_NUMBER}"
        )
    return text


def _algorithm_mismatch(card: Algorithm, keys: Algorithm, where: str) -> KeySourceError:
    return KeySourceError(
        f"the card uses {card.name} but {where} holds {keys.name} keys; "
        f"use keys made for {card.name} cards"
    )


@functools.lru_cache(maxsize=256)
def _card_key(alg: Algorithm, master: bytes, ident: bytes, historical: bytes) -> bytes:
    """A card's key, dispersed once per card and key (three block encryptions each time
    otherwise: a payment asks for the same card's keys several times)."""
    return security.card_key(alg, master, ident, historical)


class MasterKeySource:
    """The cryptograms from the issuer's master keys (cardio.security): one set per
    algorithm the issuer's cards use (the test issuer: SM4 and DES)."""

    def __init__(
        self, issuer: Issuer, *more: Issuer, terminal_number: str = DEFAULT_TERMINAL_NUMBER
    ) -> None:
        self._issuers = {i.algorithm: i for i in (issuer, *more)}
        self._first = issuer
        self._terminal = _check_terminal_number(terminal_number)

    def __repr__(self) -> str:  # never the keys
        return f"MasterKeySource({list(self._issuers.values())!r}, {self._terminal})"

    def _key(self, name: KeyName, card: CardIdentity) -> bytes:
        issuer = self._issuers.get(card.algorithm)
        if issuer is None:
            raise _algorithm_mismatch(card.algorithm, self._first.algorithm, "the issuer")
        return _card_key(
            card.algorithm, issuer.masters[name], card.identification_code, card.historical
        )

    def terminal_number(self) -> str:
        return self._terminal

    def internal_auth(self, card: CardIdentity, r1: bytes, r2: bytes) -> bytes:
        return security.authentication(card.algorithm, self._key(KeyName.IRK, card), r1, r2)

    def external_auth(
        self, key: KeyName, card: CardIdentity, challenge: bytes, raw: bytes
    ) -> bytes:
        return security.authentication(card.algorithm, self._key(key, card), challenge, raw)

    def secure_apdu(
        self,
        key: KeyName,
        card: CardIdentity,
        challenge: bytes,
        cla: int,
        ins: int,
        p1: int,
        p2: int,
        pin: str | None,
    ) -> bytes:
        alg = card.algorithm
        card_key = self._key(key, card)
        body = b""
        if pin is not None:
            session = security.session_key(alg, card_key, challenge)
            body = security.encrypt(alg, session, security.pin_block(pin))
        return security.secure_apdu(alg, card_key, challenge, cla, ins, p1, p2, body)


class PsamKeySource:
    """The cryptograms from a PSAM in `reader` (connected by the caller).

    On first use it selects the MF 3F00, reads the terminal number (0016) and the
    algorithm (the MF's FCI, docs/psam.md), and selects the ADF DF01 (part 9 §5).
    """

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._terminal: str | None = None
        self._algorithm = Algorithm.DES  # part 9 §5: 3F00 is the DES environment
        self._environment: int | None = None  # the last INITIALIZE ENVIRONMENT byte
        self._lost = False  # its reader failed: connect again before the next use

    def __repr__(self) -> str:
        return f"PsamKeySource({self._reader.name})"

    # --- talking to the PSAM ------------------------------------------------------

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        try:
            return split_response(self._reader.transmit(apdu))
        except ReaderError as e:
            # The PSAM's reader, not the holder's card: say so, and start it afresh next
            # time (a PSAM put back is powered and selected again).
            self._terminal, self._lost = None, True
            raise _unusable(e) from None

    def _ok(self, apdu: bytes, what: str) -> bytes:
        data, status = self._send(apdu)
        if status != sw.Sw.OK:
            raise self._refused(status, what)
        return data

    @staticmethod
    def _refused(status: int, what: str) -> KeySourceError:
        error = KeySourceError(
            f"the PSAM answered {status:04X} ({sw.meaning(status)}) to {what}; "
            "check that the reader holds a social security PSAM"
        )
        error.api_code = api_codes.of_sw(status)
        return error

    def start(self) -> None:
        """Select the MF, read the terminal number and algorithm, enter DF01."""
        fci = self._ok(
            command(PsamCla.ISO, PsamIns.SELECT, 0x00, 0x00, _MF), "SELECT of its MF (3F00)"
        )
        self._algorithm = _fci_algorithm(fci)
        number = self._ok(
            command(
                PsamCla.ISO, PsamIns.READ_BINARY, 0x80 | _TERMINAL_SFI, 0x00, le=_TERMINAL_LENGTH
            ),
            "READ BINARY of its terminal number (0016)",
        ).hex()
        if len(number) != TERMINAL_DIGITS or not number.isdigit():
            raise KeySourceError(
                "the PSAM's terminal number (0016) is not 12 digits; check the PSAM"
            )
        self._ok(
            command(PsamCla.ISO, PsamIns.SELECT, 0x00, 0x0C, _ADF),
            "SELECT of its application (DF01)",
        )
        self._terminal = number
        self._environment = None

    def _ready(self) -> None:
        if self._terminal is None:
            if self._lost:
                try:
                    self._reader.connect()
                except ReaderError as e:
                    raise _unusable(e) from None
                self._lost = False
            self.start()

    def terminal_number(self) -> str:
        self._ready()
        if self._terminal is None:  # start() set it or raised
            raise KeySourceError("the PSAM gave no terminal number; check the PSAM")
        return self._terminal

    def _deliver(
        self, name: KeyName, card: CardIdentity, factor: bytes, *, retried: bool = False
    ) -> None:
        """DELIVERY SESSION KEY (part 9 §9.7): the card's factors deepest first, then the
        session factor padded with 00 to a block (as security.session_key pads it)."""
        self._ready()
        alg = card.algorithm
        if alg is not self._algorithm:
            raise _algorithm_mismatch(alg, self._algorithm, "the PSAM")
        size = security.block_size(alg)
        if len(factor) not in ((4, 8) if size == 8 else (4, 8, 16)):
            raise security.SecurityInputError(
                f"a {alg.name} session key comes from a random of 4, 8 or {size} bytes, "
                f"not {len(factor)}"
            )
        province, city, card_factor = security.dispersion_factors(
            card.identification_code, card.historical
        )
        environment = card.identification_code[0]
        if environment != self._environment:  # part 9 §9.3, once per card
            self._ok(
                command(
                    PsamCla.ENVIRONMENT,
                    PsamIns.INITIALIZE_ENVIRONMENT,
                    0x00,
                    0x00,
                    bytes((environment,)),
                ),
                "INITIALIZE ENVIRONMENT",
            )
            self._environment = environment
        spec = SPEC[name]
        data = card_factor + city + province + factor + bytes(size - len(factor))
        apdu = command(
            PsamCla.ENVIRONMENT, PsamIns.DELIVERY_SESSION_KEY, spec.psam_usage, spec.psam_id, data
        )
        what = f"DELIVERY SESSION KEY for {name}"
        _, status = self._send(apdu)
        if status == sw.Sw.CONDITIONS_NOT_SATISFIED and not retried:
            self.start()  # reset since: DF01 and INITIALIZE ENVIRONMENT again, once
            return self._deliver(name, card, factor, retried=True)
        if status == sw.Sw.DATA_NOT_FOUND:
            error = KeySourceError(
                f"the PSAM holds no {name} key (type {spec.psam_type:02X}, identifier "
                f"{spec.psam_id:02X}); use a PSAM loaded with the issuer's keys"
            )
            error.api_code = api_codes.of_sw(status)
            raise error
        if status == sw.Sw.WRONG_DATA:
            error = KeySourceError(
                f"the PSAM's {name} key is not a national root (it wants another number of "
                "dispersion factors than 3, part 9 §8); use a PSAM holding national roots"
            )
            error.api_code = _LEVEL_API_CODE
            raise error
        if status != sw.Sw.OK:
            raise self._refused(status, what)

    def _encrypt(self, data: bytes) -> bytes:
        """CIPHER DATA P1 00 (part 9 §9.8): ECB of whole blocks."""
        return self._ok(
            command(PsamCla.PROPRIETARY, PsamIns.CIPHER_DATA, CipherOp.ENCRYPT, 0x00, data),
            "CIPHER DATA (encryption)",
        )

    def _mac(self, alg: Algorithm, padded: bytes) -> bytes:
        """CIPHER DATA's MAC from a zero IV (part 4 §8.2.4: the MAC's IV is 00s): P1 05 in
        one call when it fits table 25's 8 blocks, else 07, 03 .. 01."""
        size = security.block_size(alg)
        stream = bytes(size) + padded
        limit = 8 * size
        what = "CIPHER DATA (MAC)"
        if len(stream) <= limit:
            return self._ok(
                command(PsamCla.PROPRIETARY, PsamIns.CIPHER_DATA, CipherOp.MAC, 0x00, stream), what
            )
        parts = [stream[i : i + limit] for i in range(0, len(stream), limit)]
        self._ok(
            command(PsamCla.PROPRIETARY, PsamIns.CIPHER_DATA, CipherOp.MAC_FIRST, 0x00, parts[0]),
            what,
        )
        for part in parts[1:-1]:
            self._ok(
                command(PsamCla.PROPRIETARY, PsamIns.CIPHER_DATA, CipherOp.MAC_NEXT, 0x00, part),
                what,
            )
        return self._ok(
            command(PsamCla.PROPRIETARY, PsamIns.CIPHER_DATA, CipherOp.MAC_LAST, 0x00, parts[-1]),
            what,
        )

    def _auth(self, alg: Algorithm, raw: bytes) -> bytes:
        """Part 4 §9.3 (as security.auth_data): DES the block encrypted; SM4 the raw data
        padded with 8 x 00, encrypted, then its left half XOR its right half."""
        if len(raw) != security.AUTH_LENGTH:
            raise security.SecurityInputError(f"authentication raw data is 8 bytes, not {len(raw)}")
        size = security.block_size(alg)
        y = self._encrypt(raw + bytes(size - len(raw)))
        if len(y) != size:
            raise KeySourceError("the PSAM's CIPHER DATA answer has the wrong length; check it")
        if size == security.AUTH_LENGTH:
            return y
        return bytes(a ^ b for a, b in zip(y[:8], y[8:], strict=True))

    # --- the KeySource surface ------------------------------------------------------

    def internal_auth(self, card: CardIdentity, r1: bytes, r2: bytes) -> bytes:
        self._deliver(KeyName.IRK, card, r1)
        return self._auth(card.algorithm, r2)

    def external_auth(
        self, key: KeyName, card: CardIdentity, challenge: bytes, raw: bytes
    ) -> bytes:
        self._deliver(key, card, challenge)
        return self._auth(card.algorithm, raw)

    def secure_apdu(
        self,
        key: KeyName,
        card: CardIdentity,
        challenge: bytes,
        cla: int,
        ins: int,
        p1: int,
        p2: int,
        pin: str | None,
    ) -> bytes:
        if not all(0 <= b <= 0xFF for b in (cla, ins, p1, p2)):
            raise security.SecurityInputError("CLA, INS, P1 and P2 are single bytes (0-255)")
        alg = card.algorithm
        plain = b"" if pin is None else security.pin_block(pin)  # before the PSAM is asked
        self._deliver(key, card, challenge)
        body = b""
        if pin is not None:
            # Part 4 §8.3.2: LD || PIN || 80 00.., the block security.encrypt encrypts.
            body = self._encrypt(security._encryption_block(alg, plain))
        header = bytes((cla, ins, p1, p2, len(body) + security.MAC_LENGTH))
        return header + body + self._mac(alg, security.mac_padding(alg, header + body))


def _tlv(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The BER-TLV objects of `data` (one- or two-byte tags, one-byte lengths)."""
    i = 0
    while i + 1 < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:  # a two-byte tag, 9F0C
            tag = tag << 8 | data[i]
            i += 1
        if i >= len(data):
            return
        length = data[i]
        yield tag, data[i + 1 : i + 1 + length]
        i += 1 + length


def _fci_algorithm(fci: bytes) -> Algorithm:
    """The algorithm in the MF's FCI, 6F { A5 { 9F0C { 86 01 xx } } } (docs/psam.md); DES
    when there is none, since part 9's MF 3F00 is the DES environment."""
    for tag, value in _tlv(fci):
        for inner_tag, inner in _tlv(value) if tag == 0x6F else ():
            for t, v in _tlv(inner) if inner_tag == 0xA5 else ():
                for alg_tag, alg in _tlv(v) if t == 0x9F0C else ():
                    if alg_tag == 0x86 and len(alg) == 1 and alg[0] in tuple(Algorithm):
                        return Algorithm(alg[0])
    return Algorithm.DES
