"""The shipped test data: profiles as the issue lists them, realistic holders, the test key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cardio import identity, security
from cardio.card import profiles
from cardio.card.card import VirtualCard
from cardio.card.state import LifeCycle, PinState
from cardio.issuer import (
    COUNTERFEIT_ISSUER_FILE,
    TEST_ISSUER_FILE,
    KeyName,
    card_keys,
    counterfeit_issuer,
    fixture_issuer,
)
from cardio.model import Algorithm
from cardio.resources import data_dir

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "fixtures" / "README.md").read_text("utf-8")

# name: (scheme, category, life cycle, PIN state, tries left, T=0 style)
EXPECTED = {
    "employee-new": ("310", "1", LifeCycle.ACTIVE, PinState.INITIAL, 6, False),
    "employee-enabled": ("310", "1", LifeCycle.ACTIVE, PinState.ENABLED, 6, False),
    "resident-new": ("390", "1", LifeCycle.ACTIVE, PinState.INITIAL, 6, False),
    "pension-new": ("170", "1", LifeCycle.ACTIVE, PinState.INITIAL, 6, False),
    "legacy-medical": ("310", "L", LifeCycle.ACTIVE, PinState.INITIAL, 6, False),
    "not-activated": ("310", "1", LifeCycle.NOT_ACTIVATED, PinState.INITIAL, 6, False),
    "locked": ("310", "1", LifeCycle.ACTIVE, PinState.ENABLED, 0, False),
    "disabled": ("310", "1", LifeCycle.ACTIVE, PinState.DISABLED, 6, False),
    "t0-employee-new": ("310", "1", LifeCycle.ACTIVE, PinState.INITIAL, 6, True),
}


def readme_pin() -> str:
    match = re.search(r"PIN of the ENABLED test cards: `(\d{6})`", README)
    assert match, "fixtures/README.md must state the test PIN"
    return match.group(1)


def test_every_required_profile_is_shipped():
    assert set(EXPECTED) <= set(profiles.names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_state(name):
    scheme, category, life, pin_state, tries, t0 = EXPECTED[name]
    state = profiles.load(name)
    assert (state.scheme, state.card.category, state.life_cycle, state.pin_state) == (
        scheme,
        category,
        life,
        pin_state,
    )
    assert (state.tries_left, state.try_limit, state.t0_style) == (tries, 6, t0)
    assert profiles.describe(name)


@pytest.mark.parametrize("name", profiles.names())
def test_holder_is_realistic(name):
    holder = profiles.load(name).holder
    assert identity.id_problem(holder.ssn) is None
    assert identity.birth_date_of(holder.ssn) == holder.birth_date
    assert holder.ssn[:6] == holder.birthplace
    assert int(holder.ssn[16]) % 2 == (1 if holder.sex == "1" else 0)  # odd digit: male
    assert 2 <= len(holder.name) <= 4
    assert all("\u4e00" <= ch <= "\u9fff" for ch in holder.name)
    assert len(holder.name.encode("gbk")) <= 30


@pytest.mark.parametrize("name", profiles.names())
def test_card_keys_are_dispersed_from_their_issuers_masters(name):
    """Part 9 §7.3: each key is its issuer's master dispersed with the card's factors;
    the counterfeit profile's issuer is another one."""
    state = profiles.load(name)
    issuer = counterfeit_issuer() if name == profiles.COUNTERFEIT else fixture_issuer()
    ident, historical = state.card.identification_code, state.historical
    assert state.keys == card_keys(issuer, ident, historical)
    assert state.keys[KeyName.IRK] == security.card_key(
        Algorithm.SM4, issuer.masters[KeyName.IRK], ident, historical
    )
    assert ident[:3] == bytes.fromhex("310000")  # BCD region code


@pytest.mark.parametrize(
    ("name", "pin"),
    [
        ("employee-new", "123456"),
        ("resident-new", "123456"),
        ("employee-enabled", None),
    ],
)
def test_readme_pins_open_the_cards(name, pin):
    card = VirtualCard(profiles.load(name))
    card.power_on()
    secret = pin or readme_pin()
    assert card.execute(bytes.fromhex("0020000003" + secret)) == b"\x90\x00"


def test_locked_card_was_locked_with_the_readme_pin():
    assert profiles.load("locked").pin.matches(readme_pin())


@pytest.mark.parametrize("file", [TEST_ISSUER_FILE, COUNTERFEIT_ISSUER_FILE])
def test_test_keys_are_marked_test_only(file):
    text = (data_dir("keys") / file).read_text()
    assert "TEST ONLY" in text
    assert file.startswith("TEST-ONLY")
    assert fixture_issuer().masters != counterfeit_issuer().masters
    assert not (data_dir("keys") / "TEST-ONLY-master-key.hex").exists()  # retired


def test_new_initial_cards_get_a_fresh_salt():
    a, b = profiles.load("employee-new"), profiles.load("employee-new")
    assert a.pin.salt != b.pin.salt
    assert a.pin.matches("123456") and b.pin.matches("123456")


def test_unknown_profile_names_the_way_out():
    with pytest.raises(profiles.UnknownProfileError, match="list-profiles"):
        profiles.load("no-such-card")
