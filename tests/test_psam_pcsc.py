"""A user card and a PSAM in the two vpcd slots of one pcscd (docs/psam.md), never a mock.

The terminal's set-up of part 8 §5.1.1.5: one connector for the user card, one for the
security module. The PSAM key source over the PC/SC reader gives the master keys' bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pcsc_stack import slot_name

from cardio.card import profiles, store
from cardio.card.card import VirtualCard
from cardio.issuer import fixture_issuer
from cardio.keysource import CardIdentity, MasterKeySource, PsamKeySource
from cardio.model import Algorithm
from cardio.psam import state as psam_state
from cardio.psam import store as psam_store
from cardio.psam.card import VirtualPsam
from cardio.readers import pcsc
from cardio.readers.pcsc import PcscReader

pytestmark = pytest.mark.pcsc
TERMINAL = "440300000007"


def test_a_card_and_a_psam_in_two_slots(tmp_path: Path, served) -> None:
    card_path = tmp_path / "card.json"
    profiles.new_card("employee-new", card_path)
    psam_path = tmp_path / "psam.json"
    psam_store.create(psam_path, psam_state.make(fixture_issuer(), TERMINAL))
    card = served(card_path, 0)
    psam = served(psam_path, 1)
    assert (card.reader, psam.reader) == (slot_name(0), slot_name(1))

    from smartcard.System import readers as pyscard_readers

    names = [str(r) for r in pyscard_readers()]
    assert slot_name(0) in names and slot_name(1) in names
    by_name = {i.name: i for i in pcsc.list_readers()}
    card_state = store.read(card_path)
    assert by_name[slot_name(0)].atr == VirtualCard(card_state).atr
    assert by_name[slot_name(1)].atr == VirtualPsam(psam_store.read(psam_path)).atr

    reader = PcscReader(slot_name(1))
    try:
        reader.connect()
        source = PsamKeySource(reader)
        assert source.terminal_number() == TERMINAL
        identity = CardIdentity(
            Algorithm(card_state.algorithm),
            card_state.card.identification_code,
            card_state.historical,
        )
        r1, r2 = bytes(range(1, 9)), bytes(range(0x21, 0x29))
        expected = MasterKeySource(fixture_issuer(), terminal_number=TERMINAL).internal_auth(
            identity, r1, r2
        )
        assert source.internal_auth(identity, r1, r2) == expected
    finally:
        reader.close()
