"""A PIN reload written by hand from the standard, sent by pcsc-tools' scriptor through
pcscd + vpcd to a served card, and the same cryptograms asked of a PSAM in the second
slot (docs/card.md §5, docs/security.md, docs/psam.md §4).

The card is served with the hidden `--random-seed 7` (docs/card.md §7), so its GET
CHALLENGE answers are `random.Random(7).randbytes(8)`, twice: the test knows them
before it sends anything and builds every command itself with `cardio.security` and
the card's own PUK from its card file. No `cardio` key source or outlet code is used
for the user card's side.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from pcsc_stack import slot_name
from scriptor_helpers import run_scriptor

from cardio import pin, security
from cardio.card import profiles, store
from cardio.card.state import KEY_TRY_LIMIT, PinState
from cardio.issuer import SPEC, KeyName, card_keys, fixture_issuer
from cardio.model import Algorithm

pytestmark = pytest.mark.pcsc  # and the "pcsc" xdist group (conftest.py)

SEED = 7
NEW_PIN = "864213"
WRONG_PIN = "000000"
SSSE = "00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF"  # "sx1.sh.社会保障"
RAW = bytes.fromhex("0102030405060708")  # EXTERNAL AUTHENTICATE's raw data: any 8 bytes
PUK_REFERENCE = 0x06  # EXTERNAL AUTHENTICATE P2 of the PUK (docs/card.md §5)
# Part 4 §8.3.2 (docs/security.md A6): LD 03 ‖ the PIN in packed BCD ‖ 80 00.. to a block
PIN_PLAIN = bytes.fromhex("03" + NEW_PIN + "80") + bytes(11)


def spaced(data: bytes) -> str:
    """The form scriptor echoes a command in: upper-case hex, one space between bytes."""
    return " ".join(f"{b:02X}" for b in data)


def hand_reload(
    alg: Algorithm, puk: bytes, c1: bytes, c2: bytes
) -> tuple[bytes, bytes, bytes, bytes]:
    """(EXTERNAL AUTHENTICATE cryptogram, encrypted PIN block, MAC, the whole 84 24),
    each step of part 4 written out with cardio.security's primitives."""
    # Part 4 §9: the cryptogram is the raw data's authentication data under the session
    # key of the PUK and the first challenge (§8.4.2: the challenge padded with 00).
    session1 = security.encrypt_block(alg, puk, c1 + bytes(8))
    y = security.encrypt_block(alg, session1, RAW + bytes(8))  # §9.3.2: SM4(raw ‖ 00*8)
    cryptogram = bytes(a ^ b for a, b in zip(y[:8], y[8:], strict=True))
    assert cryptogram == security.authentication(alg, puk, c1, RAW)

    # Part 5 §6.8, part 4 §8.3 and §8.2.4: one session key of the second challenge
    # encrypts LD ‖ PIN (packed BCD) ‖ 80 00.. and MACs 84 24 00 01 Lc ‖ E(PIN).
    session2 = security.encrypt_block(alg, puk, c2 + bytes(8))
    assert len(PIN_PLAIN) == 16 and PIN_PLAIN[:5] == bytes.fromhex("0386421380")
    encrypted = security.encrypt_block(alg, session2, PIN_PLAIN)
    assert encrypted == security.encrypt(alg, session2, security.pin_block(NEW_PIN))
    header = bytes.fromhex("8424000114")  # Lc 0x14: 16 bytes of PIN block and the MAC
    mac = security.mac(alg, session2, header + encrypted)
    command = header + encrypted + mac
    assert command == security.secure_apdu(
        alg, puk, c2, 0x84, 0x24, 0x00, 0x01, encrypted
    )  # the same bytes through the helper that builds whole commands
    return cryptogram, encrypted, mac, command


def test_a_pin_reload_by_hand_through_scriptor_and_the_same_cryptograms_from_a_psam(
    tmp_path: Path, served
) -> None:
    card_path = tmp_path / "card.json"
    profiles.new_card("employee-new", card_path)
    psam_path = tmp_path / "psam.json"
    made = subprocess.run(
        [sys.executable, "-m", "cardio.cli", "card", "new", "--profile", "psam", str(psam_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr

    before = store.read(card_path)
    alg = Algorithm(before.algorithm)
    assert alg is Algorithm.SM4
    assert (before.pin_state, before.tries_left) == (PinState.INITIAL, before.try_limit)
    puk = before.keys[KeyName.PUK]  # the card's own key, from its file (secrets.keys)
    issued = card_keys(fixture_issuer(), before.card.identification_code, before.historical)
    assert issued[KeyName.PUK] == puk  # the test issuer's PUK dispersed for this card

    seeded = random.Random(SEED)  # what `serve --random-seed 7` answers GET CHALLENGE with
    c1, c2 = seeded.randbytes(8), seeded.randbytes(8)
    cryptogram, encrypted, mac, reload = hand_reload(alg, puk, c1, c2)

    card = served(card_path, 0, "--random-seed", str(SEED))
    psam = served(psam_path, 1)
    assert (card.reader, psam.reader) == (slot_name(0), slot_name(1))

    # --- the PSAM computes the same bytes (docs/psam.md §4, cardio/keysource.py) ---------
    spec = SPEC[KeyName.PUK]
    province, city, card_factor = security.dispersion_factors(
        before.card.identification_code, before.historical
    )
    factors = card_factor + city + province  # deepest first (part 9 §9.7)
    mac_stream = bytes(16) + security.mac_padding(alg, bytes.fromhex("8424000114") + encrypted)
    assert len(mac_stream) == 48
    psam_apdus = [
        "00 A4 00 00 02 3F 00",  # the MF: its FCI waits behind 61xx, unread
        "00 A4 00 0C 02 DF 01",  # the ADF
        f"BF EC 00 00 01 {before.card.identification_code[0]:02X}",
        # EXTERNAL AUTHENTICATE's cryptogram: PUK (usage 68, id 10), the first challenge
        spaced(
            bytes([0xBF, 0xDE, spec.psam_usage, spec.psam_id, 24 + 16]) + factors + c1 + bytes(8)
        ),
        spaced(bytes.fromhex("80FA000010") + RAW + bytes(8)),  # ECB of raw ‖ 00*8
        "00 C0 00 00 10",
        # 84 24's PIN block and MAC: one session key of the second challenge
        spaced(
            bytes([0xBF, 0xDE, spec.psam_usage, spec.psam_id, 24 + 16]) + factors + c2 + bytes(8)
        ),
        spaced(bytes.fromhex("80FA000010") + PIN_PLAIN),  # ECB of the PIN block
        "00 C0 00 00 10",
        spaced(bytes([0x80, 0xFA, 0x05, 0x00, len(mac_stream)]) + mac_stream),  # IV 00.. first
        "00 C0 00 00 04",
    ]
    assert psam_apdus[3].startswith("BF DE 68 10 28")
    psam_folder = tmp_path / "psam-script"
    psam_folder.mkdir()
    stdout, answers = run_scriptor(psam.reader, psam_apdus, psam_folder)
    sws = [a[-2:].hex().upper() for a in answers]
    assert sws[0].startswith("61"), stdout  # the MF's FCI waits; nothing reads it
    assert sws[1:] == [
        "9000",
        "9000",
        "9000",
        "6110",  # ECB of one block: 16 bytes wait for GET RESPONSE
        "9000",
        "9000",
        "6110",
        "9000",
        "6104",  # the MAC: 4 bytes
        "9000",
    ], stdout
    y = answers[5][:-2]
    assert bytes(a ^ b for a, b in zip(y[:8], y[8:], strict=True)) == cryptogram, stdout
    assert answers[8][:-2] == encrypted, stdout
    assert answers[10][:-2] == mac, stdout

    # --- the reload by hand, through scriptor -------------------------------------------
    card_apdus = [
        SSSE,  # the PUK is a key of the SSSE (EXTERNAL AUTHENTICATE P2 06)
        spaced(bytes.fromhex("0020000003") + pin.encode(WRONG_PIN)),  # a try spent: 63C5
        "00 84 00 00 08",
        spaced(bytes([0x00, 0x82, 0x00, PUK_REFERENCE, 0x10]) + cryptogram + RAW),
        "00 84 00 00 08",
        spaced(reload),
        spaced(bytes.fromhex("0020000003") + pin.encode(NEW_PIN)),
    ]
    assert card_apdus[3].startswith("00 82 00 06 10") and card_apdus[5].startswith("84 24 00 01 14")
    card_folder = tmp_path / "card-script"
    card_folder.mkdir()
    stdout, answers = run_scriptor(card.reader, card_apdus, card_folder)
    assert [a[-2:].hex().upper() for a in answers] == [
        "9000",  # SELECT: the FCI
        f"63C{before.try_limit - 1:X}",
        "9000",
        "9000",  # EXTERNAL AUTHENTICATE: the PUK proved
        "9000",
        "9000",  # 84 24 00 01: the new PIN, tries at the limit
        "9000",  # VERIFY with the new PIN
    ], stdout
    assert answers[2] == c1 + b"\x90\x00" and answers[4] == c2 + b"\x90\x00", stdout
    assert answers[3] == answers[5] == answers[6] == b"\x90\x00"

    after = store.read(card_path)  # safe while served: writes are renames (§7)
    assert after.pin.matches(NEW_PIN) and not after.pin.matches(pin.INITIAL_PIN)
    assert after.pin_state is PinState.ENABLED
    assert after.tries_left == after.try_limit == before.try_limit
    assert after.tries_of(KeyName.PUK) == KEY_TRY_LIMIT
    assert after.with_(pin=before.pin, pin_state=before.pin_state) == before
