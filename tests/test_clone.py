"""`cardio card clone` (cardio/clone.py): a card's free data into a test card file, read
with nothing but SELECT / READ RECORD / READ BINARY / GET DATA / GET RESPONSE."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pcsc_stack import slot_name

from cardio import clone
from cardio.card import profiles, store
from cardio.card.state import PinState
from cardio.issuer import card_keys, fixture_issuer
from cardio.model import Algorithm
from cardio.pin import INITIAL_PIN
from cardio.protocol import SocialSecurityCard
from cardio.readers.virtual import VirtualReader

NEW_PIN = "592046"
PIN = "802613"  # employee-enabled's (fixtures/README.md)


def cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardio.clone", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def source(tmp_path: Path, profile: str = "employee-enabled", **options) -> Path:
    path = tmp_path / f"{profile}.json"
    profiles.new_card(profile, path, **options)
    return path


def heads(trace: list[str]) -> set[tuple[str, str]]:
    return {tuple(line[2:].split(" ")[:2]) for line in trace if line.startswith("> ")}  # type: ignore[misc]


ALLOWED_HEX = {(f"{cla:02X}", f"{ins:02X}") for cla, ins in clone.ALLOWED}


def test_a_2_00_card_is_copied_with_its_ef05_ef06_and_atr_and_the_test_keys(
    tmp_path: Path,
) -> None:
    path = source(tmp_path)
    original = store.read(path)
    trace: list[str] = []
    reader = VirtualReader(path, trace=trace.append)
    try:
        reader.connect()
        cloned = clone.clone(reader)
    finally:
        reader.close()
    state = cloned.state
    assert state.card == original.card
    assert state.holder == original.holder
    assert state.historical == original.historical
    assert state.algorithm is Algorithm.SM4
    assert state.keys == card_keys(
        fixture_issuer(), original.card.identification_code, original.historical
    )
    assert state.pin_state is PinState.INITIAL and state.pin.matches(INITIAL_PIN)
    assert heads(trace) <= ALLOWED_HEX, heads(trace)
    assert store.read(path) == original  # nothing written to the card read
    text = "\n".join(cloned.lines)
    assert original.holder.ssn not in text and original.holder.name not in text
    assert original.card.card_number not in text
    assert "DF04 medical insurance not copied" in text


def test_a_3_00_card_keeps_its_holder_data_unread_and_says_so(tmp_path: Path) -> None:
    path = source(tmp_path, spec_version="3.00")
    original = store.read(path)
    trace: list[str] = []
    reader = VirtualReader(path, trace=trace.append)
    try:
        reader.connect()
        cloned = clone.clone(reader)
    finally:
        reader.close()
    assert cloned.state.card == original.card
    assert cloned.state.holder == profiles.make(clone.DEFAULT_BASE).holder
    assert not any("EF 06" in line for line in trace)  # EF06 not even selected
    assert any("not copied: a 3.00 card" in line for line in cloned.lines)


def test_the_cloned_file_works_as_a_card_with_the_chosen_pin(tmp_path: Path) -> None:
    path = source(tmp_path, algorithm=Algorithm.DES)
    out = tmp_path / "clone.json"
    done = cli("--card", str(path), str(out), "--pin", "-", stdin=NEW_PIN + "\n")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert NEW_PIN not in out.read_text("utf-8") and NEW_PIN not in done.stdout
    state = store.read(out)
    assert state.algorithm is Algorithm.DES
    assert state.pin_state is PinState.ENABLED and state.pin.matches(NEW_PIN)
    reader = VirtualReader(out)
    try:
        reader.connect()
        card = SocialSecurityCard(reader)
        info = card.read_info(scheme=False)
        assert info.ssn == store.read(path).holder.ssn
        assert card.verify(NEW_PIN).ok
    finally:
        reader.close()


def test_the_allow_list_stops_anything_that_could_cost_a_try(tmp_path: Path) -> None:
    path = source(tmp_path)
    before = store.read(path)
    inner = VirtualReader(path)
    try:
        guarded = clone.ReadOnlyReader(inner)
        guarded.connect()
        for command in (
            "00 20 00 00 03 80 26 13",  # VERIFY
            "00 20 00 00",  # even the empty one
            "00 82 00 84 10" + " 00" * 16,  # EXTERNAL AUTHENTICATE
            "80 5E 01 00 07 80 26 13 FF 59 20 46",  # CHANGE PIN
            "84 24 00 01 14" + " 00" * 20,  # PIN reload
            "00 DC 07 04 0B" + " 00" * 11,  # UPDATE RECORD
            "00 84 00 00 08",  # GET CHALLENGE
            "00 A4",  # too short to say what it is
        ):
            with pytest.raises(clone.ForbiddenCommandError, match="cloning only reads"):
                guarded.transmit(bytes.fromhex(command))
        assert guarded.transmit(bytes.fromhex("00 A4 00 00 02 3F 00"))[-2:] == b"\x90\x00"
    finally:
        inner.close()
    assert store.read(path) == before


def test_a_reading_code_that_tried_a_verify_is_stopped_before_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = source(tmp_path)
    before = store.read(path)

    def careless(self: SocialSecurityCard) -> None:
        self.verify("000000")

    monkeypatch.setattr(SocialSecurityCard, "select_application", careless)
    reader = VirtualReader(path)
    try:
        reader.connect()
        with pytest.raises(clone.ForbiddenCommandError):
            clone.clone(reader)
    finally:
        reader.close()
    assert store.read(path).tries_left == before.tries_left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--card", "{src}", "{out}", "--pin", "12345"], "a PIN is exactly 6 digits"),
        (["--card", "{src}", "{out}", "--profile", "nobody"], "no profile named 'nobody'"),
        (["--card", "{src}", "{out}", "--profile", "counterfeit"], "test issuer's keys"),
        (["--card", "{src}", ""], "the card path is empty"),
        (["{out}"], "one of the arguments --reader --card is required"),
        (["--card", "{out}", "{out}"], "no such card file"),
        (["--card", "{src}", "{src}"], "already exists; add --force"),
    ],
)
def test_bad_options_are_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    src = source(tmp_path)
    values = {"src": src, "out": tmp_path / "out.json"}
    done = cli(*(a.format(**values) for a in argv))
    assert done.returncode in (1, 2), done.stderr
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "12345" not in done.stderr
    if "exists" not in message and "no such" not in message:
        assert done.returncode == 2
    assert not (tmp_path / "out.json").exists()


def test_a_served_card_is_cloned_through_pcscd(tmp_path: Path, served) -> None:
    path = source(tmp_path)
    before = store.read(path)
    served(path, 0)
    out = tmp_path / "clone.json"
    done = cli("--reader", slot_name(0), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert before.holder.ssn not in done.stdout and before.holder.name not in done.stdout
    assert "EF06 08 SSN" in done.stdout and "EF05 07 card number" in done.stdout
    state = store.read(out)
    assert (state.card, state.holder, state.historical) == (
        before.card,
        before.holder,
        before.historical,
    )
    after = store.read(path)
    assert after.tries_left == before.tries_left and after.key_tries == before.key_tries


def test_a_payment_recorded_on_the_card_replays_on_its_clone_without_difference(
    tmp_path: Path,
) -> None:
    import datetime as dt

    from flow_driver import Worker

    from cardio import record
    from terminal.flow.pharmacy import Purpose
    from terminal.rules import Settings

    path = source(tmp_path)
    lines: list[str] = []
    reader = VirtualReader(path, trace=lines.append)
    try:
        worker = Worker(reader)  # a payment of 12.50 with the PIN, the terminal's flow
        day = dt.date(2025, 4, 13)
        flow = worker.start(Purpose.PAY, Settings(upgrade_date=day, today=day))
        worker.enter(flow, PIN)
        assert flow.view.success is True
    finally:
        reader.close()
    trace = tmp_path / "trace.log"
    trace.write_text("\n".join(lines) + "\n", "utf-8")
    script = tmp_path / "pay.apdu"
    assert record.main(["--from-trace", str(trace), "--out", str(script)]) == 0
    out = tmp_path / "clone.json"
    assert cli("--card", str(path), str(out), "--pin", PIN).returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "cardio.replay", str(script), "--card", str(out), "--pin", PIN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith("no differences")


def test_a_psam_is_not_cloned_and_no_file_is_made(tmp_path: Path) -> None:
    from cardio.psam import state as psam_state
    from cardio.psam import store as psam_store

    psam = tmp_path / "psam.json"
    psam_store.create(psam, psam_state.make(fixture_issuer(), "440300000007"))
    copy = tmp_path / "copy.json"
    done = cli("--card", str(psam), str(copy))
    assert done.returncode == 1, done.stdout
    assert "gave none of EF05's records" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
    assert not copy.exists()


def test_an_existing_file_is_refused_before_the_card_is_read(tmp_path: Path) -> None:
    copy = tmp_path / "copy.json"
    copy.write_text("mine", "utf-8")
    done = cli("--card", str(tmp_path / "no-such-card.json"), str(copy))
    assert done.returncode != 0
    assert "already exists" in done.stderr and "no-such-card" not in done.stderr
    assert copy.read_text("utf-8") == "mine"
