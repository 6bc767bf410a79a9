"""Third-party PC/SC clients (pcsc-tools' scriptor, OpenSC's opensc-tool) get from the
served card exactly what `cardio send --card` gets in process for the same APDUs.

Each tool talks to a freshly served card; `cardio send --card` runs on a second card
file made from the same profile, so both start in the same state (docs/card.md §3-§4).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from card_helpers import FCI_SSSE
from scriptor_helpers import parse_scriptor, run, run_scriptor, tool

from cardio.card import profiles, store
from cardio.readers import pcsc

SSSE = "00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF"  # "sx1.sh.社会保障" GBK
APDUS = [
    SSSE,  # SELECT by name
    "00 B2 01 7C 1B",  # the directory (SFI 0F, named by the FCI's 88): DF04's entry
    "00 A4 02 00 02 EF 05",  # SELECT EF05 with P1 02 (part 5 table 35): no FCI
    "00 B2 07 00 0B",  # EF05 identifier 07, exact Le: card number
    "00 B2 02 2C 03",  # EF05 (SFI 05) record number 2: card category
    "00 B2 08 30 14",  # EF06 (SFI 06) identifier 08: social security number, 20 bytes
    "00 B2 09 30 20",  # EF06 identifier 09: name, 32 bytes: wraps in both tools' output
    "00 B2 01 4C 00",  # no EF with SFI 09: 6A82
    "00 A4 00 00 02 EF 06",  # SELECT EF06 with P1 00, as many terminals send it
    "00 B2 4E 00 16",  # identifier 4E of the current EF (EF06): the name extension
    "00 B2 01 2D 40",  # SFI 05 from record 1 to the last (mode 101): 64 bytes
    "00 B0 87 00 00",  # READ BINARY of EF07 (SFI 07): under RKSSSE, 6982
    "80 CA 00 C1 00",  # GET DATA, PIN status
    "00 20 00 00 03 65 43 21",  # VERIFY, wrong PIN: 63C5
    "00 20 00 00",  # status query: 63C5
]


def cardio_send_card(path: Path, apdus: list[str]) -> list[bytes]:
    """The raw responses `cardio send --card` prints, one per APDU."""
    result = run(sys.executable, "-m", "cardio.cli", "send", "--card", str(path), *apdus)
    assert result.returncode == 0, result.stderr
    responses = [
        bytes.fromhex(line[2:]) for line in result.stdout.splitlines() if line.startswith("< ")
    ]
    assert len(responses) == len(apdus), result.stdout
    return responses


RECEIVED = re.compile(r"^Received \(SW1=0x([0-9A-F]{2}), SW2=0x([0-9A-F]{2})\)(:?)$")
HEX_COLUMNS = 16 * 3  # sc_hex_dump: "XX " per byte, then the ASCII column


def hex_dump_line(line: str) -> bytes:
    """The bytes of one sc_hex_dump line: up to 16 "XX " cells, then (after padding to
    48 columns, only when the dump has several lines) one ASCII character per byte.
    The ASCII column may itself look like hex, so the split is checked against it."""
    for n in range(16, 0, -1):
        cells = line[: 3 * n]
        if not re.fullmatch(r"(?:[0-9A-F]{2} )+", cells):
            continue
        data = bytes.fromhex(cells)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
        if line[3 * n :] in (text, " " * (HEX_COLUMNS - 3 * n) + text):
            return data
    raise AssertionError(f"not an opensc hex dump line: {line!r}")


def parse_opensc(stdout: str) -> tuple[list[str], list[bytes]]:
    """('Sending:' APDUs, responses) of `opensc-tool -s ...` output: data from the hex
    dump lines after 'Received (...):', then SW1 SW2."""
    sent: list[str] = []
    responses: list[bytes] = []
    data: bytearray | None = None
    sw = b""

    def finish() -> None:
        if data is not None:
            responses.append(bytes(data) + sw)

    for line in stdout.splitlines():
        if line.startswith("Sending: "):
            finish()
            data = None
            sent.append(line[len("Sending: ") :].strip())
            continue
        match = RECEIVED.match(line)
        if match:
            assert data is None, f"two answers to one command:\n{stdout}"
            data, sw = bytearray(), bytes.fromhex(match[1] + match[2])
            continue
        if data is not None and line.strip():
            data += hex_dump_line(line)
    finish()
    return sent, responses


def test_parsers_read_the_documented_formats():
    # The exact shapes of both tools' output (see the PC/SC research report).
    scriptor_out = (
        "Using T=0 protocol\n"
        "00 84 00 00 20\n"
        "> 00 84 00 00 20\n"
        "< 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 \n"
        "11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E 1F 20 \n"
        "90 00 : Normal processing.\n"
        "00EE000000\n"
        "> 00 EE 00 00 00 \n"
        "< 6D 00 : Instruction code not supported or invalid.\n"
    )
    assert parse_scriptor(scriptor_out) == (
        ["00 84 00 00 20", "00 EE 00 00 00"],
        [bytes(range(1, 33)) + b"\x90\x00", b"\x6d\x00"],
    )
    opensc_out = (
        "Sending: 00 EE 00 00 00 \n"
        "Received (SW1=0x6D, SW2=0x00)\n"
        "Sending: 00 84 00 00 20 \n"
        "Received (SW1=0x90, SW2=0x00):\n"
        "01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 ................\n"
        "11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E 1F 20 ............... \n"
        "41 42 20                                        AB \n"
        "Sending: 80 CA 00 C1 00 \n"
        "Received (SW1=0x90, SW2=0x00):\n"
        "41 42 20 43 AB C\n"
    )
    assert parse_opensc(opensc_out) == (
        ["00 EE 00 00 00", "00 84 00 00 20", "80 CA 00 C1 00"],
        [b"\x6d\x00", bytes(range(1, 33)) + b"AB \x90\x00", b"AB C\x90\x00"],
    )


@pytest.fixture
def card_pair(tmp_path, served):
    """(served card, in-process card file) made from the same profile."""
    served_path, local_path = tmp_path / "served.json", tmp_path / "local.json"
    profiles.new_card("employee-new", served_path)
    profiles.new_card("employee-new", local_path)
    return served(served_path), local_path


def check_expected(responses: list[bytes]) -> None:
    """What the spec says these APDUs answer on a new employee card (a sanity anchor)."""
    sws = [r[-2:].hex().upper() for r in responses]
    assert sws == ["9000"] * 7 + ["6A82"] + ["9000"] * 3 + ["6982", "9000", "63C5", "63C5"]
    # SELECT without Le: the FCI all the same (part 5 §6.11.1; docs/card.md §3)
    assert responses[0] == bytes.fromhex(FCI_SSSE + "9000")
    # the directory's entry for DF04: 61 { 4F AID, 50 label } (part 3 §6.3 table 3)
    assert responses[1][:10] == bytes.fromhex("61194F06D15600000503"), responses[1].hex()
    assert responses[2] == bytes.fromhex("9000")  # an EF: no FCI
    assert responses[4] == bytes.fromhex("0201319000")  # category '1'
    assert len(responses[5]) == 2 + 18 + 2 and responses[5][:2] == bytes.fromhex("0812")
    assert len(responses[6]) == 2 + 30 + 2 and responses[6][:2] == bytes.fromhex("091E")
    assert responses[9] == bytes.fromhex("4E14") + bytes(20) + bytes.fromhex("9000")  # short name
    assert len(responses[10]) == 64 + 2 and responses[10][:2] == bytes.fromhex("0110")
    assert responses[12] == bytes.fromhex("C104010006069000")  # ACTIVE, INITIAL, 6 of 6


def test_scriptor_gets_what_cardio_send_card_gets(tmp_path, card_pair):
    card, local_path = card_pair
    stdout, responses = run_scriptor(card.reader, APDUS, tmp_path)
    assert len(stdout.splitlines()) > 3 * len(APDUS)  # the name record wrapped

    expected = cardio_send_card(local_path, APDUS)
    check_expected(expected)
    assert responses == expected, stdout


def test_opensc_tool_gets_what_cardio_send_card_gets(card_pair):
    opensc_tool = tool("opensc-tool")
    card, local_path = card_pair
    index = [i.name for i in pcsc.list_readers()].index(card.reader)  # opensc's numbering
    argv = [opensc_tool, "-r", str(index), "-c", "default"]
    for apdu in APDUS:
        argv += ["-s", apdu.replace(" ", "")]

    result = run(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
    sent, responses = parse_opensc(result.stdout)
    # opensc-tool may send the 4-byte status query as is or as case 2 with Le 00 (the
    # card treats 00 20 00 00 00 as the status query too): compare what it did send.
    assert sent[:-1] == APDUS[:-1], result.stdout
    assert sent[-1] in ("00 20 00 00", "00 20 00 00 00"), result.stdout

    expected = cardio_send_card(local_path, sent)
    check_expected(expected)
    assert responses == expected, result.stdout
    assert cardio_send_card(local_path, ["00 20 00 00 00"]) == [bytes.fromhex("63C5")]


# Forms whose answers depend on the card's kind: a T=0-style card announces the FCI with
# 61xx; a real-only card answers our GET DATA 6D00; the pointer moves by identifier.
POINTER_APDUS = [
    SSSE,  # T=0-style: 61 1E
    "00 C0 00 00 1E",  # GET RESPONSE: the FCI (T=0-style), 6D00 otherwise
    "00 C0 00 00 1E",  # nothing waits: 6F00 on a T=0-style card (part 5 §6.6.4)
    "00 A4 02 0C 02 EF 06",
    "00 B2 00 02 14",  # next occurrence of any identifier, no current record: the first
    "00 B2 00 02 20",  # the next one: the name
    "00 B2 00 03 14",  # previous: the SSN again
    "00 B2 00 04 14",  # the current record by number
    "00 B2 0D 30 06",  # first occurrence of 0D via SFI 06
    "00 B2 01 05 20",  # from record 1 to the last, wrong Le: 6Cxx
    "80 CA 00 C1 06",  # real-only: 6D00
    "84 B2 01 04 12",  # a known instruction under another class: 6E00
]


@pytest.mark.parametrize("kind", ["t0-employee-new", "real-only"])
def test_scriptor_sees_what_cardio_send_card_sees_on_t0_and_real_only_cards(tmp_path, served, kind):
    """The same forms through pcscd + vpcd as in process, on the other kinds of card."""
    paths = tmp_path / "served.json", tmp_path / "local.json"
    for path in paths:
        if kind == "real-only":
            store.create(path, profiles.make("employee-new", real_only=True))
        else:
            profiles.new_card(kind, path)
    stdout, responses = run_scriptor(served(paths[0]).reader, POINTER_APDUS, tmp_path)
    expected = cardio_send_card(paths[1], POINTER_APDUS)
    assert responses == expected, stdout
    sws = [r[-2:].hex().upper() for r in expected]
    if kind == "real-only":
        assert sws[:3] == ["9000", "6D00", "6D00"] and sws[10] == "6D00", sws
    else:
        assert sws[:3] == ["611E", "9000", "6F00"] and sws[10] == "9000", sws
    assert expected[4][:2] == bytes.fromhex("0812") and expected[6] == expected[4]
    assert expected[5][:2] == bytes.fromhex("091E") and expected[7] == expected[4]
    assert expected[8][:2] == bytes.fromhex("0D04") and sws[9] == "6C5B" and sws[11] == "6E00"
