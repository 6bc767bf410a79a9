"""Durable card files: one JSON file per card, written atomically, one process at a time.

Every write goes temp file -> fsync -> rename -> fsync of the directory, so a process
killed at any instant leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Protocol

from cardio.card.state import CardFileError, CardState

FILE_MODE = 0o600


class StoreError(Exception):
    """A card file problem a person can act on; the message says what to do."""


class CardInUseError(StoreError):
    pass


class Store(Protocol):
    def save(self, state: CardState) -> None: ...


class MemoryStore:
    """Keeps the last saved state in memory: for tests and throw-away cards."""

    def __init__(self, state: CardState | None = None) -> None:
        self.state = state

    def save(self, state: CardState) -> None:
        self.state = state


def encode(state: CardState) -> bytes:
    return (json.dumps(state.to_json(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may not lower it, and an old temp may be wider
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read(path: Path) -> CardState:
    """Load and check a card file without locking it (reading is safe: writes are renames)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(
            f"{path}: no such card file; make one with 'cardio card new --profile NAME {path}'"
        ) from None
    except OSError as e:
        raise StoreError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    return decode(raw, str(path))


def decode(raw: bytes, name: str) -> CardState:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CardFileError(name, "the file", "is not UTF-8 text") from None
    except RecursionError:
        raise CardFileError(name, "the file", "is nested too deeply to be a card file") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise CardFileError(name, where, "is not valid JSON") from None
    return CardState.from_json(doc, name)


class CardLock:
    """An exclusive lock on a card file, held through a sidecar `.NAME.lock`.

    The card file itself is replaced on every write, so it cannot carry the lock.
    The lock file names its holder, for the error the next process gets.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise CardInUseError(
                f"{self.path} is in use by {holder}; stop that program or use another card file"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} ({program}, since {stamp})\n".encode(), 0)
        self._fd = fd
        self._remove_stale_temps()

    def _remove_stale_temps(self) -> None:
        """Temp files left by a killed writer; only the lock holder may remove them."""
        prefix = f".{self.path.name}.tmp-"
        for stale in self.path.parent.iterdir():
            if stale.name.startswith(prefix) and stale.name[len(prefix):].isdigit():
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class FileStore:
    """The durable store of one card file, held locked while open."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = CardLock(self.path)

    def open(self) -> CardState:
        """Lock the file and load it; raises StoreError / CardFileError, file untouched."""
        if not self.path.exists():
            read(self.path)  # says what to do, and leaves no lock file behind
        self._lock.acquire()
        try:
            return read(self.path)
        except BaseException:
            self._lock.release()
            raise

    def save(self, state: CardState) -> None:
        atomic_write(self.path, encode(state))

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> FileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create(path: Path, state: CardState, *, force: bool = False) -> None:
    """Write a new card file, refusing to replace one unless `force`."""
    path = Path(path)
    if not path.parent.is_dir():
        raise StoreError(f"{path.parent}: no such folder; create it first")
    lock = CardLock(path)
    lock.acquire()
    try:
        if path.exists() and not force:
            raise StoreError(f"{path} already exists; add --force to replace it")
        atomic_write(path, encode(state))
    finally:
        lock.release()
