"""The emulated card against the national standard: ATR, files, SELECT, READ RECORD (issue 11).

Each test names the part and section it proves (docs/card.md §1-§3 cite the same).
Expected bytes are written out from the standard's tables and the fixture files, not
computed with the card's own code.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from card_helpers import FCI_SSSE, SELECT_SSSE, SSSE_NAME, h, new_card, prove, send, transmit

from cardio import cli
from cardio.card import profiles, store
from cardio.card.card import VirtualCard
from cardio.card.state import CardFileError, CardState
from cardio.errors import UsageError
from cardio.issuer import KeyName
from cardio.model import Algorithm

FCI_DF04 = "6F 08 84 06 D1 56 00 00 05 03"  # part 5 table 38: 6F { 84 AID }
SELECT_DF04 = "00 A4 04 00 06 D1 56 00 00 05 03"
OK = h("90 00")

# employee-new, a 2.00 card (fixtures/cards/employee-new.json)
EF05 = [
    "01 10 310000D156000005372A9FA8AB97D317",
    "02 01 31",
    "03 04 32 2E 30 30",
    "04 0C 915600000231000031000078",
    "05 04 20 19 01 01",
    "06 04 20 29 01 01",
    "07 09 " + b"A93230742".hex(),
]
EF06 = [
    "08 12 " + b"310104198503122174".hex(),
    "09 1E D5 C5 CE B0" + " 00" * 26,
    "4E 14" + " 00" * 20,
    "0A 01 31",
    "0B 01 01",
    "0C 03 31 01 04",
    "0D 04 19 85 03 12",
]


def rec(records: list[str], number: int) -> bytes:
    return h(records[number - 1])


def at_ssse(profile: str = "employee-new", state: CardState | None = None) -> VirtualCard:
    card = new_card(profile, state=state)
    assert transmit(card, SELECT_SSSE)[-2:] == OK
    return card


def le_of(record: bytes) -> str:
    return f"{len(record):02X}"


# --- part 2 §8.4 table 16: the historical bytes --------------------------------------


def test_p2_8_4_historical_bytes_follow_table_16():
    state = profiles.make("resident-new")
    ident = state.card.identification_code
    hist = VirtualCard(state).power_on()[4:]
    assert len(hist) == 13
    assert hist[:2] == h("00 00")  # T1-T2 chip provider
    assert hist[2:5] == b"SBP"  # T3-T5 provider-defined
    assert hist[5:7] == h("00 00")  # T6-T7 card manufacturer
    assert hist[7:9] == ident[:2] == h("31 00")  # T8-T9 first 4 digits of the region code
    assert hist[9:13] == ident[8:12]  # TA-TD the card serial (V2.0 table 10)


def test_p2_8_4_two_cards_differ_one_card_keeps_its_atr(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    profiles.new_card("employee-new", a)
    profiles.new_card("resident-new", b)
    atr_a = VirtualCard(store.read(a)).power_on()
    assert atr_a != VirtualCard(store.read(b)).power_on()
    assert atr_a[:4] == h("3B 6D 00 00")
    for _ in range(2):  # reopened: the same bytes
        assert VirtualCard(store.read(a)).power_on() == atr_a


def test_p2_8_4_an_existing_file_keeps_the_bytes_it_stores(tmp_path):
    path = tmp_path / "old.json"
    doc = json.loads(store.encode(profiles.load("employee-new")))
    doc["atr_historical"] = b"shebao-pos-v1".hex()
    path.write_text(json.dumps(doc))
    assert VirtualCard(store.read(path)).power_on() == h("3B 6D 00 00") + b"shebao-pos-v1"


# --- part 5 §6.11: SELECT ---------------------------------------------------------------


def test_p5_6_11_select_ssse_by_name_returns_its_fci():
    card = new_card()
    assert send(card, SELECT_SSSE + " 00") == h(FCI_SSSE) + OK
    assert send(card, SELECT_SSSE) == h(FCI_SSSE) + OK  # no Le: the FCI all the same
    assert send(card, "00 A4 04 0C 0F " + SSSE_NAME + " 00") == OK  # P2 0C: never FCI


@pytest.mark.parametrize(("algorithm", "byte"), [(Algorithm.DES, "01"), (Algorithm.SSF33, "02")])
def test_p5_6_11_4_fci_algorithm_is_a_card_property(algorithm, byte):
    card = new_card(state=profiles.load("employee-new").with_(algorithm=algorithm))
    resp = send(card, SELECT_SSSE + " 00")
    assert resp[-8:] == h(f"9F 0C 03 86 01 {byte} 90 00")


def test_p5_6_11_select_medical_application_by_aid_from_anywhere():
    card = new_card()
    assert send(card, SELECT_DF04 + " 00") == h(FCI_DF04) + OK
    assert send(card, "00 A4 02 00 02 EF 05") == OK
    assert send(card, "00 B2 81 00 0A") == h("69 82")  # V2.0 table 7: PIN or RK1DF04
    assert prove(card, KeyName.RK1DF04) == OK
    assert send(card, "00 B2 81 00 0A") == h("81 08 33 31 30 30 30 30 30 30") + OK
    assert send(card, "00 B2 84 00 05") == h("84 03 31 00 00") + OK


@pytest.mark.parametrize("le", ["", " 00", " 1E", " 30", " FF"])
def test_p5_6_11_a_df_answers_its_fci_with_or_without_le(le):
    """Part 5 §6.11.1: the FCI comes back for every DF (table 34's Le is 00); a card
    that is not T=0-style sends it directly, whatever Le asks for at least its length."""
    assert send(new_card(), SELECT_SSSE + le) == h(FCI_SSSE) + OK


@pytest.mark.parametrize("le", ["01", "1D"])
def test_p2_9_3_2_a_select_with_a_short_le_is_6cxx(le):
    card = new_card()
    assert send(card, SELECT_SSSE + " " + le) == h("6C 1E")
    assert send(card, SELECT_SSSE + " 1E") == h(FCI_SSSE) + OK
    assert send(card, SELECT_DF04 + " 08") == h("6C 0A")


def test_p5_6_11_select_with_p2_0c_returns_no_fci():
    card = new_card()
    assert send(card, "00 A4 04 0C 0F " + SSSE_NAME) == OK
    assert send(card, "00 A4 04 0C 0F " + SSSE_NAME + " 00") == OK


def test_p5_6_11_select_by_fid_p1_00():
    card = at_ssse()
    assert send(card, "00 A4 00 00 02 DF 04 00") == h(FCI_DF04) + OK
    assert send(card, "00 A4 00 00 02 3F 00 00") == h("6F 04 83 02 3F 00") + OK
    assert send(card, "00 A4 00 00 00") == h("6F 04 83 02 3F 00") + OK  # no data: the MF
    assert send(card, "00 A4 00 00") == h("6F 04 83 02 3F 00") + OK
    assert send(card, SELECT_SSSE) == h(FCI_SSSE) + OK
    # an EF by FID with P1 00, as terminals send it: no FCI even with Le
    assert send(card, "00 A4 00 00 02 EF 06 00") == OK
    assert send(card, "00 B2 01 04 14") == rec(EF06, 1) + OK


def test_p5_6_11_select_child_df_p1_01():
    card = at_ssse()
    assert send(card, "00 A4 01 00 02 EF 05") == h("6A 82")  # an EF is not a DF
    assert send(card, "00 A4 01 00 02 DF 04 00") == h(FCI_DF04) + OK
    assert send(card, SELECT_SSSE) == h(FCI_SSSE) + OK
    assert send(card, "00 A4 01 0C 02 DF 04") == OK


def test_p5_6_11_select_ef_p1_02():
    card = at_ssse()
    assert send(card, "00 A4 02 00 02 EF 05") == OK
    assert send(card, "00 A4 02 00 02 EF 05 00") == OK  # an EF has no FCI (§6.11.4)
    assert send(card, "00 A4 02 0C 02 EF 06") == OK
    assert send(card, "00 A4 02 00 02 DF 04") == h("6A 82")  # a DF is not an EF
    assert send(card, "00 A4 02 00 02 EF 09") == h("6A 82")
    assert send(card, "00 B2 01 04 14") == rec(EF06, 1) + OK  # failed SELECTs changed nothing


@pytest.mark.parametrize(
    "apdu",
    [
        "00 A4 02 00 01 EF",
        "00 A4 02 00 03 EF 05 00 00",
        "00 A4 00 00 03 3F 00 00 00",
        "00 A4 01 00 01 DF",
        "00 A4 04 00 04 D1 56 00 00",  # a DF name has 5 to 16 bytes
        "00 A4 04 00 11 " + "00 " * 17,
    ],
)
def test_p5_table_39_lc_inconsistent_with_p1_is_6700(apdu):
    assert send(at_ssse(), apdu) == h("67 00")


def test_p5_6_11_5_next_occurrence_of_a_full_name_is_6a82():
    card = new_card()
    assert send(card, "00 A4 04 02 0F " + SSSE_NAME) == h("6A 82")


def test_p5_6_11_select_df_clears_the_current_ef():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 05")
    assert send(card, SELECT_SSSE) == h(FCI_SSSE) + OK
    assert send(card, "00 B2 01 04 12") == h("69 86")


def test_p2_9_3_t0_select_answers_61xx_and_get_response_serves_the_fci():
    card = new_card("t0-employee-new")
    assert send(card, SELECT_SSSE) == h("61 1E")
    assert send(card, "00 C0 00 00 00") == h("6C 1E")  # part 5 §6.6.4: Le 00 -> 6Cxx
    assert send(card, "00 C0 00 01 1E") == h("6A 86")  # P1 P2 must be 00 00; data dropped
    assert send(card, SELECT_SSSE) == h("61 1E")
    assert send(card, "00 C0 00 00 1E") == h(FCI_SSSE) + OK
    assert send(card, "00 A4 02 00 02 EF 05") == OK  # an EF: nothing to fetch


# --- part 3 §5.3 and part 5 §6.10: READ RECORD -------------------------------------------


def test_p3_5_3_2_record_numbers_are_creation_order_not_tags():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 06")
    assert send(card, "00 B2 03 04 16") == rec(EF06, 3) + OK  # record 3 = 4E on 2.00
    assert send(card, "00 B2 4E 00 16") == rec(EF06, 3) + OK  # identifier 4E
    assert send(card, "00 B2 08 04 00") == h("6A 83")  # no record number 8


def test_p3_5_3_1_identifier_pointer_first_next_to_the_end():
    """P1 = 00 with an identifier mode: every record matches (part 3 §5.3.1)."""
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 06")
    first = rec(EF06, 1)
    assert send(card, "00 B2 00 00 " + le_of(first)) == first + OK
    for number in range(2, 8):
        record = rec(EF06, number)
        assert send(card, "00 B2 00 02 " + le_of(record)) == record + OK
    assert send(card, "00 B2 00 02 00") == h("6A 83")
    # a failed search leaves the pointer: 'previous' from record 7 is record 6
    assert send(card, "00 B2 00 03 05") == rec(EF06, 6) + OK


def test_p3_5_3_1_identifier_pointer_last_previous_to_the_start():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 05")
    last = rec(EF05, 7)
    assert send(card, "00 B2 00 01 0B") == last + OK
    for number in range(6, 0, -1):
        record = rec(EF05, number)
        assert send(card, "00 B2 00 03 " + le_of(record)) == record + OK
    assert send(card, "00 B2 00 03 00") == h("6A 83")


def test_p3_5_3_1_no_current_record_next_is_first_previous_is_last():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 06")
    assert send(card, "00 B2 00 02 14") == rec(EF06, 1) + OK
    send(card, "00 A4 02 00 02 EF 06")  # SELECT clears the pointer
    assert send(card, "00 B2 00 03 06") == rec(EF06, 7) + OK


def test_p3_5_3_1_identifier_occurs_once_next_is_6a83():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 06")
    assert send(card, "00 B2 09 00 20") == rec(EF06, 2) + OK
    assert send(card, "00 B2 09 02 20") == h("6A 83")
    assert send(card, "00 B2 09 03 20") == h("6A 83")
    assert send(card, "00 B2 09 01 20") == rec(EF06, 2) + OK  # last occurrence
    assert send(card, "00 B2 00 02 16") == rec(EF06, 3) + OK  # pointer at 09 still


def test_p3_5_3_reading_by_number_does_not_move_the_pointer():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 06")
    assert send(card, "00 B2 08 00 14") == rec(EF06, 1) + OK
    assert send(card, "00 B2 06 04 05") == rec(EF06, 6) + OK
    assert send(card, "00 B2 00 04 14") == rec(EF06, 1) + OK  # P1 00: the current record
    assert send(card, "00 B2 00 02 20") == rec(EF06, 2) + OK


def test_p5_6_10_current_record_without_one_is_6a83():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 06")
    assert send(card, "00 B2 00 04 00") == h("6A 83")


def test_p5_6_10_4_a_6cxx_answer_does_not_move_the_pointer():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 06")
    assert send(card, "00 B2 00 02 00") == h("6C 14")
    assert send(card, "00 B2 00 02 14") == rec(EF06, 1) + OK  # still the first


def test_p5_6_10_from_p1_to_the_last_record():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 05")
    everything = b"".join(h(r) for r in EF05)
    assert len(everything) == 0x40
    assert send(card, "00 B2 01 05 40") == everything + OK
    assert send(card, "00 B2 01 05 00") == h("6C 40")
    assert send(card, "00 B2 05 05 17") == b"".join(h(r) for r in EF05[4:]) + OK
    assert send(card, "00 B2 08 05 00") == h("6A 83")
    assert send(card, "00 B2 07 2D 0B") == rec(EF05, 7) + OK  # via SFI 05


def test_p5_6_10_from_the_last_record_back_to_p1():
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 05")
    back = rec(EF05, 7) + rec(EF05, 6) + rec(EF05, 5)
    assert send(card, f"00 B2 05 06 {len(back):02X}") == back + OK


def test_p5_6_10_sfi_reads_without_select_and_makes_the_ef_current():
    card = at_ssse()
    assert send(card, "00 B2 07 2C 0B") == rec(EF05, 7) + OK  # by number, SFI 05
    assert send(card, "00 B2 07 28 0B") == rec(EF05, 7) + OK  # by identifier, SFI 05
    assert send(card, "00 B2 01 34 14") == rec(EF06, 1) + OK  # SFI 06
    assert send(card, "00 B2 02 04 20") == rec(EF06, 2) + OK  # EF06 is current now
    # another EF by SFI starts with no current record
    assert send(card, "00 B2 00 2A 12") == rec(EF05, 1) + OK


# The directory entry of part 3 §6.3 table 3: 61 { 4F AID, 50 label }; the label is
# V2.0 table 2's "社会保险信息区2" in GBK (15 bytes).
DIR_DF04 = "61 19 4F 06 D1 56 00 00 05 03 50 0F C9 E7 BB E1 B1 A3 CF D5 D0 C5 CF A2 C7 F8 32"


def test_p3_6_3_the_fci_names_the_directory_and_it_lists_the_medical_application():
    """Part 5 table 36: `88` in the SSSE's FCI is the directory's SFI; part 3 §6.5.2:
    read its records from 1 until 6A83, then select what it lists."""
    card = new_card()
    fci = send(card, SELECT_SSSE + " 00")
    assert fci[-2:] == OK
    sfi = fci[fci.index(h("88 01")) + 2]
    assert sfi == 0x0F  # part 3 §6.3: 5 to 15, clear of EF05-EF08
    p2 = f"{sfi << 3 | 0b100:02X}"
    assert send(card, "00 B2 01 " + p2 + " 1B") == h(DIR_DF04) + OK
    assert send(card, "00 B2 02 " + p2 + " 1B") == h("6A 83")  # the end of the directory
    assert send(card, "00 B2 01 " + p2 + " 00") == h("6C 1B")
    assert send(card, "00 B2 61 78 1B") == h(DIR_DF04) + OK  # by identifier 61
    aid = h(DIR_DF04)[4:10]
    assert send(card, "00 A4 04 00 06 " + aid.hex() + " 00") == h(FCI_DF04) + OK


def test_p3_6_3_the_directory_has_no_fid_and_no_binary_content():
    card = at_ssse()
    for fid in ("EF 0F", "00 0F", "EF 00"):
        assert send(card, "00 A4 02 00 02 " + fid) == h("6A 82")
    assert send(card, "00 B0 8F 00 08") == h("69 81")  # READ BINARY by SFI: a record file
    assert send(card, "00 B2 01 7C 1B") == h(DIR_DF04) + OK
    # outside the SSSE the SFI names nothing
    assert send(card, SELECT_DF04) == h(FCI_DF04) + OK
    assert send(card, "00 B2 01 7C 1B") == h("6A 82")


@pytest.mark.parametrize("version", ["1.00", "2.00", "3.00"])
def test_p3_6_3_every_version_has_the_directory(version):
    card = new_card(state=profiles.make("resident-new", spec_version=version))
    assert send(card, SELECT_SSSE) == h(FCI_SSSE) + OK
    assert send(card, "00 B2 01 7C 1B") == h(DIR_DF04) + OK


def test_p5_table_33_no_current_ef_is_6986():
    card = at_ssse()
    assert send(card, "00 B2 01 04 12") == h("69 86")
    assert send(card, "00 B2 01 00 12") == h("69 86")


def test_p5_table_33_a_transparent_ef_is_6981():
    card = at_ssse()
    assert send(card, "00 B2 01 3C 00") == h("69 81")  # SFI 07, fingerprint (V2.0 table 3)
    assert send(card, "00 B2 01 44 00") == h("69 81")  # SFI 08, photo
    assert send(card, "00 A4 02 00 02 EF 07") == OK
    assert send(card, "00 B2 01 04 00") == h("69 81")


def test_p5_table_33_unknown_sfi_is_6a82_and_bad_p1_p2_6a86():
    card = at_ssse()
    assert send(card, "00 B2 01 4C 00") == h("6A 82")
    assert send(card, "00 B2 01 07 00") == h("6A 86")
    assert send(card, "00 B2 FF 04 00") == h("6A 86")


@pytest.mark.parametrize("le", ["", "00", "01", "13", "FF"])
def test_p5_6_10_4_every_wrong_le_is_6cxx_with_the_length(le):
    card = at_ssse()
    assert send(card, "00 B2 01 2C " + le) == h("6C 12")
    assert send(card, "00 B2 01 2C 12") == rec(EF05, 1) + OK


# --- V2.0 §8.1: card versions ----------------------------------------------------------


def test_v2_version_1_00_has_no_name_extension_so_sex_is_record_3():
    card = at_ssse(state=profiles.make("employee-new", spec_version="1.00"))
    assert send(card, "00 B2 03 28 06") == h("03 04") + b"1.00" + OK
    assert send(card, "00 A4 02 00 02 EF 06") == OK
    assert send(card, "00 B2 03 04 03") == h("0A 01 31") + OK
    assert send(card, "00 B2 4E 00 16") == h("6A 83")
    assert send(card, "00 B2 07 04 00") == h("6A 83")  # six records
    assert send(card, "00 B2 06 04 06") == h("0D 04 19 85 03 12") + OK
    assert send(card, "00 B2 01 44 00") == h("6A 82")  # no photo file on 1.00


@pytest.mark.parametrize("version", ["2.00", "3.00"])
def test_v2_versions_2_00_and_3_00_have_4e_as_record_3(version):
    card = at_ssse(state=profiles.make("employee-new", spec_version=version))
    assert send(card, "00 B2 03 28 06") == h("03 04") + version.encode() + OK
    if version == "3.00":  # the holder's data after RKSSSE (reader API §10.2)
        assert send(card, "00 B2 03 34 16") == h("69 82")
        assert prove(card, KeyName.RKSSSE) == OK
    assert send(card, "00 B2 03 34 16") == rec(EF06, 3) + OK
    assert send(card, "00 B2 04 34 03") == h("0A 01 31") + OK


def test_v2_table_9_a_name_past_30_bytes_goes_on_in_4e():
    name = "阿卜杜热合曼·买买提艾力·克依木" + "古丽"  # 17 characters: 34 GBK bytes
    raw = name.encode("gbk")
    assert 30 < len(raw) <= 50
    state = profiles.load("employee-new")
    state = state.with_(holder=type(state.holder)(**{**vars(state.holder), "name": name}))
    card = at_ssse(state=state)
    assert send(card, "00 B2 09 30 20") == h("09 1E") + raw[:30] + OK
    assert send(card, "00 B2 4E 30 16") == h("4E 14") + raw[30:].ljust(20, b"\0") + OK


def test_v2_table_9_the_name_is_split_between_characters():
    name = "A" + "买" * 24  # 49 GBK bytes: a cut at byte 30 would halve the 15th 买
    state = profiles.load("employee-new")
    state = state.with_(holder=type(state.holder)(**{**vars(state.holder), "name": name}))
    card = at_ssse(state=state)
    head = ("A" + "买" * 14).encode("gbk")  # 29 bytes: the next character does not fit
    assert send(card, "00 B2 09 30 20") == h("09 1E") + head + b"\0" + OK
    assert send(card, "00 B2 4E 30 16") == h("4E 14") + ("买" * 10).encode("gbk") + OK


def test_v2_a_name_that_does_not_fit_09_and_4e_whole_is_refused():
    doc = json.loads(store.encode(profiles.load("employee-new")))
    doc["holder"]["name"] = "A" + "买" * 24 + "B"  # 50 bytes, but 29 + 21 once split
    with pytest.raises(CardFileError, match="09 and 4E"):
        store.decode(json.dumps(doc).encode(), "c.json")


def test_v2_every_profile_in_every_version():
    for name in profiles.names():
        for version in ("1.00", "2.00", "3.00"):
            state = profiles.make(name, spec_version=version)
            card = at_ssse(state=state)
            assert transmit(card, "00 B2 03 2C 06") == h("03 04") + version.encode() + OK
            if version == "3.00":
                assert transmit(card, "00 B2 08 30 14") == h("69 82"), name
                assert prove(card, KeyName.RKSSSE)[-2:] == OK, name
            assert transmit(card, "00 B2 08 30 14")[:2] == h("08 12"), name


def test_v2_a_1_00_card_file_cannot_hold_a_long_name():
    doc = json.loads(store.encode(profiles.load("employee-new")))
    doc["holder"]["name"] = "买" * 16  # 32 GBK bytes: fits 09 + 4E, not 09 alone
    assert store.decode(json.dumps(doc).encode(), "c.json").holder.name == "买" * 16
    doc["card"]["spec_version"] = "1.00"
    with pytest.raises(CardFileError, match="holder.name"):
        store.decode(json.dumps(doc).encode(), "c.json")
    with pytest.raises(UsageError):
        profiles.make("employee-new", spec_version="4.00")


# --- real-only cards and the card file --------------------------------------------------


def test_real_only_card_answers_our_extensions_6d00():
    card = new_card(state=profiles.make("employee-new", real_only=True))
    assert send(card, "80 CA 00 C1 00") == h("6D 00")
    assert send(card, "84 18 00 00 04 00 00 00 00") == h("6D 00")
    # 5E is CHANGE PIN's instruction (CLA 80): a class error, as on a real card
    assert send(card, "84 5E 00 02 04 00 00 00 00") == h("6E 00")
    assert send(card, "00 20 00 00") == h("63 C6")  # the standard's commands still work
    ordinary = new_card()
    assert send(ordinary, "80 CA 00 C1 00") == h("C1 04 01 00 06 06") + OK


def test_cli_card_new_stores_version_and_real_only(tmp_path):
    path = tmp_path / "c.json"
    args = ["card", "new", "--profile", "pension-new", "--spec-version", "1.00", "--real-only"]
    assert cli.main([*args, str(path)]) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text("utf-8"))
    assert (doc["version"], doc["real_only"], doc["card"]["spec_version"]) == (3, True, "1.00")
    state = store.read(path)
    assert state.real_only and state.card.spec_version == "1.00"
    default = tmp_path / "d.json"
    assert cli.main(["card", "new", "--profile", "pension-new", str(default)]) == 0
    state = store.read(default)
    assert (state.real_only, state.card.spec_version) == (False, "2.00")


def test_card_file_version_1_is_still_read(tmp_path):
    doc = json.loads(store.encode(profiles.load("employee-new")))
    doc["version"] = 1
    for key in ("real_only", "algorithm"):
        del doc[key]
    doc["medical"] = {"scheme": "390"}
    doc["card"]["spec_version"] = "3.00"
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(doc))
    state = store.read(path)
    assert (state.real_only, state.algorithm, state.card.spec_version) == (False, 3, "3.00")
    assert (state.scheme, state.medical_flags, state.region) == ("390", "00000", "310000")
    card = at_ssse(state=state)
    assert send(card, "80 CA 00 C1 00")[-2:] == OK
    assert send(card, SELECT_DF04) == h(FCI_DF04) + OK
    assert prove(card, KeyName.RK1DF04) == OK  # old files: the test issuer's keys
    assert send(card, "00 B2 81 28 0A") == h("81 08") + b"39000000" + OK


# --- replay: the shape real terminal software sends (digest §8.2, §8.3) -----------------


@pytest.mark.parametrize("profile", ["employee-new", "t0-employee-new"])
def test_replay_iread_card_bas_shape(profile):
    card = new_card(profile)
    ef06 = EF06 if profile == "employee-new" else None
    script = [
        (SELECT_SSSE + " 00", None),
        ("00 A4 02 00 02 EF 05", ""),
        ("00 B2 01 00 12", "01 10"),
        ("00 B2 03 00 06", "03 04 32 2E 30 30"),
        ("00 B2 07 00 0B", "07 09"),
        ("00 A4 02 00 02 EF 06", ""),
        ("00 B2 08 00 14", "08 12"),
        ("00 B2 09 00 20", "09 1E"),
        ("00 B2 4E 00 16", "4E 14"),
    ]
    for apdu, starts in script:
        resp = transmit(card, apdu)
        assert resp[-2:] == OK, (apdu, resp.hex())
        if starts is not None:
            assert resp[:-2].startswith(h(starts)), apdu
            if starts:
                assert len(resp) - 2 == int(apdu[-2:], 16)
    if ef06:
        assert transmit(card, "00 B2 4E 00 16") == rec(EF06, 3) + OK


def test_replay_sfi_and_number_forms_give_the_same_bytes():
    card = at_ssse()
    assert send(card, "00 B2 07 2C 0B") == rec(EF05, 7) + OK
    assert send(card, "00 B2 01 34 14") == rec(EF06, 1) + OK
    assert send(card, "00 B2 02 34 00") == h("6C 20")
    assert send(card, "00 B2 02 34 20") == rec(EF06, 2) + OK
    assert send(card, "00 B2 05 2C 06") == rec(EF05, 5) + OK
    send(card, "00 A4 02 00 02 EF 05")
    assert send(card, "00 B2 01 05 40") == b"".join(h(r) for r in EF05) + OK
    assert send(card, "00 A4 00 00 02 EF 06") == OK  # P1 00 for an EF, as terminals do
    assert send(card, "00 B2 01 04 14") == rec(EF06, 1) + OK
    assert send(card, "00 B2 02 04 20") == rec(EF06, 2) + OK


@pytest.mark.parametrize(
    ("apdu", "right"),
    [("00 B2 07 00 09", "6C 0B"), ("00 B2 07 00 00", "6C 0B"), ("00 B2 01 00 10", "6C 12")],
)
def test_replay_wrong_le_then_the_6c_retry(apdu, right):
    card = at_ssse()
    send(card, "00 A4 02 00 02 EF 05")
    assert send(card, apdu) == h(right)
    tag = int(apdu[6:8], 16)
    assert transmit(card, apdu) == rec(EF05, tag) + OK


# --- READ BINARY (part 5 §6.9) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "status"),
    [
        ("00 B0 87 00 00", "69 82"),  # SFI 07 (EF07, fingerprint), offset 0: under RKSSSE
        ("00 B0 88 10 20", "69 82"),  # SFI 08 (EF08, photo)
        ("00 B0 85 00 00", "69 81"),  # SFI 05: EF05 holds records
        ("00 B0 89 00 00", "6A 82"),  # no EF with SFI 09
        ("00 B0 A7 00 00", "6A 86"),  # b7-b6 of P1 must be 00 with an SFI
        ("00 B0 9F 00 00", "6A 86"),  # SFI 31: RFU
        ("00 B0 87 00", "69 82"),  # no Le: still the access condition that stops it
    ],
)
def test_p5_6_9_read_binary_by_sfi(apdu, status):
    assert send(at_ssse(), apdu) == h(status)


def test_p5_6_9_read_binary_of_the_current_ef_and_its_offset():
    card = at_ssse()
    assert send(card, "00 B0 00 00 10") == h("69 86")  # no current EF after SELECT SSSE
    assert send(card, "00 A4 02 00 02 EF 07") == OK
    assert send(card, "00 B0 00 00 10") == h("69 82")
    assert send(card, "00 B0 02 FF 01") == h("69 82")  # offset 2FF: the last byte of 300
    assert send(card, "00 B0 03 00 01") == h("6B 00")  # offset 300: past the end
    assert send(card, "00 A4 02 00 02 EF 05") == OK
    assert send(card, "00 B0 00 00 10") == h("69 81")
