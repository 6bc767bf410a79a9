"""The in-process reader: a card file in a virtual slot, inserted and removed at will.

The file may also be a PSAM's (`"kind": "psam"`, docs/psam.md): the slot then holds a
`VirtualPsam`, locked the same way, and `card` is None while `psam` is it."""

from __future__ import annotations

import os
from pathlib import Path

from cardio.card.card import VirtualCard
from cardio.card.store import CardLock, CardPath, FileStore, lockable_card_path
from cardio.psam import store as psam_store
from cardio.psam.card import VirtualPsam
from cardio.psam.chip import Chip
from cardio.readers.base import CardEvent, EventKind, Reader, Trace
from cardio.readers.errors import CardNotPoweredError, NoCardError


class VirtualReader(Reader):
    """Holds the card file locked while the card is inserted, as a real slot holds a card."""

    can_toggle = True

    def __init__(
        self,
        card_path: CardPath,
        *,
        inserted: bool = True,
        trace: Trace | None = None,
        shared_psam: bool = False,
    ):
        super().__init__(trace)
        # A PSAM file is read, never written (nothing of a PSAM's is durable here): with
        # shared_psam, several terminals may use one file, and it is not locked.
        self._shared_psam = shared_psam
        self._shown = os.fspath(card_path)  # as the person wrote it, for messages
        # Resolved once: re-inserting is the same card even if a symlink changes meanwhile.
        # (Raises CardPathError for a path that cannot name a card file.)
        self.card_path = lockable_card_path(card_path)
        self.name = f"virtual:{Path(self._shown).name}"
        self._store: FileStore | CardLock | None = None
        self._card: VirtualCard | None = None
        self._psam: VirtualPsam | None = None
        self._powered = False
        if inserted:
            self.insert()

    @property
    def card(self) -> VirtualCard | None:
        return self._card

    @property
    def psam(self) -> VirtualPsam | None:
        return self._psam

    @property
    def _chip(self) -> Chip | None:
        return self._card if self._card is not None else self._psam

    def insert(self) -> None:
        """Put the card in the slot: lock and load its file (raises StoreError, CardFileError,
        PsamFileError)."""
        if self._chip is not None:
            return
        if psam_store.is_psam_file(self.card_path):
            lock = None
            if self._shared_psam:
                psam_state = psam_store.read(self.card_path)
            else:
                psam_state, lock = psam_store.open_locked(self.card_path, self._shown)
            psam = VirtualPsam(psam_state)
            self._store, self._psam = lock, psam
            self._emit(CardEvent(EventKind.INSERTED, self.name, psam.atr))
            return
        store = FileStore(self.card_path, name=self._shown)
        state = store.open()
        self._store, self._card = store, VirtualCard(state, store)
        self._emit(CardEvent(EventKind.INSERTED, self.name, self._card.atr))

    def remove(self) -> None:
        """Pull the card out: its session is gone and its file is released."""
        chip = self._chip
        if chip is None:
            return
        chip.power_off()
        self._powered = False
        store, self._store, self._card, self._psam = self._store, None, None, None
        if isinstance(store, FileStore):
            store.close()
        elif store is not None:
            store.release()
        self._emit(CardEvent(EventKind.REMOVED, self.name))

    def toggle(self) -> None:
        """F2: the card in if it is out, out if it is in."""
        if self._chip is None:
            self.insert()
        else:
            self.remove()

    def card_present(self) -> bool:
        return self._chip is not None

    def peek_atr(self) -> bytes | None:
        chip = self._chip
        return chip.atr if chip is not None else None

    def _inserted(self) -> Chip:
        chip = self._chip
        if chip is None:
            raise NoCardError()
        return chip

    def connect(self) -> bytes:
        card = self._inserted()
        if not self._powered:
            card.power_on()
            self._powered = True
            return self._session(card.atr)
        return card.atr

    def reset(self) -> bytes:
        atr = self._inserted().reset()
        self._powered = True
        return self._session(atr)

    def disconnect(self) -> None:
        chip = self._chip
        if chip is not None and self._powered:
            chip.power_off()
        self._powered = False
        self._session_marked = False  # the next connect is another session, maybe card

    def _exchange(self, apdu: bytes) -> bytes:
        card = self._inserted()
        if not self._powered:
            raise CardNotPoweredError()
        return card.execute(apdu)

    def close(self) -> None:
        self.remove()
