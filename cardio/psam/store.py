"""The PSAM file on disk: read, recognised, written once (atomically, mode 0600), locked.

The PSAM changes nothing it must keep (its session key lives for a session), so the
file is written only when it is made. It holds the issuer's master keys: it must be
private, and one process at a time holds it, as a card file (cardio/card/store.py,
whose atomic write and lock are used here unchanged).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cardio.card import store
from cardio.card.store import CardPath, StoreError, read_at_most
from cardio.errors import UsageError
from cardio.psam.state import KIND, PsamFileError, PsamState

MAX_PSAM_BYTES = 1 << 20  # a PSAM file is about 1 KB


def _raw(path: Path) -> bytes | None:
    """The bytes of a regular file of at most MAX_PSAM_BYTES (+1), or None.

    Never blocks on a fifo nor takes a terminal: only a regular file is opened."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return read_at_most(fd, MAX_PSAM_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError, ValueError):
        return None


def is_psam_file(path: CardPath) -> bool:
    """Whether `path` is a PSAM file (`"kind": "psam"`); False for anything else, a
    card file, a missing or unreadable file: those take the card file's way and errors."""
    try:
        resolved = store.card_path(path)
    except StoreError:
        return False
    raw = _raw(resolved)
    if raw is None or len(raw) > MAX_PSAM_BYTES:
        return False
    doc = _json(raw)
    return isinstance(doc, dict) and doc.get("kind") == KIND


def read(path: CardPath) -> PsamState:
    """Load and check a PSAM file; PsamFileError (or StoreError) with one line if it
    cannot be used. A file others can read is refused: it holds master keys."""
    name = os.fspath(path)
    resolved = store.card_path(path)
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        raise StoreError(
            f"{name}: no such PSAM file; make one with 'cardio card new --profile psam {name}'"
        ) from None
    except OSError as e:
        raise StoreError(f"{name} cannot be read ({e.strerror}); check it") from None
    if not stat.S_ISREG(mode):
        raise PsamFileError(f"{name} is not a regular file; give the path of a PSAM file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PsamFileError(
            f"{name} holds master keys and can be read by others; make it private "
            f"(chmod 600 {name}) and try again"
        )
    raw = _raw(resolved)
    if raw is None:
        raise StoreError(f"{name} cannot be read; check the file and its permissions")
    if len(raw) > MAX_PSAM_BYTES:
        raise PsamFileError(f"{name} is over 1 MB, too large to be a PSAM file; check the path")
    doc = _json(raw)
    if doc is None:
        raise PsamFileError(f"{name} is not UTF-8 JSON; make it anew with 'cardio card new'")
    return PsamState.from_json(doc, name)


def encode(state: PsamState) -> bytes:
    return (json.dumps(state.to_json(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def create(path: CardPath, state: PsamState, *, force: bool = False) -> None:
    """Write a new PSAM file (atomically, 0600), refusing to replace a file unless `force`;
    through a symlink, only a card or PSAM file is replaced (as store.create does)."""
    name = os.fspath(path)
    target = store.card_path(path)
    if not target.parent.is_dir():
        raise StoreError(f"{target.parent}: no such folder; create it first")
    lock = store.CardLock(target, name)
    lock.acquire()
    try:
        _check_replaceable(target, name, force)
        try:
            store.atomic_write(target, encode(state))
        except OSError as e:
            raise StoreError(
                f"{name}: cannot be written ({e.strerror}); check the folder"
            ) from None
    finally:
        lock.release()


def _check_replaceable(target: Path, name: str, force: bool) -> None:
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(f"{name}: cannot be checked ({e.strerror}); check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise store.CardPathError(f"{name} is not a regular file; give a file name, e.g. psam.json")
    if not force:
        raise StoreError(f"{name} already exists; add --force to replace it")
    if os.path.islink(name) and not is_psam_file(target):
        try:
            store.read(target)
        except (StoreError, UsageError):
            raise StoreError(
                f"{name} is a symbolic link to {target}, which is not a card or PSAM "
                "file; remove the link or replace that file yourself"
            ) from None


def open_locked(path: CardPath, name: str | None = None) -> tuple[PsamState, store.CardLock]:
    """The PSAM file loaded and locked (one process at a time, like a card in a slot);
    the caller releases the lock. A missing or damaged file gets no lock file beside it."""
    shown = name if name is not None else os.fspath(path)
    read(path)
    lock = store.CardLock(path, shown)
    lock.acquire()
    try:
        return read(path), lock  # again under the lock: it may have changed since
    except BaseException:
        lock.release()
        raise


@contextlib.contextmanager
def held(path: CardPath) -> Iterator[PsamState]:
    """`open_locked` for a `with` block."""
    state, lock = open_locked(path)
    try:
        yield state
    finally:
        lock.release()
