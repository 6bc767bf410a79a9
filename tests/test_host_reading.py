"""The host side reads a card as real terminals do (issue 11; docs/card.md §8).

`cardio/protocol.py` selects the SSSE by name, each EF with P1=02 and reads the tagged
records by identifier with the exact Le (part 3 §5.3.1, part 5 §6.10-6.11; the reader
API §1.1.3), the name as 09 ‖ 4E (API §10.2), the scheme from DF04's record 81 (V2.0
§8.5.1.1). `cardio read-bas` prints what iReadCardBas prints (API §1.1.2), and failures
carry the reader API's numbers (API appendix A).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from terminal_helpers import issuer_keys

from cardio import api_codes
from cardio.apdu import to_hex
from cardio.card import profiles, store
from cardio.cli import main
from cardio.errors import UsageError
from cardio.keysource import KeySource
from cardio.model import MEDICAL_AID, SSSE_NAME, PinState
from cardio.pin import PinFormatError
from cardio.protocol import (
    CardCommandError,
    CardInfo,
    CounterfeitCardError,
    NotASocialSecurityCard,
    PinOutcome,
    SocialSecurityCard,
)
from cardio.readbas import historical_bytes
from cardio.readers.errors import (
    CardNotPoweredError,
    CardRemovedError,
    NoCardError,
    NoResponseError,
    NoServiceError,
    ProtocolError,
)
from cardio.readers.pcsc import (
    W_UNPOWERED_CARD,
    W_UNRESPONSIVE_CARD,
    error_for,
)
from cardio.readers.virtual import VirtualReader
from cardio.trace import api_line
from terminal.equipment import Equipment
from terminal.flow.commands import ReadCard
from terminal.flow.pharmacy import PharmacyFlow, Purpose
from terminal.flow.view import Stage
from terminal.rules import Settings
from terminal.worker import deliver, execute

AFTER_UPGRADE = Settings(dt.date(2020, 4, 13), dt.date(2026, 11, 27))
VERSIONS = ("1.00", "2.00", "3.00")
SELECT_SSSE = "> 00 A4 04 00 0F " + to_hex(SSSE_NAME) + " 00"
SELECT_MEDICAL = "> 00 A4 04 00 06 " + to_hex(MEDICAL_AID) + " 00"
EXTERNAL_AUTH = "> 00 82 00 "
MASKED_16 = " …"  # commands() drops the random halves of the authentications
INTERNAL_AUTH = "> 00 88 00 00 10" + MASKED_16


def make(tmp_path: Path, profile: str, version: str | None = None, real_only: bool = False):
    path = tmp_path / f"{profile}-{version}-{real_only}.json"
    profiles.new_card(profile, path, spec_version=version, real_only=real_only)
    return path


def read(path: Path, keys: KeySource | None = None) -> tuple[CardInfo, list[str]]:
    """The terminal's read, by default with the fixture issuer's keys (as its PSAM)."""
    lines: list[str] = []
    reader = VirtualReader(path, trace=lines.append)
    try:
        reader.connect()
        info = SocialSecurityCard(reader).read_info(keys or issuer_keys())
    finally:
        reader.close()
    return info, lines


def commands(lines: list[str]) -> list[str]:
    """The commands sent, without the transport's GET RESPONSEs and 6Cxx resends."""
    sent = [ln for ln in lines if ln.startswith("> ") and not ln.startswith("> 00 C0")]
    return [
        ln[: len("> 00 82 00 07 10")] + MASKED_16 if ln[:7] in ("> 00 82", "> 00 88") else ln
        for ln in sent
    ]


# --- the APDU sequence (part 7 §5, reader API §1.1.3; EXT-SI's order) ----------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_the_host_sends_the_standard_forms(tmp_path: Path, version: str):
    info, lines = read(make(tmp_path, "employee-enabled", version))
    name_extension = [] if version == "1.00" else ["> 00 B2 4E 00 16"]
    # 3.00: RKSSSE before the holder's data (reader API §1.1.3 (6), §10.2)
    rkssse = ["> 00 84 00 00 08", EXTERNAL_AUTH + "07 10" + MASKED_16] if version == "3.00" else []
    assert commands(lines) == [
        SELECT_SSSE,
        "> 00 A4 02 00 02 EF 05",
        "> 00 B2 01 00 12",
        "> 00 B2 02 00 03",
        "> 00 B2 03 00 06",
        "> 00 B2 07 00 0B",
        INTERNAL_AUTH,  # part 7 §5.4: the card's authenticity, before anything else
        *rkssse,
        "> 00 A4 02 00 02 EF 06",
        "> 00 B2 08 00 14",
        "> 00 B2 09 00 20",
        *name_extension,
        "> 00 B2 0D 00 06",
        SELECT_MEDICAL,
        "> 00 84 00 00 08",
        EXTERNAL_AUTH + "84 10" + MASKED_16,  # RK1DF04: DF04/EF05 is "PIN or RK1DF04"
        "> 00 A4 02 00 02 EF 05",
        "> 00 B2 81 00 0A",
        SELECT_SSSE,  # back to the SSSE, where the PIN is verified (part 7 §5)
        "> 80 CA 00 C1 00",
    ]
    # every read was answered at once: the Le was right, no 6Cxx
    # (a 6Cxx answer is those two bytes alone: data, such as INTERNAL AUTHENTICATE's
    # random answer, may start with 6C)
    assert not any(ln.split()[:2] == ["<", "6C"] and len(ln.split()) == 3 for ln in lines)
    assert info.spec_version == version


@pytest.mark.parametrize("profile", profiles.names())
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("real_only", [False, True], ids=["full", "real-only"])
def test_every_profile_version_and_strictness_reads_the_same_facts(
    tmp_path: Path, profile: str, version: str, real_only: bool
):
    path = make(tmp_path, profile, version, real_only)
    state = store.read(path)
    if profile == profiles.COUNTERFEIT:  # its keys are another issuer's (part 7 §5.4)
        with pytest.raises(CounterfeitCardError):
            read(path)
        return
    info, lines = read(path)
    assert info.card_number == state.card.card_number
    assert info.category == state.card.category
    assert info.ssn == state.holder.ssn
    assert info.name == state.holder.name
    assert info.birth_date == state.holder.birth_date
    assert info.scheme == state.scheme
    assert info.identification_code == state.card.identification_code
    status = info.status
    if real_only:  # GET DATA C1 is ours: 6D00, then the empty VERIFY (rule 8)
        assert "< 6D 00" in lines
        assert lines[-2:][0] == "> 00 20 00 00"
        # the empty VERIFY answers 9000 only for a card that holds no PIN (part 5 §6.14.5)
        expected = PinState.DISABLED if state.pin_state is PinState.DISABLED else None
        assert status.pin_state is expected and status.try_limit is None
    else:
        assert status.pin_state == state.pin_state
        assert status.tries_left == state.tries_left


# What the terminal decides for a payment on a card that does not answer GET DATA C1:
# rule 8 (the PIN is taken as ENABLED, the tries the empty VERIFY gave are shown), the
# refusals where the empty VERIFY says blocked (6983) or not activated (6985).
REAL_ONLY_PAYMENT = {
    "counterfeit": Stage.RESULT,
    "disabled": Stage.CONFIRM_AMOUNT,  # the empty VERIFY's 9000: no PIN (S16)
    "employee-enabled": Stage.PIN,
    "employee-new": Stage.PIN,
    "legacy-medical": Stage.PIN,
    "locked": Stage.RESULT,
    "not-activated": Stage.RESULT,
    "pension-new": Stage.PIN,
    "resident-new": Stage.PIN,
    "t0-employee-new": Stage.PIN,
}


@pytest.mark.parametrize("profile", profiles.names())
def test_rule_8_decides_for_every_real_only_profile(tmp_path: Path, profile: str):
    path = make(tmp_path, profile, real_only=True)
    lines: list[str] = []
    reader = VirtualReader(path, trace=lines.append)
    flow = PharmacyFlow(Purpose.PAY, AFTER_UPGRADE)
    command = flow.entered("1250")
    assert command == ReadCard()
    flow.reading()
    result, present = execute(Equipment(reader, keys=issuer_keys()), command)
    deliver(flow, result, present)
    reader.close()
    assert flow.view.stage is REAL_ONLY_PAYMENT[profile]
    sent = [ln for ln in lines if ln.startswith("> 00 20")]
    keys = [ln.key for ln in flow.view.lines]
    if profile == profiles.COUNTERFEIT:  # refused before anything else is asked
        assert sent == [] and keys == ["counterfeit"], keys
        assert commands(lines)[-1] == INTERNAL_AUTH  # and nothing after it
        return
    assert sent == ["> 00 20 00 00"]  # never a guessed PIN
    if profile == "locked":
        assert "locked" in keys
    elif profile == "not-activated":
        assert "not_activated" in keys
    elif profile == "disabled":
        assert "no_pin" in keys and "enter_pin" not in keys
    else:
        assert "enter_pin" in keys and "forced_change" not in keys


def test_the_name_extension_completes_a_long_name(tmp_path: Path):
    state = profiles.make("employee-new", spec_version="2.00")
    long_name = "欧阳" + "字" * 17  # 38 GBK bytes: 30 in record 09, 8 in 4E
    path = tmp_path / "long.json"
    store.create(path, state.with_(holder=replace(state.holder, name=long_name)))
    info, lines = read(path)
    assert info.name == long_name
    assert "> 00 B2 4E 00 16" in lines


def test_a_2_00_card_without_4e_is_read_without_it(tmp_path: Path):
    """Some real 2.00 cards lack 4E (EXT-SI: failure tolerated): 6A83 is no error."""
    path = make(tmp_path, "employee-new", "2.00")

    class No4E(VirtualReader):
        def _exchange(self, apdu: bytes) -> bytes:
            if apdu[:3] == bytes((0x00, 0xB2, 0x4E)):
                return bytes((0x6A, 0x83))
            return super()._exchange(apdu)

    reader = No4E(path)
    reader.connect()
    card = SocialSecurityCard(reader)
    assert card.read_info().name == store.read(path).holder.name
    basics = card.read_basics()
    reader.close()
    assert basics.name == store.read(path).holder.name


def test_6cxx_is_followed_when_a_record_is_another_length(tmp_path: Path):
    """A card whose record is not the notice's length: 6Cxx, resent with that Le."""
    path = make(tmp_path, "employee-new", "2.00")
    lines: list[str] = []

    class Shorter(VirtualReader):
        def _exchange(self, apdu: bytes) -> bytes:
            if apdu == bytes.fromhex("00B2070000")[:4] + b"\x0b":
                return bytes((0x6C, 0x0A))
            if apdu == bytes.fromhex("00B207000A"):
                return bytes.fromhex("0708") + b"A1234567" + b"\x90\x00"
            return super()._exchange(apdu)

    reader = Shorter(path, trace=lines.append)
    reader.connect()
    info = SocialSecurityCard(reader).read_info()
    reader.close()
    assert info.card_number == "A1234567"
    assert lines[lines.index("> 00 B2 07 00 0B") + 1 : lines.index("> 00 B2 07 00 0B") + 3] == [
        "< 6C 0A",
        "> 00 B2 07 00 0A",
    ]


def test_not_a_social_security_card(tmp_path: Path):
    path = make(tmp_path, "employee-new")

    class Other(VirtualReader):
        def _exchange(self, apdu: bytes) -> bytes:
            if apdu[:4] == bytes((0x00, 0xA4, 0x04, 0x00)) and SSSE_NAME in apdu:
                return bytes((0x6A, 0x82))
            return super()._exchange(apdu)

    reader = Other(path)
    reader.connect()
    with pytest.raises(NotASocialSecurityCard) as caught:
        SocialSecurityCard(reader).read_info()
    reader.close()
    assert api_codes.of(caught.value) == -1
    assert api_line(caught.value) == "# api -1 wrong card type"


# --- replay: what real terminal software sends (digest §8.2-8.3) -------------------------


def replay(path: Path, script: list[str]) -> list[tuple[str, str]]:
    reader = VirtualReader(path)
    reader.connect()
    try:
        return [
            (apdu, reader.transmit_raw(bytes.fromhex(apdu.replace(" ", ""))).hex().upper())
            for apdu in script
        ]
    finally:
        reader.close()


def record(tag: int, value: bytes) -> str:
    return (bytes((tag, len(value))) + value).hex().upper() + "9000"


@pytest.mark.parametrize("version", VERSIONS)
def test_replay_ext_si_read_basic_information(tmp_path: Path, version: str):
    """iReadCardBas's reads in EXT-SI's order: SSSE by name without Le, EF05 with P1=02,
    01/03/07 by identifier with exact Le, EF05 again for 05/06, EF06 for 08/09/4E."""
    path = make(tmp_path, "employee-new", version)
    state = store.read(path)
    card, holder = state.card, state.holder
    ssse = "00A404000F" + SSSE_NAME.hex()
    answers = dict(
        replay(
            path,
            [
                ssse,
                "00A4020002EF05",
                "00B2010012",
                "00B2030006",
                "00B207000B",
                "00B2050006",
                "00B2060006",
                "00A4020002EF06",
                "00B2080014",
                "00B2090020",
                "00B24E0016",
            ],
        )
    )
    assert answers[ssse][-4:] in ("9000",) or answers[ssse].startswith("61")
    assert answers["00A4020002EF05"] == "9000"
    assert answers["00B2010012"] == record(1, card.identification_code)
    assert answers["00B2030006"] == record(3, version.encode())
    assert answers["00B207000B"] == record(7, card.card_number.encode())
    assert answers["00B2050006"].startswith("0504") and answers["00B2050006"].endswith("9000")
    assert answers["00B2060006"].startswith("0604") and answers["00B2060006"].endswith("9000")
    assert answers["00A4020002EF06"] == "9000"
    if version == "3.00":  # the holder's data only after RKSSSE (reader API §10.2)
        assert {answers[a] for a in ("00B2080014", "00B2090020", "00B24E0016")} == {"6982"}
        return
    assert answers["00B2080014"] == record(8, holder.ssn.encode())
    name = holder.name.encode("gbk")
    assert answers["00B2090020"] == record(9, name[:30].ljust(30, b"\0"))
    if version == "1.00":
        assert answers["00B24E0016"] == "6A83"
    else:
        assert answers["00B24E0016"].startswith("4E14") and answers["00B24E0016"].endswith("9000")


@pytest.mark.parametrize("version", VERSIONS)
def test_replay_other_addressing_forms_give_the_same_records(tmp_path: Path, version: str):
    """By number in the current EF, by SFI without a select (number and identifier), and
    EFs selected with P1=00, as other real terminals send them (digest §8.3)."""
    path = make(tmp_path, "employee-new", version)
    state = store.read(path)
    number = record(7, state.card.card_number.encode())
    ssn = record(8, state.holder.ssn.encode())
    ssse = "00A404000F" + SSSE_NAME.hex()
    answers = replay(
        path,
        [
            ssse,
            "00B2072C0B",  # EF05 (SFI 5) record number 7
            "00B207280B",  # EF05 (SFI 5) identifier 07
            "00B2013414",  # EF06 (SFI 6) record number 1
            "00A4000002EF05",
            "00B207040B",  # current EF, record number 7
            "00A4000002EF06",
            "00B2010414",
        ],
    )
    got = [sw for _, sw in answers[1:]]
    if version == "3.00":  # EF06 only after RKSSSE (reader API §10.2)
        ssn = "6982"
    assert got == [number, number, ssn, "9000", number, "9000", ssn]


def test_replay_wrong_and_zero_le_get_6cxx(tmp_path: Path):
    path = make(tmp_path, "employee-new", "2.00")
    ssse = "00A404000F" + SSSE_NAME.hex()
    answers = replay(
        path, [ssse, "00A4020002EF05", "00B2070009", "00B2070000", "00B2010010", "00B20700"]
    )
    assert [sw for _, sw in answers[2:]] == ["6C0B", "6C0B", "6C12", "6C0B"]


# --- read-bas (reader API §1.1.2) -----------------------------------------------------------


def test_historical_bytes_of_atrs():
    real = bytes.fromhex("3B6D00000081 4A444686 6051 99 000001AC".replace(" ", ""))
    assert historical_bytes(real).hex().upper() == "00814A444686605199000001AC"
    api = bytes.fromhex("3B6D0000008148424286535119000A671A")  # API §8.20
    assert historical_bytes(api).hex().upper() == "008148424286535119000A671A"
    # TA1 TB1 TC1 TD1 (T=0), TD1 with TA2? no: T0=F2 -> TA1..TD1, TD1=00 ends
    assert historical_bytes(bytes.fromhex("3BF211000000" + "0102")) == b"\x01\x02"
    assert historical_bytes(b"\x3b") == b""


def test_read_bas_line_field_by_field(tmp_path: Path, capsys):
    path = make(tmp_path, "employee-new", "2.00")
    state = store.read(path)
    assert main(["read-bas", "--card", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.endswith("|\n") and out.count("\n") == 1
    fields = out[:-1].split("|")
    assert len(fields) == 12 and fields[-1] == ""  # 11 fields, each followed by |
    code = state.card.identification_code.hex().upper()
    reader = VirtualReader(path)
    atr = reader.connect()
    reader.close()
    assert fields[:11] == [
        code[:6],
        state.holder.ssn,
        state.card.card_number[:9],
        code,
        state.holder.name,
        historical_bytes(atr).hex().upper(),
        "2.00",
        state.card.issue_date.strftime("%Y%m%d"),
        state.card.expiry_date.strftime("%Y%m%d"),
        "000000000000",
        "",
    ]


# fixtures/cards/employee-new.json, written out field by field (not computed by our code)
FIXTURE_LINE = (
    "310000|"  # region code: the identification code's first 6 digits
    "310104198503122174|"  # SSN (EF06 08)
    "A93230742|"  # card number (EF05 07)
    "310000D156000005372A9FA8AB97D317|"  # identification code (EF05 01)
    "张伟|"  # name (EF06 09; 4E is empty)
    "000053425000003100372A9FA8|"  # the ATR's 13 historical bytes
    "2.00|"  # spec version (EF05 03)
    "20190101|"  # issue date (EF05 05)
    "20290101|"  # expiry date (EF05 06)
    "000000000000|"  # terminal number: no PSAM
    "|"  # device number: none
)


def test_read_bas_of_the_fixture_card(tmp_path: Path, capsys):
    """The fixture employee-new card, exactly. A copy is read, so that no lock file is
    left beside the fixture."""
    path = tmp_path / "employee-new.json"
    path.write_bytes(profiles._path("employee-new").read_bytes())
    assert main(["read-bas", "--card", str(path)]) == 0
    assert capsys.readouterr().out == FIXTURE_LINE + "\n"


def test_read_bas_json(tmp_path: Path, capsys):
    path = make(tmp_path, "legacy-medical", "1.00")
    state = store.read(path)
    assert main(["read-bas", "--card", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert list(got) == [
        "ok",
        "api_code",
        "region_code",
        "ssn",
        "card_number",
        "identification_code",
        "name",
        "historical_bytes",
        "spec_version",
        "issue_date",
        "expiry_date",
        "terminal_number",
        "device_number",
    ]
    assert got["ok"] is True and got["api_code"] == 0
    assert got["ssn"] == state.holder.ssn and got["name"] == state.holder.name
    assert got["spec_version"] == "1.00"
    assert got["terminal_number"] == "000000000000" and got["device_number"] == ""


def test_read_bas_fails_with_the_api_number(tmp_path: Path, capsys, monkeypatch):
    path = make(tmp_path, "employee-new")

    def no_card(self):
        raise NoCardError()

    monkeypatch.setattr(VirtualReader, "connect", no_card)
    assert main(["read-bas", "--card", str(path), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "ok": False,
        "api_code": -2,
        "error": "no card in the reader; insert the card",
    }
    assert captured.err == "cardio: no card in the reader; insert the card (reader API -2)\n"


@pytest.mark.parametrize("given", ["folder", "damaged", "missing"])
def test_read_bas_of_an_unusable_card_file_has_no_api_number(tmp_path: Path, capsys, given):
    """A card file is ours, not the reader API's: no number, whatever is wrong with it."""
    path = {"folder": tmp_path, "damaged": tmp_path / "x.json", "missing": tmp_path / "no"}[given]
    if given == "damaged":
        path.write_text("{")
    assert main(["read-bas", "--card", str(path), "--json"]) == (1 if given == "missing" else 2)
    captured = capsys.readouterr()
    assert json.loads(captured.out)["api_code"] is None
    (line,) = captured.err.splitlines()
    assert line.startswith(f"cardio: {path}")
    assert "reader API" not in line


def test_read_bas_of_a_card_missing_a_record(tmp_path: Path, capsys, monkeypatch):
    path = make(tmp_path, "employee-new")
    real = VirtualReader._exchange

    def no_ssn(self, apdu: bytes) -> bytes:
        if apdu[:3] == bytes((0x00, 0xB2, 0x08)):
            return bytes((0x6A, 0x83))
        return real(self, apdu)

    monkeypatch.setattr(VirtualReader, "_exchange", no_ssn)
    assert main(["read-bas", "--card", str(path), "--json"]) == 1
    got = json.loads(capsys.readouterr().out)
    assert got["api_code"] == -27267  # -(6A83), record not found


def test_read_bas_never_logs_the_holder(tmp_path: Path):
    """The SSN and name go to standard output only, never to standard error."""
    path = make(tmp_path, "employee-new")
    state = store.read(path)
    done = subprocess.run(
        [sys.executable, "-m", "cardio.cli", "read-bas", "--card", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert state.holder.ssn in done.stdout and state.holder.name in done.stdout
    assert done.stderr == ""


# --- reader API numbers (appendix A) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NoCardError(), -2),
        (CardRemovedError(), -2),
        (CardNotPoweredError(), -3),
        (NoResponseError(), -4),
        (NoServiceError(), -11),
        (ProtocolError(), None),
        (NotASocialSecurityCard(), -1),
        (CardCommandError(0x6A82, "x"), -27266),
        (CardCommandError(0x6A83, "x"), -27267),
        (CardCommandError(0x6700, "x"), -26368),
        (CardCommandError(0x6D00, "x"), None),  # not in table A.1: unknown
        (PinFormatError("x"), -33),
        (UsageError("x"), -14),
        (error_for(W_UNPOWERED_CARD), -3),
        (error_for(W_UNRESPONSIVE_CARD), -4),
    ],
)
def test_errors_carry_the_reader_api_number(error, code):
    assert api_codes.of(error) == code


def test_pin_answers_carry_minus_51_and_minus_52():
    assert PinOutcome(0x9000).api_code is None
    assert PinOutcome(0x63C2).api_code == -51
    assert api_line(PinOutcome(0x63C2)) == "# api -51 wrong PIN, 2 tries left"
    assert api_line(PinOutcome(0x63C1)) == "# api -51 wrong PIN, 1 try left"
    assert PinOutcome(0x63C0).api_code == -52
    assert PinOutcome(0x6983).api_code == -52
    assert api_line(PinOutcome(0x6983)) == "# api -52 PIN blocked"
    assert api_line(PinOutcome(0x9000)) is None


def test_wrong_and_locked_pin_through_the_virtual_reader(tmp_path: Path):
    path = make(tmp_path, "employee-enabled")
    reader = VirtualReader(path)
    reader.connect()
    card = SocialSecurityCard(reader)
    wrong = card.verify("000000")
    reader.close()
    assert (
        wrong.api_code == -51
        and api_line(wrong) == f"# api -51 wrong PIN, {wrong.tries_left} tries left"
    )
    locked = make(tmp_path, "locked")
    reader = VirtualReader(locked)
    reader.connect()
    outcome = SocialSecurityCard(reader).verify("000000")
    reader.close()
    assert outcome.api_code == -52


def test_no_card_in_the_virtual_slot(tmp_path: Path):
    reader = VirtualReader(make(tmp_path, "employee-new"), inserted=False)
    with pytest.raises(NoCardError) as caught:
        reader.connect()
    assert api_line(caught.value) == "# api -2 no card"


def test_the_terminal_trace_says_the_api_number(tmp_path: Path):
    """The terminal's worker result, as the app writes it after the APDU lines."""
    path = make(tmp_path, "employee-new")
    lines: list[str] = []
    reader = VirtualReader(path, trace=lines.append)
    reader.remove()
    result, _ = execute(Equipment(reader), ReadCard())
    assert api_line(result) == "# api -2 no card"
    raise_no_card = CardCommandError(0x6A82, "the card has no such file")
    assert api_line(raise_no_card) == "# api -27266 file not found"


def test_a_card_that_refuses_p1_02_is_asked_with_p1_00(tmp_path: Path):
    path = make(tmp_path, "employee-new", "2.00")
    lines: list[str] = []

    class OldSelect(VirtualReader):
        def _exchange(self, apdu: bytes) -> bytes:
            if apdu[:3] == bytes((0x00, 0xA4, 0x02)):
                return bytes((0x6A, 0x86))
            return super()._exchange(apdu)

    reader = OldSelect(path, trace=lines.append)
    reader.connect()
    info = SocialSecurityCard(reader).read_info()
    reader.close()
    assert info.ssn == store.read(path).holder.ssn
    assert "> 00 A4 00 00 02 EF 06" in lines


def test_a_card_without_the_medical_application_has_no_scheme(tmp_path: Path):
    path = make(tmp_path, "employee-new")

    class NoMedical(VirtualReader):
        def _exchange(self, apdu: bytes) -> bytes:
            if MEDICAL_AID in apdu:
                return bytes((0x6A, 0x82))
            return super()._exchange(apdu)

    reader = NoMedical(path)
    reader.connect()
    info = SocialSecurityCard(reader).read_info()
    reader.close()
    assert info.scheme is None and info.card_number == store.read(path).card.card_number


def test_a_card_not_powered_is_minus_3(tmp_path: Path):
    reader = VirtualReader(make(tmp_path, "employee-new"))
    with pytest.raises(CardNotPoweredError) as caught:
        reader.transmit(bytes.fromhex("00A4040000"))
    reader.close()
    assert api_line(caught.value) == "# api -3 card not powered"
