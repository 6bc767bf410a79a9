"""The service outlet (card-apdu.md §7; S6, S13, S14, S16, S17): the operator's side.

It checks the holder's ID against the card before any privileged command, computes
each command's SM4 MAC with the issuer master key, and records every operation in
the outlet log (never a PIN). Two front ends use it: `cardio outlet` and
`pos-terminal --outlet`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cardio import identity, mac, pin, resources, sw
from cardio.pin_policy import Violation, check_new_pin
from cardio.protocol import CardInfo, SocialSecurityCard
from cardio.readers.base import Reader
from cardio.resources import read_key


class Operation(StrEnum):
    RESET_PIN = "reset-pin"  # 密码重置 / 解锁: new PIN, tries at limit, ENABLED (S6, S17)
    RESTORE_INITIAL = "restore-initial"  # 恢复为原始密码: 123456, INITIAL (S14)
    CANCEL_PIN = "cancel-pin"  # 取消密码: DISABLED (S16)
    ACTIVATE = "activate"  # 激活 (S13)


# INS, P2 of each operation's command (§7)
_COMMANDS: dict[Operation, tuple[int, int]] = {
    Operation.RESET_PIN: (0x5E, 0x00),
    Operation.RESTORE_INITIAL: (0x5E, 0x01),
    Operation.CANCEL_PIN: (0x5E, 0x02),
    Operation.ACTIVATE: (0x18, 0x00),
}


class OutletError(Exception):
    """One sentence for the operator, saying what to do."""


class KeyFileError(OutletError):
    pass


class IdMismatchError(OutletError):
    def __init__(self) -> None:
        super().__init__("the ID number does not match the card's holder; nothing was sent "
                         "to the card: check the ID document and the card")


class WrongKeyError(OutletError):
    def __init__(self) -> None:
        super().__init__("the card refused the MAC: the master key is wrong for this card; "
                         "check --key")


class PinPolicyError(OutletError):
    def __init__(self, violation: Violation) -> None:
        super().__init__(f"the new PIN breaks the PIN rules ({violation.value}); "
                         "choose another 6-digit PIN")
        self.violation = violation


def load_key(path: Path) -> bytes:
    """The issuer master key from a key file that only its owner can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file; give the issuer key with --key") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} can be read by others; make it private (chmod 600 {path}) "
                           "and try again")
    try:
        return read_key(path)
    except (OSError, ValueError) as e:
        raise KeyFileError(str(e)) from None


def fixture_master_key() -> bytes:
    """The public test key of the fixture cards, only when asked for (--test-key). It is
    public, so its file's mode does not matter (a git checkout makes it 0644)."""
    return resources.fixture_master_key()


def same_id(given: str, on_card: str | None) -> bool:
    return on_card is not None and given.strip().upper() == on_card.upper()


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    info: CardInfo
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == sw.OK

    @property
    def query_password(self) -> str | None:
        """S7: the holder's initial online query password. Not the card PIN."""
        return identity.query_password(self.info.ssn) if self.info.ssn else None


class OutletLog:
    """One JSON object a line: who, when, card, operation, result. Never a PIN."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def check_writable(self) -> None:
        """Before any card command: an operation that cannot be logged is not done."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        except OSError as e:
            raise OutletError(f"the outlet log {self.path} cannot be written ({e.strerror}); "
                              "fix its folder or give another with --log") from None

    def record(self, operator: str, operation: Operation, info: CardInfo | None,
               result: str) -> None:
        entry = {
            "time": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "operator": operator,
            "host": socket.gethostname(),
            "card_number": info.card_number if info else None,
            "holder_id": identity.mask_id(info.ssn) if info and info.ssn else None,
            "operation": operation.value,
            "result": result,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")


class Outlet:
    """The operations, over any reader holding the holder's card."""

    def __init__(self, reader: Reader, master_key: bytes, *, operator: str, log: OutletLog,
                 phone_of: Callable[[str], str | None] = lambda ssn: None) -> None:
        self.reader = reader
        self._phone_of = phone_of  # S15's phone rule, where the outlet knows the phone
        self.card = SocialSecurityCard(reader)
        self._master_key = master_key
        self.operator = operator
        self.log = log

    def read(self) -> CardInfo:
        """A fresh session, and the card's facts."""
        self.reader.reset()
        return self.card.read_info()

    def run(self, operation: Operation, id_number: str, new_pin: str | None = None) -> Outcome:
        """Check the holder's ID against the card (凭本人身份证件), then the operation."""
        self.log.check_writable()
        info: CardInfo | None = None
        try:
            info = self.read()
            if not same_id(id_number, info.ssn):
                raise IdMismatchError()
            body = b""
            if operation is Operation.RESET_PIN:
                phone = self._phone_of(info.ssn) if info.ssn else None
                body = self._checked_new_pin(new_pin, info, phone)
            if info.identification_code is None:
                raise OutletError("the card has no identification code to derive its key "
                                  "from; it is not a card this outlet serves")
            key = mac.card_key(self._master_key, info.identification_code)
            ins, p2 = _COMMANDS[operation]
            status = self.card.protected(key, ins, p2, body)
        except OutletError as e:
            self.log.record(self.operator, operation, info, f"refused: {e}")
            raise
        except Exception as e:
            self.log.record(self.operator, operation, info, f"failed: {e}")
            raise
        self.log.record(self.operator, operation, info, f"{status:04X} {sw.meaning(status)}")
        if status == sw.MAC_WRONG:
            raise WrongKeyError()
        if status != sw.OK:
            raise OutletError(f"the card answered {status:04X} ({sw.meaning(status)}); "
                              "nothing was changed")
        return Outcome(operation, info, status)

    @staticmethod
    def _checked_new_pin(new_pin: str | None, info: CardInfo, phone: str | None) -> bytes:
        if new_pin is None:
            raise OutletError("a PIN reset needs the new PIN; ask the holder to enter it")
        violation = check_new_pin(new_pin, birth_date=info.birth_date, phone=phone)
        if violation is not None:
            raise PinPolicyError(violation)
        return pin.encode(new_pin)


def ask_new_pin(prompt: str = "New PIN: ", again: str = "New PIN again: ") -> str:
    """Twice, without echo on a terminal; two lines of standard input otherwise."""
    if sys.stdin.isatty():
        first, second = getpass.getpass(prompt), getpass.getpass(again)
    else:
        first, second = sys.stdin.readline().strip(), sys.stdin.readline().strip()
    if first != second:
        raise OutletError("the two PINs do not match; start again")
    return first
