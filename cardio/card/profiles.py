"""Card profiles: ready-made cards in any state (fixtures/cards/NAME.json)."""

from __future__ import annotations

import json
from pathlib import Path

from cardio.card import store
from cardio.card.state import CardState, PinHash, PinState
from cardio.errors import UsageError
from cardio.pin import INITIAL_PIN
from cardio.resources import data_dir


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


def new_card(name: str, path: store.CardPath, *, force: bool = False) -> CardState:
    state = load(name)
    store.create(path, state, force=force)
    return state
