"""Where the shipped test data lives: inside the wheel, or fixtures/ in a source checkout."""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from pathlib import Path
from typing import TextIO

from cardio.errors import UsageError

HOME_VARIABLE = "SHEBAO_POS_HOME"

_PACKAGE = Path(__file__).parent
_SOURCE_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class UnusableFileError(UsageError, ValueError):
    """A file given to a command that cannot be used; the message names it and says what
    to give instead."""


def data_dir(kind: str) -> Path:
    """`kind` is 'cards', 'keys' or 'holders'."""
    # The package's folder, as importlib.resources.files("cardio") gives it for an
    # installed package, without importing importlib.resources (1.5 ms at every start).
    packaged = _PACKAGE / f"_{kind}"
    return packaged if packaged.is_dir() else _SOURCE_FIXTURES / kind


def user_dir() -> Path:
    """Where the user's own files go (default card, host database, outlet log).

    $SHEBAO_POS_HOME when set (tests set it, so they never touch a person's files),
    else the platform's user data folder.
    """
    override = os.environ.get(HOME_VARIABLE)
    if override:
        return Path(override)
    from platformdirs import user_data_path

    return user_data_path("shebao-pos")


FOLDER_MODE = 0o700  # folders of personal data: their owner only


def private_folders(folder: Path) -> list[Path]:
    """Make the missing folders down to `folder`, each 0700 (they will hold personal data).

    Folders that already exist are not ours to change and are left alone. Returns the
    folders made, outermost first; if one cannot be made, those made are removed again.
    Used for every file of personal data: the host database, the outlet log, the
    terminal's trace and receipts.
    """
    missing: list[Path] = []
    here = folder
    while not os.path.isdir(here) and here.parent != here:  # isdir: False on any OSError
        missing.append(here)
        here = here.parent
    made: list[Path] = []
    try:
        for path in reversed(missing):
            try:
                os.mkdir(path, FOLDER_MODE)
            except FileExistsError:
                if os.path.isdir(path):  # another process made it meanwhile
                    continue
                raise
            os.chmod(path, FOLDER_MODE)  # an odd umask may have lowered it
            made.append(path)
    except BaseException:
        for path in reversed(made):
            with suppress(OSError):
                path.rmdir()
        raise
    return made


_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a symbolic link"),
)


def fsync_folder(folder: Path) -> None:
    """A folder's entries on disk: after a file is made, renamed or removed in it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message: "a named pipe"."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


MAX_SMALL_FILE = 1 << 20


def read_small_file(path: Path, what: str) -> str:
    """A small text file given on the command line: never a fifo that would hang us, a
    folder or a device; UnusableFileError with one sentence otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise UnusableFileError(
            f"{path} cannot be read ({e.strerror}); check the {what}'s path"
        ) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnusableFileError(f"{path} is not a regular file; give the {what}")
        raw = f.read(MAX_SMALL_FILE + 1)
    if len(raw) > MAX_SMALL_FILE:
        raise UnusableFileError(f"{path} is too large to be a {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnusableFileError(f"{path} is not UTF-8 text; give the {what}") from None


def open_private_log(path: Path) -> TextIO:
    """A log or trace (the terminal's APDU trace, its own log): appended, 0600 (it names
    cards), a regular file, never through a symlink; ValueError with one sentence when it
    cannot be."""
    try:
        private_folders(path.parent)
        fd = os.open(
            path,
            os.O_WRONLY
            | os.O_APPEND
            | os.O_CREAT
            | os.O_NOFOLLOW
            | os.O_NONBLOCK
            | os.O_NOCTTY
            | os.O_CLOEXEC,
            0o600,
        )
    except OSError as e:
        reason = "it is a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise UnusableFileError(
            f"{path} cannot be written ({reason}); give a file in a folder you can write"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnusableFileError(f"{path} is not a regular file; give a file to append to")
        os.fchmod(fd, 0o600)  # an older one may have been made wider
        return os.fdopen(fd, "a", encoding="utf-8")
    except OSError as e:
        os.close(fd)
        raise UnusableFileError(
            f"{path} cannot be made private ({e.strerror}); give a file of your own"
        ) from None
    except ValueError:
        os.close(fd)
        raise
