"""The host side reads a T=0 card through the real PC/SC stack (pcscd + vpcd + `cardio
serve`), as real terminals do: 61xx and GET RESPONSE after the SELECTs of a DF, reads
answered directly for the exact Le (6Cxx otherwise), and the facts come out the same as
through the in-process reader (docs/card.md §6, §8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from terminal_helpers import issuer_keys

from cardio.card import profiles, store
from cardio.protocol import SocialSecurityCard
from cardio.readbas import historical_bytes
from cardio.readers.pcsc import PcscReader


@pytest.mark.parametrize("version", ["1.00", "2.00"])
def test_a_t0_card_is_read_through_pcscd(tmp_path: Path, served, version: str):
    path = tmp_path / "t0.json"
    profiles.new_card("t0-employee-new", path, spec_version=version, real_only=True)
    state = store.read(path)
    card = served(path)
    lines: list[str] = []
    reader = PcscReader(card.reader, trace=lines.append)
    try:
        reader.connect()
        info = SocialSecurityCard(reader).read_info(issuer_keys())
    finally:
        reader.close()
    assert (info.card_number, info.ssn, info.name, info.scheme) == (
        state.card.card_number,
        state.holder.ssn,
        state.holder.name,
        state.scheme,
    )
    assert info.spec_version == version
    assert "> 00 A4 02 00 02 EF 05" in lines and "> 00 B2 08 00 14" in lines
    assert any(ln.startswith("< 61") for ln in lines)  # T=0: the data came by GET RESPONSE
    assert any(ln.startswith("> 00 C0 00 00") for ln in lines)
    assert info.status.pin_state is None  # real-only: GET DATA 6D00, then rule 8
    assert info.status.tries_left == state.tries_left


def test_read_bas_through_a_reader(tmp_path: Path, served):
    path = tmp_path / "t0.json"
    profiles.new_card("t0-employee-new", path)
    state = store.read(path)
    card = served(path)
    done = subprocess.run(
        [sys.executable, "-m", "cardio.cli", "read-bas", "--reader", card.reader],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    fields = done.stdout.rstrip("\n").split("|")
    code = state.card.identification_code.hex().upper()
    assert fields == [
        code[:6],
        state.holder.ssn,
        state.card.card_number,
        code,
        state.holder.name,
        state.historical.hex().upper(),
        state.card.spec_version,
        state.card.issue_date.strftime("%Y%m%d"),
        state.card.expiry_date.strftime("%Y%m%d"),
        "000000000000",
        "",
        "",
    ]
    assert historical_bytes(bytes.fromhex("3B6D0000") + state.historical) == state.historical
