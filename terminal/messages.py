"""What the card layer's threads tell the app: each becomes a Textual message, handled on
the UI thread (workers post them, never touch the screen)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # the worker is imported after the first screen, not for it
    from cardio.readers.base import CardEvent
    from terminal.worker import Result


class CardChanged(Message):
    def __init__(self, event: CardEvent) -> None:
        super().__init__()
        self.event = event


class CardResult(Message):
    """What a worker got for command number `seq` of flow number `flow_id`."""

    def __init__(self, flow_id: int, seq: int, result: Result, present: bool = True) -> None:
        super().__init__()
        self.flow_id = flow_id
        self.seq = seq
        self.result = result
        self.present = present  # was the card still there when the worker finished


class CardFileProblem(Message):
    """F2 could not put the virtual card in or take it out; `key` says why."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


class TraceLine(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
