"""The terminal checks each card with its PSAM before any PIN (issue 12; part 7 §5.4;
docs/terminal-rules.md rule 1a; docs/card.md §8).

A counterfeit card (the `counterfeit` profile: keys of another issuer) is refused at
INTERNAL AUTHENTICATE and gets nothing more; a genuine one pays through a virtual PSAM
as through the issuer's keys; a 3.00 card's holder data is opened with RKSSSE; the
receipt's terminal id is the PSAM's terminal number (`pos-terminal`'s default).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from terminal_helpers import (
    ENABLED_PIN,
    enter,
    host_of,
    issuer_keys,
    make_app,
    make_card,
    screen_text,
    start_payment,
)

from cardio.card import profiles, store
from cardio.errors import UsageError
from cardio.issuer import fixture_issuer
from cardio.keysource import PsamKeySource
from cardio.protocol import SocialSecurityCard
from cardio.psam import state as psam_state
from cardio.psam import store as psam_store
from cardio.psam_source import default_psam, open_psam
from cardio.readers.virtual import VirtualReader
from terminal import cli
from terminal.strings import ZH

SIZE = (80, 24)
PSAM_NUMBER = "310000004321"


def make_psam(tmp_path: Path, number: str = PSAM_NUMBER) -> Path:
    path = tmp_path / "psam.json"
    psam_store.create(path, psam_state.make(fixture_issuer(), number))
    return path


def sent(trace: Path) -> list[str]:
    return [ln for ln in trace.read_text("utf-8").splitlines() if ln.startswith("> ")]


def test_counterfeit_card_is_refused_before_any_pin(tmp_path: Path) -> None:
    card = make_card(tmp_path, "counterfeit")
    before = card.read_bytes()
    trace = tmp_path / "apdu.log"
    app = make_app(card, trace_file=trace)

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await start_payment(pilot)
            text = screen_text(app)
            assert ZH["counterfeit"] in text, text
            assert ZH["enter_pin"] not in text

    asyncio.run(run())
    commands = sent(trace)
    at = next(i for i, ln in enumerate(commands) if ln.startswith("> 00 88"))
    # nothing after the failed check: no holder data, no PIN, no key of ours
    assert commands[at + 1 :] == [], commands[at:]
    assert not any(ln.startswith(("> 00 20", "> 00 82", "> 80 5E")) for ln in commands)
    assert card.read_bytes() == before
    balance = host_of(app).holder(profiles.load("counterfeit").holder.ssn)
    assert balance is not None and balance.balance_fen == 30000  # nothing debited


@pytest.mark.parametrize("version", ["2.00", "3.00"])
def test_a_genuine_card_pays_through_a_virtual_psam(tmp_path: Path, version: str) -> None:
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card, spec_version=version)
    reader = VirtualReader(make_psam(tmp_path))
    reader.connect()
    keys = PsamKeySource(reader)
    trace = tmp_path / "apdu.log"
    app = make_app(card, keys=keys, trace_file=trace)

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await start_payment(pilot)
            assert ZH["enter_pin"] in screen_text(app)
            await enter(pilot, ENABLED_PIN)
            assert ZH["authorised"] in screen_text(app)

    asyncio.run(run())
    reader.close()
    commands = sent(trace)
    assert any(ln.startswith("> 00 88 00 00 10") for ln in commands)
    rkssse = [ln for ln in commands if ln.startswith("> 00 82 00 07")]
    assert len(rkssse) == (1 if version == "3.00" else 0)  # the holder's data on 3.00
    assert store.read(card).tries_left == 6


def test_pos_terminal_uses_the_default_psam_and_its_terminal_number(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-new")
    app = cli.build(cli.parse_args(["--card", str(card), "--no-host"]))
    app.reader.close()
    keys = app.options.keys
    assert isinstance(keys, PsamKeySource)
    assert app.options.terminal_id == psam_state.DEFAULT_TERMINAL_NUMBER
    assert psam_store.is_psam_file(default_psam())
    # a second terminal may use the same PSAM file: it is read, never written or locked
    second = open_psam(None)
    assert second.terminal_number() == psam_state.DEFAULT_TERMINAL_NUMBER


def test_pos_terminal_psam_file_and_no_psam(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-new")
    psam = make_psam(tmp_path)
    app = cli.build(cli.parse_args(["--card", str(card), "--no-host", "--psam", str(psam)]))
    assert app.options.terminal_id == PSAM_NUMBER
    app.reader.close()  # the card file: one slot at a time
    app = cli.build(cli.parse_args(["--card", str(card), "--no-host", "--no-psam"]))
    assert app.options.keys is None and app.options.terminal_id == cli.NO_PSAM_ID
    app.reader.close()
    given = cli.parse_args(["--card", str(card), "--no-host", "--terminal-id", "DESK-2"])
    app = cli.build(given)
    assert app.options.terminal_id == "DESK-2"
    app.reader.close()


def test_a_user_card_file_is_not_a_psam(tmp_path: Path) -> None:
    card = make_card(tmp_path, "employee-new")
    with pytest.raises(UsageError, match="is not a PSAM file"):
        open_psam(str(card))


def test_psam_and_no_psam_together_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["--psam", "x.json", "--no-psam"])
    assert exc.value.code == 2


def test_the_keypad_outlet_resets_the_pin_of_a_3_00_card(tmp_path: Path) -> None:
    """At the flow's read the holder's data of a 3.00 card is closed (no key yet): the
    reset still asks the new PIN, and the outlet, reading under its key, resets it."""
    from cardio.outlet import Operation, OutletLog
    from terminal.equipment import Equipment, OutletSetup
    from terminal.flow.outlet import OutletFlow
    from terminal.flow.view import Stage
    from terminal.worker import deliver, execute

    card = tmp_path / "v3.json"
    profiles.new_card("locked", card, spec_version="3.00")
    ssn = store.read(card).holder.ssn
    reader = VirtualReader(card)
    setup = OutletSetup(issuer_keys(), "t", tmp_path / "outlet.log")
    equipment = Equipment(reader, outlet=setup)
    flow = OutletFlow(Operation.RESET_PIN)
    command = flow.entered(ssn)
    result, present = execute(equipment, command)
    assert deliver(flow, result, present) is None
    assert flow.view.stage is Stage.NEW_PIN
    assert flow.entered("384950") is None
    command = flow.entered("384950")
    result, present = execute(equipment, command)
    deliver(flow, result, present)
    reader.close()
    assert flow.view.success is True, flow.view
    assert store.read(card).pin.matches("384950")
    assert OutletLog(tmp_path / "outlet.log").path.exists()


def test_a_psam_taken_out_is_the_psams_fault_and_is_used_again_once_back(tmp_path: Path) -> None:
    """A PSAM reader that fails says the PSAM (psam_failed, the reader API's -2201), not
    the holder's card; put back, the PSAM is powered and used again."""
    from cardio.keysource import KeySourceError

    card = make_card(tmp_path, "employee-enabled")
    reader = VirtualReader(make_psam(tmp_path), shared_psam=True)
    reader.connect()
    keys = PsamKeySource(reader)
    keys.start()
    reader.remove()

    def read() -> None:
        holder = VirtualReader(card)
        holder.connect()
        try:
            SocialSecurityCard(holder).read_info(keys)
        finally:
            holder.close()

    with pytest.raises(KeySourceError, match="PSAM cannot be used") as failed:
        read()
    assert failed.value.api_code == -2201
    reader.insert()
    read()  # connected and started again
    assert keys.terminal_number() == PSAM_NUMBER


def test_a_card_that_cannot_be_checked_is_unreadable_not_a_terminal_failure(tmp_path: Path) -> None:
    """No identification code to disperse from: UncheckableCardError, shown as an
    unreadable card (rule 1), not as the terminal's own failure."""
    from cardio.protocol import UncheckableCardError
    from terminal.flow.pharmacy import PharmacyFlow, Purpose
    from terminal.rules import Settings
    from terminal.worker import deliver

    reader = VirtualReader(make_card(tmp_path, "employee-new"))
    reader.connect()
    with pytest.raises(UncheckableCardError, match="cannot be checked"):
        SocialSecurityCard(reader).identity(None)
    reader.close()
    flow = PharmacyFlow(Purpose.PAY, Settings(upgrade_date=dt.date(2020, 4, 13)))
    flow.entered("1250")
    flow.reading()
    deliver(flow, UncheckableCardError())
    assert [ln.key for ln in flow.view.lines][:1] == ["card_unreadable"]
