"""The card's commands under its keys (docs/card.md §3 and §5): GET CHALLENGE, INTERNAL
AUTHENTICATE, EXTERNAL AUTHENTICATE, PIN CHANGE/UNBLOCK (84 24), APPLICATION BLOCK
(84 1E) and our activation (84 18), with the algorithms of cardio/security.py.

A mixin of VirtualCard: the handlers see the card's state, session and store through
the attributes declared below. Every comparison of a secret is constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from cardio import pin, security, sw
from cardio.apdu import Apdu
from cardio.card import files
from cardio.card.session import Session
from cardio.card.state import KEY_TRY_LIMIT, CardState, LifeCycle, PinHash, PinState
from cardio.issuer import DF04, KEYS, SPEC, SSSE, KeyName, KeySpec
from cardio.model import MEDICAL_AID, SSSE_NAME, Algorithm
from cardio.sw import CardError, Sw

AUTH_DATA = 16  # 8 bytes of cryptogram (or random) and 8 of raw data (part 5 §6.4, §6.7)
KEY_VERSION = 0x01  # the one key group our cards hold (the optional 17th byte)
SPECIFIC = 0x80  # EXTERNAL AUTHENTICATE P2 b8: a key of the current DF (part 5 table 14)
CHALLENGES = {Algorithm.DES: (4, 8), Algorithm.SM4: (4, 8, 16)}  # part 5 §6.5, part 4 §8.4
UNBLOCK, CHANGE = 0x00, 0x01  # 84 24's P2 (part 5 table 25)
BLOCK_P2 = 0x01  # 84 1E 00 01 (part 5 table 6)
# Part 7 §13.1-§13.2: a failed authentication or MAC of the block commands does not
# lock their keys, so these keep no counter (a failure answers 63Cx, x = the limit).
UNCOUNTED = frozenset({KeyName.BK, KeyName.STKSSSE, KeyName.STKDF04, KeyName.LKDF04})


def df_label(df: files.Df) -> str | None:
    """SSSE, DF04, or None (the MF)."""
    if df.name == SSSE_NAME:
        return SSSE
    if df.name == MEDICAL_AID:
        return DF04
    return None


def keys_kept(authenticated: set[KeyName], df: files.Df) -> set[KeyName]:
    """The proved keys that survive a SELECT of `df`: a key's state belongs to its own
    DF and to what lies under it (part 7 §6.6 "until another application is selected")."""
    label = df_label(df)
    inside = {SSSE: {SSSE, DF04}, DF04: {DF04}}
    return {k for k in authenticated if label in inside[SPEC[k].df]}


class KeyedCommands:
    _state: CardState
    _session: Session
    _random: Callable[[int], bytes]
    _challenge: bytes | None  # the challenge this command may spend (one command only)

    def _save(self, state: CardState) -> None:
        raise NotImplementedError  # VirtualCard's

    # --- helpers --------------------------------------------------------------

    def _algorithm(self) -> Algorithm:
        alg = self._state.algorithm
        if alg not in CHALLENGES:  # SSF33: no library computes it (docs/security.md)
            raise CardError(Sw.FUNCTION_NOT_SUPPORTED)
        return alg

    def _spent_challenge(self) -> bytes:
        if self._challenge is None:
            raise CardError(Sw.NO_CHALLENGE)
        return self._challenge

    def _auth_data(self, apdu: Apdu) -> tuple[bytes, bytes]:
        """The 16 (or 17, with the key version) data bytes: two halves of 8."""
        data = apdu.data
        if len(data) not in (AUTH_DATA, AUTH_DATA + 1):
            raise CardError(Sw.WRONG_LENGTH)
        if len(data) > AUTH_DATA and data[AUTH_DATA] != KEY_VERSION:
            raise CardError(Sw.DATA_NOT_FOUND)  # no key of that version (part 5 table 16)
        return data[:8], data[8:AUTH_DATA]

    def _key_of(self, p2: int) -> KeySpec:
        """EXTERNAL AUTHENTICATE's P2 (part 5 table 14): b8 = 0 a key of the SSSE, b8 = 1
        a key of the current DF; 00 is reserved."""
        if p2 in (0x00, SPECIFIC):
            raise CardError(Sw.WRONG_P1P2)
        label = df_label(self._session.df)
        scope = (label if p2 & SPECIFIC else SSSE) if label is not None else None
        for spec in KEYS:
            if spec.df == scope and spec.reference == p2 and spec.name is not KeyName.IRK:
                return spec
        raise CardError(Sw.DATA_NOT_FOUND)

    def _unwrap(self, apdu: Apdu, key: KeyName) -> bytes:
        """Part 4 §8.2.4: the MAC over CLA INS P1 P2 Lc ‖ data under the session key of
        the challenge; returns the data without the MAC. The handlers have checked Lc
        (part 5 tables 26-27: a wrong Lc is 6700), so the data holds a MAC."""
        if apdu.le is not None:
            raise CardError(Sw.WRONG_LENGTH)  # tables 6, 24: no Le
        alg = self._algorithm()
        challenge = self._spent_challenge()
        body, given = apdu.data[: -security.MAC_LENGTH], apdu.data[-security.MAC_LENGTH :]
        header = bytes((apdu.cla, apdu.ins, apdu.p1, apdu.p2, len(apdu.data)))
        session_key = security.session_key(alg, self._state.keys[key], challenge)
        if not hmac.compare_digest(given, security.mac(alg, session_key, header + body)):
            raise CardError(Sw.MAC_WRONG)
        return body

    def _require_proved(self, key: KeyName) -> None:
        if key not in self._session.authenticated:
            raise CardError(Sw.SECURITY_NOT_SATISFIED)

    # --- commands -------------------------------------------------------------

    def get_challenge(self, apdu: Apdu) -> bytes:
        """Part 5 §6.5: Le 04 or 08 (and 10 on an SM4 card, whose blocks are 16 bytes)."""
        if (apdu.p1, apdu.p2) != (0, 0):
            raise CardError(Sw.WRONG_P1P2)
        if apdu.data:
            raise CardError(Sw.WRONG_LENGTH)
        lengths = CHALLENGES.get(self._state.algorithm, (4, 8))
        if apdu.le not in lengths:
            raise CardError(Sw.WRONG_LENGTH)  # table 18: a wrong Le is 6700
        self._session.challenge = self._random(apdu.le)
        return self._session.challenge

    def internal_authenticate(self, apdu: Apdu) -> bytes:
        """Part 5 §6.7, part 7 §5.4: the card proves it holds its IRK. The answer is the
        cryptogram of the second 8 bytes under the session key of the first 8 (part 4 §9)."""
        if (apdu.p1, apdu.p2) != (0, 0):
            raise CardError(Sw.WRONG_P1P2)
        random, raw = self._auth_data(apdu)
        answer = security.authentication(
            self._algorithm(), self._state.keys[KeyName.IRK], random, raw
        )
        if apdu.le is not None and apdu.le < len(answer):
            raise CardError(sw.wrong_le(len(answer)))
        return answer

    def external_authenticate(self, apdu: Apdu) -> bytes:
        """Part 5 §6.4, part 7 §6.6: the terminal proves it holds the key P2 names. The
        key's counter is checked first, then decremented on disk before the comparison
        and restored on success (the PIN's order: docs/card.md §4)."""
        if apdu.p1 != 0:
            raise CardError(Sw.WRONG_P1P2)
        spec = self._key_of(apdu.p2)
        cryptogram, raw = self._auth_data(apdu)
        if apdu.le is not None:
            raise CardError(Sw.WRONG_LENGTH)  # table 13: no Le
        state = self._state
        counted = spec.name not in UNCOUNTED
        left = state.tries_of(spec.name) if counted else KEY_TRY_LIMIT
        if left == 0:
            raise CardError(Sw.PIN_BLOCKED)  # 6983: the authentication method is blocked
        alg = self._algorithm()
        challenge = self._spent_challenge()
        if counted:
            self._save(state.with_(key_tries={**state.key_tries, spec.name: left - 1}))
            left -= 1
        expected = security.authentication(alg, state.keys[spec.name], challenge, raw)
        if not hmac.compare_digest(cryptogram, expected):
            raise CardError(sw.wrong_pin(left))
        if counted:
            current = self._state
            self._save(current.with_(key_tries={**current.key_tries, spec.name: KEY_TRY_LIMIT}))
        self._session.authenticated.add(spec.name)
        return b""

    def pin_change_unblock(self, apdu: Apdu) -> bytes:
        """Part 5 §6.8 (84 24 00 P2), part 7 §13.3, after the PUK's EXTERNAL AUTHENTICATE.

        P2 00, Lc 04: the PIN's counter back to its limit, the PIN unchanged. P2 01: a new
        PIN, encrypted under the same session key as the MAC (docs/security.md A5), and
        the counter back to its limit; with no PIN data (Lc 04) the PIN becomes empty: the
        card asks for none (PIN state DISABLED, rule S16)."""
        if apdu.p1 != 0 or apdu.p2 not in (UNBLOCK, CHANGE):
            raise CardError(Sw.WRONG_P1P2)
        block = security.block_size(self._algorithm())
        lengths = (4,) if apdu.p2 == UNBLOCK else (4, 4 + block, 4 + 2 * block)
        if len(apdu.data) not in lengths or len(apdu.data) > 0x14:  # table 26: 04, 0C, 14
            raise CardError(Sw.WRONG_LENGTH)
        self._require_proved(KeyName.PUK)
        body = self._unwrap(apdu, KeyName.PUK)
        state = self._state
        if apdu.p2 == UNBLOCK:
            changed = state
        elif not body:
            changed = state.with_(pin=PinHash.of(""), pin_state=PinState.DISABLED)
        else:
            new = self._decrypted_pin(body)
            initial = new == pin.INITIAL_PIN
            changed = state.with_(
                pin=PinHash.of(new), pin_state=PinState.INITIAL if initial else PinState.ENABLED
            )
        self._save(changed.with_(tries_left=state.try_limit))
        self._session.verified = False
        return b""

    def _decrypted_pin(self, body: bytes) -> str:
        alg = self._algorithm()
        key = security.session_key(alg, self._state.keys[KeyName.PUK], self._spent_challenge())
        try:
            plain = security.decrypt(alg, key, body)
        except security.SecurityInputError:
            raise CardError(Sw.WRONG_DATA) from None
        digits = pin.decode_cn(plain)
        if digits is None:
            raise CardError(Sw.WRONG_DATA)
        return digits

    def activate(self, apdu: Apdu) -> bytes:
        """84 18 00 00 04 MAC (ours, docs/card.md §9): the standard has no activation, so
        it is done as PIN CHANGE/UNBLOCK is: after the PUK's EXTERNAL AUTHENTICATE, with
        a MAC under the PUK's session key."""
        if (apdu.p1, apdu.p2) != (0, 0):
            raise CardError(Sw.WRONG_P1P2)
        if len(apdu.data) != security.MAC_LENGTH:
            raise CardError(Sw.WRONG_LENGTH)
        self._require_proved(KeyName.PUK)
        self._unwrap(apdu, KeyName.PUK)
        self._save(self._state.with_(life_cycle=LifeCycle.ACTIVE))
        return b""

    def application_block(self, apdu: Apdu) -> bytes:
        """Part 5 §6.1, part 7 §13.2: 84 1E 00 01 04 MAC blocks the current application
        (DF04) for good, after LKDF04's EXTERNAL AUTHENTICATE, with STKDF04's MAC."""
        if (apdu.p1, apdu.p2) != (0, BLOCK_P2):
            raise CardError(Sw.WRONG_P1P2)
        if len(apdu.data) != security.MAC_LENGTH:
            raise CardError(Sw.WRONG_LENGTH)
        if df_label(self._session.df) != DF04:
            raise CardError(Sw.CONDITIONS_NOT_SATISFIED)
        self._require_proved(KeyName.LKDF04)
        self._unwrap(apdu, KeyName.STKDF04)
        self._save(self._state.with_(application_blocked=True))
        return b""
