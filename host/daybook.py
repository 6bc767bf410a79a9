"""A terminal's own record of the day's settlements, for the end of day (3201 / 3202).
The terminal writes it (terminal/settlement.py); `pos-host reconcile --daybook` reads it.

One JSON line per event, appended and fsync'd, in one file per terminal and day (0600 in
a 0700 folder: person numbers are personal data): a settlement the platform answered,
a cancellation (2103) of one, a reversal (2601) the platform confirmed. The day's totals
are the settlements neither cancelled nor reversed: what the platform counts too
(host/platform.py's reconciliation). A crash between the platform's answer and this
record leaves the book short; the day's 3202 names what is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from cardio.resources import private_folders
from host.client import Settlement
from host.wire import yuan


@dataclass(frozen=True)
class Entry:
    setl_id: str
    mdtrt_id: str
    psn_no: str
    msgid: str
    time: str
    medfee_fen: int
    fund_fen: int
    acct_fen: int
    cash_fen: int

    @classmethod
    def of(cls, s: Settlement) -> Entry:
        return cls(
            s.setl_id,
            s.mdtrt_id,
            s.psn_no,
            s.msgid,
            s.time,
            s.medfee_fen,
            s.fund_fen,
            s.acct_fen,
            s.cash_fen,
        )


@dataclass(frozen=True)
class Totals:
    count: int
    medfee_fen: int
    fund_fen: int
    acct_fen: int
    cash_fen: int


class DayBook:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, day: dt.date) -> Path:
        return self.folder / f"{day.isoformat()}.jsonl"

    def _append(self, day: dt.date, record: dict[str, object]) -> None:
        private_folders(self.folder)
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path(day), flags, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def settled(self, day: dt.date, settlement: Settlement) -> None:
        self._append(day, {"event": "settled", **asdict(Entry.of(settlement))})

    def cancelled(self, day: dt.date, setl_id: str) -> None:
        self._append(day, {"event": "cancelled", "setl_id": setl_id})

    def reversed(self, day: dt.date, msgid: str) -> None:
        self._append(day, {"event": "reversed", "msgid": msgid})

    def restored(self, day: dt.date, setl_id: str) -> None:
        """A cancellation reversed (2601 of a 2103): the settlement stands again."""
        self._append(day, {"event": "restored", "setl_id": setl_id})

    def _events(self, day: dt.date) -> Iterator[dict[str, object]]:
        try:
            text = self.path(day).read_text("utf-8")
        except FileNotFoundError:
            return
        for raw in text.splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a line torn by a crash: the 3202 will name what it held
            if isinstance(record, dict):
                yield record

    def entries(self, day: dt.date) -> list[Entry]:
        """The day's settlements that still stand, in the order they were made."""
        settled: dict[str, Entry] = {}
        gone_setl: set[str] = set()
        gone_msg: set[str] = set()
        for record in self._events(day):
            event = record.get("event")
            if event == "settled":
                entry = _entry(record)
                if entry is not None:
                    settled[entry.setl_id] = entry
            elif event == "cancelled":
                gone_setl.add(str(record.get("setl_id")))
            elif event == "restored":
                gone_setl.discard(str(record.get("setl_id")))
            elif event == "reversed":
                gone_msg.add(str(record.get("msgid")))
        return [
            e for e in settled.values() if e.setl_id not in gone_setl and e.msgid not in gone_msg
        ]

    def totals(self, day: dt.date) -> Totals:
        entries = self.entries(day)
        return Totals(
            len(entries),
            sum(e.medfee_fen for e in entries),
            sum(e.fund_fen for e in entries),
            sum(e.acct_fen for e in entries),
            sum(e.cash_fen for e in entries),
        )

    def rows(self, day: dt.date) -> list[dict[str, object]]:
        """The day's settlements as 3202's detail rows."""
        return [
            {
                "setl_id": e.setl_id,
                "mdtrt_id": e.mdtrt_id,
                "psn_no": e.psn_no,
                "medfee_sumamt": yuan(e.medfee_fen),
                "fund_pay_sumamt": yuan(e.fund_fen),
                "acct_pay": yuan(e.acct_fen),
                "refd_setl_flag": "0",
            }
            for e in self.entries(day)
        ]

    def find(self, day: dt.date, digits: str) -> list[Entry]:
        """The day's standing settlements whose id ends with `digits` (a clerk types the
        end of the id on the receipt)."""
        return [e for e in self.entries(day) if digits and e.setl_id.endswith(digits)]


def _entry(record: dict[str, object]) -> Entry | None:
    """A settled line, or None when a field is missing or of the wrong kind."""
    texts = ("setl_id", "mdtrt_id", "psn_no", "msgid", "time")
    amounts = ("medfee_fen", "fund_fen", "acct_fen", "cash_fen")
    if not all(isinstance(record.get(k), str) for k in texts):
        return None
    if not all(type(record.get(k)) is int for k in amounts):
        return None
    t = [str(record[k]) for k in texts]
    a = [int(str(record[k])) for k in amounts]
    return Entry(t[0], t[1], t[2], t[3], t[4], a[0], a[1], a[2], a[3])
