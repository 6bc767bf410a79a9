"""Record and replay end to end through the real stack: `cardio serve` a card into pcscd,
`cardio record --control` its slot while a pharmacy payment's card work runs through
pyscard (the terminal's read with the issuer's keys, then VERIFY), then `cardio replay`
the script: against the same card, no difference; against a copy with one changed
record, exactly that record. The PIN never reaches the script."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from pcsc_stack import wait_for

from cardio.card import profiles, store

PIN = "802613"  # employee-enabled's (fixtures/README.md)
CLI = [sys.executable, "-m", "cardio.cli"]


@pytest.fixture
def serve_set(pcsc_stack):
    with pcsc_stack.serving_sets() as start:
        yield start


def pay_through_pcscd(reader_name: str) -> None:
    """A payment's card work as the terminal does it (terminal/worker.py)."""
    from cardio.issuer import fixture_issuer
    from cardio.keysource import MasterKeySource
    from cardio.protocol import SocialSecurityCard
    from cardio.readers.pcsc import PcscReader

    reader = PcscReader(reader_name)
    try:
        reader.connect()
        card = SocialSecurityCard(reader)
        info = card.read_info(MasterKeySource(fixture_issuer()))
        assert info.card_number
        assert card.verify(PIN).ok
    finally:
        reader.close()


def replay(script: Path, card: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "replay", str(script), "--card", str(card), "--pin", PIN],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.pcsc
def test_a_payment_recorded_while_served_replays_and_finds_a_changed_record(
    tmp_path: Path, pcsc_stack, serve_set
) -> None:
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card)
    served = serve_set([card], "-v")
    script = tmp_path / "payment.apdu"
    recorder = subprocess.Popen(
        [*CLI, "record", "--control", str(served.control), "--slot", "0", "--out", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(script.exists, "the script file")  # the watch is on
        time.sleep(0.3)
        pay_through_pcscd(served.readers[0])
        wait_for(lambda: "< 90 00" in served.output().rsplit("00 20 00 00", 1)[-1], "VERIFY")
        time.sleep(0.5)  # its trace line is on its way to the recorder too
    finally:
        recorder.send_signal(signal.SIGINT)
        out, err = recorder.communicate(timeout=20)
    assert recorder.returncode == 0, out + err
    text = script.read_text("utf-8")
    assert PIN not in text and "80 26 13" not in text
    assert "#pin 00 20 00 00" in text and "\n00 B2 07 " in text

    same = replay(script, card)
    assert same.returncode == 0, same.stdout + same.stderr
    assert PIN not in same.stdout + same.stderr

    state = store.read(card)
    copy = tmp_path / "changed.json"
    store.create(copy, state.with_(card=replace(state.card, card_number="A14933183")))
    changed = replay(script, copy)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    heads = [line for line in changed.stdout.splitlines() if line.startswith("#")]
    assert len(heads) == 1 and re.fullmatch(r"#\d+ \(line \d+\) 00 B2 07 00 0B", heads[0])
