"""SM4 secure messaging of the service-outlet commands (docs/card.md §5).

Shared by the emulated card (to check) and the service outlet (to compute).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import modes

BLOCK = 16
MAC_LENGTH = 4
CHALLENGE_LENGTH = 8


def _sm4(key: bytes, mode: modes.ECB | modes.CBC, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    encryptor = Cipher(algorithms.SM4(key), mode).encryptor()
    return encryptor.update(data) + encryptor.finalize()


# cryptography is imported when a MAC is computed, not when a card or screen starts.


def card_key(master_key: bytes, identification_code: bytes) -> bytes:
    """Card key = SM4-ECB(master key, card identification code)."""
    from cryptography.hazmat.primitives.ciphers import modes

    # One block, a key derivation by contract (docs/card.md §5): ECB is what is specified.
    return _sm4(master_key, modes.ECB(), identification_code)  # noqa: S305


def pad(data: bytes) -> bytes:
    """ISO 9797-1 padding method 2: 80, then 00 up to a whole block."""
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % BLOCK)


def mac(key: bytes, challenge: bytes, header: bytes, body: bytes) -> bytes:
    """First 4 bytes of the last SM4-CBC block over header || body, IV = challenge || 00*8.

    `header` is CLA INS P1 P2 Lc', where Lc' counts the MAC too.
    """
    if len(challenge) != CHALLENGE_LENGTH:
        raise ValueError("a challenge is 8 bytes")
    from cryptography.hazmat.primitives.ciphers import modes

    iv = challenge + bytes(BLOCK - CHALLENGE_LENGTH)
    blocks = _sm4(key, modes.CBC(iv), pad(header + body))
    return blocks[-BLOCK:][:MAC_LENGTH]


def protect(
    key: bytes, challenge: bytes, cla: int, ins: int, p1: int, p2: int, body: bytes
) -> bytes:
    """The whole MAC-protected command APDU: header, Lc', body, MAC."""
    header = bytes((cla, ins, p1, p2, len(body) + MAC_LENGTH))
    return header + body + mac(key, challenge, header, body)
