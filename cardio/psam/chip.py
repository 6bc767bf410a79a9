"""What a slot holds: a user card or a PSAM (docs/psam.md).

The vpcd bridge and the in-process reader take any `Chip`; `cardio.psam.store.is_psam_file`
tells the two kinds of file apart by the PSAM file's `"kind": "psam"`.
"""

from __future__ import annotations

from typing import Protocol


class Chip(Protocol):
    """The surface `VirtualCard` and `VirtualPsam` share: power, reset, APDUs."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> bytes: ...

    def reset(self) -> bytes: ...

    def power_off(self) -> None: ...

    def execute(self, apdu: bytes) -> bytes: ...
