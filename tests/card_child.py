"""The card in a child process for the kill -9 tests (tests/test_antitearing.py,
tests/test_antitearing_keys.py): it opens the card file, answers its APDUs over and
over, and writes each answer's status word on a line, until it is killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NO_CHALLENGE = "-"  # the card's own random challenges

CHILD = r"""
import os, sys
from pathlib import Path
from cardio.card.card import VirtualCard
from cardio.card.store import FileStore

fixed = sys.argv[2]
apdus = [bytes.fromhex(a) for a in sys.argv[3:]]
fs = FileStore(Path(sys.argv[1]))
if fixed == "-":
    card = VirtualCard(fs.open(), fs)
else:  # every GET CHALLENGE answers these bytes: the test computes its cryptograms
    challenge = bytes.fromhex(fixed)
    card = VirtualCard(fs.open(), fs, random=lambda n: challenge[:n])
card.power_on()
os.write(1, b"ready\n")
i = 0
while True:
    response = card.execute(apdus[i % len(apdus)])
    os.write(1, response[-2:].hex().encode() + b"\n")
    i += 1
"""


def start(
    path: Path, apdus: list[bytes], challenge: bytes | None = None
) -> subprocess.Popen[bytes]:
    """The child card on `path`, answering `apdus` in a loop."""
    fixed = challenge.hex() if challenge is not None else NO_CHALLENGE
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), fixed, *(a.hex() for a in apdus)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
