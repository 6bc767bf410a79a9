"""What a card keeps between commands and forgets at a reset, power-off or removal.

Nothing here is written to disk (docs/card.md §2, "Selection state").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cardio.card import files
from cardio.issuer import KeyName


@dataclass
class Session:
    df: files.Df
    ef: files.Ef | None = None
    record: int | None = None  # the record pointer: index of the current record in `ef`
    verified: bool = False  # the PIN, until power-off (part 7 §5.8)
    challenge: bytes | None = None
    pending: bytes = b""  # T=0 style: data waiting for GET RESPONSE
    # Keys an EXTERNAL AUTHENTICATE proved, until a reset or the SELECT of a DF outside
    # their own (part 7 §6.6; docs/card.md §4)
    authenticated: set[KeyName] = field(default_factory=set)
