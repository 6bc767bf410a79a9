"""`cardio card new --serial N`: another card of a profile's holder, with its own serial,
card number, ATR and keys (V2.0 table 10; part 2 §8.4; part 9 §7.3: no two cards share
a key), which the terminal's check accepts as the issuer's."""

from __future__ import annotations

from pathlib import Path

import pytest
from terminal_helpers import issuer_keys

from cardio import cli
from cardio.card import profiles, store
from cardio.errors import UsageError
from cardio.issuer import KeyName
from cardio.protocol import SocialSecurityCard
from cardio.readers.virtual import VirtualReader


def test_two_serials_are_two_cards_with_their_own_keys(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert cli.main(["card", "new", "--profile", "employee-new", "--serial", "1", str(a)]) == 0
    assert cli.main(["card", "new", "--profile", "employee-new", "--serial", "2", str(b)]) == 0
    one, two = store.read(a), store.read(b)
    assert one.card.identification_code[8:12] == bytes.fromhex("00000001")
    assert two.card.identification_code[8:12] == bytes.fromhex("00000002")
    assert (one.card.card_number, two.card.card_number) == ("A00000001", "A00000002")
    assert one.historical != two.historical  # TA-TD: the serial (part 2 §8.4)
    assert all(one.keys[k] != two.keys[k] for k in KeyName)
    assert one.holder == two.holder  # the same person
    for path, card in ((a, one), (b, two)):
        reader = VirtualReader(path)
        reader.connect()
        info = SocialSecurityCard(reader).read_info(issuer_keys())  # the check passes
        reader.close()
        assert info.card_number == card.card.card_number
        assert info.identification_code == card.card.identification_code


def test_without_a_serial_a_profile_is_always_the_same_card() -> None:
    assert profiles.make("employee-new").keys == profiles.make("employee-new").keys


@pytest.mark.parametrize("serial", [0, -1, 100_000_000])
def test_a_serial_out_of_range_is_a_usage_error(serial: int) -> None:
    with pytest.raises(UsageError, match="1 to 99999999"):
        profiles.make("employee-new", serial=serial)


def test_serial_is_for_user_cards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["card", "new", "--profile", "psam", "--serial", "3", str(tmp_path / "p.json")]
    assert cli.main(argv) == 2
    assert "--serial is for user cards" in capsys.readouterr().err
