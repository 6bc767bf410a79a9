"""Durable card files: one JSON file per card, written atomically, one process at a time.

Every write goes temp file -> fsync -> rename -> fsync of the directory, so a process
killed at any instant leaves either the old or the new file, never a torn one.

The card path is resolved once (symlinks followed) when a store, lock or reader is made:
a symlinked card is one card with one lock, and writes land on the file the link names.
The temp and lock files beside it never follow a symlink planted at their names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Protocol

from cardio.card.state import CardFileError, CardState
from cardio.errors import CardioError, Exit
from cardio.resources import fsync_folder

FILE_MODE = 0o600
MAX_CARD_BYTES = 1 << 20  # a card file is about 1 KB: anything this big is some other file
_PID_DIGITS = 7  # Linux pid_max is at most 4194304
_SIDECAR_EXTRA = len(".") + len(".tmp-") + _PID_DIGITS  # the longest sidecar: .NAME.tmp-PID

CardPath = str | os.PathLike[str]


class StoreError(CardioError):
    """A card file problem a person can act on; the message says what to do."""


class CardInUseError(StoreError):
    pass


class CardPathError(StoreError):
    """The path cannot name a card file (empty, a folder, a device, too long): bad input."""

    exit_code = Exit.USAGE


class CardWriteError(StoreError):
    """The card file could not be saved; the old file is intact and no temp file is left."""

    def __init__(self, name: str, error: OSError) -> None:
        self.problem = f"{name} cannot be saved ({_reason(error)})"
        self.advice = _advice(error)
        super().__init__(f"{self.problem}; {self.advice}")


class Store(Protocol):
    def save(self, state: CardState) -> None: ...


class MemoryStore:
    """Keeps the last saved state in memory: for tests and throw-away cards."""

    def __init__(self, state: CardState | None = None) -> None:
        self.state = state

    def save(self, state: CardState) -> None:
        self.state = state


# --- what went wrong, in words ---------------------------------------------------------


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _advice(error: OSError) -> str:
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "free some disk space and try again"
    if code == errno.EROFS:
        return "the folder is read-only: use a card file in a folder you can write to"
    if code in (errno.EACCES, errno.EPERM):
        return "use a folder you can write to, or fix its permissions"
    if code == errno.ENAMETOOLONG:
        return "choose a shorter file or folder name"
    if code in (errno.ENOENT, errno.ENOTDIR):
        return "check that the folder exists"
    return "check the disk and the folder, then try again"


def _cannot(name: str, what: str, error: OSError) -> StoreError:
    cls = CardPathError if error.errno in (errno.ENAMETOOLONG, errno.ELOOP) else StoreError
    return cls(f"{name}: cannot {what} ({_reason(error)}); {_advice(error)}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _not_a_card_file(name: str, mode: int) -> CardPathError:
    return CardPathError(
        f"{name} is {_kind(mode)}, not a card file; give the path of a card file, e.g. card.json"
    )


# --- the card path ------------------------------------------------------------------------


def card_path(path: CardPath) -> Path:
    """The file `path` names, symlinks resolved; CardPathError if it cannot name a card file.

    Nothing is created: this only looks at the path.
    """
    text = os.fspath(path)
    if not text:
        raise CardPathError("the card path is empty; give the path of a card file, e.g. card.json")
    if "\0" in text:
        raise CardPathError(f"{text!r} holds a NUL character; give the path of a card file")
    if text.endswith(os.sep) or Path(text).name in ("", ".", ".."):
        raise CardPathError(
            f"{text} names a folder, not a card file; give a file name in "
            f"it, e.g. {Path(text) / 'card.json'}"
        )
    try:
        return Path(text).resolve()
    except RuntimeError:  # Python 3.11 reports a symlink loop so
        raise CardPathError(
            f"{text} is a loop of symbolic links; give the path of a card file"
        ) from None
    except OSError as e:
        raise _cannot(text, "be found", e) from None


def lockable_card_path(path: CardPath, name: str | None = None) -> Path:
    """card_path, and a name short enough for the lock and temp files beside the card."""
    resolved = card_path(path)
    _check_name_length(resolved, name if name is not None else os.fspath(path))
    return resolved


def _check_name_length(path: Path, name: str) -> None:
    """Room for the temp and lock files beside the card, whose names are longer."""
    try:
        name_max = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    size = len(os.fsencode(path.name))
    if size + _SIDECAR_EXTRA > name_max:
        raise CardPathError(
            f"{name}: the file name is too long ({size} bytes; cardio needs it at most "
            f"{name_max - _SIDECAR_EXTRA} to name its lock and temp files); choose a shorter name"
        )


def _missing(name: str) -> StoreError:
    return StoreError(
        f"{name}: no such card file; make one with 'cardio card new --profile NAME {name}'"
    )


def _stat_card(path: Path, name: str) -> os.stat_result:
    """The card file's stat, refusing anything but a regular file, without opening it
    (opening a fifo blocks, opening a terminal device may make it ours)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _missing(name) from None
    except OSError as e:
        raise _cannot(name, "be read", e) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_a_card_file(name, st.st_mode)
    return st


# --- reading ------------------------------------------------------------------------------


def encode(state: CardState) -> bytes:
    return (json.dumps(state.to_json(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def read(path: CardPath) -> CardState:
    """Load and check a card file without locking it (reading is safe: writes are renames)."""
    return _read(card_path(path), os.fspath(path))


def _read(path: Path, name: str) -> CardState:
    _stat_card(path, name)
    try:
        # NONBLOCK and NOCTTY: in case a fifo or a terminal took the file's place since
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _missing(name) from None
    except OSError as e:
        raise _cannot(name, "be read", e) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_card_file(name, mode)
        raw = read_at_most(fd, MAX_CARD_BYTES)
    except OSError as e:
        raise _cannot(name, "be read", e) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CARD_BYTES:
        raise CardFileError(
            name, "the file", f"is over {MAX_CARD_BYTES // 1024} KB, too large to be a card file"
        )
    return decode(raw, name)


def read_at_most(fd: int, limit: int) -> bytes:
    """Up to limit + 1 bytes of an open file: one more than the limit says "too large"
    without reading a huge file whole."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def decode(raw: bytes, name: str) -> CardState:
    try:
        doc = json.loads(raw.decode("utf-8"), parse_int=_parse_int)
    except UnicodeDecodeError:
        raise CardFileError(name, "the file", "is not UTF-8 text") from None
    except RecursionError:
        raise CardFileError(name, "the file", "is nested too deeply to be a card file") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise CardFileError(name, where, "is not valid JSON") from None
    return CardState.from_json(doc, name)


_MAX_INT_DIGITS = 20


class HugeNumber:
    """A JSON integer too long to be any card field. Not converted (int() of thousands of
    digits raises ValueError) and not an int or a str, so the field that holds it fails
    its type check and is the one named in the error."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | HugeNumber:
    return HugeNumber(text) if len(text) > _MAX_INT_DIGITS else int(text)


# --- writing ------------------------------------------------------------------------------


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create_temp(tmp: Path) -> int:
    try:
        return os.open(tmp, _NEW_FILE, FILE_MODE)
    except FileExistsError:
        # Left by a killed writer with this pid (pids are reused), or planted. unlink
        # removes a symlink itself, never its target; and O_EXCL refuses whatever is
        # planted again in between rather than following it.
        os.unlink(tmp)
        return os.open(tmp, _NEW_FILE, FILE_MODE)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, fsync of the directory.

    On failure (a full disk, say) the old file is intact and the temp file is removed.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = _create_temp(tmp)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # the umask may have lowered it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)  # may fail too (NFS reports a full disk here): still no rename
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Renamed: the new file is what readers see. If this fsync fails it may not survive a
    # power cut, so the caller is told the write failed and keeps its old state in memory.
    fsync_folder(path.parent)


# --- the lock -----------------------------------------------------------------------------


class CardLock:
    """An exclusive lock on a card file, held through a sidecar `.NAME.lock`.

    The card file itself is replaced on every write, so it cannot carry the lock.
    The lock file names its holder, for the error the next process gets.
    """

    def __init__(self, path: CardPath, name: str | None = None) -> None:
        self.name = name if name is not None else os.fspath(path)  # as the person wrote it
        self.path = lockable_card_path(path, self.name)
        # Beside the resolved card: in the card's own folder, whatever link led there.
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None

    def _open(self) -> int:
        # The lock file is reused, never replaced: removing and re-creating it would let two
        # processes each lock their own inode under the same name. So what is not a plain
        # file of ours at that name is refused, never removed or followed: O_NOFOLLOW fails
        # on a symlink (ELOOP) instead of opening its target, and a hard link to another
        # file (link count > 1) is refused before the truncate below could clobber it.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
        try:
            fd = os.open(self.lock_path, flags | os.O_CLOEXEC, FILE_MODE)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self._foreign("a symbolic link") from None
            raise _cannot(
                self.name, f"make the lock file {self.lock_path.name} beside it", e
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            kind = _kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else "a hard link"
            raise self._foreign(kind)
        return fd

    def _foreign(self, kind: str) -> StoreError:
        return StoreError(
            f"{self.lock_path} is {kind}, not cardio's lock file; "
            f"check who put it there, remove it and try again"
        )

    def acquire(self) -> None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise CardInUseError(
                f"{self.name} is in use by {holder}; stop that program or use another card file"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError):  # who holds it is a courtesy: a full disk may refuse
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} ({program}, since {stamp})\n".encode(), 0)
        self._fd = fd
        self._remove_stale_temps()

    def _remove_stale_temps(self) -> None:
        """Temp files left by a killed writer; only the lock holder may remove them."""
        prefix = f".{self.path.name}.tmp-"
        with contextlib.suppress(OSError):  # best effort: a folder we cannot list keeps them
            for stale in self.path.parent.iterdir():
                if stale.name.startswith(prefix) and stale.name[len(prefix) :].isdigit():
                    with contextlib.suppress(OSError):
                        stale.unlink()  # a symlink is removed itself, never its target

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


# --- the store ----------------------------------------------------------------------------


class FileStore:
    """The durable store of one card file, held locked while open."""

    def __init__(self, path: CardPath, *, name: str | None = None) -> None:
        self.name = name if name is not None else os.fspath(path)  # for messages
        self.path = card_path(path)
        self._lock = CardLock(self.path, self.name)

    def open(self) -> CardState:
        """Lock the file and load it; raises StoreError / CardFileError, file untouched."""
        # Checked before the lock file is made: a missing, damaged or non-card file gets
        # no lock file beside it. Read again under the lock: it may have changed since.
        _read(self.path, self.name)
        self._lock.acquire()
        try:
            return _read(self.path, self.name)
        except BaseException:
            self._lock.release()
            raise

    def save(self, state: CardState) -> None:
        """Raises CardWriteError; then the file on disk is the old one."""
        try:
            atomic_write(self.path, encode(state))
        except OSError as e:
            raise CardWriteError(self.name, e) from None

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> FileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create(path: CardPath, state: CardState, *, force: bool = False) -> None:
    """Write a new card file, refusing to replace one unless `force`.

    Through a symlink, `force` replaces the target only if it is a card file: a link
    must not turn 'replace this card' into 'overwrite whatever the link points at'.
    """
    name = os.fspath(path)
    target = card_path(path)
    linked = check_creatable(path, force=force)  # before the lock file is made
    lock = CardLock(target, name)
    lock.acquire()
    try:
        _check_replaceable(target, name, force, linked=linked)
        try:
            atomic_write(target, encode(state))
        except OSError as e:
            raise _cannot(name, "be written", e) from None
    finally:
        lock.release()


def check_creatable(path: CardPath, *, force: bool = False) -> bool:
    """Whether `create` could write there (StoreError saying why not), so that a command
    can refuse before its work (reading a real card); True when the path is a link."""
    name = os.fspath(path)
    target = card_path(path)
    if not target.parent.is_dir():
        raise StoreError(f"{target.parent}: no such folder; create it first")
    linked = _is_link(name)
    _check_replaceable(target, name, force, linked=linked)
    return linked


def _is_link(name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name).st_mode)
    except OSError:
        return False


def _check_replaceable(target: Path, name: str, force: bool, *, linked: bool) -> None:
    try:
        st = os.stat(target)
    except FileNotFoundError:
        if linked:
            raise StoreError(
                f"{name} is a symbolic link to a missing file ({target}); "
                "remove the link or give the path of the card itself"
            ) from None
        return
    except OSError as e:
        raise _cannot(name, "be checked", e) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_a_card_file(name, st.st_mode)
    if not force:
        raise StoreError(f"{name} already exists; add --force to replace it")
    if linked:
        try:
            _read(target, name)
        except (StoreError, CardFileError):
            raise StoreError(
                f"{name} is a symbolic link to {target}, which is not a card "
                "file; remove the link or replace that file yourself"
            ) from None
