"""The in-process reader: a card file in a virtual slot, inserted and removed at will."""

from __future__ import annotations

import os
from pathlib import Path

from cardio.card.card import VirtualCard
from cardio.card.store import CardPath, FileStore, lockable_card_path
from cardio.readers.base import CardEvent, EventKind, Reader, Trace
from cardio.readers.errors import CardNotPoweredError, NoCardError


class VirtualReader(Reader):
    """Holds the card file locked while the card is inserted, as a real slot holds a card."""

    can_toggle = True

    def __init__(self, card_path: CardPath, *, inserted: bool = True, trace: Trace | None = None):
        super().__init__(trace)
        self._shown = os.fspath(card_path)  # as the person wrote it, for messages
        # Resolved once: re-inserting is the same card even if a symlink changes meanwhile.
        # (Raises CardPathError for a path that cannot name a card file.)
        self.card_path = lockable_card_path(card_path)
        self.name = f"virtual:{Path(self._shown).name}"
        self._store: FileStore | None = None
        self._card: VirtualCard | None = None
        self._powered = False
        if inserted:
            self.insert()

    @property
    def card(self) -> VirtualCard | None:
        return self._card

    def insert(self) -> None:
        """Put the card in the slot: lock and load its file (raises StoreError, CardFileError)."""
        if self._card is not None:
            return
        store = FileStore(self.card_path, name=self._shown)
        state = store.open()
        self._store, self._card = store, VirtualCard(state, store)
        self._emit(CardEvent(EventKind.INSERTED, self.name, self._card.atr))

    def remove(self) -> None:
        """Pull the card out: its session is gone and its file is released."""
        if self._card is None:
            return
        self._card.power_off()
        self._powered = False
        store, self._store, self._card = self._store, None, None
        if store is not None:
            store.close()
        self._emit(CardEvent(EventKind.REMOVED, self.name))

    def toggle(self) -> None:
        """F2: the card in if it is out, out if it is in."""
        if self._card is None:
            self.insert()
        else:
            self.remove()

    def card_present(self) -> bool:
        return self._card is not None

    def peek_atr(self) -> bytes | None:
        return self._card.atr if self._card else None

    def _inserted(self) -> VirtualCard:
        if self._card is None:
            raise NoCardError()
        return self._card

    def connect(self) -> bytes:
        card = self._inserted()
        if not self._powered:
            card.power_on()
            self._powered = True
        return card.atr

    def reset(self) -> bytes:
        atr = self._inserted().reset()
        self._powered = True
        return atr

    def disconnect(self) -> None:
        if self._card is not None and self._powered:
            self._card.power_off()
        self._powered = False

    def _exchange(self, apdu: bytes) -> bytes:
        card = self._inserted()
        if not self._powered:
            raise CardNotPoweredError()
        return card.execute(apdu)

    def close(self) -> None:
        self.remove()
