"""The service outlet (docs/card.md §5; S6, S13, S14, S16, S17): the operator's side.

It checks the holder's ID against the card before any privileged command, then runs
the reader API's reload and unblock flows (its §6-§7; part 7 §13): the PUK's EXTERNAL
AUTHENTICATE, a fresh challenge, and `84 24` with the encrypted PIN and the MAC, all
computed by a key source (the issuer's master keys, or a PSAM: cardio.keysource). Every
operation goes into the outlet log (never a PIN). Two front ends use it: `cardio
outlet` and `pos-terminal --outlet`.
"""

from __future__ import annotations

import datetime as dt
import errno
import getpass
import json
import os
import socket
import stat
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cardio import api_codes, identity, issuer, pin, resources, sw
from cardio.errors import CardioError
from cardio.issuer import KeyName
from cardio.keysource import KeySource, MasterKeySource
from cardio.model import Algorithm, Ins
from cardio.pin_policy import Violation, check_new_pin
from cardio.protocol import CardInfo, CounterfeitCardError, SocialSecurityCard
from cardio.readers.base import Reader
from cardio.resources import file_kind, private_folders
from cardio.sw import Sw
from cardio.trace import failure


class Operation(StrEnum):
    RESET_PIN = "reset-pin"  # 密码重置 / 解锁: new PIN, tries at limit, ENABLED (S6, S17)
    RESTORE_INITIAL = "restore-initial"  # 恢复为原始密码: 123456, INITIAL (S14)
    CANCEL_PIN = "cancel-pin"  # 取消密码: the PIN emptied, DISABLED (S16)
    ACTIVATE = "activate"  # 激活 (S13)
    UNBLOCK = "unblock"  # 解锁 only: tries at the limit, the PIN unchanged


# INS, P2 of each operation's command (docs/card.md §5; part 5 §6.8 table 25)
_COMMANDS: dict[Operation, tuple[int, int]] = {
    Operation.RESET_PIN: (Ins.CHANGE_REFERENCE, 0x01),
    Operation.RESTORE_INITIAL: (Ins.CHANGE_REFERENCE, 0x01),
    Operation.CANCEL_PIN: (Ins.CHANGE_REFERENCE, 0x01),  # no PIN data: the PIN is emptied
    Operation.ACTIVATE: (Ins.OUTLET_ACTIVATE, 0x00),  # ours (docs/card.md §9)
    Operation.UNBLOCK: (Ins.CHANGE_REFERENCE, 0x00),
}


class OutletError(CardioError):
    """One sentence for the operator, saying what to do."""


class KeyFileError(OutletError):
    pass


class IdMismatchError(OutletError):
    def __init__(self) -> None:
        super().__init__(
            "the ID number does not match the card's holder; nothing was sent "
            "to change the card: check the ID document and the card"
        )


class WrongKeyError(OutletError):
    def __init__(self, tries_left: int | None = None) -> None:
        left = "" if tries_left is None else f" ({tries_left} tries left on the card)"
        super().__init__(
            f"the card refused the outlet's key{left}: the master keys or the PSAM are "
            "not this card's issuer's; check --key or --psam"
        )


class NotOurCardError(WrongKeyError):
    api_code = api_codes.ApiCode.NOT_GENUINE  # the reader API's -21

    def __init__(self, info: CardInfo | None = None) -> None:
        OutletError.__init__(
            self,
            "the card failed the authenticity check with this outlet's keys: it is "
            "counterfeit or from another issuer; nothing was sent to change it (check "
            "--key or --psam)",
        )
        self.info = info  # what the card says of itself, unchecked: for the log


class KeyLockedError(OutletError):
    def __init__(self) -> None:
        super().__init__(
            "the card's unblocking key is locked after too many wrong keys; "
            "send the card back to its issuer"
        )


class PinPolicyError(OutletError):
    def __init__(self, violation: Violation) -> None:
        super().__init__(
            f"the new PIN breaks the PIN rules ({violation.value}); choose another 6-digit PIN"
        )
        self.violation = violation


def load_key(path: Path) -> KeySource:
    """The issuer's master keys (cardio/issuer.py's JSON file) from a file that only its
    owner can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file; give the issuer key with --key") from None
    except OSError as e:
        raise KeyFileError(
            f"{path} cannot be read ({e.strerror}); check the key file and its permissions"
        ) from None
    # Its kind first: the mode of a folder or a pipe says nothing about a key.
    if stat.S_ISDIR(mode):
        raise KeyFileError(f"{path} is a folder; give the issuer key file itself with --key")
    if not stat.S_ISREG(mode):
        raise KeyFileError(
            f"{path} is not a regular file ({file_kind(mode)}); give the issuer key file with --key"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} can be read by others; make it private (chmod 600 {path}) and try again"
        )
    try:
        return MasterKeySource(issuer.load_issuer(path))
    except issuer.IssuerFileError as e:
        raise KeyFileError(str(e)) from None


def fixture_master_key() -> KeySource:
    """The public test issuer of the fixture cards, only when asked for (--test-key). It
    is public, so its file's mode does not matter (a git checkout makes it 0644)."""
    return MasterKeySource(issuer.fixture_issuer(), issuer.fixture_issuer(Algorithm.DES))


def same_id(given: str, on_card: str | None) -> bool:
    return on_card is not None and given.strip().upper() == on_card.upper()


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    info: CardInfo
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == Sw.OK

    @property
    def query_password(self) -> str | None:
        """S7: the holder's initial online query password. Not the card PIN."""
        return identity.query_password(self.info.ssn) if self.info.ssn else None


FILE_MODE = 0o600  # the log names holders (masked) and operators: only its owner reads it

STARTED = "started"  # the result of an intent line, written before the card command


def default_log() -> Path:
    """The outlet log in the user data folder (cardio outlet, pos-terminal --outlet)."""
    return resources.user_dir() / "outlet.log"


class OutletLogError(OutletError):
    """The outlet log could not take a line; the message says whether the card changed."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # the system's word for it, such as "No space left on device"


class _Unusable(OSError):
    """A log path refused before any line: what it is, and what to do instead."""

    def __init__(self, what: str, advice: str) -> None:
        super().__init__(what)
        self.what, self.advice = what, advice


class OutletLog:
    """One JSON object a line: who, when, card, operation, result. Never a PIN.

    Append-only. Before a MAC-protected command an intent line (result "started") is
    written and synced, and the result line follows with the same "op" id: a command
    that cannot be logged is never sent, and one whose result could not be logged still
    has its intent line.

    The log is a regular file, 0600, opened never through a symlink: it names holders
    and operators, and a symlink planted at its name would append them to another file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _open(self) -> int:
        private_folders(self.path.parent)
        # O_NOFOLLOW: a symlink is refused (ELOOP). O_NONBLOCK: a fifo without a reader
        # must not hang the outlet; it is refused below like any file that is not regular.
        flags = os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
        try:
            try:
                try:
                    fd = os.open(self.path, os.O_RDWR | flags)
                except PermissionError:  # a write-only log: no torn-line check, still appended
                    fd = os.open(self.path, os.O_WRONLY | flags)
            except FileNotFoundError:
                try:  # O_EXCL never follows a symlink either
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, FILE_MODE)
                except FileExistsError:  # made meanwhile
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | flags, FILE_MODE)
        except OSError as e:
            raise self._unusable(e) or e from None
        try:
            self._make_private(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _unusable(self, e: OSError) -> _Unusable | None:
        if e.errno == errno.ELOOP and os.path.islink(self.path):
            return _Unusable(
                "is a symbolic link", "give the path of the log file itself, not of a link to it"
            )
        if e.errno == errno.EISDIR:
            return _Unusable(
                "is a folder", f"give the path of a log file, such as {self.path / 'outlet.log'}"
            )
        if e.errno == errno.ENXIO:  # a fifo opened write-only, no reader
            return _Unusable(
                "is not a regular file (a named pipe)", "give the path of an ordinary file"
            )
        return None

    def _make_private(self, fd: int) -> None:
        """A regular file, exactly 0600: a log made 0644 by hand or by an older version is
        made private before another holder is written into it."""
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unusable(
                f"is not a regular file ({file_kind(info.st_mode)})",
                "give the path of an ordinary file",
            )
        os.set_blocking(fd, True)
        if stat.S_IMODE(info.st_mode) != FILE_MODE:
            try:
                os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
            except PermissionError:
                raise _Unusable(
                    "can be read by others and is not yours to make private",
                    f"ask its owner to make it private (chmod 600 {self.path}) "
                    "or give another log file",
                ) from None

    def _error(self, e: OSError) -> OutletLogError:
        if isinstance(e, _Unusable):
            return OutletLogError(
                f"the outlet log {self.path} {e.what}; nothing was sent to the card: {e.advice}",
                e.what,
            )
        reason = e.strerror or str(e)
        return OutletLogError(
            f"the outlet log {self.path} cannot be written ({reason}); "
            "nothing was sent to the card: free some space or fix the log's "
            "folder, or give another log file",
            reason,
        )

    def check_writable(self) -> None:
        """Before the card is even read: a log that cannot be opened, or is no private
        regular file of ours, is refused early."""
        try:
            os.close(self._open())
        except OSError as e:
            raise self._error(e) from None

    def _append(self, line: bytes) -> None:
        fd = self._open()
        try:
            size = os.fstat(fd).st_size
            try:
                torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            except OSError:  # opened write-only
                torn = False
            if torn:  # a line cut short by a full disk must not swallow this one
                line = b"\n" + line
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            try:
                os.fsync(fd)  # on disk before the card command is sent
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP):
                    raise  # those three: a file system that cannot sync; written
        finally:
            os.close(fd)

    def record(
        self,
        operator: str,
        operation: Operation,
        info: CardInfo | None,
        result: str,
        *,
        op: str | None = None,
        id_number: str | None = None,
    ) -> None:
        """Append one line; an OutletLogError (saying nothing was sent) if it cannot."""
        entry = {
            "time": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "operator": operator,
            "host": socket.gethostname(),
            "card_number": info.card_number if info else None,
            # The ID the operator typed from the holder's document (masked): what the
            # outlet was shown, which on a refusal is not the card's.
            "holder_id": identity.mask_id(id_number) if id_number else None,
            "operation": operation.value,
            "result": result,
            "op": op or uuid.uuid4().hex[:12],
        }
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self._append(line)
        except OSError as e:
            raise self._error(e) from None


class Outlet:
    """The operations, over any reader holding the holder's card."""

    def __init__(
        self,
        reader: Reader,
        keys: KeySource,
        *,
        operator: str,
        log: OutletLog,
        phone_of: Callable[[str], str | None] = lambda ssn: None,
    ) -> None:
        self.reader = reader
        self._phone_of = phone_of  # S15's phone rule, where the outlet knows the phone
        self.card = SocialSecurityCard(reader)
        self._keys = keys
        self.operator = operator
        self.log = log

    def read(self) -> CardInfo:
        """A fresh session, and the card's facts, the card checked first (part 7 §5.4:
        INTERNAL AUTHENTICATE; RKSSSE opens a 3.00 card's holder data for the ID check).
        Keys of another issuer must not cost the card's PUK a try, and a counterfeit
        gets nothing: NotOurCardError, nothing sent that changes the card."""
        self.reader.reset()
        try:
            return self.card.read_info(self._keys, scheme=False)
        except CounterfeitCardError:
            pass
        self.reader.reset()  # what it says of itself, unchecked, names it in the log
        raise NotOurCardError(self.card.read_info(None, scheme=False))

    def run(self, operation: Operation, id_number: str, new_pin: str | None = None) -> Outcome:
        """Check the holder's ID against the card (凭本人身份证件), then the operation."""
        self.log.check_writable()
        op = uuid.uuid4().hex[:12]  # pairs the result line with its intent line
        info: CardInfo | None = None
        sent = False
        try:
            try:
                info = self.read()
            except NotOurCardError as e:
                info = e.info
                raise
            if not same_id(id_number, info.ssn):
                raise IdMismatchError()
            chosen: str | None = None
            if operation is Operation.RESET_PIN:
                phone = self._phone_of(info.ssn) if info.ssn else None
                chosen = self._checked_new_pin(new_pin, info, phone)
            elif operation is Operation.RESTORE_INITIAL:
                chosen = pin.INITIAL_PIN
            card = self.card.identity(info.identification_code)
            ins, p2 = _COMMANDS[operation]
            # The intent is on disk before the card can change; if it cannot be written,
            # OutletLogError: the command is not sent.
            self.log.record(self.operator, operation, info, STARTED, op=op, id_number=id_number)
            sent = True
            status = self.card.external_authenticate(self._keys, KeyName.PUK, card)
            meaning = _key_meaning(status)
            if status == Sw.OK:
                status = self.card.secure(self._keys, KeyName.PUK, card, ins, p2, chosen)
                meaning = sw.meaning(status)
        except OutletLogError:
            raise
        except OutletError as e:
            self._result(operation, info, id_number, f"refused: {e}", op, sent)
            raise
        except Exception as e:
            # only our own errors' words: another's message may quote what it handled
            reason = str(e) if isinstance(e, CardioError) else failure(e)
            self._result(operation, info, id_number, f"failed: {reason}", op, sent)
            raise
        self._result(operation, info, id_number, f"{status:04X} {meaning}", op, sent)
        if status == Sw.MAC_WRONG:
            raise WrongKeyError()
        if (left := sw.tries_left(status)) is not None:
            raise WrongKeyError(left)
        if status == Sw.PIN_BLOCKED:
            raise KeyLockedError()
        if status != Sw.OK:
            raise OutletError(
                f"the card answered {status:04X} ({sw.meaning(status)}); nothing was changed"
            )
        return Outcome(operation, info, status)

    def _result(
        self,
        operation: Operation,
        info: CardInfo | None,
        id_number: str,
        result: str,
        op: str,
        sent: bool,
    ) -> None:
        try:
            self.log.record(self.operator, operation, info, result, op=op, id_number=id_number)
        except OutletLogError as e:
            if not sent:
                raise
            # The card may have changed: the operator must know, and the intent line
            # already tells the log's readers that this operation was started.
            raise OutletLogError(
                f"the {operation.value} command was started on the card ({result}), but the "
                f"outlet log {self.log.path} could not take its result ({e.reason}); its "
                f'"{STARTED}" line (op {op}) is in the log: check the card, write the '
                "result down by hand and fix the log before the next operation",
                e.reason,
            ) from e

    @staticmethod
    def _checked_new_pin(new_pin: str | None, info: CardInfo, phone: str | None) -> str:
        if new_pin is None:
            raise OutletError("a PIN reset needs the new PIN; ask the holder to enter it")
        violation = check_new_pin(new_pin, birth_date=info.birth_date, phone=phone)
        if violation is not None:
            raise PinPolicyError(violation)
        pin.check_format(new_pin)
        return new_pin


def _key_meaning(status: int) -> str:
    """EXTERNAL AUTHENTICATE's answer in words: its 63Cx counts the key's tries, not a PIN's."""
    if (left := sw.tries_left(status)) is not None:
        return f"outlet key refused, {left} tries left"
    if status == Sw.PIN_BLOCKED:
        return "the card's PUK is locked"
    return sw.meaning(status)


def ask_new_pin(prompt: str = "New PIN: ", again: str = "New PIN again: ") -> str:
    """Twice, without echo on a terminal; two lines of standard input otherwise."""
    if sys.stdin.isatty():
        first, second = getpass.getpass(prompt), getpass.getpass(again)
    else:
        first, second = sys.stdin.readline().strip(), sys.stdin.readline().strip()
    if first != second:
        raise OutletError("the two PINs do not match; start again")
    return first
