"""terminal.flow.pharmacy.PharmacyFlow, the pure transaction state machine (docs/terminal-rules.md).

First with CardInfo / PinStatus / PinOutcome built by hand (no card), then end to end
with a VirtualReader and real card files from the profiles, driven by a small worker
that runs the flow's commands as the app's worker does (no Textual).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from flow_driver import PHONES, Worker

from cardio.card import profiles, store
from cardio.card.state import LifeCycle, PinState
from cardio.identity import query_password
from cardio.protocol import CardInfo, PinOutcome, PinStatus
from cardio.readers.virtual import VirtualReader
from host.api import format_fen
from terminal.flow.commands import Account, ChangePin, Command, ReadCard, Verify
from terminal.flow.pharmacy import PharmacyFlow, Purpose
from terminal.flow.view import Line, Stage, Tone, View
from terminal.rules import Settings

UPGRADE = dt.date(2025, 4, 13)
AFTER = Settings(upgrade_date=UPGRADE, today=UPGRADE + dt.timedelta(days=1))
BEFORE = Settings(upgrade_date=UPGRADE, today=UPGRADE - dt.timedelta(days=1))

SSN = "310104198503122174"  # employee-new's holder: born 1985-03-12
BORN = dt.date(1985, 3, 12)
PHONE = "13812345678"
ENABLED_PIN = "802613"  # fixtures/README.md
NEW_PIN = "592046"  # breaks no S15 rule for any test holder
OTHER_PIN = "470358"

OK = 0x9000


def status(
    state: PinState | None = PinState.INITIAL,
    life: LifeCycle | None = LifeCycle.ACTIVE,
    tries: int | None = 6,
    limit: int | None = 6,
) -> PinStatus:
    return PinStatus(life_cycle=life, pin_state=state, tries_left=tries, try_limit=limit)


def card_info(
    state: PinState | None = PinState.INITIAL,
    *,
    category: str | None = "1",
    scheme: str | None = "310",
    life: LifeCycle | None = LifeCycle.ACTIVE,
    tries: int | None = 6,
    limit: int | None = 6,
    ssn: str | None = SSN,
    born: dt.date | None = BORN,
) -> CardInfo:
    return CardInfo(
        card_number="A93230742",
        category=category,
        ssn=ssn,
        name="张伟",
        birth_date=born,
        scheme=scheme,
        status=status(state, life, tries, limit),
    )


def keys(view: View) -> list[str]:
    return [ln.key for ln in view.lines]


def params(view: View, key: str) -> dict[str, object]:
    for ln in view.lines:
        if ln.key == key:
            return dict(ln.params)
    raise AssertionError(f"no line {key!r} in {keys(view)}")


def phones(ssn: str) -> str | None:
    return {SSN: PHONE}.get(ssn)


def paying(info: CardInfo, settings: Settings = AFTER, amount: str = "1250", **kw) -> PharmacyFlow:
    """A payment flow that has read `info`."""
    flow = PharmacyFlow(Purpose.PAY, settings, **kw)
    assert flow.start() is None
    assert flow.view.stage is Stage.AMOUNT
    assert flow.entered(amount) == ReadCard()
    assert flow.view.stage is Stage.INSERT
    flow.reading()
    assert flow.view.stage is Stage.READING
    assert flow.card_read(info) is None
    return flow


def changing(info: CardInfo, **kw) -> PharmacyFlow:
    flow = PharmacyFlow(Purpose.CHANGE, AFTER, **kw)
    assert flow.start() == ReadCard()
    assert flow.view.stage is Stage.INSERT
    flow.reading()
    assert flow.card_read(info) is None
    return flow


def assert_pins_forgotten(flow: PharmacyFlow) -> None:
    assert flow._current is None
    assert flow._new is None


# --- amount ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (5, "0.05"),
        (10, "0.10"),
        (100, "1.00"),
        (1250, "12.50"),
        (99999999, "999999.99"),
    ],
)
def test_format_fen(fen: int, text: str) -> None:
    assert format_fen(fen) == text


def test_amount_1250_is_12_50_and_asks_for_the_card() -> None:
    flow = PharmacyFlow(Purpose.PAY, AFTER)
    assert flow.view.stage is Stage.AMOUNT
    assert "bad_amount" not in keys(flow.view)
    assert flow.entered("1250") == ReadCard()
    assert flow.amount_fen == 1250
    assert flow.view.stage is Stage.INSERT
    assert keys(flow.view)[0] == "amount"
    assert params(flow.view, "amount") == {"amount": "12.50"}


def test_amount_largest_eight_digits() -> None:
    flow = PharmacyFlow(Purpose.PAY, AFTER)
    assert flow.entered("99999999") == ReadCard()
    assert params(flow.view, "amount") == {"amount": "999999.99"}


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "00",
        "00000000",
        "",
        "abc",
        "12.50",
        "-5",
        "+5",
        " 12",
        "12 ",
        "1e3",
        "123456789",
        "000000001",
        "999999999",
    ],
)
def test_bad_amount_refused_and_asked_again(text: str) -> None:
    flow = PharmacyFlow(Purpose.PAY, AFTER)
    assert flow.entered(text) is None
    assert flow.view.stage is Stage.AMOUNT
    assert flow.view.lines[0] == Line("bad_amount", (), Tone.ERROR)
    assert flow.amount_fen is None
    assert flow.entered("1250") == ReadCard()  # and a good one is taken after it


@pytest.mark.parametrize("text", ["²", "12³", "①"])
def test_bad_amount_non_ascii_digit_characters(text: str) -> None:
    """str.isdigit accepts these, int() does not: still just a bad amount, never a crash."""
    flow = PharmacyFlow(Purpose.PAY, AFTER)
    assert flow.entered(text) is None
    assert flow.view.stage is Stage.AMOUNT
    assert keys(flow.view)[0] == "bad_amount"


# --- S4, S16, S12, S8 out of scope: no PIN --------------------------------------------


@pytest.mark.parametrize(
    ("label", "info", "settings"),
    [
        ("s4-employee-before-upgrade", card_info(PinState.INITIAL), BEFORE),
        ("s4-resident-390", card_info(PinState.INITIAL, scheme="390"), AFTER),
        ("s4-pension-170", card_info(PinState.INITIAL, scheme="170"), AFTER),
        ("s12-legacy-L", card_info(PinState.INITIAL, category="L"), AFTER),
        ("s16-disabled", card_info(PinState.DISABLED), AFTER),
    ],
)
def test_s4_s12_s16_payment_asks_no_pin(label: str, info: CardInfo, settings: Settings) -> None:
    flow = paying(info, settings)
    # Issue 9 (7): no PIN, but the holder confirms the amount with 确认 first.
    assert flow.view.stage is Stage.CONFIRM_AMOUNT
    assert keys(flow.view) == ["amount", "no_pin", "confirm_amount"]
    assert flow.entered("") is None
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is True
    assert keys(flow.view) == ["no_pin", "authorised", "amount"]
    assert params(flow.view, "amount") == {"amount": "12.50"}
    assert flow.view.info is info


# --- S5: ASK_PIN ----------------------------------------------------------------------


def test_s5_enabled_asks_pin_right_pin_authorised() -> None:
    flow = paying(card_info(PinState.ENABLED))
    assert flow.view.stage is Stage.PIN
    assert flow.view.secret is True
    assert keys(flow.view) == ["amount", "enter_pin"]
    command = flow.entered(ENABLED_PIN)
    assert command == Verify(ENABLED_PIN)
    assert flow.view.stage is Stage.WORKING
    assert flow.card_answer(PinOutcome(OK)) is None
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is True
    assert keys(flow.view) == ["authorised", "amount"]
    assert "changed" not in keys(flow.view)


def test_s5_wrong_pin_shows_tries_left_5_to_1_and_asks_again() -> None:
    flow = paying(card_info(PinState.ENABLED))
    for n in (5, 4, 3, 2, 1):
        assert flow.entered(OTHER_PIN) == Verify(OTHER_PIN)
        assert flow.card_answer(PinOutcome(0x63C0 | n)) is None
        assert flow.view.stage is Stage.PIN
        assert flow.view.lines[1] == Line("wrong_pin", (("n", n),), Tone.ERROR)
        assert keys(flow.view) == ["amount", "wrong_pin", "enter_pin"]
        assert_pins_forgotten(flow)
    assert flow.entered(ENABLED_PIN) == Verify(ENABLED_PIN)
    flow.card_answer(PinOutcome(OK))
    assert flow.view.success is True
    assert "authorised" in keys(flow.view)


@pytest.mark.parametrize("sw", [0x63C0, 0x6983])
def test_s17_last_wrong_pin_or_blocked_locks_and_sends_to_outlet(sw: int) -> None:
    flow = paying(card_info(PinState.ENABLED))
    assert flow.entered(OTHER_PIN) == Verify(OTHER_PIN)
    assert flow.card_answer(PinOutcome(sw)) is None
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is False
    assert keys(flow.view) == ["locked", "go_outlet"]
    assert flow.entered(OTHER_PIN) is None  # nothing more is sent


def test_s17_blocked_card_refused_on_reading() -> None:
    flow = paying(card_info(PinState.ENABLED, tries=0))
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is False
    assert keys(flow.view) == ["locked", "go_outlet"]


def test_s13_not_activated_refused_on_reading() -> None:
    flow = paying(card_info(PinState.INITIAL, life=LifeCycle.NOT_ACTIVATED))
    assert flow.view.success is False
    assert keys(flow.view) == ["not_activated"]


def test_s18_lost_card_refused() -> None:
    """The host's word that the card is lost (S18) refuses it before any PIN."""
    flow = PharmacyFlow(Purpose.PAY, AFTER)
    assert flow.entered("1250") == ReadCard()
    flow.reading()
    assert flow.card_read(card_info(PinState.ENABLED), Account(lost=True)) is None
    assert flow.view.success is False
    assert keys(flow.view) == ["lost"]


def test_rule8_unknown_pin_state_asks_for_pin_with_tries_hint() -> None:
    flow = paying(card_info(None, life=None, tries=4, limit=None))
    assert flow.view.stage is Stage.PIN
    assert keys(flow.view) == ["amount", "tries_left", "enter_pin"]
    assert params(flow.view, "tries_left") == {"n": 4}


def test_pin_stage_short_entry_never_reaches_the_card() -> None:
    flow = paying(card_info(PinState.ENABLED))
    for text in ("80261", "8026131", "", "80261a", "８０２６１３"):
        assert flow.entered(text) is None
        assert flow.view.stage is Stage.PIN
        assert keys(flow.view) == ["amount", "v_not-six-digits", "enter_pin"]


# --- S8: forced change ----------------------------------------------------------------


def forced(**kw) -> PharmacyFlow:
    flow = paying(card_info(PinState.INITIAL), phone_of=phones, **kw)
    assert flow.view.stage is Stage.NEW_PIN
    assert keys(flow.view) == ["amount", "forced_change", "new_pin"]
    return flow


@pytest.mark.parametrize(
    ("pin", "violation"),
    [
        ("12345", "not-six-digits"),
        ("1234567", "not-six-digits"),
        ("abcdef", "not-six-digits"),
        ("１２３４５６", "not-six-digits"),
        ("888888", "same-digits"),
        ("123456", "consecutive"),
        ("654321", "consecutive"),
        ("850312", "birth-date"),
        ("031285", "birth-date"),
        ("120385", "birth-date"),
        ("198503", "birth-date"),
        ("138123", "phone"),
        ("812345", "phone"),
    ],
)
def test_s8_s15_forced_change_violation_names_the_rule_and_asks_again(
    pin: str, violation: str
) -> None:
    flow = forced()
    assert flow.entered(pin) is None
    assert flow.view.stage is Stage.NEW_PIN
    # the reason for the forced change stays on screen while it is asked again
    assert flow.view.lines == (
        Line("amount", (("amount", "12.50"),)),
        Line("forced_change"),
        Line(f"v_{violation}", (), Tone.ERROR),
        Line("new_pin"),
    )
    assert_pins_forgotten(flow)
    # and it goes on normally
    assert flow.entered(NEW_PIN) is None
    assert flow.view.stage is Stage.CONFIRM_PIN


def test_s8_forced_change_mismatch_asks_for_a_new_pin_again() -> None:
    flow = forced()
    assert flow.entered(NEW_PIN) is None
    assert flow.view.stage is Stage.CONFIRM_PIN
    assert keys(flow.view) == ["amount", "confirm_pin"]
    assert flow.entered(OTHER_PIN) is None
    assert flow.view.stage is Stage.NEW_PIN
    assert flow.view.lines[2] == Line("mismatch", (), Tone.ERROR)
    assert keys(flow.view) == ["amount", "forced_change", "mismatch", "new_pin"]
    assert_pins_forgotten(flow)
    # the first choice is not kept: confirming it now is a new choice
    assert flow.entered(OTHER_PIN) is None
    assert flow.view.stage is Stage.CONFIRM_PIN
    assert flow.entered(OTHER_PIN) == ChangePin("123456", OTHER_PIN)


def test_s8_forced_change_success_sends_initial_pin_then_authorises() -> None:
    flow = forced()
    commands = [flow.entered(NEW_PIN), flow.entered(NEW_PIN)]
    assert commands == [None, ChangePin(old="123456", new=NEW_PIN)]
    change = commands[1]
    assert isinstance(change, ChangePin)
    assert change.old == "123456" and change.new == NEW_PIN
    assert flow.view.stage is Stage.WORKING
    assert_pins_forgotten(flow)
    assert flow.card_answer(PinOutcome(OK)) is None
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is True
    assert keys(flow.view) == ["changed", "authorised", "amount"]
    assert flow.view.lines[0].tone is Tone.OK
    assert params(flow.view, "amount") == {"amount": "12.50"}


def test_s8_forced_change_s17_blocked_answer() -> None:
    flow = forced()
    flow.entered(NEW_PIN)
    flow.entered(NEW_PIN)
    flow.card_answer(PinOutcome(0x6983))
    assert flow.view.success is False
    assert keys(flow.view) == ["locked", "go_outlet"]


def test_s7_query_password_refused_at_new_pin_and_pin_stages() -> None:
    password = query_password(SSN)
    assert len(password) == 8
    flow = forced()
    assert flow.entered(password) is None
    assert keys(flow.view) == ["amount", "forced_change", "v_not-six-digits", "new_pin"]
    pay = paying(card_info(PinState.ENABLED))
    assert pay.entered(password) is None
    assert pay.view.stage is Stage.PIN
    assert keys(pay.view) == ["amount", "v_not-six-digits", "enter_pin"]
    change = changing(card_info(PinState.ENABLED))
    assert change.entered(password) is None
    assert change.view.stage is Stage.PIN
    assert change._current is None


def test_s15_phone_rule_uses_phone_of_ssn() -> None:
    asked: list[str] = []

    def phone_of(ssn: str) -> str | None:
        asked.append(ssn)
        return "139-0246-8135"

    flow = paying(card_info(PinState.INITIAL), phone_of=phone_of)
    assert flow.entered("902468") is None  # a window of 13902468135
    assert asked == [SSN]
    assert keys(flow.view) == ["amount", "forced_change", "v_phone", "new_pin"]
    assert flow.entered("468135") is None
    assert keys(flow.view) == ["amount", "forced_change", "v_phone", "new_pin"]


def test_s15_phone_rule_without_a_known_phone_accepts() -> None:
    flow = paying(card_info(PinState.INITIAL))  # default phone_of knows no phone
    assert flow.entered("812345") is None
    assert flow.view.stage is Stage.CONFIRM_PIN


def test_s15_birth_date_rule_uses_the_cards_birth_date() -> None:
    flow = paying(card_info(PinState.INITIAL, born=dt.date(1990, 10, 10)))
    assert flow.entered("101090") is None
    assert keys(flow.view) == ["amount", "forced_change", "v_birth-date", "new_pin"]
    assert flow.entered("850312") is None  # not this holder's birth date
    assert flow.view.stage is Stage.CONFIRM_PIN


# --- PIN change purpose (S2, S3) ------------------------------------------------------


def test_change_purpose_current_new_confirm_exactly_one_change_pin() -> None:
    flow = changing(card_info(PinState.ENABLED), phone_of=phones)
    assert flow.view.stage is Stage.PIN
    assert keys(flow.view) == ["enter_old_pin"]  # issue 9 (4): the current PIN first
    commands: list[Command | None] = []
    commands.append(flow.entered(ENABLED_PIN))
    assert flow.view.stage is Stage.NEW_PIN
    assert keys(flow.view) == ["new_pin"]
    commands.append(flow.entered(NEW_PIN))
    assert flow.view.stage is Stage.CONFIRM_PIN
    commands.append(flow.entered(NEW_PIN))
    sent = [c for c in commands if c is not None]
    assert sent == [ChangePin(ENABLED_PIN, NEW_PIN)]
    assert commands[-1] == ChangePin(old=ENABLED_PIN, new=NEW_PIN)
    assert flow.view.stage is Stage.WORKING
    assert_pins_forgotten(flow)
    assert flow.card_answer(PinOutcome(OK)) is None
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is True
    assert keys(flow.view) == ["changed"]


def test_change_purpose_s15_violation_then_mismatch_keep_the_current_pin() -> None:
    flow = changing(card_info(PinState.ENABLED), phone_of=phones)
    assert flow.entered(ENABLED_PIN) is None
    assert flow.entered("111111") is None
    assert keys(flow.view) == ["v_same-digits", "new_pin"]
    assert flow.entered("812345") is None
    assert keys(flow.view) == ["v_phone", "new_pin"]
    assert flow.entered(NEW_PIN) is None
    assert flow.entered(OTHER_PIN) is None
    assert keys(flow.view) == ["mismatch", "new_pin"]
    assert flow.entered(NEW_PIN) is None
    assert flow.entered(NEW_PIN) == ChangePin(ENABLED_PIN, NEW_PIN)


def test_change_purpose_wrong_current_back_to_pin_stage() -> None:
    flow = changing(card_info(PinState.ENABLED))
    flow.entered(OTHER_PIN)
    flow.entered(NEW_PIN)
    assert flow.entered(NEW_PIN) == ChangePin(OTHER_PIN, NEW_PIN)
    assert flow.card_answer(PinOutcome(0x63C4)) is None
    assert flow.view.stage is Stage.PIN
    assert keys(flow.view) == ["wrong_pin", "enter_old_pin"]
    assert params(flow.view, "wrong_pin") == {"n": 4}
    assert_pins_forgotten(flow)
    # the holder starts again from the current PIN
    assert flow.entered(ENABLED_PIN) is None
    assert flow.view.stage is Stage.NEW_PIN
    flow.entered(NEW_PIN)
    assert flow.entered(NEW_PIN) == ChangePin(ENABLED_PIN, NEW_PIN)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (card_info(PinState.ENABLED, life=LifeCycle.NOT_ACTIVATED), ["not_activated"]),
        (card_info(PinState.ENABLED, tries=0), ["locked", "go_outlet"]),
    ],
    ids=["s13-not-activated", "s17-blocked"],
)
def test_change_purpose_refused(info: CardInfo, expected: list[str]) -> None:
    flow = changing(info)
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is False
    assert keys(flow.view) == expected


def test_change_purpose_lost_refused() -> None:
    flow = PharmacyFlow(Purpose.CHANGE, AFTER)
    flow.reading()
    assert flow.card_read(card_info(PinState.ENABLED), Account(lost=True)) is None
    assert flow.view.success is False
    assert keys(flow.view) == ["lost"]


def test_change_purpose_not_activated_answer_from_card() -> None:
    flow = changing(card_info(PinState.ENABLED))
    flow.entered(ENABLED_PIN)
    flow.entered(NEW_PIN)
    flow.entered(NEW_PIN)
    flow.card_answer(PinOutcome(0x6985))
    assert flow.view.success is False
    assert keys(flow.view) == ["not_activated"]


# --- info purpose ---------------------------------------------------------------------


def test_info_purpose_reads_and_shows_the_card() -> None:
    info = card_info(PinState.ENABLED)
    flow = PharmacyFlow(Purpose.INFO, AFTER)
    assert flow.start() == ReadCard()
    assert flow.card_inserted() == ReadCard()
    flow.reading()
    assert flow.card_read(info) is None
    assert flow.view.stage is Stage.INFO
    assert flow.view.info is info
    assert flow.view.final is True
    assert flow.entered(ENABLED_PIN) is None


# --- removal, cancel ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["amount", "insert"])
def test_removed_before_the_card_is_asked_for_changes_nothing(where: str) -> None:
    """The amount is typed before the card; a card pulled then is simply asked for."""
    flow = PharmacyFlow(Purpose.PAY, AFTER)
    if where == "insert":
        flow.entered("1250")
    before = flow.view
    assert flow.removed() is False
    assert flow.view is before


@pytest.mark.parametrize(
    "where", ["reading", "pin", "new-pin", "confirm", "working", "confirm-amount"]
)
def test_removed_mid_flow_ends_it(where: str) -> None:
    if where == "reading":
        flow = PharmacyFlow(Purpose.PAY, AFTER)
        flow.entered("1250")
        flow.reading()
    elif where == "pin":
        flow = paying(card_info(PinState.ENABLED))
    elif where == "new-pin":
        flow = forced()
    elif where == "confirm":
        flow = forced()
        flow.entered(NEW_PIN)
        assert flow._new == NEW_PIN
    elif where == "confirm-amount":
        flow = paying(card_info(PinState.DISABLED))
    else:
        flow = paying(card_info(PinState.ENABLED))
        flow.entered(ENABLED_PIN)
    assert flow.removed() is True
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is False
    # issue 9 (1, 3): a result screen that says the payment did not go through
    assert keys(flow.view) == ["removed", "amount", "not_debited"]
    assert flow.info is None
    assert_pins_forgotten(flow)
    assert flow.entered(NEW_PIN) is None


def test_removed_after_a_final_view_changes_nothing() -> None:
    flow = paying(card_info(PinState.DISABLED))
    flow.entered("")  # 确认 on the amount
    final = flow.view
    assert final.final is True
    assert flow.removed() is False
    assert flow.view is final
    info_flow = PharmacyFlow(Purpose.INFO, AFTER)
    info_flow.card_read(card_info())
    assert info_flow.removed() is False
    assert info_flow.view.stage is Stage.INFO


def test_cancel_forgets_pins() -> None:
    flow = changing(card_info(PinState.ENABLED))
    flow.entered(ENABLED_PIN)
    flow.entered(NEW_PIN)
    assert flow._current == ENABLED_PIN
    assert flow._new == NEW_PIN
    flow.cancel()
    assert_pins_forgotten(flow)


def test_card_failed_is_rule1_nothing_changed() -> None:
    flow = paying(card_info(PinState.ENABLED))
    flow.card_failed("card_unreadable")  # a catalogue key, never an exception's text
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is False
    assert flow.view.lines == (Line("card_unreadable", (), Tone.ERROR),)


# --- PIN digits never shown, never kept -----------------------------------------------


def test_pin_digits_never_in_repr_of_views_or_commands() -> None:
    pins = [ENABLED_PIN, NEW_PIN, OTHER_PIN, "123456"]
    info = card_info(PinState.ENABLED)
    for pin in pins:
        assert pin not in repr(info)  # so a hit below is a leak, not a coincidence
    seen: list[object] = []

    # a payment with a wrong then a right PIN
    flow = paying(info)
    seen.append(flow.view)
    for pin, sw in ((OTHER_PIN, 0x63C5), (ENABLED_PIN, OK)):
        seen.append(flow.entered(pin))
        seen.append(flow.view)
        flow.card_answer(PinOutcome(sw))
        seen.append(flow.view)
    # a forced change with a mismatch
    flow = forced()
    for text in (NEW_PIN, OTHER_PIN, NEW_PIN, NEW_PIN):
        seen.append(flow.entered(text))
        seen.append(flow.view)
    flow.card_answer(PinOutcome(OK))
    seen.append(flow.view)
    # a holder's change
    flow = changing(info)
    for text in (ENABLED_PIN, NEW_PIN, NEW_PIN):
        seen.append(flow.entered(text))
        seen.append(flow.view)

    commands = [c for c in seen if isinstance(c, Verify | ChangePin)]
    assert len(commands) == 4
    assert commands[2] == ChangePin("123456", NEW_PIN)
    for thing in seen:
        text = repr(thing)
        for pin in pins:
            assert pin not in text, text
    assert repr(Verify(ENABLED_PIN)) == "Verify()"
    assert repr(ChangePin(ENABLED_PIN, NEW_PIN)) == "ChangePin()"


def test_no_pin_digits_kept_after_the_command() -> None:
    flow = changing(card_info(PinState.ENABLED))
    flow.entered(ENABLED_PIN)
    assert flow._current == ENABLED_PIN
    flow.entered(NEW_PIN)
    assert flow._new == NEW_PIN
    assert isinstance(flow.entered(NEW_PIN), ChangePin)
    assert_pins_forgotten(flow)
    assert all(ENABLED_PIN not in repr(v) and NEW_PIN not in repr(v) for v in vars(flow).values())

    flow = forced()
    flow.entered(NEW_PIN)
    assert isinstance(flow.entered(NEW_PIN), ChangePin)
    assert_pins_forgotten(flow)
    assert all(NEW_PIN not in repr(v) for v in vars(flow).values())

    flow = paying(card_info(PinState.ENABLED))
    assert isinstance(flow.entered(ENABLED_PIN), Verify)
    assert_pins_forgotten(flow)
    assert all(ENABLED_PIN not in repr(v) for v in vars(flow).values())


# --- end to end: VirtualReader + SocialSecurityCard + PharmacyFlow, no Textual ---------


@pytest.fixture
def insert(tmp_path: Path):
    readers: list[VirtualReader] = []

    def make(profile: str) -> tuple[VirtualReader, Path]:
        path = tmp_path / f"{profile}.json"
        profiles.new_card(profile, path)
        reader = VirtualReader(path)
        readers.append(reader)
        return reader, path

    yield make
    for reader in readers:
        reader.close()


def on_disk(path: Path):
    return store.read(path)


@pytest.mark.parametrize("profile", ["employee-new", "t0-employee-new"])
def test_e2e_s8_forced_change_then_s11_asks_pin(insert, profile: str) -> None:
    reader, path = insert(profile)
    before = on_disk(path)
    assert before.pin_state is PinState.INITIAL
    assert before.t0_style is (profile == "t0-employee-new")
    ssn = before.holder.ssn
    born = before.holder.birth_date
    phone = PHONES[ssn]
    worker = Worker(reader)

    flow = worker.start(Purpose.PAY, AFTER)
    assert worker.sent == ["ReadCard"]
    assert flow.view.stage is Stage.NEW_PIN
    assert keys(flow.view) == ["amount", "forced_change", "new_pin"]
    assert flow.info is not None and flow.info.ssn == ssn

    # S15 violations never touch the card
    bad = [
        ("77777", "v_not-six-digits"),
        (query_password(ssn), "v_not-six-digits"),  # S7
        ("777777", "v_same-digits"),
        ("345678", "v_consecutive"),
        (f"{born:%m%d%y}", "v_birth-date"),
        (phone[:6], "v_phone"),
    ]
    for text, key in bad:
        worker.enter(flow, text)
        assert keys(flow.view) == ["amount", "forced_change", key, "new_pin"], text
    worker.enter(flow, NEW_PIN)
    worker.enter(flow, OTHER_PIN)
    assert keys(flow.view) == ["amount", "forced_change", "mismatch", "new_pin"]
    assert worker.sent == ["ReadCard"]
    assert on_disk(path).tries_left == before.try_limit

    worker.enter(flow, NEW_PIN)
    worker.enter(flow, NEW_PIN)
    assert worker.sent == ["ReadCard", "ChangePin"]
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is True
    assert keys(flow.view) == ["changed", "authorised", "amount"]

    after = on_disk(path)
    assert after.pin_state is PinState.ENABLED
    assert after.tries_left == after.try_limit
    assert after.pin.matches(NEW_PIN)

    # S11: the next payment asks for the PIN, never for a change
    reader.remove()
    reader.insert()
    worker = Worker(reader)
    flow = worker.start(Purpose.PAY, AFTER)
    assert flow.view.stage is Stage.PIN
    assert keys(flow.view) == ["amount", "enter_pin"]
    worker.enter(flow, OTHER_PIN)
    assert flow.view.stage is Stage.PIN
    assert params(flow.view, "wrong_pin") == {"n": after.try_limit - 1}
    worker.enter(flow, NEW_PIN)
    assert worker.sent == ["ReadCard", "Verify", "Verify"]
    assert flow.view.success is True
    assert keys(flow.view) == ["authorised", "amount"]
    assert on_disk(path).tries_left == after.try_limit


def test_e2e_t0_card_answers_61xx_through_the_transport(tmp_path: Path) -> None:
    path = tmp_path / "t0.json"
    profiles.new_card("t0-employee-new", path)
    lines: list[str] = []
    reader = VirtualReader(path, trace=lines.append)
    try:
        worker = Worker(reader)
        flow = worker.start(Purpose.PAY, AFTER)
        assert flow.view.stage is Stage.NEW_PIN
        assert flow.info is not None and flow.info.ssn == on_disk(path).holder.ssn
        assert any(ln.startswith("< ") and ln.replace(" ", "")[-4:-2] == "61" for ln in lines)
    finally:
        reader.close()


def test_e2e_employee_new_before_the_upgrade_asks_no_pin(insert) -> None:
    reader, path = insert("employee-new")
    worker = Worker(reader)
    flow = worker.start(Purpose.PAY, BEFORE)
    assert worker.sent == ["ReadCard"]
    assert flow.view.stage is Stage.CONFIRM_AMOUNT
    worker.enter(flow, "")
    assert worker.sent == ["ReadCard"]
    assert flow.view.success is True
    assert keys(flow.view) == ["no_pin", "authorised", "amount"]
    assert on_disk(path).pin_state is PinState.INITIAL


@pytest.mark.parametrize(
    ("profile", "state"),
    [
        ("resident-new", PinState.INITIAL),  # S8: 390 out of scope, S4
        ("pension-new", PinState.INITIAL),  # S8: 170 out of scope, S4
        ("legacy-medical", PinState.INITIAL),  # S12
        ("disabled", PinState.DISABLED),  # S16
    ],
)
def test_e2e_not_forced_no_pin(insert, profile: str, state: PinState) -> None:
    reader, path = insert(profile)
    worker = Worker(reader)
    flow = worker.start(Purpose.PAY, AFTER)
    assert worker.sent == ["ReadCard"]
    assert flow.view.stage is Stage.CONFIRM_AMOUNT
    worker.enter(flow, "")
    assert flow.view.stage is Stage.RESULT
    assert flow.view.success is True
    assert keys(flow.view) == ["no_pin", "authorised", "amount"]
    disk = on_disk(path)
    assert disk.pin_state is state
    assert disk.tries_left == disk.try_limit


def test_e2e_s13_not_activated_refused(insert) -> None:
    reader, path = insert("not-activated")
    worker = Worker(reader)
    flow = worker.start(Purpose.PAY, AFTER)
    assert worker.sent == ["ReadCard"]
    assert flow.view.success is False
    assert keys(flow.view) == ["not_activated"]
    disk = on_disk(path)
    assert disk.life_cycle is LifeCycle.NOT_ACTIVATED
    assert disk.pin_state is PinState.INITIAL
    assert disk.tries_left == disk.try_limit


def test_e2e_s17_locked_refused(insert) -> None:
    reader, path = insert("locked")
    worker = Worker(reader)
    flow = worker.start(Purpose.PAY, AFTER)
    assert worker.sent == ["ReadCard"]
    assert flow.view.success is False
    assert keys(flow.view) == ["locked", "go_outlet"]
    assert on_disk(path).tries_left == 0


def test_e2e_s5_employee_enabled_asks_pin(insert) -> None:
    reader, path = insert("employee-enabled")
    worker = Worker(reader)
    flow = worker.start(Purpose.PAY, AFTER)
    assert flow.view.stage is Stage.PIN
    worker.enter(flow, OTHER_PIN)
    assert params(flow.view, "wrong_pin") == {"n": 5}
    worker.enter(flow, ENABLED_PIN)
    assert worker.sent == ["ReadCard", "Verify", "Verify"]
    assert flow.view.success is True
    assert keys(flow.view) == ["authorised", "amount"]
    assert on_disk(path).tries_left == 6


def test_e2e_change_purpose_on_employee_enabled(insert) -> None:
    reader, path = insert("employee-enabled")
    worker = Worker(reader)
    flow = PharmacyFlow(Purpose.CHANGE, AFTER, phone_of=PHONES.get)
    worker.run(flow, flow.start())
    assert flow.view.stage is Stage.PIN
    for text in (ENABLED_PIN, NEW_PIN, NEW_PIN):
        worker.enter(flow, text)
    assert worker.sent == ["ReadCard", "ChangePin"]
    assert flow.view.success is True
    assert keys(flow.view) == ["changed"]
    disk = on_disk(path)
    assert disk.pin.matches(NEW_PIN)
    assert disk.pin_state is PinState.ENABLED


def test_e2e_info_purpose(insert) -> None:
    reader, path = insert("pension-new")
    worker = Worker(reader)
    flow = PharmacyFlow(Purpose.INFO, AFTER)
    worker.run(flow, flow.start())
    assert flow.view.stage is Stage.INFO
    info = flow.view.info
    disk = on_disk(path)
    assert info is not None
    assert info.ssn == disk.holder.ssn
    assert info.name == disk.holder.name
    assert info.birth_date == disk.holder.birth_date
    assert info.card_number == disk.card.card_number
    assert info.category == "1"
    assert info.scheme == "170"
    assert info.status == PinStatus(LifeCycle.ACTIVE, PinState.INITIAL, 6, 6)


# --- what each entry stage takes (issue 10: input rules in the flow, not the screen) -------


@pytest.mark.parametrize(
    ("stage", "entry", "key", "after"),
    [
        (Stage.PIN, "", "8", "8"),
        (Stage.PIN, "80261", "3", "802613"),
        (Stage.PIN, "802613", "4", "802613"),  # six digits at most
        (Stage.NEW_PIN, "12345", "6", "123456"),
        (Stage.PIN, "", "X", ""),  # X only in ID numbers
        (Stage.PIN, "", "８", ""),  # ASCII digits only
        (Stage.AMOUNT, "", "0", ""),  # an amount never starts with 0
        (Stage.AMOUNT, "1", "0", "10"),
        (Stage.AMOUNT, "1234567", "8", "12345678"),
        (Stage.AMOUNT, "12345678", "9", "12345678"),  # 999999.99 yuan at most
        (Stage.ID_NUMBER, "", "0", "0"),
        (Stage.ID_NUMBER, "", "X", ""),  # X only as the 18th character
        (Stage.ID_NUMBER, "1101051949100", "X", "1101051949100"),
        (Stage.ID_NUMBER, "11010519491001001", "X", "11010519491001001X"),
        (Stage.ID_NUMBER, "11010519491001001X", "X", "11010519491001001X"),
        (Stage.ID_NUMBER, "11010519491001001X", "1", "11010519491001001X"),
        (Stage.CONFIRM_AMOUNT, "", "1", ""),  # nothing is typed on the amount's confirmation
    ],
)
def test_typed_takes_what_the_stage_takes(stage: Stage, entry: str, key: str, after: str) -> None:
    from terminal.flow.view import typed

    assert typed(stage, entry, key) == after
