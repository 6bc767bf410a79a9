"""terminal/rules.py against docs/terminal-rules.md: S1-S18 and the decision order 1-8.

Each test names the rule it proves (test_s8_..., test_rule5_...). The expected values
come from the rules text, not from the code.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardio.card.state import LifeCycle, PinState
from cardio.identity import check_digit, id_problem, query_password
from terminal.rules import (
    CardFacts,
    Decision,
    Settings,
    Violation,
    check_new_pin,
    current_pin_for_forced_change,
    decide,
    forced_change_due,
    may_change_pin,
)

UPGRADE = dt.date(2025, 4, 13)  # the seed's April 13 (S8)
DAY = dt.timedelta(days=1)
BEFORE = Settings(upgrade_date=UPGRADE, today=UPGRADE - DAY)
ON = Settings(upgrade_date=UPGRADE, today=UPGRADE)
AFTER = Settings(upgrade_date=UPGRADE, today=UPGRADE + DAY)
FAR_FUTURE = Settings(upgrade_date=UPGRADE, today=dt.date(9999, 12, 31))

REFUSALS = {Decision.LOST, Decision.NOT_ACTIVATED, Decision.BLOCKED}


def facts(**changes: object) -> CardFacts:
    """An active, unblocked urban-employee card (category 1, scheme 310) on its initial PIN."""
    base: dict[str, object] = {
        "category": "1",
        "scheme": "310",
        "life_cycle": LifeCycle.ACTIVE,
        "pin_state": PinState.INITIAL,
        "tries_left": 6,
        "try_limit": 6,
        "birth_date": dt.date(1985, 3, 12),
        "lost": False,
    }
    base.update(changes)
    return CardFacts(**base)  # type: ignore[arg-type]


# --- an oracle written from "What the terminal decides, in order" ----------------------


def expected_decision(f: CardFacts, s: Settings) -> Decision:
    if f.lost:  # 2, S18
        return Decision.LOST
    if f.life_cycle == LifeCycle.NOT_ACTIVATED:  # 3, S13
        return Decision.NOT_ACTIVATED
    if f.tries_left == 0:  # 4, S17
        return Decision.BLOCKED
    state = PinState.ENABLED if f.pin_state is None else f.pin_state  # 8
    if (
        s.today >= s.upgrade_date
        and f.category == "1"
        and f.scheme == "310"
        and state == PinState.INITIAL
    ):  # 5, S8
        return Decision.FORCED_CHANGE
    if state == PinState.ENABLED:  # 6, S5
        return Decision.ASK_PIN
    return Decision.NO_PIN  # 7, S4, S16


def test_rules_decision_order_1_to_8_exhaustive() -> None:
    """Every combination of the facts decides as the numbered list says, first match wins."""
    checked = 0
    for lost, life, tries, state, category, scheme, s in itertools.product(
        (False, True),
        (LifeCycle.ACTIVE, LifeCycle.NOT_ACTIVATED, None),
        (6, 1, 0, None),
        (PinState.INITIAL, PinState.ENABLED, PinState.DISABLED, None),
        ("1", "L", None),
        ("310", "390", "170", None),
        (BEFORE, ON, AFTER),
    ):
        f = facts(
            lost=lost,
            life_cycle=life,
            tries_left=tries,
            pin_state=state,
            category=category,
            scheme=scheme,
        )
        assert decide(f, s) == expected_decision(f, s), (f, s)
        checked += 1
    assert checked == 2 * 3 * 4 * 4 * 3 * 4 * 3


def test_rule2_s18_lost_before_everything_else() -> None:
    f = facts(lost=True, life_cycle=LifeCycle.NOT_ACTIVATED, tries_left=0)
    assert decide(f, AFTER) is Decision.LOST
    assert decide(facts(lost=True), AFTER) is Decision.LOST  # would otherwise be forced
    assert decide(facts(lost=True, pin_state=PinState.DISABLED), AFTER) is Decision.LOST


def test_rule3_s13_not_activated_before_blocked_and_forced() -> None:
    f = facts(life_cycle=LifeCycle.NOT_ACTIVATED, tries_left=0)
    assert decide(f, AFTER) is Decision.NOT_ACTIVATED
    assert decide(facts(life_cycle=LifeCycle.NOT_ACTIVATED), AFTER) is Decision.NOT_ACTIVATED


def test_rule4_s17_blocked_before_forced_change() -> None:
    assert decide(facts(tries_left=0), AFTER) is Decision.BLOCKED
    assert decide(facts(tries_left=0, pin_state=PinState.ENABLED), AFTER) is Decision.BLOCKED
    assert decide(facts(tries_left=0, pin_state=PinState.DISABLED), AFTER) is Decision.BLOCKED


def test_rule5_forced_change_before_no_pin() -> None:
    assert decide(facts(), AFTER) is Decision.FORCED_CHANGE
    assert decide(facts(), BEFORE) is Decision.NO_PIN


# --- S1, S4, S5 -----------------------------------------------------------------------


def test_s1_forced_change_sends_initial_pin_123456() -> None:
    assert current_pin_for_forced_change() == "123456"


@pytest.mark.parametrize("scheme", ["310", "390", "170"])
@pytest.mark.parametrize("category", ["1", "L"])
def test_s4_initial_not_forced_asks_no_pin(category: str, scheme: str) -> None:
    f = facts(category=category, scheme=scheme)
    assert decide(f, BEFORE) is Decision.NO_PIN
    if (category, scheme) != ("1", "310"):
        assert decide(f, AFTER) is Decision.NO_PIN


@pytest.mark.parametrize("s", [BEFORE, ON, AFTER, FAR_FUTURE])
@pytest.mark.parametrize("scheme", ["310", "390", "170", None])
@pytest.mark.parametrize("category", ["1", "L", None])
def test_s5_enabled_asks_pin(category: str | None, scheme: str | None, s: Settings) -> None:
    f = facts(category=category, scheme=scheme, pin_state=PinState.ENABLED)
    assert decide(f, s) is Decision.ASK_PIN


# --- S8, S9, S11, S12 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "s", "reached"),
    [("before", BEFORE, False), ("on", ON, True), ("after", AFTER, True)],
)
@pytest.mark.parametrize(
    ("category", "scheme"),
    [("1", "310"), ("1", "390"), ("1", "170"), ("L", "310"), ("L", "390"), ("L", "170")],
)
def test_s8_forced_change_only_category_1_scheme_310_once_upgrade_date_reached(
    category: str, scheme: str, label: str, s: Settings, reached: bool
) -> None:
    f = facts(category=category, scheme=scheme)
    forced = reached and category == "1" and scheme == "310"
    assert forced_change_due(f, s) is forced
    assert decide(f, s) is (Decision.FORCED_CHANGE if forced else Decision.NO_PIN)


def test_s8_upgrade_date_itself_counts_as_reached() -> None:
    assert ON.today == ON.upgrade_date
    assert ON.upgraded is True
    assert BEFORE.upgraded is False
    assert forced_change_due(facts(), ON) is True
    assert decide(facts(), ON) is Decision.FORCED_CHANGE


def test_s8_upgrade_date_is_configurable() -> None:
    other = dt.date(2031, 1, 2)
    assert (
        decide(facts(), Settings(upgrade_date=other, today=dt.date(2031, 1, 1))) is Decision.NO_PIN
    )
    assert decide(facts(), Settings(upgrade_date=other, today=other)) is Decision.FORCED_CHANGE


@pytest.mark.parametrize("scheme", ["390", "170"])
def test_s8_resident_schemes_never_forced(scheme: str) -> None:
    for s in (BEFORE, ON, AFTER, FAR_FUTURE):
        assert forced_change_due(facts(scheme=scheme), s) is False
        assert decide(facts(scheme=scheme), s) is Decision.NO_PIN


@pytest.mark.parametrize(
    "today",
    [
        UPGRADE + dt.timedelta(days=365),
        UPGRADE + dt.timedelta(days=365 * 50),
        dt.date(9999, 12, 31),
    ],
)
def test_s9_no_deadline_still_forced_never_voided(today: dt.date) -> None:
    s = Settings(upgrade_date=UPGRADE, today=today)
    assert forced_change_due(facts(), s) is True
    assert decide(facts(), s) is Decision.FORCED_CHANGE
    for scheme in ("390", "170"):  # out of scope cards are not voided either
        assert decide(facts(scheme=scheme), s) not in REFUSALS


@pytest.mark.parametrize("s", [BEFORE, ON, AFTER, FAR_FUTURE])
@pytest.mark.parametrize("scheme", ["310", "390", "170"])
@pytest.mark.parametrize("category", ["1", "L"])
def test_s11_enabled_never_forced(category: str, scheme: str, s: Settings) -> None:
    f = facts(category=category, scheme=scheme, pin_state=PinState.ENABLED)
    assert forced_change_due(f, s) is False
    assert decide(f, s) is Decision.ASK_PIN


@pytest.mark.parametrize("s", [BEFORE, ON, AFTER, FAR_FUTURE])
@pytest.mark.parametrize("scheme", ["310", "390", "170"])
def test_s12_legacy_category_l_never_forced(scheme: str, s: Settings) -> None:
    f = facts(category="L", scheme=scheme)
    assert forced_change_due(f, s) is False
    assert decide(f, s) is Decision.NO_PIN  # works as before: no PIN on its initial PIN
    assert (
        decide(facts(category="L", scheme=scheme, pin_state=PinState.ENABLED), s)
        is Decision.ASK_PIN
    )


# --- S13, S16, S17, S18 ---------------------------------------------------------------


@pytest.mark.parametrize("state", [PinState.INITIAL, PinState.ENABLED, PinState.DISABLED, None])
def test_s13_not_activated_no_pin_operation(state: PinState | None) -> None:
    f = facts(life_cycle=LifeCycle.NOT_ACTIVATED, pin_state=state)
    for s in (BEFORE, ON, AFTER):
        assert decide(f, s) is Decision.NOT_ACTIVATED
    assert may_change_pin(f) is Decision.NOT_ACTIVATED


@pytest.mark.parametrize("s", [BEFORE, ON, AFTER, FAR_FUTURE])
@pytest.mark.parametrize("scheme", ["310", "390", "170"])
def test_s16_disabled_no_pin_and_not_forced(scheme: str, s: Settings) -> None:
    f = facts(scheme=scheme, pin_state=PinState.DISABLED)
    assert forced_change_due(f, s) is False
    assert decide(f, s) is Decision.NO_PIN


@pytest.mark.parametrize("state", [PinState.INITIAL, PinState.ENABLED, PinState.DISABLED, None])
def test_s17_blocked_when_no_tries_left(state: PinState | None) -> None:
    f = facts(pin_state=state, tries_left=0)
    assert f.blocked is True
    for s in (BEFORE, AFTER):
        assert decide(f, s) is Decision.BLOCKED
    assert may_change_pin(f) is Decision.BLOCKED


def test_s17_one_try_left_is_not_blocked() -> None:
    f = facts(pin_state=PinState.ENABLED, tries_left=1)
    assert f.blocked is False
    assert decide(f, AFTER) is Decision.ASK_PIN
    assert may_change_pin(f) is None


def test_s17_unknown_tries_is_not_blocked() -> None:
    f = facts(pin_state=None, tries_left=None)
    assert f.blocked is False
    assert decide(f, AFTER) is Decision.ASK_PIN


@pytest.mark.parametrize("state", [PinState.INITIAL, PinState.ENABLED, PinState.DISABLED, None])
def test_s18_lost_card_refused(state: PinState | None) -> None:
    f = facts(pin_state=state, lost=True)
    for s in (BEFORE, AFTER):
        assert decide(f, s) is Decision.LOST
    assert may_change_pin(f) is Decision.LOST


# --- rule 8 ---------------------------------------------------------------------------


@pytest.mark.parametrize("s", [BEFORE, ON, AFTER])
def test_rule8_unknown_pin_state_treated_as_enabled(s: Settings) -> None:
    f = facts(pin_state=None, tries_left=None, try_limit=None)  # a real card: no GET DATA C1
    assert f.effective_pin_state is PinState.ENABLED
    assert forced_change_due(f, s) is False  # S11: ENABLED is never forced
    assert decide(f, s) is Decision.ASK_PIN


def test_rule8_known_pin_state_is_kept() -> None:
    for state in PinState:
        assert facts(pin_state=state).effective_pin_state is state


# --- may_change_pin (S2, S3, S13, S17, S18) -------------------------------------------


@pytest.mark.parametrize("state", [PinState.INITIAL, PinState.ENABLED, PinState.DISABLED, None])
@pytest.mark.parametrize(
    ("category", "scheme"), [("1", "310"), ("1", "390"), ("1", "170"), ("L", "310")]
)
def test_s2_s3_holder_may_change_pin_any_time(
    category: str, scheme: str, state: PinState | None
) -> None:
    assert may_change_pin(facts(category=category, scheme=scheme, pin_state=state)) is None


def test_may_change_pin_refusals_in_order_lost_not_activated_blocked() -> None:
    everything = facts(lost=True, life_cycle=LifeCycle.NOT_ACTIVATED, tries_left=0)
    assert may_change_pin(everything) is Decision.LOST
    assert (
        may_change_pin(facts(life_cycle=LifeCycle.NOT_ACTIVATED, tries_left=0))
        is Decision.NOT_ACTIVATED
    )
    assert may_change_pin(facts(tries_left=0)) is Decision.BLOCKED


# --- S15: the new PIN -----------------------------------------------------------------

ALL_DIGITS = "0123456789"


def windows(digits: str) -> list[str]:
    return [digits[i : i + 6] for i in range(len(digits) - 5)]


def test_s15_violations_are_declared_in_the_order_they_are_checked() -> None:
    assert list(Violation) == [
        Violation.NOT_SIX_DIGITS,
        Violation.SAME_DIGITS,
        Violation.CONSECUTIVE,
        Violation.BIRTH_DATE,
        Violation.PHONE,
    ]


@pytest.mark.parametrize(
    "pin",
    [
        "12345",  # 5
        "1234567",  # 7
        "8026131",
        "80261",
        "",
        "abcdef",
        "80261a",
        "a80261",
        "802 61",
        " 80261",
        "80261 ",
        "802613\n",
        "+80261",
        "-80261",
        "8026.1",
        "１２３４５６",  # full-width digits
        "８０２６１３",
        "٨٠٢٦١٣",  # Arabic-Indic digits
        "²80261",  # a superscript two is a "digit" to str.isdigit
        "0x8026",
    ],
)
def test_s15_not_six_ascii_digits(pin: str) -> None:
    assert check_new_pin(pin) is Violation.NOT_SIX_DIGITS
    assert (
        check_new_pin(pin, birth_date=dt.date(1985, 3, 12), phone="13812345678")
        is Violation.NOT_SIX_DIGITS
    )


@pytest.mark.parametrize("digit", list(ALL_DIGITS))
def test_s15_six_equal_digits(digit: str) -> None:
    assert check_new_pin(digit * 6) is Violation.SAME_DIGITS


@pytest.mark.parametrize("pin", windows(ALL_DIGITS) + windows(ALL_DIGITS[::-1]))
def test_s15_consecutive_ascending_or_descending(pin: str) -> None:
    assert check_new_pin(pin) is Violation.CONSECUTIVE


def test_s15_consecutive_windows_are_the_ten_expected() -> None:
    assert windows(ALL_DIGITS) == ["012345", "123456", "234567", "345678", "456789"]
    assert windows(ALL_DIGITS[::-1]) == ["987654", "876543", "765432", "654321", "543210"]


@pytest.mark.parametrize(
    "pin",
    [
        "890123",
        "901234",
        "789012",
        "678901",
        "098765",
        "109876",
        "210987",
        "123457",
        "124567",
        "023456",
        "654320",
        "135792",
        "121212",
        "112233",
        "802613",
        "592046",
    ],
)
def test_s15_not_consecutive_is_accepted(pin: str) -> None:
    assert check_new_pin(pin) is None


BIRTH_DATES = [
    dt.date(1985, 3, 12),  # employee-new
    dt.date(1979, 11, 2),  # employee-enabled
    dt.date(1956, 1, 30),  # pension-new
    dt.date(2001, 4, 8),  # not-activated
    dt.date(1992, 7, 25),  # resident-new
]


def birth_forms(born: dt.date) -> list[str]:
    """Every 6-digit window of YYYYMMDD, plus MMDDYY and DDMMYY (S15)."""
    yyyymmdd = f"{born.year:04d}{born.month:02d}{born.day:02d}"
    yy = f"{born.year % 100:02d}"
    return windows(yyyymmdd) + [
        f"{born.month:02d}{born.day:02d}{yy}",
        f"{born.day:02d}{born.month:02d}{yy}",
    ]


def test_s15_birth_forms_of_one_date() -> None:
    assert birth_forms(dt.date(1985, 3, 12)) == ["198503", "985031", "850312", "031285", "120385"]


@pytest.mark.parametrize("born", BIRTH_DATES, ids=str)
def test_s15_birth_date_every_form(born: dt.date) -> None:
    for pin in birth_forms(born):
        assert check_new_pin(pin) is None, pin  # fine for someone else
        assert check_new_pin(pin, birth_date=born) is Violation.BIRTH_DATE, pin
        assert check_new_pin(pin, birth_date=born, phone="13500003333") is Violation.BIRTH_DATE, pin


def test_s15_birth_date_other_pins_accepted() -> None:
    born = dt.date(1985, 3, 12)
    for pin in ("802613", "592046", "468024", "850313", "120386"):
        assert check_new_pin(pin, birth_date=born) is None, pin


PHONES = ["13500003333", "02164001234", "13611223344", "18800001111"]


@pytest.mark.parametrize("phone", PHONES)
def test_s15_phone_every_window(phone: str) -> None:
    assert len(windows(phone)) == len(phone) - 5
    for pin in windows(phone):
        assert check_new_pin(pin) is None, pin  # fine for someone else
        assert check_new_pin(pin, phone=phone) is Violation.PHONE, pin


@pytest.mark.parametrize(
    ("phone", "digits"),
    [
        ("138-1234-5678", "13812345678"),
        ("135 0000 3333", "13500003333"),
        ("(021) 6400-1234", "02164001234"),
        ("136.1122.3344", "13611223344"),
    ],
)
def test_s15_phone_with_separators(phone: str, digits: str) -> None:
    for pin in windows(digits):
        expected = (
            Violation.CONSECUTIVE
            if pin in ALL_DIGITS or pin in ALL_DIGITS[::-1]
            else Violation.PHONE
        )
        assert check_new_pin(pin, phone=phone) is expected, pin


def test_s15_phone_window_across_a_separator() -> None:
    assert check_new_pin("381234", phone="138-1234-5678") is Violation.PHONE
    assert check_new_pin("000033", phone="135 0000 3333") is Violation.PHONE


def test_s15_phone_unknown_checks_nothing() -> None:
    assert check_new_pin("135000", phone=None) is None
    assert check_new_pin("135000", phone="") is None
    assert check_new_pin("592046", phone="13500003333") is None


def test_s15_order_not_six_digits_first() -> None:
    assert check_new_pin("1111111") is Violation.NOT_SIX_DIGITS
    assert check_new_pin("1234567") is Violation.NOT_SIX_DIGITS
    assert check_new_pin("13500", phone="13500003333") is Violation.NOT_SIX_DIGITS
    assert check_new_pin("1985031", birth_date=dt.date(1985, 3, 12)) is Violation.NOT_SIX_DIGITS


def test_s15_order_same_digits_before_birth_date_and_phone() -> None:
    born = dt.date(2011, 11, 11)  # MMDDYY and DDMMYY are 111111
    assert "111111" in birth_forms(born)
    assert check_new_pin("111111", birth_date=born, phone="13111111111") is Violation.SAME_DIGITS
    assert check_new_pin("000000", phone="13800000000") is Violation.SAME_DIGITS


def test_s15_order_consecutive_before_birth_date_and_phone() -> None:
    born = dt.date(2045, 1, 23)  # MMDDYY is 012345
    assert "012345" in birth_forms(born)
    assert check_new_pin("012345", birth_date=born, phone="13901234567") is Violation.CONSECUTIVE
    assert check_new_pin("234567", phone="13812345678") is Violation.CONSECUTIVE


def test_s15_order_birth_date_before_phone() -> None:
    born = dt.date(1985, 3, 12)
    assert check_new_pin("850312", birth_date=born, phone="13850312999") is Violation.BIRTH_DATE


PIN_TEXT = st.one_of(
    st.text(alphabet=ALL_DIGITS, min_size=6, max_size=6),
    st.text(alphabet=ALL_DIGITS, min_size=0, max_size=9),
    st.text(max_size=8),
)


def violates_by_oracle(pin: str, born: dt.date | None, phone: str | None) -> bool:
    if len(pin) != 6 or any(c not in ALL_DIGITS for c in pin):
        return True
    if len(set(pin)) == 1 or pin in ALL_DIGITS or pin in ALL_DIGITS[::-1]:
        return True
    if born is not None and pin in birth_forms(born):
        return True
    digits = "".join(c for c in (phone or "") if c in ALL_DIGITS)
    return pin in windows(digits)


@settings(max_examples=500, deadline=None)
@given(
    pin=PIN_TEXT,
    born=st.one_of(
        st.none(), st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31))
    ),
    phone=st.one_of(st.none(), st.text(alphabet=ALL_DIGITS + "- ", max_size=14)),
)
def test_s15_property_accepted_pin_is_six_ascii_digits_breaking_no_rule(
    pin: str, born: dt.date | None, phone: str | None
) -> None:
    result = check_new_pin(pin, birth_date=born, phone=phone)
    if result is None:
        assert len(pin) == 6
        assert all(c in ALL_DIGITS for c in pin)
        assert len(set(pin)) > 1
        assert pin not in ALL_DIGITS and pin not in ALL_DIGITS[::-1]
        if born is not None:
            assert pin not in birth_forms(born)
        if phone:
            assert pin not in windows("".join(c for c in phone if c in ALL_DIGITS))
    assert (result is None) is (not violates_by_oracle(pin, born, phone))


# --- S7: the query password is not a PIN ----------------------------------------------


def an_id_ending_in_x() -> str:
    for serial in range(1000):
        first17 = f"31010419850312{serial:03d}"
        if check_digit(first17) == "X":
            return first17 + "X"
    raise AssertionError("no ID with check digit X found")


def test_s7_query_password_last_8_of_id() -> None:
    assert query_password("310104198503122174") == "03122174"
    number = an_id_ending_in_x()
    assert id_problem(number) is None
    password = query_password(number)
    assert password == number[-8:-1] + "0"
    assert len(password) == 8


@pytest.mark.parametrize(
    "ssn",
    [
        "310104198503122174",
        "310101197911020480",
        "310110195601300847",
        "310115199207253261",
        "310113199010102758",
    ],
)
def test_s7_query_password_never_accepted_as_pin(ssn: str) -> None:
    password = query_password(ssn)
    assert len(password) == 8
    assert check_new_pin(password) is Violation.NOT_SIX_DIGITS
    assert (
        check_new_pin(password, birth_date=dt.date(1985, 3, 12), phone="13812345678")
        is Violation.NOT_SIX_DIGITS
    )


def test_s7_query_password_with_final_x_never_accepted_as_pin() -> None:
    password = query_password(an_id_ending_in_x())
    assert password.endswith("0")
    assert check_new_pin(password) is Violation.NOT_SIX_DIGITS


@settings(max_examples=300, deadline=None)
@given(
    first17=st.builds(
        lambda region, born, serial: f"{region}{born:%Y%m%d}{serial:03d}",
        st.sampled_from(["310101", "310104", "310115", "110101", "440305"]),
        st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2024, 12, 31)),
        st.integers(min_value=0, max_value=999),
    )
)
def test_s7_property_query_password_is_8_chars_and_rejected(first17: str) -> None:
    number = first17 + check_digit(first17)
    assert id_problem(number) is None
    password = query_password(number)
    assert len(password) == 8
    assert password.isascii() and password.isdigit()
    assert check_new_pin(password) is Violation.NOT_SIX_DIGITS


def test_s8_a_running_terminal_reads_the_real_date_at_each_decision(monkeypatch):
    """Settings without a fixed today follow the clock: crossing the upgrade date while
    the terminal runs starts the forced change."""
    import terminal.rules as rules_module

    class Clock(dt.date):
        now = dt.date(2030, 4, 12)

        @classmethod
        def today(cls):
            return cls.now

    monkeypatch.setattr(rules_module.dt, "date", Clock)
    settings = Settings(upgrade_date=dt.date(2030, 4, 13))
    assert settings.upgraded is False
    Clock.now = dt.date(2030, 4, 13)
    assert settings.upgraded is True
