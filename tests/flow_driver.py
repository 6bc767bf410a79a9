"""Drive a terminal flow without Textual, with the terminal's own core (terminal.worker)."""

from __future__ import annotations

import json

from terminal_helpers import issuer_keys

from cardio.readers.base import Reader
from cardio.resources import data_dir
from terminal.equipment import Equipment
from terminal.flow.commands import Command, ReadCard
from terminal.flow.pharmacy import PharmacyFlow, Purpose
from terminal.rules import Settings
from terminal.worker import deliver, execute


def fixture_phones() -> dict[str, str]:
    """Holders' phones by social security number, from fixtures/holders/holders.json."""
    doc = json.loads((data_dir("holders") / "holders.json").read_text("utf-8"))
    return {h["ssn"]: h["phone"] for h in doc["holders"]}


PHONES = fixture_phones()


class Worker:
    """Runs a flow's commands on a reader, as the app's card worker thread does."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.sent: list[str] = []

    def run(self, flow: PharmacyFlow, command: Command | None) -> None:
        while command is not None:
            self.sent.append(type(command).__name__)
            if isinstance(command, ReadCard):
                flow.reading()
            result, present = execute(Equipment(self.reader, keys=issuer_keys()), command)
            command = deliver(flow, result, present)

    def start(self, purpose: Purpose, settings: Settings) -> PharmacyFlow:
        """A flow of `purpose` with the card read (a payment of 12.50 yuan)."""
        flow = PharmacyFlow(purpose, settings, phone_of=PHONES.get)
        self.run(flow, flow.start())
        if purpose is Purpose.PAY:
            self.run(flow, flow.entered("1250"))
        return flow

    def enter(self, flow: PharmacyFlow, text: str) -> None:
        self.run(flow, flow.entered(text))
