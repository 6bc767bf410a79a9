"""The standard's security algorithms: dispersion, session keys, MAC, encryption, authentication.

Part 4 (安全机制) §8-§9 and part 9 (PSAM) §7, described in docs/security.md, on
`cryptography`'s SM4 and TripleDES: no cipher is written here, only the chaining, padding
and folding around one block operation. Pure functions over `bytes`.

- DES family (8-byte block): keys of 8 bytes (DES) or 16 bytes (two-key 3DES EDE); every
  session key is single length (part 4 §8.4.1), so MAC, encryption and authentication
  under a session key are single DES.
- SM4 (16-byte block): the standard writes its 16-byte rules for SSF33 ("16 字节分组");
  SM4 follows them (docs/security.md A1/A2: the reader API groups SSF33 and SM4).
- SSF33 is unpublished and no library implements it: `UnsupportedAlgorithmError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from cardio.errors import CardioError
from cardio.model import Algorithm

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import CipherAlgorithm

# cryptography is imported when a key or a MAC is computed, not when a card or screen
# starts (the start-up time is benchmarked): see _cipher.

MAC_LENGTH = 4  # part 4 §8.2.2
AUTH_LENGTH = 8  # part 4 §9.1
FACTOR_LENGTH = 8  # part 9 §7.1.1, §7.2.1
IDENTIFICATION_CODE_LENGTH = 16  # V2.0 notice table 10: region(3) D156000005 serial auth
HISTORICAL_BYTES_LENGTH = 13  # part 2 §8.4 table 16: T1..TD
PIN_DIGITS = range(4, 17)  # reader API §6-§7: "有效长度为 4-16 位数字"
PADDING = b"\x80"  # ISO/IEC 9797-1 method 2: 80 then 00s
_BLOCK = {Algorithm.DES: 8, Algorithm.SM4: 16}
_KEY_LENGTHS = {Algorithm.DES: (8, 16), Algorithm.SM4: (16,)}
_PROVINCE_SUFFIX = b"0000sh"  # part 9 §7.3.1: 30 30 30 30 73 68
_CITY_SUFFIX = b"sx"  # part 9 §7.3.2: 73 78
_ZHEJIANG = b"33"  # reader API §10.3: region codes 33xxxx


class UnsupportedAlgorithmError(CardioError):
    """The card's algorithm is one this program cannot compute (SSF33)."""

    default = (
        "the card uses SSF33, an unpublished cipher that no library implements, "
        "so only DES and SM4 cards can be used"
    )


class SecurityInputError(CardioError, ValueError):
    """A key, factor, random or data of the wrong length or form; the message names no bytes.

    A CardioError like every error of the project (tests/test_errors.py), exit 1: the values
    come from a card, a key store or a caller, not from what a person typed.
    """

    default = "a key or data for the card's security algorithms has the wrong length or form"


class CryptogramError(SecurityInputError):
    """Decrypted data whose LD or padding is not what part 4 §8.3 builds (card: SW 6988)."""


# --- the block cipher ----------------------------------------------------------------


def block_size(alg: Algorithm) -> int:
    """8 for the DES family, 16 for SM4 (part 4 §8.2.4.1 / §8.2.4.2 "分组长度")."""
    if alg not in _BLOCK:
        raise UnsupportedAlgorithmError()
    return _BLOCK[alg]


def _check_key(alg: Algorithm, key: bytes) -> None:
    if alg not in _KEY_LENGTHS:
        raise UnsupportedAlgorithmError()
    lengths = _KEY_LENGTHS[alg]
    if len(key) not in lengths:
        sizes = " or ".join(str(n) for n in lengths)
        raise SecurityInputError(f"a {alg.name} key is {sizes} bytes, not {len(key)}")


def _check_session_key(alg: Algorithm, key: bytes) -> None:
    # Part 4 §8.4: a session key is one block long (single-length DES, 16-byte SM4).
    size = block_size(alg)
    if len(key) != size:
        raise SecurityInputError(f"a {alg.name} session key is {size} bytes, not {len(key)}")


def _cipher(alg: Algorithm, key: bytes) -> CipherAlgorithm:
    if alg is Algorithm.SM4:
        from cryptography.hazmat.primitives.ciphers import algorithms

        return algorithms.SM4(key)
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

    # Always a 24-byte key: K||K||K is single DES (EDE with one key), KL||KR||KL two-key
    # 3DES; the 8- and 16-byte forms raise deprecation warnings in cryptography.
    return TripleDES(key * 3 if len(key) == 8 else key + key[:8])


def _ecb(alg: Algorithm, key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    _check_key(alg, key)
    size = block_size(alg)
    if not data or len(data) % size:
        raise SecurityInputError(f"{alg.name} data is whole {size}-byte blocks")
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    # ECB is what the standard specifies: each block on its own (part 4 §8.3.3, §8.4, §9.3).
    cipher = Cipher(_cipher(alg, key), modes.ECB())  # noqa: S305
    context = cipher.encryptor() if encrypt else cipher.decryptor()
    return context.update(data) + context.finalize()


def encrypt_block(alg: Algorithm, key: bytes, data: bytes) -> bytes:
    """ECB encryption of whole blocks: DES (8-byte key), 3DES EDE (16), SM4 (16).

    Part 4 §8.4.1 figs. 7-8 (DEA(e), and E(KL) D(KR) E(KL) for a double-length key).
    """
    return _ecb(alg, key, data, encrypt=True)


def decrypt_block(alg: Algorithm, key: bytes, data: bytes) -> bytes:
    """ECB decryption of whole blocks, the inverse of `encrypt_block` (part 4 §8.3.4)."""
    return _ecb(alg, key, data, encrypt=False)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _complement(data: bytes) -> bytes:
    return bytes(x ^ 0xFF for x in data)  # 求反: every bit of every byte


# --- key dispersion (part 9 §7.1.1, §7.2.1, §7.3) --------------------------------------


def disperse(alg: Algorithm, master: bytes, factor: bytes) -> bytes:
    """One dispersion step: the child key of `master` for an 8-byte factor F.

    DES 8-byte master: DES(F) (part 9 §7.1.1 fig. 2). DES 16-byte master:
    3DES(F) || 3DES(~F) (part 9 §7.1.1 fig. 3). SM4: SM4(F || ~F) (part 9 §7.2.1 fig. 8,
    written for SSF33; docs/security.md A2).
    """
    _check_key(alg, master)
    if len(factor) != FACTOR_LENGTH:
        raise SecurityInputError(f"a dispersion factor is 8 bytes, not {len(factor)}")
    if alg is Algorithm.DES and len(master) == 8:
        return encrypt_block(alg, master, factor)
    # One expression for both: with 3DES, F || ~F is two 8-byte ECB blocks, 3DES(F) the left
    # half and 3DES(~F) the right; with SM4 it is one 16-byte block, F the high half.
    return encrypt_block(alg, master, factor + _complement(factor))


def disperse_chain(alg: Algorithm, master: bytes, factors: Iterable[bytes]) -> bytes:
    """Disperse step by step, each child the next master (part 9 §7.3 fig. 12).

    Give the factors from the highest level down: province, city, card.
    """
    key = master
    for factor in factors:
        key = disperse(alg, key, factor)
    return key


def _region_digits(identification_code: bytes) -> bytes:
    if len(identification_code) != IDENTIFICATION_CODE_LENGTH:
        raise SecurityInputError(
            f"a card identification code is 16 bytes, not {len(identification_code)}"
        )
    digits = identification_code[:3].hex().encode("ascii")
    if not digits.isdigit():
        raise SecurityInputError("the region code of a card identification code is 6 BCD digits")
    return digits


def dispersion_factors(
    identification_code: bytes, historical_bytes: bytes, *, zhejiang_rule: bool = True
) -> tuple[bytes, bytes, bytes]:
    """The level-1 (province), level-2 (city) and level-3 (card) factors, part 9 §7.3.

    Level 1 (§7.3.1): the first 2 ASCII digits of the region code || "0000sh".
    Level 2 (§7.3.2): the 6 ASCII digits of the region code || "sx".
    Level 3 (§7.3.3): historical bytes 6 to 13 of the ATR, T6..TD.

    `identification_code` is EF05's 卡的识别码 (16 bytes, region code in its first 3 BCD
    bytes); `historical_bytes` are the ATR's 13 historical bytes (part 2 §8.4 table 16).
    With `zhejiang_rule`, a region code starting 33 takes the reader API §10.3 level 2:
    the first 4 digits || "00sx", so every district of a city shares the city's keys.
    """
    digits = _region_digits(identification_code)
    if len(historical_bytes) != HISTORICAL_BYTES_LENGTH:
        raise SecurityInputError(
            f"an ATR of this standard has 13 historical bytes, not {len(historical_bytes)}"
        )
    province = digits[:2] + _PROVINCE_SUFFIX
    if zhejiang_rule and digits.startswith(_ZHEJIANG):
        city = digits[:4] + b"00" + _CITY_SUFFIX  # reader API §10.3: "33 33 30 31" + 30 30 73 78
    else:
        city = digits + _CITY_SUFFIX
    card = historical_bytes[5:13]  # T6 T7 (maker) T8 T9 (region) TA-TD (serial)
    return province, city, card


def card_key(
    alg: Algorithm, master: bytes, identification_code: bytes, historical_bytes: bytes
) -> bytes:
    """The card-level key from a national level-1 root key: three steps, part 9 §7.3 fig. 12."""
    return disperse_chain(alg, master, dispersion_factors(identification_code, historical_bytes))


# --- session keys (part 4 §8.4) ---------------------------------------------------------


def session_key(alg: Algorithm, key: bytes, random: bytes) -> bytes:
    """The session key (过程密钥) of `key` for a random number, part 4 §8.4.

    The random (4 or 8 bytes; 16 too for SM4) is padded on the right with 00 to a block
    and encrypted. DES family (§8.4.1 figs. 7-8): DES or 3DES EDE by the key's length, the
    result a single-length 8-byte key. SM4 (§8.4.2 fig. 9): 16 bytes.
    """
    _check_key(alg, key)
    size = block_size(alg)
    allowed = (4, 8) if size == 8 else (4, 8, 16)
    if len(random) not in allowed:
        sizes = ", ".join(str(n) for n in allowed)
        raise SecurityInputError(
            f"a {alg.name} session key comes from a {sizes}-byte random, not {len(random)}"
        )
    return encrypt_block(alg, key, random + bytes(size - len(random)))


# --- MAC (part 4 §8.2.4) -----------------------------------------------------------------


def mac_padding(alg: Algorithm, data: bytes) -> bytes:
    """ISO/IEC 9797-1 method 2, part 4 §8.2.4 step 4: always 80, then 00 to a whole block.

    A message already a whole number of blocks gets a whole block 80 00 .. 00.
    """
    padded = data + PADDING
    return padded + bytes(-len(padded) % block_size(alg))


def mac(alg: Algorithm, session_key: bytes, data: bytes) -> bytes:
    """The 4-byte MAC of `data` under a session key, part 4 §8.2.4.1 / §8.2.4.2.

    IV zero, padding always, CBC. DES: the left 4 bytes of the last block (§8.2.4.1 step
    6). SM4: the XOR of the last block's four 4-byte pieces (§8.2.4.2 step 6, fig. 2).
    For a command, `data` is CLA INS P1 P2 Lc || data field, Lc counting the MAC too.
    """
    _check_session_key(alg, session_key)
    return mac_with_iv(alg, session_key, bytes(block_size(alg)), mac_padding(alg, data))


def mac_with_iv(alg: Algorithm, session_key: bytes, iv: bytes, padded: bytes) -> bytes:
    """The 4-byte MAC of data already padded to whole blocks, chained from `iv`.

    What a PSAM's CIPHER DATA computes for P1 05 (part 9 §9.8.2: the first block of the
    command data is the initial value; §7.1.3 / §7.2.3 steps 5-6): CBC from `iv` over
    `padded`, then DES the last block's left 4 bytes, SM4 its four 4-byte pieces XORed.
    `mac` is this with a zero IV over `mac_padding(data)` (part 4 §8.2.4).
    """
    _check_session_key(alg, session_key)
    size = block_size(alg)
    if len(iv) != size:
        raise SecurityInputError(f"a {alg.name} MAC's initial value is {size} bytes, not {len(iv)}")
    if not padded or len(padded) % size:
        raise SecurityInputError(f"MAC data for {alg.name} is padded to whole {size}-byte blocks")
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    # CBC (step 1): O1 = E(IV xor D1), Oi = E(Oi-1 xor Di); only the last block counts.
    encryptor = Cipher(_cipher(alg, session_key), modes.CBC(iv)).encryptor()
    last = (encryptor.update(padded) + encryptor.finalize())[-size:]
    if size == 8:
        return last[:MAC_LENGTH]
    folded = bytes(MAC_LENGTH)
    for i in range(0, size, MAC_LENGTH):
        folded = _xor(folded, last[i : i + MAC_LENGTH])
    return folded


# --- encryption (part 4 §8.3) -------------------------------------------------------------


def _encryption_block(alg: Algorithm, plain: bytes) -> bytes:
    # Part 4 §8.3.2: LD || data, then 80 00.. only when not already whole blocks (§8.3.3
    # step 3: unlike the MAC, an aligned block gets no padding).
    size = block_size(alg)
    if len(plain) > 0xFF:
        raise SecurityInputError(f"LD is one byte: at most 255 bytes, not {len(plain)}")
    if alg is Algorithm.SM4 and not plain:
        raise SecurityInputError("SM4 encrypts at least 1 byte (part 4 §8.3.3.2: LD >= 1)")
    block = bytes((len(plain),)) + plain
    if len(block) % size:
        block += PADDING
        block += bytes(-len(block) % size)
    return block


def encrypt(alg: Algorithm, session_key: bytes, plain: bytes) -> bytes:
    """The cryptogram of `plain`: ECB of LD || plain || padding, part 4 §8.3.3.1 / §8.3.3.2."""
    _check_session_key(alg, session_key)
    return encrypt_block(alg, session_key, _encryption_block(alg, plain))


def decrypt(alg: Algorithm, session_key: bytes, cipher: bytes) -> bytes:
    """The plain data of a cryptogram, part 4 §8.3.4: ECB-decrypt, then take LD bytes.

    The text only reads LD; this also checks that LD and the padding are exactly what
    §8.3.3 builds (docs/security.md), so a wrong key or a forged block is `CryptogramError`.
    """
    _check_session_key(alg, session_key)
    size = block_size(alg)
    if not cipher or len(cipher) % size:
        raise CryptogramError(f"a {alg.name} cryptogram is whole {size}-byte blocks")
    block = decrypt_block(alg, session_key, cipher)
    plain = block[1 : 1 + block[0]]
    if len(plain) != block[0] or (alg is Algorithm.SM4 and not plain):
        raise CryptogramError("the decrypted length byte LD does not fit the cryptogram")
    if _encryption_block(alg, plain) != block:
        raise CryptogramError("the decrypted data is not LD, data and 80 00 padding")
    return plain


# --- authentication (part 4 §9.3) ---------------------------------------------------------


def auth_data(alg: Algorithm, session_key: bytes, raw: bytes) -> bytes:
    """The 8-byte authentication data (鉴别数据) of 8 bytes of raw data, part 4 §9.3.

    DES (§9.3.1 fig. 10): DES(raw). SM4 (§9.3.2 fig. 11): Y = SM4(raw || 00*8), then the
    left half XOR the right half.
    """
    _check_session_key(alg, session_key)
    if len(raw) != AUTH_LENGTH:
        raise SecurityInputError(f"authentication raw data is 8 bytes, not {len(raw)}")
    size = block_size(alg)
    y = encrypt_block(alg, session_key, raw + bytes(size - AUTH_LENGTH))
    return y if size == AUTH_LENGTH else _xor(y[:AUTH_LENGTH], y[AUTH_LENGTH:])


def authentication(alg: Algorithm, key: bytes, random: bytes, raw: bytes) -> bytes:
    """What EXTERNAL/INTERNAL AUTHENTICATE compute: auth data under session_key(key, random).

    Part 4 §9.2 (the session key of §8.4) and §9.3; part 5 §6.4, §6.7.
    """
    return auth_data(alg, session_key(alg, key, random), raw)


# --- secure messaging (part 4 §8.2, §8.5) --------------------------------------------------


def secure_apdu(
    alg: Algorithm,
    key: bytes,
    challenge: bytes,
    cla: int,
    ins: int,
    p1: int,
    p2: int,
    body: bytes,
) -> bytes:
    """The whole MAC-protected command: CLA INS P1 P2 Lc || body || MAC (part 4 §8.5).

    Lc counts the body and the 4 MAC bytes; the MAC (§8.2.4) covers the header with that
    Lc (footnotes 1-2) and the body, under the session key of `key` for the card's
    challenge (§8.2.3). An encrypted body (PIN CHANGE/UNBLOCK, `84 24 00 01`) is given
    already encrypted, with the same session key (docs/security.md A5).
    """
    if not all(0 <= b <= 0xFF for b in (cla, ins, p1, p2)):
        raise SecurityInputError("CLA, INS, P1 and P2 are single bytes (0-255)")
    if len(body) + MAC_LENGTH > 0xFF:
        raise SecurityInputError(
            f"a short APDU carries at most 251 bytes and a MAC, not {len(body)}"
        )
    header = bytes((cla, ins, p1, p2, len(body) + MAC_LENGTH))
    return header + body + mac(alg, session_key(alg, key, challenge), header + body)


def pin_block(pin_digits: str) -> bytes:
    """The PIN as compressed numeric (cn): packed BCD, an odd last digit padded with F.

    The plaintext of PIN CHANGE/UNBLOCK's encrypted PIN data (part 5 §6.8.3, the same
    coding as VERIFY, part 5 §6.14); 123456 -> 12 34 56, encrypted as LD 03 (docs/security.md A6).
    """
    if len(pin_digits) not in PIN_DIGITS or not (pin_digits.isascii() and pin_digits.isdigit()):
        raise SecurityInputError("a PIN is 4 to 16 decimal digits")
    return bytes.fromhex(pin_digits + "F" * (len(pin_digits) % 2))
