"""Card profiles: ready-made cards in any state (fixtures/cards/NAME.json)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from cardio.card import store
from cardio.card.state import NAME_BYTES, CardState, PinHash, PinState, historical_bytes
from cardio.errors import UsageError
from cardio.issuer import card_keys, counterfeit_issuer, fixture_issuer
from cardio.model import SPEC_VERSIONS, Algorithm
from cardio.pin import INITIAL_PIN
from cardio.resources import data_dir

COUNTERFEIT = "counterfeit"


class UnknownProfileError(UsageError, LookupError):
    """No profile of that name; the message lists the ones there are."""


def names() -> list[str]:
    return sorted(p.stem for p in data_dir("cards").glob("*.json"))


def _path(name: str) -> Path:
    path = data_dir("cards") / f"{name}.json"
    # Only the listed names: a name is not a path ('../x' must not load some other file).
    if name not in names() or not path.is_file():
        raise UnknownProfileError(
            f"no profile named {name!r}; 'cardio card list-profiles' shows the names"
        )
    return path


def describe(name: str) -> str:
    doc = json.loads(_path(name).read_text("utf-8"))
    return str(doc.get("description", ""))


def load(name: str) -> CardState:
    path = _path(name)
    state = store.decode(path.read_bytes(), str(path))
    if state.pin_state is PinState.INITIAL and state.pin.matches(INITIAL_PIN):
        state = state.with_(pin=PinHash.of(INITIAL_PIN))  # a fresh salt for each new card
    return state.with_(profile=name)


MAX_SERIAL = 99_999_999  # the identification code's serial: 4 bytes of BCD


def make(
    name: str,
    *,
    spec_version: str | None = None,
    real_only: bool = False,
    serial: int | None = None,
    algorithm: Algorithm = Algorithm.SM4,
) -> CardState:
    """A new card of profile `name`: of the generation `spec_version` (EF05 tag 03; the
    profile's own if None), `real_only` or not, with historical bytes derived from its
    identification code (part 2 §8.4; docs/card.md §1). `serial` makes another card of
    the same holder: that serial in the identification code (V2.0 table 10) and the card
    number, so its ATR and every key differ (part 9 §7.3). `algorithm`: SM4, or DES
    (the SSSE's FCI says 01, the keys are the DES test issuer's)."""
    state = load(name)
    card = state.card
    if serial is not None:
        if not 0 < serial <= MAX_SERIAL:
            raise UsageError(f"a card serial is 1 to {MAX_SERIAL}; give another --serial")
        code = card.identification_code
        card = replace(
            card,
            identification_code=code[:8] + bytes.fromhex(f"{serial:08d}") + code[12:],
            card_number=card.card_number[0] + f"{serial:08d}",
        )
    if spec_version is not None and spec_version != card.spec_version:
        if spec_version not in SPEC_VERSIONS:
            raise UsageError(
                f"no specification version {spec_version!r}; use one of " + ", ".join(SPEC_VERSIONS)
            )
        name_bytes = len(state.holder.name.encode("gbk"))
        if spec_version == "1.00" and name_bytes > NAME_BYTES:
            raise UsageError(
                f"profile {name}'s holder name takes {name_bytes} bytes, more than a 1.00 "
                f"card holds ({NAME_BYTES}); use --spec-version 2.00 or 3.00"
            )
        card = replace(card, spec_version=spec_version)
    historical = historical_bytes(card.identification_code)
    # The card's own keys, from its issuer's masters (cardio/issuer.py): the counterfeit
    # profile's come from another issuer, so its authenticity check fails.
    if name == COUNTERFEIT and algorithm is not Algorithm.SM4:
        raise UsageError("the counterfeit profile is an SM4 card; leave --algorithm out")
    issuer = counterfeit_issuer() if name == COUNTERFEIT else fixture_issuer(algorithm)
    return state.with_(
        card=card,
        real_only=real_only,
        historical=historical,
        algorithm=algorithm,
        keys=card_keys(issuer, card.identification_code, historical),
    )


def new_card(
    name: str,
    path: store.CardPath,
    *,
    force: bool = False,
    spec_version: str | None = None,
    real_only: bool = False,
    serial: int | None = None,
    algorithm: Algorithm = Algorithm.SM4,
) -> CardState:
    state = make(
        name, spec_version=spec_version, real_only=real_only, serial=serial, algorithm=algorithm
    )
    store.create(path, state, force=force)
    return state
