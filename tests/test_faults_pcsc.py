"""Faults of a served card (cardio/faults.py) as a PC/SC client sees them: pcscd + vpcd +
pyscard, never a mock. After each, the card file is whole and has gained no try.

A mute card blocks the caller's SCardTransmit (pcscd has no timeout of its own), and one
libpcsclite context serialises calls: the mute client is a child process here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from card_helpers import FCI_SSSE, h
from card_helpers import SELECT_SSSE as SELECT_SSSE_HEX
from pcsc_stack import card_present, wait_for

from cardio.card import profiles, store

pytestmark = pytest.mark.pcsc

SELECT_SSSE = h(SELECT_SSSE_HEX)
SELECTED = h(FCI_SSSE + " 90 00")
VERIFY_WRONG = h("00 20 00 00 03 11 22 33")  # employee-new's PIN is 123456
STATUS_QUERY = h("00 20 00 00")
REMOVED = 0x80100069  # SCARD_W_REMOVED_CARD
NOT_TRANSACTED = 0x80100016  # SCARD_E_NOT_TRANSACTED: sent to a reader whose card just went
GONE = (REMOVED, NOT_TRANSACTED)


def new_card(tmp_path: Path, name: str = "card", serial: int | None = None) -> Path:
    path = tmp_path / f"{name}.json"
    profiles.new_card("employee-new", path, serial=serial)
    return path


class Client:
    """One SCardConnect on a reader, raw: the status codes as a program gets them."""

    def __init__(self, reader: str) -> None:
        from smartcard import scard

        self.scard = scard
        hr, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert hr == 0
        hr, self.handle, self.protocol = scard.SCardConnect(
            self.ctx, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0
        )
        assert hr == 0, scard.SCardGetErrorMessage(hr)

    def transmit(self, apdu: bytes) -> tuple[int, bytes]:
        hr, response = self.scard.SCardTransmit(self.handle, self.protocol, list(apdu))
        return hr & 0xFFFFFFFF, bytes(response)

    def close(self) -> None:
        # LEAVE: a handle left from before a removal must not reset the card now in
        # (pcscd then fails the reset, and hides the next card for a while)
        self.scard.SCardDisconnect(self.handle, self.scard.SCARD_LEAVE_CARD)
        self.scard.SCardReleaseContext(self.ctx)


@pytest.fixture
def serve_set(pcsc_stack):
    with pcsc_stack.serving_sets() as start:
        yield start


@pytest.fixture
def client_of():
    opened: list[Client] = []

    def connect(reader: str) -> Client:
        client = Client(reader)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_sw_answers_the_chosen_status_word_unexecuted(
    tmp_path, pcsc_stack, serve_set, client_of
) -> None:
    path = new_card(tmp_path)
    before = store.read(path)
    served = serve_set([path], "--faults", "sw=20:6983,count=2")
    client = client_of(served.readers[0])
    assert client.transmit(SELECT_SSSE) == (0, SELECTED)  # another INS: untouched
    assert client.transmit(VERIFY_WRONG) == (0, h("69 83"))
    assert client.transmit(VERIFY_WRONG) == (0, h("69 83"))
    assert client.transmit(STATUS_QUERY) == (0, h("63 C6"))  # spent: the card again
    assert store.read(path) == before  # no try spent: the VERIFYs never reached the card
    log = served.output()
    assert "fault sw=20:6983 on 00 20 00 00 03 ** ** **: answered 69 83" in log
    assert "11 22 33" not in log


def test_flip_corrupts_one_byte_of_the_answer(tmp_path, pcsc_stack, serve_set, client_of) -> None:
    path = new_card(tmp_path)
    served = serve_set([path], "--verbose")
    ok(served.ctl("fault", "0", "flip"))
    client = client_of(served.readers[0])
    hr, answer = client.transmit(SELECT_SSSE)
    log = served.output()
    assert answer.hex(" ").upper() in log  # the log shows the answer the reader got
    assert SELECTED.hex(" ").upper() not in log.split("fault flip")[0]
    assert hr == 0 and len(answer) == len(SELECTED)
    differ = [i for i in range(len(answer)) if answer[i] != SELECTED[i]]
    assert len(differ) == 1 and differ[0] < len(SELECTED) - 2  # a data byte, SW kept
    assert answer[differ[0]] == SELECTED[differ[0]] ^ 0xFF
    assert client.transmit(SELECT_SSSE) == (0, SELECTED)  # once only
    assert "fault flip on 00 A4 04 00" in served.output()


def test_delay_holds_the_answer(tmp_path, pcsc_stack, serve_set, client_of) -> None:
    path = new_card(tmp_path)
    served = serve_set([path])
    ok(served.ctl("fault", "0", "delay=600"))
    client = client_of(served.readers[0])
    start = time.monotonic()
    assert client.transmit(SELECT_SSSE) == (0, SELECTED)
    assert time.monotonic() - start >= 0.6
    start = time.monotonic()
    assert client.transmit(SELECT_SSSE) == (0, SELECTED)
    assert time.monotonic() - start < 0.5


def test_remove_after_pulls_the_card_after_n_apdus(
    tmp_path, pcsc_stack, serve_set, client_of
) -> None:
    path = new_card(tmp_path)
    before = store.read(path)
    served = serve_set([path], "--faults", "0:remove-after=2")
    reader = served.readers[0]
    client = client_of(reader)
    assert client.transmit(SELECT_SSSE) == (0, SELECTED)
    assert client.transmit(STATUS_QUERY) == (0, h("63 C6"))
    # vpcd, writing to a link we closed, reports an empty answer or no transaction
    assert client.transmit(STATUS_QUERY) in ((0, b""), (NOT_TRANSACTED, b""), (REMOVED, b""))
    pcsc_stack.wait_removed(reader)
    assert client.transmit(STATUS_QUERY) == (REMOVED, b"")
    assert "removed" in ok(served.ctl("status"))
    ok(served.ctl("insert"))
    wait_for(lambda: card_present(reader), "the card back in")
    assert store.read(path) == before


MUTE_CLIENT = """
import sys
from smartcard import scard
hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
hr, card, proto = scard.SCardConnect(ctx, sys.argv[1], scard.SCARD_SHARE_SHARED,
                                     scard.SCARD_PROTOCOL_T0)
print("connected", hr, flush=True)
for _ in range(2):
    hr, answer = scard.SCardTransmit(card, proto, [0x00, 0x20, 0x00, 0x00])
    print(hex(hr & 0xFFFFFFFF), bytes(answer).hex(), flush=True)
"""


def test_mute_leaves_the_client_waiting_until_the_card_is_pulled(
    tmp_path, pcsc_stack, serve_set
) -> None:
    path = new_card(tmp_path)
    before = store.read(path)
    served = serve_set([path], "--faults", "mute")
    reader = served.readers[0]
    child = subprocess.Popen(
        [sys.executable, "-c", MUTE_CLIENT, reader], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "connected 0"
        with pytest.raises(subprocess.TimeoutExpired):  # the client's own timeout is what shows
            child.wait(1.5)
        status = ok(served.ctl("status"))
        assert "inserted, no faults, an answer withheld" in status  # spent, and waiting
        ok(served.ctl("remove"))  # the only way out of a mute card, as with a real one
        out, _ = child.communicate(timeout=10)
    finally:
        child.kill()
    first, second = out.splitlines()
    assert first == "0x0 "  # vpcd's end of the wait: an empty answer
    assert second in (f"{REMOVED:#x} ", f"{NOT_TRANSACTED:#x} ")
    assert "fault mute on 00 20 00 00: no answer" in served.output()
    assert store.read(path) == before


@pytest.mark.parametrize("came_back", ["old", "new"])
def test_tear_keeps_the_old_or_the_new_state_never_a_mix(
    tmp_path, pcsc_stack, serve_set, client_of, came_back
) -> None:
    path = new_card(tmp_path)
    before = store.read(path)
    served = serve_set([path])
    ok(served.ctl("fault", "0", f"tear={came_back}"))
    reader = served.readers[0]
    client = client_of(reader)
    hr, answer = client.transmit(VERIFY_WRONG)  # its first write: one try less, durably
    assert (hr, answer) == (0, b"")  # power lost: no answer, as the vpcd link closes
    pcsc_stack.wait_removed(reader)  # pcscd sees it go, then come back (power is back)
    assert client.transmit(STATUS_QUERY)[0] in GONE
    wait_for(lambda: f"came back in the {came_back} state" in served.output(), "the tear's log")
    after = store.read(path)
    expected_tries = before.tries_left - (came_back == "new")
    assert after.tries_left == expected_tries  # never a try gained, never a half file
    assert after.card == before.card and after.holder == before.holder
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    status = ok(served.ctl("status"))
    assert f"last tear: came back in the {came_back} state (tries left {expected_tries})" in status
    wait_for(lambda: card_present(reader), "the card back after the tear")
    assert client.transmit(STATUS_QUERY) == (REMOVED, b"")  # an old handle stays dead
    again = client_of(reader)
    sw = 0x63C0 | expected_tries
    assert again.transmit(STATUS_QUERY) == (0, sw.to_bytes(2, "big"))
    assert "** ** **" in served.output() and "11 22 33" not in served.output()


def test_tear_by_chance_is_still_old_or_new(tmp_path, pcsc_stack, serve_set, client_of) -> None:
    path = new_card(tmp_path)
    before = store.read(path)
    served = serve_set([path], "--faults", "tear,p=1")
    client = client_of(served.readers[0])
    client.transmit(VERIFY_WRONG)
    wait_for(lambda: "came back in the" in served.output(), "the tear's log")
    log = served.output()
    assert "torn" not in log
    tries = store.read(path).tries_left
    state = "old" if "came back in the old state" in log else "new"
    assert tries == before.tries_left - (state == "new")
    pcsc_stack.wait_removed(served.readers[0])
    wait_for(lambda: card_present(served.readers[0]), "the card back after the tear")
    assert client.transmit(STATUS_QUERY) == (REMOVED, b"")


def test_scriptor_shows_the_chosen_sw_and_the_flipped_byte(tmp_path, pcsc_stack, serve_set) -> None:
    from scriptor_helpers import run_scriptor

    path = new_card(tmp_path)
    before = store.read(path)
    served = serve_set([path], "--faults", "sw=20:6983", "--faults", "0:flip")
    _, responses = run_scriptor(
        served.readers[0], ["00 20 00 00 03 11 22 33", SELECT_SSSE_HEX], tmp_path
    )
    # both fire on the VERIFY: 69 83 instead of its answer, then one byte of that flipped
    assert responses[0] in (h("96 83"), h("69 7C"))
    assert responses[1] == SELECTED  # both spent
    assert store.read(path) == before


# scriptor (pcsc-tools) as the terminal software under test: one script, each fault
SCRIPT = [SELECT_SSSE_HEX, "00 20 00 00 03 11 22 33", "00 20 00 00"]
SCRIPTOR_GONE = ("Transaction failed", "Card was removed")  # its words for a card gone


@dataclass
class Seen:
    """What scriptor showed: its exit status, the answers it printed, its last words."""

    returncode: int
    answers: list[bytes]
    stderr: str
    seconds: float


def scriptor_under(served, fault: str, tmp_path: Path) -> Seen:
    """Run SCRIPT through scriptor with `fault` armed; a run still waiting after 2 s
    (a mute card) is ended as a holder would: the card pulled out."""
    from scriptor_helpers import parse_scriptor, tool

    ok(served.ctl("fault", "0", fault))
    script = tmp_path / "script.txt"
    script.write_text("".join(line + "\n" for line in SCRIPT))
    start = time.monotonic()
    child = subprocess.Popen(
        [tool("scriptor"), "-r", served.readers[0], str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        assert "an answer withheld" in ok(served.ctl("status"))
        ok(served.ctl("remove"))
        out, err = child.communicate(timeout=10)
    finally:
        child.kill()
    _, answers = parse_scriptor(out)
    return Seen(child.returncode, answers, err, time.monotonic() - start)


@pytest.mark.parametrize("fault", ["delay=600", "remove-after=1", "tear=old", "tear=new", "mute"])
def test_scriptor_sees_each_fault_as_a_real_reader_shows_it(
    tmp_path, pcsc_stack, serve_set, fault
) -> None:
    path = new_card(tmp_path)
    before = store.read(path)
    served = serve_set([path])
    seen = scriptor_under(served, fault, tmp_path)
    after = store.read(path)
    log = served.output()
    if fault == "delay=600":  # slow, and otherwise the card: the wrong PIN costs its try
        assert seen.returncode == 0, seen.stderr
        assert seen.answers == [SELECTED, h("63 C5"), h("63 C5")]
        assert seen.seconds >= 0.6
        assert after.tries_left == before.tries_left - 1
        assert "answer held 600 ms" in log
        return
    assert seen.returncode != 0  # the script stops where the card went
    assert any(words in seen.stderr for words in SCRIPTOR_GONE), seen.stderr
    if fault == "remove-after=1":  # pulled after the SELECT: the VERIFY never reached it
        # vpcd, writing to a link we closed, gives an empty answer or fails the transmit
        assert seen.answers in ([SELECTED], [SELECTED, b""])
        assert after == before
    elif fault == "mute":  # no answer at all, until the card was pulled
        assert seen.answers == [b""] and seen.seconds >= 2
        assert after == before
    else:  # power lost in the VERIFY's write: no answer, and the old or the new state
        assert seen.answers == [SELECTED, b""]
        assert after.tries_left == before.tries_left - (fault == "tear=new")
        assert after.card == before.card and after.holder == before.holder
        assert f"came back in the {fault[5:]} state" in log
    assert "11 22 33" not in log
