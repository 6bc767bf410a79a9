"""The smallest proof that the real stack carries our card: listed, with its ATR, answering."""

from __future__ import annotations

import subprocess
import sys

from cardio.card import profiles
from cardio.readers import pcsc


def test_served_card_is_listed_with_its_atr_and_answers(tmp_path, served):
    path = tmp_path / "card.json"
    profiles.new_card("employee-new", path)
    card = served(path)
    infos = {i.name: i for i in pcsc.list_readers()}
    atr = bytes.fromhex("3B6D0000 0000534250 0000 3100 372A9FA8")  # part 2 §8.4
    assert infos[card.reader].card_present and infos[card.reader].atr == atr
    reader = pcsc.PcscReader(card.reader)
    try:
        assert reader.connect() == atr
        assert reader.transmit(bytes.fromhex("80CA00C100")) == bytes.fromhex("C104010006069000")
    finally:
        reader.close()
    out = subprocess.run(
        [sys.executable, "-m", "cardio.cli", "readers"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{card.reader}  [card  3B 6D 00 00" in out
