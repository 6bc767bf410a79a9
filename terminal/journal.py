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

import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from cardio.resources import fsync_folder, private_folders

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class Pending:
    msgid: str
    psn_no: str
    infno: str = "2102"  # or 2103, a cancellation
    setl_id: str = ""  # a cancellation's settlement: the day-book keeps it if reversed


class Journal:
    """Each pending file stays open and locked (flock) while its settlement is in flight:
    another terminal run with the same id, recovering, skips a file it cannot lock, so it
    never reverses a settlement whose answer is still awaited. A killed process's lock
    goes with it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._held: dict[str, int] = {}

    def _path(self, msgid: str) -> Path:
        if not _NAME.match(msgid):
            raise ValueError("a message id of letters and digits is needed")
        return self.folder / f"{msgid}.json"

    def add(self, pending: Pending) -> None:
        """Durable before it returns: the file and its folder entry are on disk. The file
        stays open and locked until `remove`."""
        private_folders(self.folder)
        path = self._path(pending.msgid)
        data = json.dumps(asdict(pending)).encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # new file: nobody else holds it
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._held[pending.msgid] = fd
        fsync_folder(self.folder)

    def release(self, msgid: str) -> None:
        """Its answer will not come: the file stays for a later reversal (recover), no
        longer held as in flight."""
        fd = self._held.pop(msgid, None)
        if fd is not None:
            os.close(fd)

    def remove(self, msgid: str) -> None:
        fd = self._held.pop(msgid, None)
        try:
            os.unlink(self._path(msgid))
        except FileNotFoundError:
            return
        finally:
            if fd is not None:
                os.close(fd)
        fsync_folder(self.folder)

    def pending(self) -> list[Pending]:
        """What is still to be reversed; a damaged file is skipped (and kept for a person)."""
        try:
            names = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if not name.endswith(".json") or name[: -len(".json")] in self._held:
                continue  # ours, in flight: its answer or its own reversal decides
            item = self._read_unlocked(self.folder / name)
            if item is not None:
                found.append(item)
        return found

    @staticmethod
    def _read_unlocked(path: Path) -> Pending | None:
        """The pending settlement in `path`, unless another process holds it in flight."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another terminal with this id waits for its answer
            doc = json.loads(os.read(fd, 4096).decode("utf-8"))
            return Pending(
                str(doc["msgid"]),
                str(doc["psn_no"]),
                str(doc.get("infno", "2102")),
                str(doc.get("setl_id", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        finally:
            os.close(fd)
