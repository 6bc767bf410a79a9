"""The virtual PSAM: `execute(apdu) -> response` over a PsamState (docs/psam.md).

Part 9 of the standard (社会保障 PSAM 卡). The surface is the user card's
(`cardio.card.card.VirtualCard`): `atr`, `power_on`, `reset`, `power_off`, `execute`,
which never raises. A dispatch table maps (CLA, INS) to a handler that returns response
data or raises CardError with its status word. The PSAM behaves as a T=0 card always:
an answer to a command that sent data waits behind 61xx for GET RESPONSE, and a case-2
answer goes out only for the exact Le (6Cxx otherwise), as the user card's `t0_style`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cardio import security, t0
from cardio.apdu import Apdu, binary_address
from cardio.model import Algorithm, CipherOp, PsamCla, PsamIns
from cardio.model import PsamFid as Fid
from cardio.psam.state import PsamState
from cardio.sw import CardError, Sw

log = logging.getLogger(__name__)

# TS 3B (direct), T0 6C: TB1 and TC1 follow, 12 historical bytes; no TD1, so T=0 and no
# TCK (part 2 §8.2, as the user card). Part 9 says nothing of a PSAM's ATR (docs/psam.md).
ATR_PREFIX = bytes((0x3B, 0x6C, 0x00, 0x00))
# T1-T2 no chip registration, T3-T5 "SBP" (our COS, as the user card), T6-T9 "PSAM",
# T10 our PSAM version; T11-T12 the serial's last 4 digits (cn), so two PSAMs differ.
HISTORICAL_HEAD = b"\x00\x00SBPPSAM\x01"
PSAM_VERSION = 0x01
ISSUER_ID = 0x01  # part 9 §5.2 table 2 byte 1: ours
KEY_CARD_TYPE = 0x01  # table 2 byte 13: ours
ISSUER_FCI = b"\x00\x00"  # table 2 bytes 14-15

MF_NAME = "sx1.sh.社会保障".encode("gbk")  # part 9 §5: the DES environment's DDF, 3F00
ADF_AID = bytes.fromhex("D15600000590")  # part 9 §5: the social security ADF, DF01
MIN_NAME, MAX_NAME = 5, 16  # part 9 table 11: Lc 05-10 for P1 04
FID_LENGTH = 2
FACTOR = security.FACTOR_LENGTH
MAX_FACTORS = 3  # part 9 table 23: N = 0..3
MAX_RESPONSE = t0.MAX_RESPONSE
MAX_CHAIN = 4096  # a multi-part MAC longer than this is no terminal's


NO_SESSION_KEY = Sw.NOT_ACCEPTED  # part 9 table 26: DELIVERY SESSION KEY not done, or spent
LEVEL_MISMATCH = Sw.WRONG_DATA  # 6A80: part 9 table 24, "分散级数不符"


@dataclass(frozen=True)
class Ef:
    """A transparent EF; its SFI is the low 5 bits of its FID (00 B0 96 reads 0016)."""

    fid: int
    data: bytes

    @property
    def sfi(self) -> int:
        return self.fid & 0x1F


@dataclass(frozen=True)
class Df:
    fid: int
    name: bytes
    files: tuple[Ef | Df, ...] = ()
    proprietary: bytes = b""  # the FCI's A5 template, if any

    def fci(self) -> bytes:
        """6F { 84 name [A5 {...}] } (part 9 §9.1.1: a DF answers its FCI)."""
        body = bytes((0x84, len(self.name))) + self.name
        if self.proprietary:
            body += bytes((0xA5, len(self.proprietary))) + self.proprietary
        return bytes((0x6F, len(body))) + body

    def child(self, fid: int) -> Ef | Df | None:
        return next((f for f in self.files if f.fid == fid), None)

    def ef_by_sfi(self, sfi: int) -> Ef | None:
        return next((f for f in self.files if isinstance(f, Ef) and f.sfi == sfi), None)


def _cn(digits: str) -> bytes:
    return bytes.fromhex(digits)


def build(state: PsamState) -> Df:
    """The file tree of part 9 §5 fig. 1 in one environment: MF 3F00 with 0015 and 0016,
    and the ADF DF01 with 0019. The MF's FCI carries the algorithm as the user card's
    SSSE does (9F0C { 86 01 xx }, reader API §10.1): part 9 has no SM4 environment."""
    info = (
        bytes((ISSUER_ID,)) + _cn(state.serial) + bytes((PSAM_VERSION, KEY_CARD_TYPE)) + ISSUER_FCI
    )
    adf = Df(Fid.ADF, ADF_AID, (Ef(Fid.SERIAL, bytes(4)),))
    algorithm = bytes((0x86, 0x01, state.algorithm))
    return Df(
        Fid.MF,
        MF_NAME,
        (Ef(Fid.INFO, info), Ef(Fid.TERMINAL, _cn(state.terminal_number)), adf),
        proprietary=b"\x9f\x0c" + bytes((len(algorithm),)) + algorithm,
    )


@dataclass
class Session:
    """What a reset, power-off or removal forgets: selection, the session key."""

    df: Df
    ef: Ef | None = None
    pending: bytes = field(default=b"", repr=False)  # waits for GET RESPONSE: may be a MAC
    environment: int | None = None  # INITIALIZE ENVIRONMENT's byte
    key: bytes | None = field(default=None, repr=False)  # DELIVERY SESSION KEY's result
    can_encrypt: bool = False
    can_mac: bool = False
    chain: bytes | None = field(default=None, repr=False)  # a multi-part MAC's IV || data


Handler = Callable[["VirtualPsam", Apdu], bytes]


class VirtualPsam(t0.Chip):
    """A social security PSAM (part 9) in one environment holding `state`'s keys."""

    def __init__(
        self, state: PsamState, random: Callable[[int], bytes] = secrets.token_bytes
    ) -> None:
        self._state = state
        self._random = random
        self._mf = build(state)
        self._adf = self._mf.child(Fid.ADF)
        self._session = Session(self._mf)

    def __repr__(self) -> str:  # never the keys
        return f"VirtualPsam({self._state.terminal_number}, {self._state.algorithm.name})"

    @property
    def state(self) -> PsamState:
        return self._state

    @property
    def atr(self) -> bytes:
        return ATR_PREFIX + HISTORICAL_HEAD + _cn(self._state.serial[-4:])

    def _fresh_session(self) -> None:  # power on, reset, power off (cardio/t0.py)
        self._session = Session(self._mf)

    _log = log

    def _dispatch(self, raw: bytes) -> tuple[bytes, int]:
        session = self._session
        pending, session.pending = session.pending, b""
        apdu = Apdu.parse(raw)
        if apdu.cla not in tuple(PsamCla):
            raise CardError(Sw.CLA_NOT_SUPPORTED)
        if (apdu.cla, apdu.ins) == (PsamCla.ISO, PsamIns.GET_RESPONSE):
            return t0.get_response(apdu, pending, self._keep)
        handler = _COMMANDS.get((apdu.cla, apdu.ins))
        if handler is None:
            known = {ins for _, ins in _COMMANDS} | {PsamIns.GET_RESPONSE}
            raise CardError(Sw.CLA_NOT_SUPPORTED if apdu.ins in known else Sw.INS_NOT_SUPPORTED)
        return t0.t0_answer(apdu, handler(self, apdu), self._keep)

    def _keep(self, data: bytes) -> None:
        """What waits for GET RESPONSE: a PSAM is a T=0 chip."""
        self._session.pending = data

    # --- commands -------------------------------------------------------------

    def select(self, apdu: Apdu) -> bytes:
        """SELECT, part 9 §9.1 (tables 11-12): P1 00 a DF (or an EF, as terminals send
        it) by FID, 02 an EF (or DF01, as terminals send it) by FID, 04 a DF by name;
        P2 00 returns a DF's FCI, 0C nothing (ISO 7816-4)."""
        if apdu.p2 not in (0x00, 0x0C):
            raise CardError(Sw.WRONG_P1P2)
        target = self._select_target(apdu)
        if target is None:
            raise CardError(Sw.FILE_NOT_FOUND)
        session = self._session
        if isinstance(target, Ef):
            session.ef = target
            return b""  # §9.1.1: no FCI for an EF
        session.df, session.ef = target, None
        return target.fci() if apdu.p2 == 0x00 else b""

    def _select_target(self, apdu: Apdu) -> Ef | Df | None:
        current = self._session.df
        if apdu.p1 == 0x04:
            if not MIN_NAME <= len(apdu.data) <= MAX_NAME:
                raise CardError(Sw.WRONG_LENGTH)
            # Either DF is reachable by name from anywhere (part 9 §5: "在任何情况下").
            return next(
                (d for d in (self._mf, self._adf) if isinstance(d, Df) and d.name == apdu.data),
                None,
            )
        if apdu.p1 == 0x00 and not apdu.data:
            return self._mf
        if apdu.p1 not in (0x00, 0x02):
            raise CardError(Sw.WRONG_P1P2)
        if len(apdu.data) != FID_LENGTH:
            raise CardError(Sw.WRONG_LENGTH)  # table 12: Lc inconsistent with P1
        fid = int.from_bytes(apdu.data, "big")
        if apdu.p1 == 0x00 and fid == Fid.MF:
            return self._mf
        if fid == current.fid:
            return current
        return current.child(fid)

    def read_binary(self, apdu: Apdu) -> bytes:
        """READ BINARY (part 5 §6.9, tables 28-30; part 9 has no command of its own to read
        its free files 0015/0016, so terminals use this one, docs/psam.md)."""
        if apdu.data:
            raise CardError(Sw.WRONG_LENGTH)
        session = self._session
        sfi, offset = binary_address(apdu)
        if sfi is not None:
            found = session.df.ef_by_sfi(sfi)
            if found is None:
                raise CardError(Sw.FILE_NOT_FOUND)
            ef = found
        elif session.ef is None:
            raise CardError(Sw.NO_CURRENT_EF)
        else:
            ef = session.ef
        if offset >= len(ef.data):
            raise CardError(Sw.WRONG_OFFSET)
        session.ef = ef  # an SFI makes the file current (ISO 7816-4)
        rest = ef.data[offset : offset + MAX_RESPONSE]
        # Part 5 §6.9.4: Le 00 reads to the end; a shorter Le that many bytes. Absent,
        # 00 or too long, the T=0 rule answers 6Cxx with what there is.
        return rest if apdu.le is None else rest[: apdu.le]

    def get_challenge(self, apdu: Apdu) -> bytes:
        """GET CHALLENGE, part 9 §9.2 (tables 13-14): Le 04 or 08, and 10 with SM4 (the
        16-byte algorithms' lengths); any other length 6700 (table 14)."""
        if (apdu.p1, apdu.p2) != (0, 0):
            raise CardError(Sw.WRONG_P1P2)
        allowed = (4, 8, 16) if self._state.algorithm is Algorithm.SM4 else (4, 8)
        le = apdu.le
        if apdu.data or le is None or le not in allowed:
            raise CardError(Sw.WRONG_LENGTH)
        return self._random(le)

    def initialize_environment(self, apdu: Apdu) -> bytes:
        """INITIALIZE ENVIRONMENT, part 9 §9.3 (tables 15-16): the first byte of the user
        card's identification code (BCD), kept for the session; nothing requires it."""
        if (apdu.p1, apdu.p2) != (0, 0):
            raise CardError(Sw.WRONG_P1P2)
        if len(apdu.data) != 1 or apdu.le is not None:
            raise CardError(Sw.WRONG_LENGTH)
        byte = apdu.data[0]
        if byte >> 4 > 9 or byte & 0x0F > 9:
            raise CardError(Sw.WRONG_DATA)
        self._session.environment = byte
        return b""

    def delivery_session_key(self, apdu: Apdu) -> bytes:
        """DELIVERY SESSION KEY, part 9 §9.7 (tables 23-24) and §7.3-§7.4.

        The key is found by its type (P1 b5-b1) and identifier (P2); P1 b8-b6 are not
        compared, since terminals send the usage byte of a 3-level key while they try
        3, 2, 1 factors (part 9 §8 方案一); the number of factors N must be the key's own
        level, else 6A80. Data: N factors deepest first (card, city, province), then the
        session factor of one block (8 DES, 16 SM4). The key is dispersed province, city,
        card (§7.3 fig. 12) and the session key made from the factor (§7.1.5, §7.2.5)."""
        session = self._session
        # A new delivery replaces the old key; one that fails leaves none (6901 after it).
        session.key, session.can_encrypt, session.can_mac, session.chain = None, False, False, None
        if session.df is not self._adf:
            raise CardError(Sw.CONDITIONS_NOT_SATISFIED)  # table 24: not in the application
        size = security.block_size(self._state.algorithm)
        extra = len(apdu.data) - size
        if apdu.le is not None or extra < 0 or extra % FACTOR or extra // FACTOR > MAX_FACTORS:
            raise CardError(Sw.WRONG_LENGTH)
        record = self._state.find(apdu.p1 & 0x1F, apdu.p2)
        if record is None:
            raise CardError(Sw.DATA_NOT_FOUND)  # 6A88: no such key
        count = extra // FACTOR
        if count != record.level:
            raise CardError(LEVEL_MISMATCH)
        factors = [apdu.data[i * FACTOR : (i + 1) * FACTOR] for i in range(count)]
        alg = self._state.algorithm
        card_key = security.disperse_chain(alg, record.key, reversed(factors))
        session.key = security.session_key(alg, card_key, apdu.data[extra:])
        session.can_encrypt = session.can_mac = True
        return b""

    def cipher_data(self, apdu: Apdu) -> bytes:
        """CIPHER DATA, part 9 §9.8 (tables 25-26): ECB encryption (P1 00, 02) or a MAC
        whose first block is the initial value (05 in one call; 07, 03, 01 in parts),
        under the session key. The terminal pads: Lc is whole blocks, in table 25's range.
        §9.8.2: a session key serves one encryption and one MAC (P1 00, 05 or 01 finish
        one); after that, or without a DELIVERY SESSION KEY, 6901."""
        if apdu.p2 != 0x00 or apdu.p1 not in tuple(CipherOp):
            raise CardError(Sw.WRONG_P1P2)
        session = self._session
        op = CipherOp(apdu.p1)
        encrypting = op in (CipherOp.ENCRYPT, CipherOp.ENCRYPT_MORE)
        if session.key is None:
            raise CardError(NO_SESSION_KEY)
        if encrypting and not session.can_encrypt:
            raise CardError(NO_SESSION_KEY)
        if op in (CipherOp.MAC, CipherOp.MAC_FIRST) and not session.can_mac:
            raise CardError(NO_SESSION_KEY)
        if op in (CipherOp.MAC_NEXT, CipherOp.MAC_LAST) and session.chain is None:
            raise CardError(NO_SESSION_KEY)
        alg = self._state.algorithm
        size = security.block_size(alg)
        data = apdu.data
        least = 2 * size if op is CipherOp.MAC else size  # 05: the IV and at least one block
        if len(data) % size or not least <= len(data) <= 8 * size:  # DES 08-40, SM4 10-80
            raise CardError(Sw.WRONG_LENGTH)
        key = session.key
        if encrypting:
            if op is CipherOp.ENCRYPT:
                session.can_encrypt = False
            return security.encrypt_block(alg, key, data)
        if op is CipherOp.MAC:
            session.can_mac = False
            return security.mac_with_iv(alg, key, data[:size], data[size:])
        chain = data if op is CipherOp.MAC_FIRST else (session.chain or b"") + data
        if len(chain) > MAX_CHAIN:
            session.chain = None
            raise CardError(Sw.WRONG_LENGTH)
        if op is not CipherOp.MAC_LAST:
            session.chain = chain
            if op is CipherOp.MAC_FIRST:
                session.can_mac = False  # the MAC begun is this key's one MAC
            return b""
        session.chain = None
        return security.mac_with_iv(alg, key, chain[:size], chain[size:])


_COMMANDS: dict[tuple[int, int], Handler] = {
    (PsamCla.ISO, PsamIns.SELECT): VirtualPsam.select,
    (PsamCla.ISO, PsamIns.READ_BINARY): VirtualPsam.read_binary,
    (PsamCla.ISO, PsamIns.GET_CHALLENGE): VirtualPsam.get_challenge,
    (PsamCla.ENVIRONMENT, PsamIns.INITIALIZE_ENVIRONMENT): VirtualPsam.initialize_environment,
    (PsamCla.ENVIRONMENT, PsamIns.DELIVERY_SESSION_KEY): VirtualPsam.delivery_session_key,
    (PsamCla.PROPRIETARY, PsamIns.CIPHER_DATA): VirtualPsam.cipher_data,
}
