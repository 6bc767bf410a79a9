"""The terminal's pending reversals: a settlement is written down before it is sent.

Like the card's decrement-first try counter: before a 2102 leaves, a file naming its
message id (and the person, for the 2601) is made and fsync'd; it is removed once the
host's answer is in and recorded, or once a 2601 for it is confirmed. So a terminal
killed between the settlement and its answer finds the file at its next start and
reverses that settlement before anything else: a holder is never charged for a payment
the terminal did not confirm. One file per message, 0600 in a 0700 folder (a person
number is personal data); names are the message ids, which are ours.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cardio.resources import private_folders

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class Pending:
    msgid: str
    psn_no: str
    infno: str = "2102"


class Journal:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, msgid: str) -> Path:
        if not _NAME.match(msgid):
            raise ValueError("a message id of letters and digits is needed")
        return self.folder / f"{msgid}.json"

    def add(self, pending: Pending) -> None:
        """Durable before it returns: the file and its folder entry are on disk."""
        private_folders(self.folder)
        path = self._path(pending.msgid)
        data = json.dumps(
            {"msgid": pending.msgid, "psn_no": pending.psn_no, "infno": pending.infno}
        ).encode()
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_folder(self.folder)

    def remove(self, msgid: str) -> None:
        try:
            os.unlink(self._path(msgid))
        except FileNotFoundError:
            return
        _fsync_folder(self.folder)

    def pending(self) -> list[Pending]:
        """What is still to be reversed; a damaged file is skipped (and kept for a person)."""
        try:
            names = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                doc = json.loads((self.folder / name).read_text("utf-8"))
                item = Pending(str(doc["msgid"]), str(doc["psn_no"]), str(doc.get("infno", "2102")))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found.append(item)
        return found


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
