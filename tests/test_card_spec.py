"""The emulated card against its description, docs/card.md.

Every test names the section (s1..s8) it proves. Expected bytes are written out from
the spec and from fixtures/cards/*.json, not computed with the card's own code.
"""

from __future__ import annotations

import pytest
from card_helpers import (
    ENABLED_PIN,
    FCI_SSSE,
    INITIAL_PIN,
    OK,
    SELECT_SSSE,
    RecordingStore,
    change_pin,
    data_of,
    get_challenge,
    h,
    new_card,
    pin_status,
    select_ssse,
    send,
    status_query,
    sw_hex,
    sw_of,
    transmit,
    tries_left,
    verify,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardio import security
from cardio.card.card import VirtualCard
from cardio.card.profiles import load
from cardio.card.state import PinState
from cardio.issuer import KeyName

# EXTERNAL AUTHENTICATE's P2 of the keys used here (part 9 table B1; RKSSSE ours, 07)
REFERENCE = {KeyName.PUK: 0x06, KeyName.RKSSSE: 0x07, KeyName.RK1DF04: 0x84}
RAW = h("01 02 03 04 05 06 07 08")  # the terminal's raw data (part 5 §6.4.3)


def authenticate(
    card: VirtualCard, profile: str, key: KeyName, challenge: bytes | None = None
) -> int:
    """GET CHALLENGE (unless given), then EXTERNAL AUTHENTICATE with `key` as the
    profile's card file holds it (docs/security.md: part 4 §9)."""
    challenge = get_challenge(card) if challenge is None else challenge
    state = load(profile)
    cryptogram = security.authentication(state.algorithm, state.keys[key], challenge, RAW)
    return sw_of(card.execute(bytes((0x00, 0x82, 0x00, REFERENCE[key], 0x10)) + cryptogram + RAW))


def protected(
    card: VirtualCard,
    profile: str,
    ins: int,
    p1: int,
    p2: int,
    body: bytes = b"",
    challenge: bytes | None = None,
) -> bytes:
    """A MAC-protected APDU (part 4 §8.2.4) under the PUK's session key of a fresh
    challenge (or the one given)."""
    challenge = get_challenge(card) if challenge is None else challenge
    state = load(profile)
    puk = state.keys[KeyName.PUK]
    return security.secure_apdu(state.algorithm, puk, challenge, 0x84, ins, p1, p2, body)


def verify_cn(card: VirtualCard, digits: str) -> int:
    """VERIFY of 4 to 16 digits, compressed numeric (part 5 §6.14)."""
    block = security.pin_block(digits)
    return sw_of(card.execute(h("00 20 00 00") + bytes((len(block),)) + block))


# ---------------------------------------------------------------------------
# §1 Answer to reset (part 2 §8.2 table 7, §8.4 table 16)
# ---------------------------------------------------------------------------

# employee-new: T1-T2 00 00 (chip provider), T3-T5 "SBP", T6-T7 00 00 (manufacturer),
# T8-T9 31 00 (region 3100..), TA-TD 37 2A 9F A8 (the identification code's serial)
HISTORICAL = h("00 00 53 42 50 00 00 31 00 37 2A 9F A8")


def test_s1_atr_from_power_on_is_3b6d0000_and_13_historical_bytes():
    card = new_card()
    atr = card.power_on()
    assert atr == bytes.fromhex("3B6D0000") + HISTORICAL
    assert len(atr) == 4 + 13


def test_s1_atr_from_reset_is_the_same():
    card = new_card()
    assert card.reset() == bytes.fromhex("3B6D0000") + HISTORICAL


def test_s1_t0_byte_announces_tb1_tc1_and_13_historical_bytes():
    atr = new_card().power_on()
    t0 = atr[1]
    assert t0 & 0xF0 == 0x60  # TB1 and TC1 present, TA1 and TD1 absent (T=0 implied)
    assert t0 & 0x0F == 13 == len(atr[4:])


def test_s1_historical_bytes_come_from_the_card_file():
    state = load("employee-new").with_(historical=b"ABCDEFGHIJKLM")
    card = new_card(state=state)
    assert card.power_on() == bytes.fromhex("3B6D0000") + b"ABCDEFGHIJKLM"
    assert card.reset() == bytes.fromhex("3B6D0000") + b"ABCDEFGHIJKLM"


# ---------------------------------------------------------------------------
# §2 Files (V2.0 notice tables 3, 7, 9; part 3 §5.3)
# ---------------------------------------------------------------------------

# employee-new (a 2.00 card), written out from fixtures/cards/employee-new.json.
EF05_RECORDS = {
    0x01: "01 10 310000D156000005372A9FA8AB97D317",
    0x02: "02 01 31",  # '1'
    0x03: "03 04 32 2E 30 30",  # '2.00'
    0x04: "04 0C 915600000231000031000078",
    0x05: "05 04 20 19 01 01",  # BCD 2019-01-01
    0x06: "06 04 20 29 01 01",  # BCD 2029-01-01
    0x07: "07 09 " + b"A93230742".hex(),
}
EF06_RECORDS = {
    0x08: "08 12 " + b"310104198503122174".hex(),
    0x09: "09 1E D5 C5 CE B0" + " 00" * 26,  # 张伟 in GBK, right-padded with 00 to 30
    0x4E: "4E 14" + " 00" * 20,  # name extension: nothing past byte 30
    0x0A: "0A 01 31",  # '1' male
    0x0B: "0B 01 01",  # BCD 01 = Han
    0x0C: "0C 03 31 01 04",  # BCD region 310104
    0x0D: "0D 04 19 85 03 12",  # BCD 1985-03-12
}
# DF04/EF05: 81 = scheme '310' and five '0' flags; 84 = insured region (cn 3)
DF04_EF05_RECORDS = {0x81: "81 08 33 31 30 30 30 30 30 30", 0x84: "84 03 31 00 00"}
# the SSSE's FCI (part 5 table 36; docs/card.md §3): 84 DF name, A5 { 9F0C 86 01 03 (SM4) }

ALL_RECORDS = [("EF05", 0x05, tag, rec) for tag, rec in EF05_RECORDS.items()] + [
    ("EF06", 0x06, tag, rec) for tag, rec in EF06_RECORDS.items()
]


def _by_id(tag: int, sfi: int, record: str) -> bytes:
    """READ RECORD first occurrence of identifier `tag`, exact Le (part 5 table 32)."""
    return bytes((0x00, 0xB2, tag, sfi << 3, len(h(record))))


def test_s2_ssse_df_name_is_gbk_of_sx1_sh_shehuibaozhang():
    assert h(SELECT_SSSE)[5:] == "sx1.sh.社会保障".encode("gbk")


def test_s2_select_ssse_by_gbk_df_name():
    card = new_card()
    resp = send(card, SELECT_SSSE)
    assert sw_of(resp) == OK  # with or without FCI


def test_s2_select_by_wrong_df_name_is_6a82():
    card = new_card()
    assert send(card, "00 A4 04 00 07 " + b"sx1.sh.".hex()) == h("6A 82")
    assert send(card, "00 A4 04 00 05 A0 00 00 00 03") == h("6A 82")


@pytest.mark.parametrize(("ef", "sfi", "tag", "record"), ALL_RECORDS)
def test_s2_read_each_record_by_identifier_via_sfi(ef, sfi, tag, record):
    card = new_card()
    select_ssse(card)
    assert send(card, _by_id(tag, sfi, record)) == h(record) + h("90 00"), f"{ef} {tag:02X}"


@pytest.mark.parametrize(("ef", "sfi", "tag", "record"), ALL_RECORDS)
def test_s2_read_each_record_by_identifier_via_current_ef_selected_by_fid(ef, sfi, tag, record):
    card = new_card()
    select_ssse(card)
    assert send(card, f"00 A4 02 00 02 EF {sfi:02X}") == h("90 00")
    resp = send(card, _by_id(tag, 0, record))
    assert resp == h(record) + h("90 00"), f"{ef} record {tag:02X}"


@pytest.mark.parametrize(("ef", "sfi", "tag", "record"), ALL_RECORDS)
def test_s2_read_each_record_by_number_in_creation_order(ef, sfi, tag, record):
    card = new_card()
    select_ssse(card)
    records = EF05_RECORDS if ef == "EF05" else EF06_RECORDS
    number = list(records).index(tag) + 1
    resp = send(card, bytes((0x00, 0xB2, number, (sfi << 3) | 4, len(h(record)))))
    assert resp == h(record) + h("90 00")


def test_s2_read_df04_ef05_by_sfi():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 A4 00 00 02 DF 04")[-2:] == h("90 00")  # and the FCI
    assert send(card, "00 B2 81 28 0A") == h("69 82")  # V2.0 table 7: PIN or RK1DF04
    assert verify(card, INITIAL_PIN) == OK
    assert send(card, "00 B2 81 28 0A") == h(DF04_EF05_RECORDS[0x81]) + h("90 00")
    assert send(card, "00 B2 84 28 05") == h(DF04_EF05_RECORDS[0x84]) + h("90 00")
    assert send(card, "00 B2 01 2C 0A") == h(DF04_EF05_RECORDS[0x81]) + h("90 00")


def test_s2_read_df04_ef05_via_current_ef():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 A4 04 00 06 D1 56 00 00 05 03")[-2:] == h(
        "90 00"
    )  # and its FCI (part 5 §6.11.1)
    assert send(card, "00 A4 02 00 02 EF 05") == h("90 00")
    assert send(card, "00 B2 81 00 0A") == h("69 82")  # V2.0 table 7: PIN or RK1DF04
    assert verify(card, INITIAL_PIN) == OK
    assert send(card, "00 B2 81 00 0A") == h(DF04_EF05_RECORDS[0x81]) + h("90 00")
    assert send(card, "00 B2 02 04 05") == h(DF04_EF05_RECORDS[0x84]) + h("90 00")


def test_s2_select_mf_by_fid_3f00():
    card = new_card()
    assert sw_of(send(card, "00 A4 00 00 02 3F 00")) == OK
    select_ssse(card)
    assert sw_of(send(card, "00 A4 00 00 02 3F 00")) == OK
    # after selecting the MF there is no current EF any more
    assert send(card, "00 B2 01 04 00") == h("69 86")


def test_s2_name_is_gbk_right_padded_with_00_to_30_bytes():
    card = new_card()
    select_ssse(card)
    rec = data_of(transmit(card, "00 B2 09 30 00"))
    assert rec[:2] == h("09 1E")
    value = rec[2:]
    assert len(value) == 30
    assert value.rstrip(b"\x00").decode("gbk") == "张伟"
    assert value[4:] == bytes(26)


@pytest.mark.parametrize(
    ("profile", "name_gbk"),
    [
        ("employee-enabled", "C0 EE D0 E3 D3 A2"),  # 李秀英
        ("legacy-medical", "D5 D4 BD A8 B9 FA"),  # 赵建国
        ("pension-new", "B3 C2 B9 F0 C0 BC"),  # 陈桂兰
    ],
)
def test_s2_three_character_names_padded_to_30(profile, name_gbk):
    card = new_card(profile)
    select_ssse(card)
    rec = data_of(transmit(card, "00 B2 09 30 00"))
    assert rec == h("09 1E " + name_gbk) + bytes(24)


@pytest.mark.parametrize(
    ("profile", "issue", "expiry", "birth"),
    [
        ("employee-new", "20 19 01 01", "20 29 01 01", "19 85 03 12"),
        ("not-activated", "20 19 06 06", "20 29 06 06", "20 01 04 08"),
        ("pension-new", "20 19 04 04", "20 29 04 04", "19 56 01 30"),
    ],
)
def test_s2_dates_are_bcd_yyyymmdd(profile, issue, expiry, birth):
    card = new_card(profile)
    select_ssse(card)
    assert send(card, "00 B2 05 28 06") == h("05 04 " + issue + " 90 00")
    assert send(card, "00 B2 06 28 06") == h("06 04 " + expiry + " 90 00")
    assert send(card, "00 B2 0D 30 06") == h("0D 04 " + birth + " 90 00")


@pytest.mark.parametrize(
    ("profile", "scheme", "category", "version"),
    [
        ("employee-new", "310", "1", "2.00"),
        ("resident-new", "390", "1", "2.00"),
        ("pension-new", "170", "1", "2.00"),
        ("legacy-medical", "310", "L", "2.00"),
    ],
)
def test_s2_scheme_category_and_version_per_profile(profile, scheme, category, version):
    card = new_card(profile)
    select_ssse(card)
    assert send(card, "00 B2 02 28 03") == b"\x02\x01" + category.encode() + h("90 00")
    assert send(card, "00 B2 03 28 06") == b"\x03\x04" + version.encode() + h("90 00")
    assert send(card, "00 A4 04 00 06 D1 56 00 00 05 03")[-2:] == h(
        "90 00"
    )  # and its FCI (part 5 §6.11.1)
    assert verify(card, INITIAL_PIN) == OK  # DF04/EF05: PIN or RK1DF04 (V2.0 table 7)
    assert send(card, "00 B2 81 28 0A") == b"\x81\x08" + scheme.encode() + b"00000" + h("90 00")


def test_s2_ssn_with_check_digit_is_18_ascii_characters():
    card = new_card("employee-enabled")
    select_ssse(card)
    assert send(card, "00 B2 08 30 14") == h("08 12") + b"310101197911020480" + h("90 00")


@pytest.mark.parametrize("le", [0x00, 0x01, 0x1F, 0x21, 0x7F, 0xFF])
def test_s2_wrong_le_is_6cxx_with_the_exact_length(le):
    card = new_card()
    select_ssse(card)
    # record 09 of EF06: 09 1E + 30 bytes = 32 = 0x20 bytes
    assert send(card, bytes((0x00, 0xB2, 0x09, 0x30, le))) == h("6C 20")
    resp = send(card, "00 B2 09 30 20")
    assert resp == h(EF06_RECORDS[0x09]) + h("90 00")


def test_s2_wrong_le_6cxx_for_each_record_length():
    card = new_card()
    select_ssse(card)
    for tag, record in EF05_RECORDS.items():
        length = len(h(record))
        resp = send(card, bytes((0x00, 0xB2, tag, 0x2C, length + 1)))
        assert resp == bytes((0x6C, length)), f"record {tag:02X}"


def test_s2_wrong_le_via_current_ef_is_6cxx():
    card = new_card()
    select_ssse(card)
    send(card, "00 A4 00 00 02 EF 05")
    assert send(card, "00 B2 02 04 01") == h("6C 03")
    assert send(card, "00 B2 02 04 03") == h("02 01 31 90 00")


def test_s2_le_00_and_absent_le_are_6cxx():
    """Part 5 §6.10.4: Le 00 is answered 6Cxx; an absent Le is Le 00 on T=0."""
    card = new_card()
    select_ssse(card)
    assert send(card, "00 B2 07 2C 00") == h("6C 0B")
    assert send(card, "00 B2 07 2C") == h("6C 0B")
    assert send(card, "00 B2 07 2C 0B") == h(EF05_RECORDS[0x07]) + h("90 00")


def test_s2_missing_record_is_6a83():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 B2 08 28 00") == h("6A 83")  # tag 08 lives in EF06
    assert send(card, "00 B2 01 30 00") == h("6A 83")  # tag 01 lives in EF05
    assert send(card, "00 B2 0E 30 00") == h("6A 83")
    assert send(card, "00 B2 08 2C 00") == h("6A 83")  # EF05 has 7 records
    assert send(card, "00 B2 08 34 00") == h("6A 83")  # EF06 has 7: numbers are not tags
    send(card, "00 A4 00 00 02 DF 04")
    assert verify(card, INITIAL_PIN) == OK  # DF04/EF05: PIN or RK1DF04 (V2.0 table 7)
    assert send(card, "00 B2 02 28 00") == h("6A 83")
    assert send(card, "00 B2 03 2C 00") == h("6A 83")


def test_s2_read_record_without_current_ef_is_6986():
    card = new_card()
    assert send(card, "00 B2 01 04 00") == h("69 86")
    select_ssse(card)
    assert send(card, "00 B2 01 04 00") == h("69 86")
    send(card, "00 A4 00 00 02 DF 04")
    assert send(card, "00 B2 01 04 00") == h("69 86")


def test_s2_unknown_fid_is_6a82():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 A4 00 00 02 EF 09") == h("6A 82")
    assert send(card, "00 A4 00 00 02 12 34") == h("6A 82")
    # FIDs are looked up in the current DF: DF04 is not a child of the MF
    assert send(card, "00 A4 00 00 02 3F 00")[-2:] == h("90 00")  # and the FCI
    assert send(card, "00 A4 00 00 02 DF 04") == h("6A 82")


def test_s2_unknown_sfi_is_6a82():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 B2 01 4C 00") == h("6A 82")  # SFI 09
    assert send(card, "00 B2 01 0C 00") == h("6A 82")  # SFI 01
    send(card, "00 A4 00 00 02 DF 04")
    assert send(card, "00 B2 08 34 00") == h("6A 82")  # SFI 06 is not in DF04


@pytest.mark.parametrize(
    "apdu",
    [
        "00 A4 03 00 02 EF 05",  # SELECT P1 not in table 35 (nor ISO's 01)
        "00 A4 08 00 02 EF 05",  # by path: not in the standard
        "00 A4 04 05 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF",  # SELECT P2
        "00 A4 02 02 02 EF 05",  # P2 'next' is for DF names only
        "00 B2 01 07 00",  # READ RECORD P2 b3-b1 = 111
        "00 B2 01 FC 00",  # SFI 31
        "00 B2 FF 2C 00",  # P1 FF: RFU
    ],
)
def test_s2_wrong_p1_p2_is_6a86(apdu):
    card = new_card()
    select_ssse(card)
    assert send(card, apdu) == h("6A 86")


# ---------------------------------------------------------------------------
# §3 Commands (each row of the table)
# ---------------------------------------------------------------------------


def test_s3_select_by_name_answers_9000_with_or_without_fci():
    card = new_card()
    for apdu in (SELECT_SSSE, SELECT_SSSE + " 00"):
        resp = send(card, apdu)
        assert sw_of(resp) == OK


def test_s3_select_by_fid_mf_then_children_of_the_current_df():
    card = new_card()
    assert sw_of(send(card, "00 A4 00 00 02 3F 00")) == OK
    select_ssse(card)
    assert send(card, "00 A4 00 00 02 EF 05") == h("90 00")
    assert send(card, "00 A4 00 00 02 EF 06") == h("90 00")
    assert sw_of(send(card, "00 A4 00 00 02 DF 04")) == OK
    assert send(card, "00 A4 00 00 02 EF 05") == h("90 00")
    assert verify(card, INITIAL_PIN) == OK  # DF04/EF05: PIN or RK1DF04 (V2.0 table 7)
    assert send(card, "00 B2 01 04 0A") == h(DF04_EF05_RECORDS[0x81] + " 90 00")


def test_s3_read_record_by_sfi_and_by_current_ef():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 B2 08 30 14") == h(EF06_RECORDS[0x08]) + h("90 00")
    assert send(card, "00 B2 01 34 14") == h(EF06_RECORDS[0x08]) + h("90 00")
    send(card, "00 A4 00 00 02 EF 06")
    assert send(card, "00 B2 0A 00 03") == h("0A 01 31 90 00")
    assert send(card, "00 B2 04 04 03") == h("0A 01 31 90 00")


def test_s3_verify_right_pin_is_9000():
    card = new_card()
    assert send(card, "00 20 00 00 03 12 34 56") == h("90 00")


def test_s3_verify_status_query_is_a_4_byte_apdu():
    card = new_card()
    assert send(card, "00 20 00 00") == h("63 C6")


def test_s3_change_pin_80_5e_01_00():
    card = new_card()
    assert send(card, "80 5E 01 00 07 12 34 56 FF 65 43 21") == h("90 00")
    assert verify(card, "654321") == OK


def test_s3_get_data_pin_status():
    card = new_card()
    assert send(card, "80 CA 00 C1 00") == h("C1 04 01 00 06 06 90 00")


def test_s3_get_challenge_answers_8_bytes():
    card = new_card()
    resp = send(card, "00 84 00 00 08")
    assert sw_of(resp) == OK
    assert len(data_of(resp)) == 8
    other = send(card, "00 84 00 00 08")
    assert sw_of(other) == OK
    assert data_of(other) != data_of(resp)  # random: equal with probability 2**-64


def test_s3_get_challenge_bytes_come_from_the_random_source():
    card = new_card(random=lambda n: bytes(range(0xA0, 0xA0 + n)))
    assert send(card, "00 84 00 00 08") == h("A0 A1 A2 A3 A4 A5 A6 A7 90 00")


def test_s3_get_response_is_only_for_t0_style():
    """Part 2 §9.3: GET RESPONSE fetches what a case 4 command left waiting on T=0."""
    card = new_card("employee-new")
    assert send(card, SELECT_SSSE + " 00") == h(FCI_SSSE + " 90 00")
    assert send(card, "00 C0 00 00 1E") == h("6D 00")
    t0 = new_card("t0-employee-new")
    assert send(t0, SELECT_SSSE + " 00") == h("61 1E")
    assert send(t0, "00 C0 00 00 1E") == h(FCI_SSSE + " 90 00")


def test_s3_activation_84_18_after_the_puks_external_authenticate():
    """Ours (docs/card.md §9), under PIN CHANGE/UNBLOCK's rules (part 7 §13)."""
    card = new_card("not-activated")
    select_ssse(card)
    assert authenticate(card, "not-activated", KeyName.PUK) == OK
    assert card.execute(protected(card, "not-activated", 0x18, 0x00, 0x00)) == h("90 00")
    assert pin_status(card)[0] == 0x01


def test_s3_pin_change_unblock_84_24_after_the_puks_external_authenticate():
    card = new_card("locked")
    select_ssse(card)
    assert authenticate(card, "locked", KeyName.PUK) == OK
    assert card.execute(protected(card, "locked", 0x24, 0x00, 0x00)) == h("90 00")
    assert pin_status(card) == (0x01, 0x01, 6, 6)


def test_s3_retired_outlet_command_84_5e_is_6e00():
    """5E is CHANGE PIN's INS under CLA 80 (part 5 table 12: 6E00)."""
    card = new_card("locked")
    get_challenge(card)
    assert send(card, "84 5E 00 00 07 11 11 11 DE AD BE EF") == h("6E 00")
    assert send(card, "84 5E 00 01 04 DE AD BE EF") == h("6E 00")
    assert pin_status(card) == (0x01, 0x01, 0, 6)


# ---------------------------------------------------------------------------
# §4 PIN rules
# ---------------------------------------------------------------------------


def test_s4_initial_pin_is_123456_and_limit_6():
    card = new_card()
    assert pin_status(card) == (0x01, 0x00, 6, 6)
    assert verify(card, INITIAL_PIN) == OK


def test_s4_six_wrong_verifies_count_down_then_6983_even_for_the_right_pin():
    card = new_card()
    for left in (5, 4, 3, 2, 1, 0):
        assert verify(card, "000000") == 0x63C0 | left
        # GET DATA C1 and the status query agree at each step
        assert pin_status(card) == (0x01, 0x00, left, 6)
        expected_query = 0x63C0 | left if left else 0x6983
        assert status_query(card) == expected_query
    assert verify(card, INITIAL_PIN) == 0x6983
    assert verify(card, "000000") == 0x6983
    assert pin_status(card) == (0x01, 0x00, 0, 6)
    assert status_query(card) == 0x6983


def test_s4_last_wrong_try_is_63c0():
    card = new_card()
    for _ in range(5):
        verify(card, "999999")
    assert send(card, "00 20 00 00 03 99 99 99") == h("63 C0")


def test_s4_blocked_card_answers_6983_at_once_without_comparing():
    store = RecordingStore()
    card = new_card("locked", store)
    assert verify(card, ENABLED_PIN) == 0x6983
    assert verify(card, "000000") == 0x6983
    assert status_query(card) == 0x6983
    assert store.saved == []  # no try counter written: nothing was compared
    assert pin_status(card) == (0x01, 0x01, 0, 6)


def test_s4_correct_pin_restores_the_counter_and_sets_verified():
    card = new_card()
    assert verify(card, "111111") == 0x63C5
    assert verify(card, "222222") == 0x63C4
    assert status_query(card) == 0x63C4
    assert not card.verified
    assert verify(card, INITIAL_PIN) == OK
    assert card.verified
    assert status_query(card) == OK
    assert pin_status(card) == (0x01, 0x00, 6, 6)


def test_s4_correct_pin_after_five_wrong_tries_still_works():
    card = new_card()
    for _ in range(5):
        verify(card, "000000")
    assert tries_left(card) == 1
    assert verify(card, INITIAL_PIN) == OK
    assert tries_left(card) == 6


def test_s4_status_query_never_costs_a_try():
    store = RecordingStore()
    card = new_card("employee-new", store)
    for _ in range(20):
        assert status_query(card) == 0x63C6
    assert tries_left(card) == 6
    verify(card, "000000")
    for _ in range(20):
        assert status_query(card) == 0x63C5
    assert tries_left(card) == 5
    assert len(store.saved) == 1  # the one wrong VERIFY


def test_s4_status_query_after_verified_is_9000_and_still_costs_nothing():
    card = new_card()
    verify(card, INITIAL_PIN)
    for _ in range(3):
        assert status_query(card) == OK
    assert tries_left(card) == 6


def test_s4_reset_clears_verified():
    card = new_card()
    assert verify(card, INITIAL_PIN) == OK
    assert status_query(card) == OK
    card.reset()
    assert not card.verified
    assert status_query(card) == 0x63C6


def test_s4_power_off_clears_verified():
    card = new_card()
    assert verify(card, INITIAL_PIN) == OK
    card.power_off()
    card.power_on()
    assert not card.verified
    assert status_query(card) == 0x63C6


def test_s4_profile_may_set_another_try_limit():
    state = load("employee-new").with_(try_limit=3, tries_left=3)
    card = new_card(state=state)
    assert pin_status(card) == (0x01, 0x00, 3, 3)
    assert verify(card, "000000") == 0x63C2
    assert verify(card, INITIAL_PIN) == OK
    assert pin_status(card) == (0x01, 0x00, 3, 3)
    assert [verify(card, "000000") for _ in range(4)] == [0x63C2, 0x63C1, 0x63C0, 0x6983]


@pytest.mark.parametrize("profile", ["employee-new", "employee-enabled"])
def test_s4_verify_compares_in_initial_and_enabled_states(profile):
    card = new_card(profile)
    right = INITIAL_PIN if profile == "employee-new" else ENABLED_PIN
    assert verify(card, "000000") == 0x63C5
    assert verify(card, right) == OK


def test_s4_disabled_state_fails_every_pin_without_costing_a_try():
    """Part 5 §6.14.5: a card holding no PIN answers a VERIFY with a PIN 63Cx (the
    empty PIN cannot be guessed: no try is spent), and the empty VERIFY 9000."""
    store = RecordingStore()
    card = new_card("employee-enabled", store)
    assert send(card, "80 5E 01 00 04 80 26 13 FF") == h("90 00")  # no new PIN: DISABLED
    assert pin_status(card) == (0x01, 0x02, 6, 6)
    saves = len(store.saved)
    assert status_query(card) == OK
    assert verify(card, "000000") == 0x63C6
    assert verify(card, ENABLED_PIN) == 0x63C6  # the PIN it held before, too
    assert not card.verified
    assert status_query(card) == OK
    assert len(store.saved) == saves
    assert pin_status(card) == (0x01, 0x02, 6, 6)


def test_s4_disabled_profile_never_counts_wrong_pins():
    store = RecordingStore()
    card = new_card("disabled", store)
    for _ in range(8):
        assert verify(card, "000000") == 0x63C6
    assert verify(card, ENABLED_PIN) == 0x63C6
    assert pin_status(card) == (0x01, 0x02, 6, 6)
    assert store.saved == []
    assert send(card, "00 20 00 00") == h("90 00")
    assert send(card, "00 20 00 00 00") == h("90 00")  # Lc 00 (part 5 table 46)


def test_s4_anti_tearing_wrong_pin_persists_the_decrement():
    store = RecordingStore()
    card = new_card("employee-new", store)
    before = card.state
    assert verify(card, "000000") == 0x63C5
    assert [s.tries_left for s in store.saved] == [5]
    assert store.saved[0] == before.with_(tries_left=5)


def test_s4_anti_tearing_right_pin_persists_decrement_then_restore():
    store = RecordingStore()
    card = new_card("employee-new", store)
    before = card.state
    assert verify(card, INITIAL_PIN) == OK
    assert store.saved == [before.with_(tries_left=5), before]


class _Killed(BaseException):
    """The process dies (not an Exception: nothing in the card may catch it)."""


class _DiesOnSecondWrite(RecordingStore):
    def save(self, state):
        if len(self.saved) == 1:
            raise _Killed
        super().save(state)


def test_s4_anti_tearing_killed_between_decrement_and_restore_never_gains_a_try():
    store = _DiesOnSecondWrite()
    card = new_card("employee-new", store)
    with pytest.raises(_Killed):
        verify(card, INITIAL_PIN)
    # the process died before the restore: the disk says one try fewer, never more
    assert [s.tries_left for s in store.saved] == [5]


def test_s4_change_pin_success_sets_enabled_counter_at_limit_new_pin_works_old_does_not():
    store = RecordingStore()
    card = new_card("employee-new", store)
    assert verify(card, "000000") == 0x63C5
    before = card.state
    assert send(card, "80 5E 01 00 07 12 34 56 FF 65 43 21") == h("90 00")
    assert pin_status(card) == (0x01, 0x01, 6, 6)
    # one atomic write holds the new PIN, the full counter and ENABLED together
    last = store.saved[-1]
    assert (last.pin_state, last.tries_left) == (PinState.ENABLED, 6)
    assert last.pin.matches("654321")
    assert last == before.with_(pin=last.pin, tries_left=6, pin_state=PinState.ENABLED)
    card.reset()
    assert verify(card, INITIAL_PIN) == 0x63C5
    assert verify(card, "654321") == OK


def test_s4_change_pin_on_enabled_card_keeps_enabled():
    card = new_card("employee-enabled")
    assert change_pin(card, ENABLED_PIN, "135790") == OK
    assert pin_status(card) == (0x01, 0x01, 6, 6)
    assert verify(card, "135790") == OK


@pytest.mark.parametrize(
    "apdu",
    [
        "80 5E 01 00",  # no data
        "80 5E 01 00 01 FF",  # Lc 01: table 10 is 03-11
        "80 5E 01 00 02 12 FF",
        "80 5E 01 00 12 12 34 56 78 12 34 56 78 FF 12 34 56 78 12 34 56 78 90",  # Lc 12
        "80 5E 01 00 07 12 34 56 FF 65 43",  # Lc says 7, 6 bytes follow
    ],
)
def test_s4_change_pin_bad_lc_is_6700_no_try_spent(apdu):
    store = RecordingStore()
    card = new_card("employee-new", store)
    assert send(card, apdu) == h("67 00")
    assert store.saved == []
    assert pin_status(card) == (0x01, 0x00, 6, 6)


@pytest.mark.parametrize(
    "data",
    [
        "12 34 5A FF 65 43 21",  # non-digit nibble in the old PIN
        "F2 34 56 FF 65 43 21",
        "12 34 56 FF 65 F3 21",  # F before the last nibble of the new PIN
        "12 34 56 FF AB CD EF",
        "12 34 56 00 65 43 21",  # no FF separator
        "12 34 56 FE 65 43 21",
        "12 FF 34 56 65 43 21",  # an old PIN of 2 digits (at least 4, part 5 §6.3.1)
        "12 34 56 FF 65 4F",  # a new PIN of 3 digits
        "12 34 56 FF 65 43 21 FF",  # FF after the new PIN
    ],
)
def test_s4_change_pin_bad_format_is_6a80_no_try_spent(data):
    store = RecordingStore()
    card = new_card("employee-new", store)
    raw = h(data)
    assert send(card, bytes((0x80, 0x5E, 0x01, 0x00, len(raw))) + raw) == h("6A 80")
    assert store.saved == []
    assert pin_status(card) == (0x01, 0x00, 6, 6)
    assert verify(card, INITIAL_PIN) == OK  # the PIN did not change either


@pytest.mark.parametrize(
    ("data", "new"),
    [
        ("12 34 56 FF 24 68", "2468"),  # 4 digits
        ("12 34 56 FF 13 57 9F", "13579"),  # odd: F-padded (cn)
        ("12 34 56 FF 12 34 56 78 90 12 34 56", "1234567890123456"),  # 16 digits
        ("12 34 56 FF 12 34 56", INITIAL_PIN),  # the same PIN again
    ],
)
def test_s4_change_pin_takes_4_to_16_digits_compressed_numeric(data, new):
    """Part 5 §6.3: Lc 03-11, current ‖ FF ‖ new, each cn of 4 to 16 digits."""
    card = new_card()
    raw = h(data)
    assert send(card, bytes((0x80, 0x5E, 0x01, 0x00, len(raw))) + raw) == h("90 00")
    assert pin_status(card) == (0x01, 0x01, 6, 6)
    card.reset()
    assert verify_cn(card, new) == OK


def test_s4_change_pin_from_a_4_digit_pin():
    card = new_card()
    assert send(card, "80 5E 01 00 06 12 34 56 FF 24 68") == h("90 00")
    assert send(card, "80 5E 01 00 05 24 68 FF 97 53") == h("90 00")
    assert verify_cn(card, "2468") == 0x63C5
    assert verify_cn(card, "9753") == OK


def test_s4_change_pin_without_a_new_pin_makes_the_card_hold_none():
    """Part 5 §6.3.3: no new PIN when the holder wants none any more (DISABLED)."""
    store = RecordingStore()
    card = new_card("employee-new", store)
    before = card.state
    assert send(card, "80 5E 01 00 04 12 34 56 FF") == h("90 00")
    after = card.state
    assert after == before.with_(pin=after.pin, pin_state=PinState.DISABLED)
    assert store.saved[-1] == after
    assert not card.verified
    assert status_query(card) == OK
    assert pin_status(card) == (0x01, 0x02, 6, 6)


def test_s4_change_pin_without_a_current_pin_when_the_card_holds_none():
    """Part 5 §6.3.3: no current PIN on a card that holds none; the new one is held."""
    card = new_card("disabled")
    assert send(card, "80 5E 01 00 04 FF 24 68 13") == h("90 00")
    assert pin_status(card) == (0x01, 0x01, 6, 6)
    assert card.verified
    card.reset()
    assert status_query(card) == 0x63C6
    assert verify(card, "246813") == OK


def test_s4_change_pin_with_a_current_pin_when_the_card_holds_none_is_63cx_no_try():
    store = RecordingStore()
    card = new_card("disabled", store)
    assert change_pin(card, ENABLED_PIN, "654321") == 0x63C6
    assert change_pin(card, "000000", "654321") == 0x63C6
    assert store.saved == []
    assert pin_status(card) == (0x01, 0x02, 6, 6)


def test_s4_change_pin_without_a_current_pin_when_the_card_holds_one_costs_a_try():
    card = new_card("employee-enabled")
    assert send(card, "80 5E 01 00 04 FF 65 43 21") == h("63 C5")
    assert pin_status(card) == (0x01, 0x01, 5, 6)
    assert verify(card, ENABLED_PIN) == OK


def test_s4_change_pin_with_neither_pin_is_refused():
    card = new_card("disabled")
    assert send(card, "80 5E 01 00 03 FF FF FF") == h("6A 80")
    assert pin_status(card) == (0x01, 0x02, 6, 6)


@pytest.mark.parametrize("digits", ["2468", "13579", "12345678", "1234567890123456"])
def test_s4_verify_takes_4_to_16_digits(digits):
    """Part 5 §6.14, table 46: Lc 02-08, cn, F-padded."""
    card = new_card("employee-new")
    old_new = security.pin_block(INITIAL_PIN) + b"\xff" + security.pin_block(digits)
    assert send(card, bytes((0x80, 0x5E, 0x01, 0x00, len(old_new))) + old_new) == h("90 00")
    card.reset()
    assert verify_cn(card, digits) == OK
    assert verify_cn(card, "0000") == 0x63C5


def test_s4_change_pin_wrong_old_pin_counts_a_try():
    card = new_card()
    assert change_pin(card, "000000", "654321") == 0x63C5
    assert pin_status(card) == (0x01, 0x00, 5, 6)
    assert change_pin(card, "000000", "654321") == 0x63C4
    assert verify(card, "654321") == 0x63C3  # not changed
    assert verify(card, INITIAL_PIN) == OK


def test_s4_change_pin_wrong_old_pin_blocks_like_verify():
    card = new_card()
    codes = [change_pin(card, "000000", "654321") for _ in range(7)]
    assert codes == [0x63C5, 0x63C4, 0x63C3, 0x63C2, 0x63C1, 0x63C0, 0x6983]
    assert change_pin(card, INITIAL_PIN, "654321") == 0x6983
    assert pin_status(card) == (0x01, 0x00, 0, 6)


def test_s4_change_pin_on_blocked_card_is_6983_without_comparing():
    store = RecordingStore()
    card = new_card("locked", store)
    assert change_pin(card, ENABLED_PIN, "654321") == 0x6983
    assert store.saved == []


def test_s4_not_activated_verify_is_6985_no_try_spent():
    store = RecordingStore()
    card = new_card("not-activated", store)
    assert verify(card, INITIAL_PIN) == 0x6985
    assert verify(card, "000000") == 0x6985
    assert not card.verified
    assert store.saved == []
    assert pin_status(card) == (0x00, 0x00, 6, 6)


def test_s4_not_activated_change_pin_is_6985_no_try_spent():
    store = RecordingStore()
    card = new_card("not-activated", store)
    assert change_pin(card, INITIAL_PIN, "654321") == 0x6985
    assert change_pin(card, "000000", "654321") == 0x6985
    assert store.saved == []
    assert pin_status(card) == (0x00, 0x00, 6, 6)


def test_s4_not_activated_reading_files_works():
    """No PIN on a card not activated: DF04/EF05 is read after RK1DF04 instead."""
    card = new_card("not-activated")
    assert sw_of(send(card, SELECT_SSSE)) == OK
    assert send(card, "00 B2 08 30 14") == h("08 12") + b"310112200104080624" + h("90 00")
    assert send(card, "00 B2 02 28 03") == h("02 01 31 90 00")
    send(card, "00 A4 00 00 02 DF 04")
    assert authenticate(card, "not-activated", KeyName.RK1DF04) == OK
    assert send(card, "00 B2 81 28 0A") == h("81 08") + b"31000000" + h("90 00")


# ---------------------------------------------------------------------------
# §5 GET DATA 80 CA 00 C1
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "values"),
    [
        ("employee-new", "01 00 06 06"),
        ("employee-enabled", "01 01 06 06"),
        ("resident-new", "01 00 06 06"),
        ("pension-new", "01 00 06 06"),
        ("legacy-medical", "01 00 06 06"),
        ("not-activated", "00 00 06 06"),
        ("locked", "01 01 00 06"),
        ("disabled", "01 02 06 06"),
    ],
)
def test_s5_get_data_ll_ss_tt_mm_for_each_profile(profile, values):
    card = new_card(profile)
    assert send(card, "80 CA 00 C1 00") == h("C1 04 " + values + " 90 00")
    assert send(card, "80 CA 00 C1 06") == h("C1 04 " + values + " 90 00")


def test_s5_get_data_t0_profile_answers_directly_with_the_exact_le():
    """Part 2 §9.3.2.1: GET DATA is case 2, so a T=0 card answers it at once, no 61xx."""
    card = new_card("t0-employee-new")
    assert send(card, "80 CA 00 C1 06") == h("C1 04 01 00 06 06 90 00")
    assert send(card, "00 C0 00 00 06") == h("6F 00")  # nothing waits


@pytest.mark.parametrize("le", ["00", "", "05", "07"])
def test_s5_get_data_t0_profile_le_00_absent_or_wrong_is_6c06(le):
    """Part 2 §9.3.2.1: on T=0 even Le 00 (fine on other cards) is 6C06; nothing waits."""
    card = new_card("t0-employee-new")
    assert send(card, "80 CA 00 C1 " + le) == h("6C 06")
    assert send(card, "00 C0 00 00 06") == h("6F 00")
    assert send(card, "80 CA 00 C1 06") == h("C1 04 01 00 06 06 90 00")


@pytest.mark.parametrize("le", ["01", "04", "05", "07", "08", "FF", ""])
def test_s5_get_data_other_le_is_6c06(le):
    card = new_card()
    assert send(card, "80 CA 00 C1 " + le) == h("6C 06")


def test_s5_get_data_other_tag_is_6a88():
    card = new_card()
    assert send(card, "80 CA 00 C2 00") == h("6A 88")
    assert send(card, "80 CA 9F 7F 00") == h("6A 88")


def test_s5_get_data_follows_the_state():
    card = new_card()
    verify(card, "000000")
    assert send(card, "80 CA 00 C1 00") == h("C1 04 01 00 05 06 90 00")
    change_pin(card, INITIAL_PIN, "654321")
    assert send(card, "80 CA 00 C1 00") == h("C1 04 01 01 06 06 90 00")


# ---------------------------------------------------------------------------
# §6 Status words: every row of the table at least once
# ---------------------------------------------------------------------------


def test_s6_sw_9000_success():
    assert send(new_card(), "00 A4 00 00 02 3F 00")[-2:] == h("90 00")


def test_s6_sw_61xx_only_on_t0_style_profile():
    """Part 2 §9.3: 61xx answers a case 4 command on a T=0 card only; case 2 never."""
    assert send(new_card("t0-employee-new"), SELECT_SSSE + " 00") == h("61 1E")
    assert send(new_card("employee-new"), SELECT_SSSE + " 00") == h(FCI_SSSE + " 90 00")
    challenge = send(new_card("t0-employee-new"), "00 84 00 00 08")
    assert sw_of(challenge) == OK
    assert len(data_of(challenge)) == 8


def test_s6_sw_63cx_wrong_pin():
    assert send(new_card(), "00 20 00 00 03 65 43 21") == h("63 C5")


@pytest.mark.parametrize("apdu", ["", "00", "00 A4", "00 A4 04"])
def test_s6_sw_6700_shorter_than_4_bytes(apdu):
    assert send(new_card(), apdu) == h("67 00")


@pytest.mark.parametrize(
    "apdu",
    [
        "00 B2 01 2C 00 00 20",  # extended Le
        "80 CA 00 C1 00 00 06",
        "00 B2 01 2C 00 20",  # Lc 00 opens an extended field, cut short
        "00 A4 04 00 00 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF",  # extended Lc
        "00 20 00 00 00 00 03 12 34 56",
    ],
)
def test_s6_sw_6700_extended_length(apdu):
    store = RecordingStore()
    card = new_card("employee-new", store)
    assert send(card, apdu) == h("67 00")
    assert store.saved == []


@pytest.mark.parametrize(
    "apdu",
    [
        "00 A4 00 00 03 3F 00",  # Lc says 3, 2 bytes follow
        "00 A4 00 00 01 3F 00 00 00",  # Lc says 1, 4 bytes follow
        "00 A4 00 00 01 3F",  # a FID is 2 bytes
        "00 20 00 00 01 12",  # a PIN block is 2 to 8 bytes (part 5 table 46)
        "00 20 00 00 09 12 34 56 78 90 12 34 56 78",
        "00 20 00 00 03 12 34 56 00",  # a Le: VERIFY has none
        "80 5E 01 00 02 12 FF",  # CHANGE PIN: Lc 03-11 (part 5 table 10)
        "00 84 00 00 09",  # GET CHALLENGE: Le 04, 08 or 10 (part 5 table 18)
        "00 84 00 00 00",
        "00 84 00 00",
    ],
)
def test_s6_sw_6700_wrong_length(apdu):
    card = new_card()
    assert send(card, apdu) == h("67 00")
    assert tries_left(card) == 6


def test_s6_sw_6cxx_wrong_le():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 B2 0A 30 01") == h("6C 03")


def test_s6_sw_6983_pin_blocked():
    assert send(new_card("locked"), "00 20 00 00 03 80 26 13") == h("69 83")


def test_s6_sw_6982_security_status_not_satisfied():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 B0 87 00 00") == h("69 82")  # EF07: RKSSSE (V2.0 table 3)
    assert card.execute(protected(card, "employee-new", 0x24, 0, 0)) == h("69 82")  # no PUK


def test_s6_sw_6984_no_challenge():
    card = new_card("not-activated")
    select_ssse(card)
    assert authenticate(card, "not-activated", KeyName.PUK) == OK
    apdu = protected(card, "not-activated", 0x18, 0x00, 0x00, challenge=bytes(8))
    assert card.execute(apdu) == h("69 84")
    assert send(card, "00 82 00 06 10" + "00" * 16) == h("69 84")  # EXTERNAL AUTHENTICATE


def test_s6_sw_6985_not_activated():
    assert send(new_card("not-activated"), "00 20 00 00 03 12 34 56") == h("69 85")


def test_s6_sw_6986_no_current_ef():
    assert send(new_card(), "00 B2 01 04 00") == h("69 86")


def test_s6_a_missing_mac_is_6700():
    """Part 5 tables 26-27: PIN CHANGE/UNBLOCK's Lc counts the MAC, and a wrong Lc is
    6700 (6987, "MAC missing", is not in table 27)."""
    card = new_card("not-activated")
    select_ssse(card)
    assert authenticate(card, "not-activated", KeyName.PUK) == OK
    for apdu in ("84 18 00 00 02 AB CD", "84 24 00 00", "84 24 00 00 03 AB CD EF"):
        get_challenge(card)
        assert send(card, apdu) == h("67 00"), apdu
    assert pin_status(card)[0] == 0x00


def test_s6_sw_6988_mac_wrong():
    card = new_card("not-activated")
    select_ssse(card)
    assert authenticate(card, "not-activated", KeyName.PUK) == OK
    get_challenge(card)
    assert send(card, "84 18 00 00 04 00 00 00 00") == h("69 88")
    assert pin_status(card)[0] == 0x00


def test_s6_sw_6a80_wrong_data():
    assert send(new_card(), "80 5E 01 00 07 12 34 56 00 65 43 21") == h("6A 80")


def test_s6_sw_6a82_file_not_found():
    assert send(new_card(), "00 A4 00 00 02 AB CD") == h("6A 82")


def test_s6_sw_6a83_record_not_found():
    card = new_card()
    select_ssse(card)
    assert send(card, "00 B2 20 2C 00") == h("6A 83")


@pytest.mark.parametrize(
    "apdu",
    [
        "00 20 00 01 03 12 34 56",  # VERIFY P2
        "00 20 01 00 03 12 34 56",  # VERIFY P1
        "80 5E 00 00 07 12 34 56 FF 65 43 21",  # CHANGE PIN P1
        "80 5E 01 01 07 12 34 56 FF 65 43 21",  # CHANGE PIN P2
        "00 84 00 01 08",  # GET CHALLENGE P2
        "00 A4 08 00 02 3F 00",  # SELECT P1
    ],
)
def test_s6_sw_6a86_wrong_p1_p2(apdu):
    card = new_card()
    assert send(card, apdu) == h("6A 86")
    assert tries_left(card) == 6


def test_s6_sw_6a88_referenced_data_not_found():
    assert send(new_card(), "80 CA 00 C5 00") == h("6A 88")
    card = new_card()
    select_ssse(card)
    get_challenge(card)
    assert send(card, "00 82 00 01 10" + "00" * 16) == h("6A 88")  # no key 01 (table 16)


def test_s6_sw_9303_application_blocked():
    """Part 5 §6.1: after APPLICATION BLOCK (LKDF04, then STKDF04's MAC), DF04 is 9303."""
    card = new_card()
    select_ssse(card)
    assert sw_of(send(card, "00 A4 00 00 02 DF 04")) == OK
    state = load("employee-new")
    challenge = get_challenge(card)
    lk = security.authentication(state.algorithm, state.keys[KeyName.LKDF04], challenge, RAW)
    assert send(card, h("00 82 00 83 10") + lk + RAW) == h("90 00")
    stk = state.keys[KeyName.STKDF04]
    apdu = security.secure_apdu(state.algorithm, stk, get_challenge(card), 0x84, 0x1E, 0, 1, b"")
    assert card.execute(apdu) == h("90 00")
    assert send(card, "00 B2 81 28 0A") == h("93 03")
    select_ssse(card)
    assert send(card, "00 A4 00 00 02 DF 04") == h("93 03")


@pytest.mark.parametrize("apdu", ["00 FF 00 00", "00 12 00 00 00", "80 FF 00 00", "84 FF 00 00"])
def test_s6_sw_6d00_ins_not_supported(apdu):
    card = new_card()
    assert send(card, apdu) == h("6D 00")
    assert tries_left(card) == 6


@pytest.mark.parametrize(
    "apdu",
    [
        "80 20 00 00 03 12 34 56",  # VERIFY is CLA 00
        "00 CA 00 C1 00",  # GET DATA is CLA 80
        "84 B2 01 04 12",  # READ RECORD is CLA 00
        "80 A4 04 00 06 D1 56 00 00 05 03",
        "00 5E 01 00 07 12 34 56 FF 65 43 21",  # CHANGE PIN is CLA 80
    ],
)
def test_s6_sw_6e00_a_known_instruction_under_another_class(apdu):
    """Part 5: every command's error table has 6E00 for a wrong CLA."""
    card = new_card()
    assert send(card, apdu) == h("6E 00")
    assert tries_left(card) == 6


def test_s6_sw_6d00_unknown_cla_84_ins_even_with_a_good_mac():
    card = new_card()
    select_ssse(card)
    assert authenticate(card, "employee-new", KeyName.PUK) == OK
    assert card.execute(protected(card, "employee-new", 0xFF, 0, 0)) == h("6D 00")
    assert card.execute(protected(card, "employee-new", 0x16, 0, 0)) == h("6D 00")  # CARD BLOCK


def test_s6_sw_6e00_every_cla_but_00_80_84():
    card = new_card()
    for cla in range(256):
        if cla in (0x00, 0x80, 0x84):
            continue
        for tail in ("A4 00 00 02 3F 00", "20 00 00 03 12 34 56", "CA 00 C1 00", "B2 01 2C 00"):
            resp = send(card, f"{cla:02X} {tail}")
            assert resp == h("6E 00"), f"CLA {cla:02X} {tail}"
    assert tries_left(card) == 6


VALID_SW_HIGH = {0x61, 0x6C}
VALID_SW = {
    0x9000, 0x6700, 0x6981, 0x6982, 0x6983, 0x6984, 0x6985, 0x6986, 0x6988,
    0x6A80, 0x6A82, 0x6A83, 0x6A86, 0x6A88, 0x6D00, 0x6E00,
}  # fmt: skip


def _is_table_sw(status: int) -> bool:
    return status in VALID_SW or status >> 8 in VALID_SW_HIGH or status & 0xFFF0 == 0x63C0


def _allowed(raw: bytes, status: int) -> bool:
    """A table SW; or 6F00 for a GET RESPONSE with nothing waiting (part 5 §6.6.4),
    the one place the standard's 6F00 is not our "emulator bug" word."""
    return _is_table_sw(status) or (raw[:2] == b"\x00\xc0" and status == 0x6F00)


_HEADERS = [
    b"", b"\x00\xa4\x04\x00", b"\x00\xa4\x00\x00", b"\x00\xb2", b"\x00\x20\x00\x00",
    b"\x80\x5e\x01\x00", b"\x80\xca\x00\xc1", b"\x00\x84\x00\x00", b"\x00\xc0\x00\x00",
    b"\x84\x24\x00\x00", b"\x84\x24\x00\x01", b"\x84\x18\x00\x00", b"\x84\x1e\x00\x01",
    b"\x00\x82\x00\x06", b"\x00\x82\x00", b"\x00\x88\x00\x00", b"\x00\xb0",
    b"\x00\xa4\x00\x00\x02\xdf\x04", b"\x84\x5e\x00",
]  # fmt: skip
_apdus = st.builds(
    lambda head, tail: head + tail, st.sampled_from(_HEADERS), st.binary(max_size=40)
) | st.binary(max_size=300)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(["employee-new", "t0-employee-new", "locked"]), raw=_apdus)
def test_s6_any_byte_string_gets_a_table_sw_and_changes_nothing_else(profile, raw):
    store = RecordingStore()
    card = new_card(profile, store)
    before = card.state
    resp = card.execute(raw)
    assert len(resp) >= 2
    assert _allowed(raw, sw_of(resp)), f"{raw.hex()} -> {resp.hex()}"
    pin_command = raw[:2] in (b"\x00\x20", b"\x80\x5e")
    if raw[:2] == b"\x00\x82":  # EXTERNAL AUTHENTICATE: its key's counter, nothing else
        assert card.state == before.with_(key_tries=card.state.key_tries)
    elif not pin_command:
        assert store.saved == []
        assert card.state == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profile=st.sampled_from(["employee-new", "t0-employee-new", "not-activated"]),
    script=st.lists(_apdus, max_size=12),
)
def test_s6_any_sequence_gets_table_sws_only(profile, script):
    card = new_card(profile)
    get_challenge(card)
    for raw in script:
        resp = card.execute(raw)
        assert _allowed(raw, sw_of(resp)), f"{raw.hex()} -> {resp.hex()}"


# ---------------------------------------------------------------------------
# §7 Service-outlet commands: retired by issue 12 (84 5E answers 6E00). Their place
# is taken by the standard's commands under the card's keys: tests/test_card_keys.py.
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# §8 Transport: T=0 style profile
# ---------------------------------------------------------------------------


def _t0_at_ssse():
    card = new_card("t0-employee-new")
    select_ssse(card)
    return card


T0_NAME_RECORD = "09 1E D6 A3 BA C6" + " 00" * 26  # 郑浩 in GBK, padded to 30


def test_s8_t0_case_4_is_answered_61xx_and_get_response_returns_it():
    """Part 2 §9.3.1.4: SELECT by name with a Le (case 4) announces its FCI with 61xx."""
    card = new_card("t0-employee-new")
    assert send(card, SELECT_SSSE + " 00") == h("61 1E")
    assert send(card, "00 C0 00 00 1E") == h(FCI_SSSE + " 90 00")
    assert send(card, "00 C0 00 00 1E") == h("6F 00")  # handed out once


def test_s8_t0_case_4_without_le_is_answered_61xx_too():
    """Part 2 §9.3.1.4 and docs/card.md §6: a T=0 SELECT of a DF returns its FCI even
    without a Le, through 61xx."""
    card = new_card("t0-employee-new")
    assert send(card, SELECT_SSSE) == h("61 1E")
    assert send(card, "00 C0 00 00 1E") == h(FCI_SSSE + " 90 00")


def test_s8_t0_case_2_exact_le_is_answered_directly():
    """Part 2 §9.3.2.1: READ RECORD (case 2) with P3 = the length answers at once."""
    card = _t0_at_ssse()
    assert send(card, "00 B2 09 30 20") == h(T0_NAME_RECORD + " 90 00")
    assert send(card, "00 C0 00 00 20") == h("6F 00")  # nothing was left waiting


def test_s8_t0_every_record_answered_directly_with_the_exact_le():
    """Part 2 §9.3.2.1: each record comes back with 9000 for its exact Le, no 61xx."""
    card = _t0_at_ssse()
    expected = {
        0x07: "07 09 " + b"A40886201".hex(),
        0x05: "05 04 20 19 09 09",
    }
    for tag, record in expected.items():
        n = len(h(record))
        assert send(card, bytes((0x00, 0xB2, tag, 0x2C, n))) == h(record + " 90 00")
        assert send(card, bytes((0x00, 0xC0, 0x00, 0x00, n))) == h("6F 00")  # nothing waits


@pytest.mark.parametrize("le", ["00", "", "05", "1F", "21", "FF"])
def test_s8_t0_case_2_le_00_absent_or_wrong_is_6cxx_and_nothing_waits(le):
    """Part 2 §9.3.2.1: any P3 but the length gets 6Cxx; the resend gets the data."""
    card = _t0_at_ssse()
    assert send(card, "00 B2 09 30 " + le) == h("6C 20")
    assert send(card, "00 C0 00 00 20") == h("6F 00")
    assert send(card, "00 B2 09 30 20") == h(T0_NAME_RECORD + " 90 00")


def test_s8_t0_short_le_gives_part_and_61_rest():
    """Part 2 §9.3.3: GET RESPONSE with a smaller Le gives that much and 61yy for the rest."""
    card = new_card("t0-employee-new")
    fci = h(FCI_SSSE)
    assert send(card, SELECT_SSSE + " 00") == h("61 1E")
    assert send(card, "00 C0 00 00 10") == fci[:16] + h("61 0E")
    assert send(card, "00 C0 00 00 08") == fci[16:24] + h("61 06")
    assert send(card, "00 C0 00 00 06") == fci[24:] + h("90 00")
    assert send(card, "00 C0 00 00 06") == h("6F 00")


@pytest.mark.parametrize("le", ["1F", "30", "FF", "", "00"])  # part 5 §6.6.4: 00 too
def test_s8_t0_wrong_le_is_6cxx_and_keeps_the_data(le):
    """Part 2 §9.3.3: GET RESPONSE with Le 00, absent or too long is 6Cxx; data stays."""
    card = new_card("t0-employee-new")
    assert send(card, SELECT_SSSE + " 00") == h("61 1E")
    assert send(card, "00 C0 00 00 " + le) == h("6C 1E")
    assert send(card, "00 C0 00 00 1E") == h(FCI_SSSE + " 90 00")


def test_s8_t0_get_response_on_a_non_t0_card_is_6d00():
    card = new_card("employee-new")
    select_ssse(card)
    assert sw_of(send(card, "00 B2 09 30 20")) == OK
    assert send(card, "00 C0 00 00 20") == h("6D 00")


def test_s8_t0_responses_without_data_stay_9000():
    card = new_card("t0-employee-new")
    assert send(card, "00 20 00 00 03 12 34 56") == h("90 00")
    assert send(card, "00 20 00 00") == h("90 00")
    assert send(card, "00 20 00 00 03 00 00 00") == h("63 C5")


def test_s8_t0_wrong_le_on_read_record_is_6cxx():
    card = _t0_at_ssse()
    assert send(card, "00 B2 09 30 05") == h("6C 20")


def _counting_random():
    """A random source that draws 00.., 01.., ...: each challenge differs and is counted."""
    drawn: list[bytes] = []

    def random(n: int) -> bytes:
        value = bytes((len(drawn),)) * n
        drawn.append(value)
        return value

    return random, drawn


T0 = "t0-employee-new"


def _t0_tries(card: VirtualCard) -> int:
    return card.state.tries_of(KeyName.PUK)


def test_s8_t0_challenge_with_exact_le_is_answered_directly_and_works():
    """Part 2 §9.3.2.1: GET CHALLENGE is case 2, so a T=0 card answers it with 9000 and
    no GET RESPONSE stands between it and the EXTERNAL AUTHENTICATE that uses it."""
    random, drawn = _counting_random()
    card = new_card(T0, random=random)
    select_ssse(card)
    assert send(card, "00 84 00 00 08") == h("00" * 8 + " 90 00")
    assert drawn == [h("00" * 8)]
    assert authenticate(card, T0, KeyName.PUK, challenge=drawn[0]) == OK  # case 3: 9000


@pytest.mark.parametrize("le", ["03", "00", "", "09"])
def test_s8_t0_challenge_with_a_wrong_le_is_6700_and_the_resend_gives_a_usable_one(le):
    """Part 5 table 18: a wrong Le is 6700 (not 6Cxx, even on T=0); it draws nothing,
    leaves nothing for GET RESPONSE and spends the challenge before it; the resend with
    Le 08 draws a fresh one."""
    random, drawn = _counting_random()
    card = new_card(T0, random=random)
    select_ssse(card)
    old = data_of(send(card, "00 84 00 00 08"))
    assert send(card, "00 84 00 00 " + le) == h("67 00")
    assert drawn == [old]
    assert send(card, "00 C0 00 00 08") == h("6F 00")
    assert authenticate(card, T0, KeyName.PUK, challenge=old) == 0x6984
    assert _t0_tries(card) == 3

    assert send(card, "00 84 00 00 " + le) == h("67 00")
    assert send(card, "00 84 00 00 08") == h("01" * 8 + " 90 00")
    assert drawn == [old, h("01" * 8)]
    assert authenticate(card, T0, KeyName.PUK, challenge=drawn[1]) == OK


def test_s8_t0_challenge_answered_directly_then_another_command_spends_it():
    """Part 2 §9.3.2.1 with part 5 §6.5.1: the directly answered challenge is spent by
    the next command, as on any card."""
    card = new_card(T0)
    select_ssse(card)
    resp = send(card, "00 84 00 00 08")
    assert sw_of(resp) == OK
    challenge = data_of(resp)
    assert len(challenge) == 8
    assert send(card, "00 20 00 00") == h("63 C6")  # the empty VERIFY: not verified
    assert authenticate(card, T0, KeyName.PUK, challenge=challenge) == 0x6984
    assert _t0_tries(card) == 3


def test_s8_t0_case_4_command_after_a_challenge_spends_it():
    """Part 2 §9.3.1.4 with part 5 §6.5.1: the SELECT that leaves data waiting spends
    the challenge, so the GET RESPONSE that fetches it has none to keep."""
    card = new_card(T0)
    select_ssse(card)
    challenge = data_of(send(card, "00 84 00 00 08"))
    assert len(challenge) == 8
    assert send(card, SELECT_SSSE + " 00") == h("61 1E")
    assert send(card, "00 C0 00 00 1E") == h(FCI_SSSE + " 90 00")
    assert authenticate(card, T0, KeyName.PUK, challenge=challenge) == 0x6984
    assert _t0_tries(card) == 3


def test_s8_t0_get_response_fetching_nothing_spends_the_challenge():
    """Part 5 §6.5.1 'once': a GET RESPONSE with nothing waiting (GET CHALLENGE is case
    2 and answered at once, part 2 §9.3.2.1) is a command like any other."""
    card = new_card(T0)
    select_ssse(card)
    resp = send(card, "00 84 00 00 08")
    assert sw_of(resp) == OK
    challenge = data_of(resp)
    assert send(card, "00 C0 00 00 08") == h("6F 00")  # nothing is waiting
    assert authenticate(card, T0, KeyName.PUK, challenge=challenge) == 0x6984
    assert _t0_tries(card) == 3


def test_s8_t0_internal_authenticate_is_case_4_61_08():
    card = new_card(T0)
    select_ssse(card)
    assert send(card, "00 88 00 00 10" + "00" * 16 + "00") == h("61 08")
    assert sw_of(send(card, "00 C0 00 00 08")) == OK


def test_s8_t0_pin_change_unblock_works_on_t0_card():
    card = new_card(T0)
    select_ssse(card)
    assert authenticate(card, T0, KeyName.PUK) == OK
    state = load(T0)
    challenge = get_challenge(card)
    session = security.session_key(state.algorithm, state.keys[KeyName.PUK], challenge)
    element = security.encrypt(state.algorithm, session, h("86 42 00"))
    before = card.state
    assert card.execute(protected(card, T0, 0x24, 0, 1, element, challenge)) == h("90 00")
    after = card.state
    assert after == before.with_(pin=after.pin, tries_left=6, pin_state=PinState.ENABLED)
    assert verify(card, "864200") == OK


def test_s8_t0_select_by_name_then_read_through_a_terminal_style_transmit():
    card = new_card("t0-employee-new")
    assert sw_of(transmit(card, SELECT_SSSE)) == OK
    assert transmit(card, "00 B2 08 30 00") == h("08 12") + b"310113199010102758" + h("90 00")
    assert sw_hex(transmit(card, "00 B2 0D 30 00")) == "9000"
