"""The virtual PSAM (cardio/psam, docs/psam.md) and the key sources (cardio/keysource.py).

In process: every command of part 9 §9 the PSAM answers, each error path, the file, and
the key source that drives a PSAM, which must give exactly the bytes the master keys
give. The PC/SC path is tests/test_psam_pcsc.py.
"""

from __future__ import annotations

import json
import logging
import os
import random
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cardio import security, vpcd
from cardio.apdu import command, parse_hex
from cardio.card import profiles
from cardio.card.store import CardInUseError, StoreError
from cardio.errors import CardioError, Exit, UsageError
from cardio.issuer import KEYS, SPEC, Issuer, KeyName, card_keys, fixture_issuer
from cardio.keysource import (
    CardIdentity,
    KeySource,
    KeySourceError,
    MasterKeySource,
    PsamKeySource,
)
from cardio.model import Algorithm
from cardio.psam import card as psam_card
from cardio.psam import state as psam_state
from cardio.psam import store as psam_store
from cardio.psam.card import VirtualPsam
from cardio.psam.state import KeyRecord, PsamFileError, PsamState
from cardio.readers.base import Reader
from cardio.readers.virtual import VirtualReader

DES, SM4 = Algorithm.DES, Algorithm.SM4
MF_NAME = "73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF"  # "sx1.sh.社会保障" in GBK
AID = "D1 56 00 00 05 90"
SELECT_MF = "00 A4 00 00 02 3F 00"
SELECT_ADF = "00 A4 00 00 02 DF 01"
TERMINAL = "310000000001"


def h(text: str) -> bytes:
    return parse_hex(text) if text.strip() else b""


def sw(response: bytes) -> str:
    return response[-2:].hex().upper()


def des_issuer() -> Issuer:
    """The test issuer's key bytes as 3DES keys (every key is 16 bytes)."""
    return Issuer(DES, dict(fixture_issuer().masters))


def new_psam(alg: Algorithm = SM4, *, rand: bytes | None = None) -> VirtualPsam:
    issuer = fixture_issuer() if alg is SM4 else des_issuer()
    state = psam_state.make(issuer, TERMINAL)
    if rand is None:
        return VirtualPsam(state)
    return VirtualPsam(state, random=lambda n: (rand * 16)[:n])


def run(psam: VirtualPsam, *apdus: str) -> bytes:
    """Send each APDU; the last response."""
    response = b""
    for apdu in apdus:
        response = psam.execute(h(apdu))
    return response


def fetch(psam: VirtualPsam, apdu: str) -> bytes:
    """A case-4 command: 61xx, then GET RESPONSE; the data and 9000."""
    first = psam.execute(h(apdu))
    assert first[:-1] == b"\x61", first.hex()
    return psam.execute(bytes((0x00, 0xC0, 0x00, 0x00, first[-1])))


def in_adf(alg: Algorithm = SM4) -> VirtualPsam:
    psam = new_psam(alg)
    assert sw(run(psam, SELECT_ADF.replace("00 A4 00 00", "00 A4 00 0C"))) == "9000"
    return psam


def fixture_card() -> CardIdentity:
    state = profiles.load("employee-new")
    return CardIdentity(
        Algorithm(state.algorithm), state.card.identification_code, state.historical
    )


def factors(card: CardIdentity) -> bytes:
    """The DELIVERY SESSION KEY factors, deepest first: card, city, province."""
    province, city, card_factor = security.dispersion_factors(
        card.identification_code, card.historical
    )
    return card_factor + city + province


def deliver(psam: VirtualPsam, name: KeyName, card: CardIdentity, factor: bytes) -> bytes:
    spec = SPEC[name]
    return psam.execute(command(0xBF, 0xDE, spec.psam_usage, spec.psam_id, factors(card) + factor))


# --- the ATR and power -------------------------------------------------------------------


def test_atr_is_t0_with_twelve_historical_bytes_naming_the_psam() -> None:
    psam = new_psam()
    atr = psam.atr
    assert atr[:4] == h("3B 6C 00 00")
    assert len(atr) == 4 + 12
    assert atr[4:13] == b"\x00\x00SBPPSAM"
    assert atr[13] == 0x01  # our PSAM version
    assert atr[14:] == h("00 01")  # the serial's last 4 digits
    assert psam.power_on() == atr and psam.reset() == atr


def test_power_off_and_reset_forget_the_selection_and_the_session_key() -> None:
    psam = in_adf()
    card = fixture_card()
    assert sw(deliver(psam, KeyName.IRK, card, bytes(16))) == "9000"
    psam.reset()
    assert sw(run(psam, "80 FA 00 00 10" + " 00" * 16)) == "6901"
    assert sw(deliver(psam, KeyName.IRK, card, bytes(16))) == "6985"  # back at the MF
    psam.power_off()
    assert sw(run(psam, "00 B0 96 00 06")) == "9000"  # the MF again


# --- SELECT (part 9 §9.1) ----------------------------------------------------------------


def test_select_mf_by_fid_answers_its_fci_through_get_response() -> None:
    psam = new_psam()
    assert run(psam, SELECT_MF) == h("61 1B")
    assert psam.execute(h("00 C0 00 00 1B")) == h(
        "6F 19 84 0F" + MF_NAME + "A5 06 9F 0C 03 86 01 03 90 00"
    )


def test_the_mf_fci_names_des_for_a_des_psam() -> None:
    answer = fetch(new_psam(DES), SELECT_MF)
    assert answer[-5:] == h("86 01 01 90 00")


@pytest.mark.parametrize(
    ("apdu", "answer"),
    [
        ("00 A4 00 00", "6C 1B"),  # no data, no Le: case 2 on T=0, the FCI's length
        ("00 A4 00 00 1B", "FCI"),
        ("00 A4 04 00 0F " + MF_NAME, "61 1B"),
        ("00 A4 04 00 0F " + MF_NAME + " 00", "61 1B"),
    ],
    ids=["no-data", "no-data-le", "by-name", "by-name-le"],
)
def test_select_mf_other_ways(apdu: str, answer: str) -> None:
    psam = in_adf()
    got = run(psam, apdu)
    if answer == "FCI":
        assert got[:2] == h("6F 19") and got[-2:] == h("90 00")
    else:
        assert got == h(answer)
    assert run(psam, "00 B0 96 00 06")[-2:] == h("90 00")  # the MF is current


def test_select_adf_by_fid_by_p1_02_and_by_aid() -> None:
    for apdu in (SELECT_ADF, "00 A4 02 00 02 DF 01", "00 A4 04 00 06 " + AID):
        psam = new_psam()
        assert fetch(psam, apdu) == h("6F 08 84 06" + AID + "90 00"), apdu
    psam = new_psam()
    assert run(psam, "00 A4 00 0C 02 DF 01") == h("90 00")  # P2 0C: no FCI


def test_select_ef_answers_no_data_and_makes_it_current() -> None:
    for apdu in ("00 A4 02 00 02 00 16", "00 A4 00 00 02 00 16", "00 A4 02 0C 02 00 16"):
        psam = new_psam()
        assert run(psam, apdu) == h("90 00"), apdu
        assert run(psam, "00 B0 00 00 06") == h("31 00 00 00 00 01 90 00")


def test_select_in_the_adf_sees_only_its_own_files() -> None:
    psam = in_adf()
    assert run(psam, "00 A4 02 00 02 00 16") == h("6A 82")
    assert run(psam, "00 A4 02 0C 02 00 19") == h("90 00")
    assert run(psam, "00 B0 00 00 04") == h("00 00 00 00 90 00")
    assert run(psam, "00 A4 00 0C 02 DF 01") == h("90 00")  # itself
    assert run(psam, "00 A4 00 0C 02 3F 00") == h("90 00")  # back to the MF from anywhere


@pytest.mark.parametrize(
    ("apdu", "status"),
    [
        ("00 A4 00 00 02 12 34", "6A82"),
        ("00 A4 04 00 06 D1 56 00 00 05 91", "6A82"),
        ("00 A4 04 00 04 D1 56 00 00", "6700"),
        ("00 A4 04 00 11" + " 41" * 17, "6700"),
        ("00 A4 00 00 03 3F 00 00", "6700"),
        ("00 A4 02 00 01 3F", "6700"),
        ("00 A4 01 00 02 DF 01", "6A86"),
        ("00 A4 08 00 02 3F 00", "6A86"),
        ("00 A4 00 02 02 3F 00", "6A86"),
        ("00 A4 00 04 02 3F 00", "6A86"),
    ],
)
def test_select_errors(apdu: str, status: str) -> None:
    psam = in_adf()
    assert sw(run(psam, apdu)) == status
    assert run(psam, "00 B0 99 00 04") == h("00 00 00 00 90 00")  # still in DF01


# --- READ BINARY (part 5 §6.9, for part 9 §5.2-§5.4) ------------------------------------


def test_read_binary_by_sfi_reads_the_terminal_number_and_the_psam_info() -> None:
    psam = new_psam()
    assert run(psam, "00 B0 96 00 06") == h("31 00 00 00 00 01 90 00")
    info = h("01" + " 31 00 00 00 00 01 00 00 00 01" + " 01 01 00 00")
    assert run(psam, "00 B0 95 00 0F") == info + h("90 00")
    assert len(info) == 15  # part 9 §5.2 table 2


@pytest.mark.parametrize(
    ("apdu", "answer"),
    [
        ("00 B0 96 00 03", "31 00 00 90 00"),  # a shorter Le: that many bytes
        ("00 B0 96 02 04", "00 00 00 01 90 00"),  # from an offset
        ("00 B0 96 05 01", "01 90 00"),
        ("00 B0 96 00 00", "6C 06"),  # Le 00 on T=0: the right length
        ("00 B0 96 00", "6C 06"),  # no Le: P3 00 on T=0
        ("00 B0 96 00 07", "6C 06"),  # too long
        ("00 B0 96 02 00", "6C 04"),
        ("00 B0 96 06 01", "6B 00"),  # past the end
        ("00 B0 96 FF 01", "6B 00"),
        ("00 B0 9F 00 01", "6A 86"),  # SFI 11111
        ("00 B0 80 00 01", "6A 86"),  # SFI 0
        ("00 B0 B6 00 01", "6A 86"),  # b7-b6 not 00
        ("00 B0 97 00 01", "6A 82"),  # no such SFI
        ("00 B0 00 00 01", "69 86"),  # no current EF
        ("00 B0 96 00 01 00", "67 00"),  # data
    ],
)
def test_read_binary_le_offsets_and_errors(apdu: str, answer: str) -> None:
    assert run(new_psam(), apdu) == h(answer)


def test_read_binary_by_sfi_makes_the_file_current_for_the_offset_form() -> None:
    psam = new_psam()
    assert sw(run(psam, "00 B0 95 00 01")) == "9000"
    assert run(psam, "00 B0 00 0B 01") == h("01 90 00")  # 0015 byte 12: the PSAM version
    assert run(psam, "00 B0 00 0F 01") == h("6B 00")


def test_read_binary_from_the_adf_does_not_see_the_mf_files() -> None:
    psam = in_adf()
    assert run(psam, "00 B0 96 00 06") == h("6A 82")
    assert run(psam, "00 B0 99 00 04") == h("00 00 00 00 90 00")  # 0019, part 9 §5.4


# --- GET CHALLENGE (part 9 §9.2) --------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "le", "ok"),
    [
        (SM4, 4, True),
        (SM4, 8, True),
        (SM4, 16, True),
        (DES, 4, True),
        (DES, 8, True),
        (DES, 16, False),
        (SM4, 5, False),
        (SM4, 256, False),
    ],
)
def test_get_challenge_lengths(alg: Algorithm, le: int, ok: bool) -> None:
    psam = new_psam(alg, rand=bytes(range(1, 17)))
    answer = psam.execute(command(0x00, 0x84, 0x00, 0x00, le=le))
    if ok:
        assert answer == bytes(range(1, le + 1)) + h("90 00")
    else:
        assert answer == h("67 00")


def test_get_challenge_errors_and_randomness() -> None:
    psam = new_psam()
    assert run(psam, "00 84 00 00") == h("67 00")
    assert run(psam, "00 84 01 00 08") == h("6A 86")
    assert run(psam, "00 84 00 00 01 00 08") == h("67 00")
    first, second = run(psam, "00 84 00 00 08"), run(psam, "00 84 00 00 08")
    assert first != second and len(first) == 10


# --- INITIALIZE ENVIRONMENT (part 9 §9.3) -----------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "status"),
    [
        ("BF EC 00 00 01 31", "9000"),
        ("BF EC 00 00 01 99", "9000"),
        ("BF EC 00 00 01 3A", "6A80"),
        ("BF EC 00 00 01 A1", "6A80"),
        ("BF EC 00 00 02 31 00", "6700"),
        ("BF EC 00 00 01 31 00", "6700"),
        ("BF EC 00 00", "6700"),
        ("BF EC 01 00 01 31", "6A86"),
    ],
)
def test_initialize_environment(apdu: str, status: str) -> None:
    assert sw(run(new_psam(), apdu)) == status


def test_initialize_environment_is_kept_and_never_required() -> None:
    psam = in_adf()
    card = fixture_card()
    assert sw(deliver(psam, KeyName.IRK, card, bytes(16))) == "9000"
    assert sw(run(psam, "BF EC 00 00 01 31")) == "9000"
    assert psam._session.environment == 0x31


# --- DELIVERY SESSION KEY and CIPHER DATA (part 9 §9.7, §9.8) ----------------------------


@pytest.mark.parametrize("alg", [SM4, DES])
def test_the_psam_derives_the_card_keys_of_the_fixture_card(alg: Algorithm) -> None:
    """Part 9 §7.3: what the PSAM encrypts under is the session key of the card key that
    issuer.card_keys gives the card, for every key."""
    psam = in_adf(alg)
    card = replace(fixture_card(), algorithm=alg)
    issuer = fixture_issuer() if alg is SM4 else des_issuer()
    keys = card_keys(issuer, card.identification_code, card.historical)
    size = security.block_size(alg)
    factor = bytes(range(0x10, 0x10 + size))
    block = bytes(range(0xA0, 0xA0 + size))
    for spec in KEYS:
        assert deliver(psam, spec.name, card, factor) == h("90 00"), spec.name
        got = fetch(psam, "80 FA 00 00 " + f"{size:02X} " + block.hex())
        session = security.session_key(alg, keys[spec.name], factor)
        assert got == security.encrypt_block(alg, session, block) + h("90 00"), spec.name


def test_delivery_needs_the_adf() -> None:
    psam = new_psam()
    assert sw(deliver(psam, KeyName.IRK, fixture_card(), bytes(16))) == "6985"


def test_delivery_key_not_found_is_6a88() -> None:
    psam = in_adf()
    data = factors(fixture_card()) + bytes(16)
    assert sw(psam.execute(command(0xBF, 0xDE, 0x67, 0x77, data))) == "6A88"
    assert sw(psam.execute(command(0xBF, 0xDE, 0x66, 0x08, data))) == "6A88"  # IRK is type 07


def test_delivery_ignores_the_level_bits_of_p1_and_checks_the_number_of_factors() -> None:
    """Part 9 §8 方案一: terminals keep P1 and try 3, 2, 1 factors; only N counts."""
    psam = in_adf()
    card = fixture_card()
    full = factors(card) + bytes(16)
    for p1 in (0x67, 0x27, 0x47, 0x07, 0xE7):
        assert sw(psam.execute(command(0xBF, 0xDE, p1, 0x08, full))) == "9000"
    for dropped in (8, 16, 24):  # N = 2, 1, 0: the key is a national root (N = 3)
        data = factors(card)[dropped:] + bytes(16)
        assert sw(psam.execute(command(0xBF, 0xDE, 0x67, 0x08, data))) == "6A80"


@pytest.mark.parametrize(
    ("alg", "length"),
    [(SM4, 16 + 7), (SM4, 24 + 15), (SM4, 32 + 16), (SM4, 8), (DES, 24 + 16), (DES, 24 + 4)],
)
def test_delivery_wrong_lc_is_6700(alg: Algorithm, length: int) -> None:
    psam = in_adf(alg)
    assert sw(psam.execute(command(0xBF, 0xDE, 0x67, 0x08, bytes(length)))) == "6700"


def test_delivery_with_a_le_is_6700_and_a_failed_delivery_leaves_no_key() -> None:
    psam = in_adf()
    card = fixture_card()
    assert sw(deliver(psam, KeyName.IRK, card, bytes(16))) == "9000"
    spec = SPEC[KeyName.IRK]
    data = factors(card) + bytes(16)
    apdu = command(0xBF, 0xDE, spec.psam_usage, spec.psam_id, data, le=0)
    assert sw(psam.execute(apdu)) == "6700"
    assert sw(run(psam, "80 FA 00 00 10" + " 00" * 16)) == "6901"


def test_cipher_data_without_delivery_is_6901() -> None:
    psam = in_adf()
    for p1 in ("00", "02", "05", "07", "03", "01"):
        assert sw(run(psam, f"80 FA {p1} 00 20" + " 00" * 32)) == "6901", p1


@pytest.mark.parametrize("alg", [SM4, DES])
def test_one_session_key_serves_one_encryption_and_one_mac(alg: Algorithm) -> None:
    """Part 9 §9.8.2 (docs/psam.md): P1 00 finishes the encryption, 05 the MAC."""
    psam = in_adf(alg)
    card = replace(fixture_card(), algorithm=alg)
    size = security.block_size(alg)
    assert sw(deliver(psam, KeyName.PUK, card, bytes(size))) == "9000"
    block = f"80 FA 00 00 {size:02X}" + " 11" * size
    more = f"80 FA 02 00 {size:02X}" + " 11" * size
    mac = f"80 FA 05 00 {2 * size:02X}" + " 00" * size + " 22" * size
    assert fetch(psam, more)[-2:] == h("90 00")  # more follows: not finished
    assert fetch(psam, block)[-2:] == h("90 00")
    assert sw(run(psam, block)) == "6901"
    assert fetch(psam, mac)[-2:] == h("90 00")
    assert sw(run(psam, mac)) == "6901"
    assert sw(run(psam, f"80 FA 07 00 {2 * size:02X}" + " 00" * 2 * size)) == "6901"


@pytest.mark.parametrize("alg", [SM4, DES])
def test_cipher_data_mac_is_cbc_from_the_first_block(alg: Algorithm) -> None:
    psam = in_adf(alg)
    card = replace(fixture_card(), algorithm=alg)
    issuer = fixture_issuer() if alg is SM4 else des_issuer()
    size = security.block_size(alg)
    challenge = bytes(range(1, 9))
    assert sw(deliver(psam, KeyName.STKSSSE, card, challenge + bytes(size - 8))) == "9000"
    iv = bytes(range(0x40, 0x40 + size))
    padded = security.mac_padding(alg, h("84 1E 00 01 04"))
    got = fetch(psam, f"80 FA 05 00 {size + len(padded):02X}" + (iv + padded).hex())
    key = card_keys(issuer, card.identification_code, card.historical)[KeyName.STKSSSE]
    session = security.session_key(alg, key, challenge)
    assert got == security.mac_with_iv(alg, session, iv, padded) + h("90 00")
    assert len(got) == 4 + 2


@pytest.mark.parametrize("alg", [SM4, DES])
def test_a_mac_in_parts_equals_the_mac_in_one_call(alg: Algorithm) -> None:
    size = security.block_size(alg)
    card = replace(fixture_card(), algorithm=alg)
    stream = bytes(size) + security.mac_padding(alg, bytes(range(3 * size + 3)))
    one = in_adf(alg)
    assert sw(deliver(one, KeyName.PUK, card, bytes(size))) == "9000"
    whole = fetch(one, f"80 FA 05 00 {len(stream):02X}" + stream.hex())
    parts = in_adf(alg)
    assert sw(deliver(parts, KeyName.PUK, card, bytes(size))) == "9000"
    assert run(parts, f"80 FA 07 00 {2 * size:02X}" + stream[: 2 * size].hex()) == h("90 00")
    assert run(parts, f"80 FA 03 00 {size:02X}" + stream[2 * size : 3 * size].hex()) == h("90 00")
    last = stream[3 * size :]
    assert fetch(parts, f"80 FA 01 00 {len(last):02X}" + last.hex()) == whole
    assert sw(run(parts, f"80 FA 01 00 {size:02X}" + " 00" * size)) == "6901"  # spent


@pytest.mark.parametrize(
    ("alg", "p1", "length", "status"),
    [
        (SM4, "00", 15, "6700"),
        (SM4, "00", 8, "6700"),
        (SM4, "00", 144, "6700"),  # over 80
        (SM4, "00", 128, "61"),
        (SM4, "05", 16, "6700"),  # the IV alone
        (SM4, "05", 32, "61"),
        (DES, "00", 4, "6700"),
        (DES, "00", 72, "6700"),  # over 40
        (DES, "00", 64, "61"),
        (DES, "05", 8, "6700"),
        (DES, "05", 16, "61"),
    ],
)
def test_cipher_data_lengths_follow_table_25(
    alg: Algorithm, p1: str, length: int, status: str
) -> None:
    psam = in_adf(alg)
    size = security.block_size(alg)
    card = replace(fixture_card(), algorithm=alg)
    assert sw(deliver(psam, KeyName.PUK, card, bytes(size))) == "9000"
    answer = psam.execute(h(f"80 FA {p1} 00 {length:02X}") + bytes(length))
    assert sw(answer).startswith(status)


@pytest.mark.parametrize("apdu", ["80 FA 04 00 10", "80 FA 00 01 10", "80 FA 06 00 10"])
def test_cipher_data_wrong_p1_p2_is_6a86(apdu: str) -> None:
    psam = in_adf()
    assert sw(deliver(psam, KeyName.PUK, fixture_card(), bytes(16))) == "9000"
    assert sw(run(psam, apdu + " 00" * 16)) == "6A86"


def test_mac_next_without_a_first_is_6901() -> None:
    psam = in_adf()
    assert sw(deliver(psam, KeyName.PUK, fixture_card(), bytes(16))) == "9000"
    assert sw(run(psam, "80 FA 03 00 10" + " 00" * 16)) == "6901"
    assert sw(run(psam, "80 FA 01 00 10" + " 00" * 16)) == "6901"


# --- the dispatcher and T=0 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "answer"),
    [
        ("90 A4 00 00", "6E 00"),
        ("84 FA 00 00", "6E 00"),
        ("00 FA 00 00", "6E 00"),  # CIPHER DATA is 80
        ("80 A4 00 00", "6E 00"),
        ("BF 84 00 00 08", "6E 00"),
        ("00 FF 00 00", "6D 00"),
        ("80 70 01 00", "6D 00"),  # INIT SAM FOR PURCHASE: not yet
        ("BF 1A 00 00", "6D 00"),
        ("00 C0 00 00 08", "6F 00"),  # nothing waits
        ("00 A4 00", "67 00"),
        ("00 A4 00 00 00", "6C 1B"),  # the MF's FCI with Le 00, no data: case 2
        ("00 A4 00 00 05 3F 00", "67 00"),
    ],
)
def test_dispatcher(apdu: str, answer: str) -> None:
    assert run(new_psam(), apdu) == h(answer)


def test_get_response_hands_out_what_61xx_announced() -> None:
    psam = new_psam()
    assert run(psam, SELECT_MF) == h("61 1B")
    assert run(psam, "00 C0 00 00 00") == h("6C 1B")  # kept
    assert run(psam, "00 C0 00 00 1C") == h("6C 1B")
    assert run(psam, "00 C0 01 00 1B") == h("6A 86")  # dropped by any other command
    assert run(psam, "00 C0 00 00 1B") == h("6F 00")
    assert run(psam, SELECT_MF) == h("61 1B")
    part = run(psam, "00 C0 00 00 10")
    assert part[-2:] == h("61 0B") and len(part) == 18
    assert run(psam, "00 C0 00 00 0B")[-2:] == h("90 00")
    assert run(psam, SELECT_MF, "00 C0 00 00 01 00 1B") == h("67 00")


def test_execute_never_raises_and_a_bug_is_6f00_logged_without_bytes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    psam = in_adf()
    rng = random.Random(12)
    for _ in range(3000):
        apdu = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.5 and len(apdu) > 4:
            apdu = (
                bytes(
                    (
                        rng.choice((0x00, 0x80, 0xBF)),
                        rng.choice((0xA4, 0xB0, 0x84, 0xEC, 0xDE, 0xFA, 0xC0)),
                    )
                )
                + apdu[2:]
            )
        answer = psam.execute(apdu)
        assert len(answer) >= 2 and answer[-2:] != h("6F 00") or apdu[:2] == h("00 C0")

    secret = fixture_issuer().masters[KeyName.IRK].hex()

    def broken(self: VirtualPsam, apdu: object) -> bytes:
        raise ValueError(f"key {secret}")

    monkeypatch.setitem(psam_card._COMMANDS, (0x00, 0x84), broken)
    with caplog.at_level(logging.ERROR):
        assert run(psam, "00 84 00 00 08") == h("6F 00")
    assert "ValueError" in caplog.text and secret not in caplog.text.lower()
    assert run(psam, "00 B0 99 00 04") == h("00 00 00 00 90 00")  # still alive


# --- the file ---------------------------------------------------------------------------


def make_file(tmp_path: Path, name: str = "psam.json", number: str = TERMINAL) -> Path:
    path = tmp_path / name
    psam_store.create(path, psam_state.make(fixture_issuer(), number))
    return path


def test_the_psam_file_round_trips_and_is_private(tmp_path: Path) -> None:
    path = make_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text("utf-8"))
    assert doc["format"] == 1 and doc["kind"] == "psam"
    assert doc["terminal_number"] == TERMINAL
    assert doc["serial"] == "31000000000100000001"
    assert doc["issuer"]["algorithm"] == "SM4"
    assert set(doc["issuer"]["keys"]) == {k.value for k in KeyName}
    state = psam_store.read(path)
    assert state == psam_state.make(fixture_issuer(), TERMINAL)
    assert psam_store.is_psam_file(path)


def test_create_refuses_to_replace_without_force(tmp_path: Path) -> None:
    path = make_file(tmp_path)
    with pytest.raises(StoreError, match="--force"):
        psam_store.create(path, psam_state.make(fixture_issuer(), "440300000002"))
    psam_store.create(path, psam_state.make(fixture_issuer(), "440300000002"), force=True)
    assert psam_store.read(path).terminal_number == "440300000002"


def test_a_bad_terminal_number_is_refused() -> None:
    for number in ("31000000000", "3100000000011", "31000000000A", "３１0000000001"):
        with pytest.raises(UsageError, match="12 digits"):
            psam_state.make(fixture_issuer(), number)


def _edited(tmp_path: Path, change: dict[str, object]) -> Path:
    path = make_file(tmp_path)
    doc = json.loads(path.read_text("utf-8"))
    doc.update(change)
    path.write_text(json.dumps(doc), "utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"kind": "card"}, "not a PSAM file"),
        ({"format": 2}, "format 2"),
        ({"terminal_number": "12345"}, '"terminal_number" must be 12 digits'),
        ({"terminal_number": 310000000001}, '"terminal_number" must be 12 digits'),
        ({"serial": "1"}, '"serial" must be 20 digits'),
        ({"issuer": []}, '"issuer" must be'),
        ({"issuer": {"algorithm": "SSF33", "keys": {}}}, '"algorithm" is not'),
        ({"issuer": {"algorithm": "SM4", "keys": {"IRK": "00"}}}, "key IRK is not 32 hex"),
    ],
)
def test_a_damaged_psam_file_is_one_line_without_key_bytes(
    tmp_path: Path, change: dict[str, object], words: str
) -> None:
    path = _edited(tmp_path, change)
    with pytest.raises(PsamFileError) as caught:
        psam_store.read(path)
    message = str(caught.value)
    assert words in message and "\n" not in message
    assert caught.value.exit_code == Exit.USAGE
    for key in fixture_issuer().masters.values():
        assert key.hex() not in message.lower()


def test_unreadable_forms_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "psam.json"
    path.write_bytes(b"\xff\xfe")
    os.chmod(path, 0o600)
    with pytest.raises(PsamFileError, match="not UTF-8 JSON"):
        psam_store.read(path)
    with pytest.raises(StoreError, match="no such PSAM file"):
        psam_store.read(tmp_path / "missing.json")
    with pytest.raises(PsamFileError, match="not a regular file"):
        psam_store.read(tmp_path)
    shared = make_file(tmp_path, "shared.json")
    os.chmod(shared, 0o640)
    with pytest.raises(PsamFileError, match="chmod 600"):
        psam_store.read(shared)


def test_is_psam_file_says_no_to_everything_else(tmp_path: Path) -> None:
    card = tmp_path / "card.json"
    profiles.new_card("employee-new", card)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "text").write_text("hello")
    for path in (card, fifo, tmp_path / "text", tmp_path / "missing", tmp_path, Path("")):
        assert not psam_store.is_psam_file(path), path


def test_no_repr_shows_a_key(tmp_path: Path) -> None:
    state = psam_state.make(fixture_issuer(), TERMINAL)
    psam = VirtualPsam(state)
    record = state.records()[0]
    source = MasterKeySource(fixture_issuer())
    texts = [repr(state), repr(psam), repr(record), repr(source), repr(psam._session)]
    for key in fixture_issuer().masters.values():
        for text in texts:
            assert key.hex() not in text.lower() and key.hex().upper() not in text


def test_key_records_follow_part_9_6() -> None:
    state = psam_state.make(fixture_issuer(), TERMINAL)
    records = {r.name: r for r in state.records()}
    irk = records[KeyName.IRK]
    assert (irk.usage, irk.ident, irk.algorithm, irk.level, irk.key_type) == (0x67, 0x08, 3, 3, 7)
    assert records[KeyName.PUK].usage == 0x68
    des = psam_state.make(des_issuer(), TERMINAL).records()[0]
    assert des.algorithm == 0x00  # 3DES, 16-byte key (part 9 §6.2)
    assert state.find(0x07, 0x08) == irk and state.find(0x06, 0x08) is None
    assert isinstance(irk, KeyRecord)


def test_psam_file_lock_one_process_at_a_time(tmp_path: Path) -> None:
    path = make_file(tmp_path)
    with vpcd._inserted(path) as chip:
        assert isinstance(chip, VirtualPsam)
        with pytest.raises(CardInUseError):
            VirtualReader(path)
    reader = VirtualReader(path)
    assert reader.psam is not None and reader.card is None
    reader.close()


# --- the key sources -----------------------------------------------------------------------


@pytest.fixture
def psam_reader(tmp_path: Path) -> Iterator[VirtualReader]:
    reader = VirtualReader(make_file(tmp_path))
    reader.connect()
    yield reader
    reader.close()


class ChipReader(Reader):
    """A Reader over a PSAM in memory (for PSAMs no file can hold)."""

    name = "memory"

    def __init__(self, chip: VirtualPsam) -> None:
        super().__init__()
        self.chip = chip

    def card_present(self) -> bool:
        return True

    def connect(self) -> bytes:
        return self.chip.power_on()

    def reset(self) -> bytes:
        return self.chip.reset()

    def disconnect(self) -> None:
        self.chip.power_off()

    def _exchange(self, apdu: bytes) -> bytes:
        return self.chip.execute(apdu)


def sources(alg: Algorithm) -> tuple[MasterKeySource, PsamKeySource]:
    issuer = fixture_issuer() if alg is SM4 else des_issuer()
    reader = ChipReader(VirtualPsam(psam_state.make(issuer, TERMINAL)))
    reader.connect()
    return MasterKeySource(issuer, terminal_number=TERMINAL), PsamKeySource(reader)


def test_both_sources_are_key_sources(psam_reader: VirtualReader) -> None:
    master: KeySource = MasterKeySource(fixture_issuer())
    psam: KeySource = PsamKeySource(psam_reader)
    assert master.terminal_number() == psam.terminal_number() == "310000000001"


def test_psam_key_source_over_the_virtual_reader_equals_the_masters(
    psam_reader: VirtualReader,
) -> None:
    """SM4, the fixture issuer: every question, the same bytes."""
    master, psam = MasterKeySource(fixture_issuer()), PsamKeySource(psam_reader)
    card = fixture_card()
    assert card.algorithm is SM4
    r1, r2 = h("01 02 03 04 05 06 07 08"), h("11 22 33 44 55 66 77 88")
    answer = psam.internal_auth(card, r1, r2)
    assert answer == master.internal_auth(card, r1, r2) and len(answer) == 8
    challenge, raw = h("A1 A2 A3 A4 A5 A6 A7 A8"), h("B1 B2 B3 B4 B5 B6 B7 B8")
    for name in KeyName:
        if name is KeyName.IRK:
            continue
        cryptogram = psam.external_auth(name, card, challenge, raw)
        assert cryptogram == master.external_auth(name, card, challenge, raw), name
    for pin in (None, "123456", "8026135", "1234", "1234567890123456"):
        for name in (KeyName.PUK, KeyName.STKSSSE, KeyName.STKDF04):
            got = psam.secure_apdu(name, card, challenge, 0x84, 0x24, 0x00, 0x01, pin)
            assert got == master.secure_apdu(name, card, challenge, 0x84, 0x24, 0x00, 0x01, pin)
    assert psam.secure_apdu(KeyName.PUK, card, challenge, 0x84, 0x24, 0x00, 0x00, None)[:5] == h(
        "84 24 00 00 04"
    )
    assert psam.secure_apdu(KeyName.PUK, card, challenge, 0x84, 0x24, 0x00, 0x01, "123456")[
        :5
    ] == h("84 24 00 01 14")


def test_the_sources_agree_with_the_standard_s_arithmetic() -> None:
    """The master source is cardio.security itself: internal auth is part 4 §9.3 under the
    IRK card key (part 9 §7.3), a secured command part 4 §8.5."""
    card = fixture_card()
    keys = card_keys(fixture_issuer(), card.identification_code, card.historical)
    master = MasterKeySource(fixture_issuer())
    r1, r2 = bytes(range(8)), bytes(range(8, 16))
    assert master.internal_auth(card, r1, r2) == security.authentication(
        SM4, keys[KeyName.IRK], r1, r2
    )
    session = security.session_key(SM4, keys[KeyName.PUK], r1)
    cipher = security.encrypt(SM4, session, security.pin_block("123456"))
    assert master.secure_apdu(KeyName.PUK, card, r1, 0x84, 0x24, 0, 1, "123456") == (
        security.secure_apdu(SM4, keys[KeyName.PUK], r1, 0x84, 0x24, 0, 1, cipher)
    )


@pytest.mark.parametrize("alg", [SM4, DES])
@pytest.mark.parametrize("length", [4, 8])
def test_des_and_sm4_sources_agree_for_every_challenge_length(alg: Algorithm, length: int) -> None:
    master, psam = sources(alg)
    card = replace(fixture_card(), algorithm=alg)
    challenge, raw = bytes(range(1, length + 1)), bytes(range(0x30, 0x38))
    assert psam.internal_auth(card, challenge, raw) == master.internal_auth(card, challenge, raw)
    for name in (KeyName.RKSSSE, KeyName.PUK, KeyName.RK1DF04):
        assert psam.external_auth(name, card, challenge, raw) == master.external_auth(
            name, card, challenge, raw
        )
    for pin in (None, "123456", "12345678901234"):
        assert psam.secure_apdu(KeyName.PUK, card, challenge, 0x84, 0x24, 0, 1, pin) == (
            master.secure_apdu(KeyName.PUK, card, challenge, 0x84, 0x24, 0, 1, pin)
        )


def test_sm4_sixteen_byte_challenge() -> None:
    master, psam = sources(SM4)
    card = fixture_card()
    challenge, raw = bytes(range(16)), bytes(8)
    assert psam.external_auth(KeyName.PUK, card, challenge, raw) == master.external_auth(
        KeyName.PUK, card, challenge, raw
    )


@pytest.mark.parametrize("alg", [SM4, DES])
def test_a_long_mac_goes_in_parts(alg: Algorithm) -> None:
    """Longer than table 25's 8 blocks: CIPHER DATA 07, 03 .. 01."""
    _, psam = sources(alg)
    card = replace(fixture_card(), algorithm=alg)
    psam._deliver(KeyName.STKSSSE, card, bytes(8))
    size = security.block_size(alg)
    padded = security.mac_padding(alg, bytes(range(200)))
    got = psam._mac(alg, padded)
    issuer = fixture_issuer() if alg is SM4 else des_issuer()
    key = card_keys(issuer, card.identification_code, card.historical)[KeyName.STKSSSE]
    assert got == security.mac_with_iv(
        alg, security.session_key(alg, key, bytes(8)), bytes(size), padded
    )


def test_psam_key_source_recovers_after_a_reset(psam_reader: VirtualReader) -> None:
    master, psam = MasterKeySource(fixture_issuer()), PsamKeySource(psam_reader)
    card = fixture_card()
    first = psam.internal_auth(card, bytes(8), bytes(8))
    psam_reader.reset()  # the PSAM is at its MF again: 6985, then select DF01 and retry
    assert (
        psam.internal_auth(card, bytes(8), bytes(8))
        == first
        == master.internal_auth(card, bytes(8), bytes(8))
    )


def test_a_psam_without_the_key_is_one_sentence() -> None:
    issuer = fixture_issuer()
    masters = {k: v for k, v in issuer.masters.items() if k is not KeyName.RKSSSE}
    reader = ChipReader(VirtualPsam(PsamState(TERMINAL, "0" * 20, Issuer(SM4, masters))))
    reader.connect()
    source = PsamKeySource(reader)
    with pytest.raises(KeySourceError) as caught:
        source.external_auth(KeyName.RKSSSE, fixture_card(), bytes(8), bytes(8))
    message = str(caught.value)
    assert "no RKSSSE key (type 07, identifier 0A)" in message and "\n" not in message
    assert caught.value.api_code == -27272
    assert caught.value.exit_code == Exit.FAILED


def test_a_psam_with_another_key_level_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    original = PsamState.find

    def province_root(self: PsamState, key_type: int, ident: int) -> KeyRecord | None:
        found = original(self, key_type, ident)
        return None if found is None else replace(found, usage=0x40 | found.key_type)

    monkeypatch.setattr(PsamState, "find", province_root)
    _, psam = sources(SM4)
    with pytest.raises(KeySourceError, match="not a national root") as caught:
        psam.internal_auth(fixture_card(), bytes(8), bytes(8))
    assert caught.value.api_code == -24


def test_algorithms_that_do_not_match_are_refused() -> None:
    master, psam = sources(DES)
    card = fixture_card()  # SM4
    with pytest.raises(KeySourceError, match="the card uses SM4 but the PSAM holds DES keys"):
        psam.internal_auth(card, bytes(8), bytes(8))
    with pytest.raises(KeySourceError, match="the card uses SM4 but the issuer holds DES keys"):
        master.internal_auth(card, bytes(8), bytes(8))


def test_bad_inputs_to_the_psam_source_are_refused_before_the_psam() -> None:
    _, psam = sources(SM4)
    card = fixture_card()
    with pytest.raises(security.SecurityInputError):
        psam.internal_auth(card, bytes(5), bytes(8))
    with pytest.raises(security.SecurityInputError):
        psam.internal_auth(card, bytes(8), bytes(7))
    with pytest.raises(security.SecurityInputError, match="PIN"):
        psam.secure_apdu(KeyName.PUK, card, bytes(8), 0x84, 0x24, 0, 1, "12a4")
    with pytest.raises(security.SecurityInputError, match="single bytes"):
        psam.secure_apdu(KeyName.PUK, card, bytes(8), 0x184, 0x24, 0, 1, None)
    with pytest.raises(UsageError, match="terminal number"):
        MasterKeySource(fixture_issuer(), terminal_number="12")


def test_a_psam_that_refuses_is_one_sentence() -> None:
    reader = ChipReader(VirtualPsam(psam_state.make(fixture_issuer(), TERMINAL)))
    reader.connect()
    source = PsamKeySource(reader)
    source.start()

    def refuse(apdu: bytes) -> bytes:
        return h("6A 81")

    reader.chip.execute = refuse  # type: ignore[method-assign]
    with pytest.raises(KeySourceError) as caught:
        source.internal_auth(fixture_card(), bytes(8), bytes(8))
    assert str(caught.value).startswith("the PSAM answered 6A81")
    assert isinstance(caught.value, CardioError)


# --- the command line and the bridge -------------------------------------------------------


def cardio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardio.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_new_show_and_send(tmp_path: Path) -> None:
    path = tmp_path / "psam.json"
    done = cardio("card", "new", "--profile", "psam", str(path))
    assert done.returncode == 0, done.stderr
    assert "terminal number 310000000001" in done.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = cardio("card", "show", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "PSAM" in shown.stdout and "310000000001" in shown.stdout and "SM4" in shown.stdout
    assert "IRK" in shown.stdout
    as_json = json.loads(cardio("card", "show", "--json", str(path)).stdout)
    assert as_json["kind"] == "psam" and as_json["keys"]["IRK"] == "usage 67 id 08"
    for key in fixture_issuer().masters.values():
        assert key.hex() not in (shown.stdout + json.dumps(as_json)).lower()
    sent = cardio("send", "--card", str(path), "00 B0 96 00 06")
    assert sent.stdout.splitlines()[-1] == "< 31 00 00 00 00 01 90 00"


def test_cli_terminal_number_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "psam.json"
    done = cardio(
        "card", "new", "--profile", "psam", "--terminal-number", "440300000009", str(path)
    )
    assert done.returncode == 0, done.stderr
    assert psam_store.read(path).terminal_number == "440300000009"
    assert psam_store.read(path).serial == "44030000000900000001"
    for extra in (["--terminal-number", "4403"], ["--real-only"], ["--spec-version", "3.00"]):
        refused = cardio("card", "new", "--profile", "psam", "--force", *extra, str(path))
        assert refused.returncode == 2, extra
        assert len(refused.stderr.splitlines()) == 1
    card = cardio(
        "card",
        "new",
        "--profile",
        "employee-new",
        "--terminal-number",
        "1",
        str(tmp_path / "c.json"),
    )
    assert card.returncode == 2 and "--terminal-number is for a PSAM" in card.stderr


def test_the_bridge_serves_a_psam_and_hides_cipher_data(caplog: pytest.LogCaptureFixture) -> None:
    psam = new_psam()
    bridge = vpcd.Bridge(psam, verbose=True)
    assert bridge.answer(bytes((vpcd.GET_ATR,))) == psam.atr
    assert bridge.answer(bytes((vpcd.POWER_ON,))) is None
    with caplog.at_level(logging.INFO, logger="cardio.serve"):
        assert bridge.answer(h("00 B0 96 00 06")) == h("31 00 00 00 00 01 90 00")
        bridge.answer(h("80 FA 00 00 10 03 12 34 56 80 00 00 00 00 00 00 00 00 00 00 00"))
    assert "> 00 B0 96 00 06" in caplog.text
    assert "> 80 FA 00 00 10 ** **" in caplog.text
    assert "12 34 56" not in caplog.text
