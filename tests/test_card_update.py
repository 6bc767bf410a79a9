"""UPDATE RECORD (part 5 §6.13, tables 43-45; V2.0 tables 3 and 7: written under UKSSSE
and UK1DF04; docs/card.md §5): a whole record of the same tag and length, after the
file's write key was proved; the card file's field changes and is read back.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from card_helpers import SELECT_SSSE, h, prove, send

from cardio.card import profiles, store
from cardio.card.card import VirtualCard
from cardio.card.store import FileStore
from cardio.issuer import KeyName

OK = h("90 00")
SELECT_DF04 = "00 A4 04 00 06 D1 56 00 00 05 03"


def card_at(tmp_path: Path, profile: str = "employee-new", version: str = "2.00"):
    path = tmp_path / "card.json"
    profiles.new_card(profile, path, spec_version=version)
    file_store = FileStore(path)
    card = VirtualCard(file_store.open(), file_store)
    card.power_on()
    assert send(card, SELECT_SSSE)[-2:] == OK
    return card, path, file_store


def record(tag: int, value: bytes) -> str:
    return (bytes((tag, len(value))) + value).hex()


def test_p5_6_13_without_the_write_key_is_6982(tmp_path):
    card, path, fs = card_at(tmp_path)
    before = path.read_bytes()
    assert send(card, "00 DC 07 2C 0B " + record(7, b"B12345678")) == h("69 82")
    assert prove(card, KeyName.RKSSSE) == OK  # another key does not open it
    assert send(card, "00 DC 07 2C 0B " + record(7, b"B12345678")) == h("69 82")
    assert path.read_bytes().replace(b'"RKSSSE": 3', b"") == before.replace(b'"RKSSSE": 3', b"")
    fs.close()


def test_p5_6_13_by_number_with_sfi_writes_the_card_file(tmp_path):
    card, path, fs = card_at(tmp_path)
    assert prove(card, KeyName.UK) == OK
    assert send(card, "00 DC 07 2C 0B " + record(7, b"B12345678")) == OK
    assert send(card, "00 B2 07 2C 0B") == h(record(7, b"B12345678")) + OK
    fs.close()
    assert store.read(path).card.card_number == "B12345678"  # durable


def test_p5_6_13_by_identifier_in_the_current_ef(tmp_path):
    card, path, fs = card_at(tmp_path)
    assert prove(card, KeyName.UK) == OK
    assert send(card, "00 A4 02 00 02 EF 06") == OK
    assert send(card, "00 DC 0D 00 06 " + record(0x0D, h("19 90 01 02"))) == OK
    fs.close()
    assert store.read(path).holder.birth_date == dt.date(1990, 1, 2)


def test_p5_6_13_the_name_is_written_across_09_and_4e(tmp_path):
    card, path, fs = card_at(tmp_path)
    assert prove(card, KeyName.UK) == OK
    name = "李四".encode("gbk").ljust(30, b"\x00")
    assert send(card, "00 DC 09 30 20 " + record(9, name)) == OK  # identifier 09, SFI 6
    fs.close()
    assert store.read(path).holder.name == "李四"


def test_v2_table_7_df04_is_written_under_uk1df04(tmp_path):
    card, path, fs = card_at(tmp_path)
    assert send(card, SELECT_DF04)[-2:] == OK
    new = record(0x81, b"39010000")
    assert send(card, "00 DC 81 28 0A " + new) == h("69 82")
    assert prove(card, KeyName.UK) == OK  # the SSSE's key is not DF04's
    assert send(card, "00 DC 81 28 0A " + new) == h("69 82")
    assert prove(card, KeyName.UK1DF04) == OK
    assert send(card, "00 DC 81 28 0A " + new) == OK
    fs.close()
    state = store.read(path)
    assert (state.scheme, state.medical_flags) == ("390", "10000")


@pytest.mark.parametrize(
    ("apdu", "status"),
    [
        ("00 DC 07 2C 0B 06 09 " + b"B12345678".hex(), "6A 80"),  # another tag
        ("00 DC 07 2C 0A 07 08 " + b"B1234567".hex(), "67 00"),  # another length
        ("00 DC 07 2C 0B 07 0A " + b"B12345678".hex(), "6A 85"),  # TLV length wrong
        ("00 DC 05 2C 06 05 04 20 19 13 99", "6A 80"),  # no such date
        ("00 DC 01 2C 12 01 10" + " 00" * 16, "69 85"),  # the identification code
        ("00 DC 02 2C 03 02 01 39", "6A 80"),  # category 9: not ours
        ("00 DC 08 2C 03 02 01 31", "6A 83"),  # no record 8 in EF05
        ("00 DC 07 2D 0B 07 09 " + b"B12345678".hex(), "6A 86"),  # mode 101
        ("00 DC 07 2C 0B 07 09 " + b"B12345678".hex() + " 00", "67 00"),  # a Le
        ("00 DC 07 3C 0B 07 09 " + b"B12345678".hex(), "69 81"),  # EF07: transparent
    ],
)
def test_p5_table_45_refusals_change_nothing(tmp_path, apdu, status):
    card, path, fs = card_at(tmp_path)
    assert prove(card, KeyName.UK) == OK
    before = path.read_bytes()
    assert send(card, apdu) == h(status)
    assert path.read_bytes() == before
    fs.close()


def test_p7_6_6_the_write_right_ends_when_the_ssse_is_left(tmp_path):
    card, path, fs = card_at(tmp_path)
    assert prove(card, KeyName.UK) == OK
    assert send(card, "00 A4 00 00 02 3F 00")[-2:] == OK  # the MF: out of the SSSE
    assert send(card, SELECT_SSSE)[-2:] == OK
    assert send(card, "00 DC 07 2C 0B " + record(7, b"B12345678")) == h("69 82")
    card.reset()
    assert send(card, SELECT_SSSE)[-2:] == OK
    assert send(card, "00 DC 07 2C 0B " + record(7, b"B12345678")) == h("69 82")
    fs.close()


def test_p5_6_13_a_3_00_card_changed_to_3_00_protects_its_holder_data(tmp_path):
    card, path, fs = card_at(tmp_path, version="2.00")
    assert prove(card, KeyName.UK) == OK
    assert send(card, "00 DC 03 2C 06 " + record(3, b"3.00")) == OK
    assert send(card, "00 B2 08 30 14") == h("69 82")  # EF06 now under RKSSSE
    assert prove(card, KeyName.RKSSSE) == OK
    assert send(card, "00 B2 08 30 14")[-2:] == OK
    fs.close()


@pytest.mark.parametrize(
    ("tag", "sfi_p2", "le"), [(5, "2C", "06"), (6, "2C", "06"), (0x0D, "34", "06")]
)
def test_p5_6_13_a_date_before_year_1000_is_6a80_and_the_file_still_loads(
    tmp_path, tag, sfi_p2, le
):
    """The card file holds no date before 1000 (its loader refuses one): such a value is
    refused before anything is written."""
    card, path, fs = card_at(tmp_path)
    assert prove(card, KeyName.UK) == OK
    before = path.read_bytes()
    p2 = f"{int(sfi_p2, 16) & 0xF8:02X}"  # by identifier
    apdu = f"00 DC {tag:02X} {p2} {le} " + record(tag, h("00 01 01 01"))
    assert send(card, apdu) == h("6A 80")
    assert path.read_bytes() == before
    fs.close()
    store.read(path)  # loads
