"""`cardio card clone`: a real card's freely readable data in a new card file with the
test issuer's keys and a PIN of the tester's choosing.

Only commands that cannot cost the card anything are sent: SELECT, READ RECORD, READ
BINARY, GET DATA, GET RESPONSE. `ReadOnlyReader` enforces it around the reader, so a
later change of the reading code cannot send a VERIFY (a PIN try), an EXTERNAL
AUTHENTICATE (a key try) or a PIN change to somebody's real card by mistake.

Copied: EF05 (card data: identification code, category, version, issuer, dates, card
number) and EF06 (holder) where it is free. A 3.00 card reads EF06 only after RKSSSE's
EXTERNAL AUTHENTICATE (reader API §10.2), DF04 (medical insurance) only after the PIN
or RK1DF04: neither is tried, and the base profile's values stand in (said so). The
ATR's historical bytes are copied too (the card's serial, and a factor of its keys),
so a terminal sees the same card; its keys are the test issuer's dispersed for it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from cardio import identity, pin
from cardio.apdu import historical_bytes, to_hex
from cardio.card import profiles, store
from cardio.card.state import CardState, Category, PinHash, PinState
from cardio.card.state import historical_bytes as derived_historical
from cardio.errors import CardioError, Exit, UsageError
from cardio.issuer import card_keys, fixture_issuer
from cardio.model import SPEC_VERSIONS, Algorithm, Cla, Fid, Ins, PsamCla, Tag
from cardio.protocol import V3, Read, SocialSecurityCard, algorithm_of, full_name
from cardio.readers.base import Reader
from cardio.usage import OneLineParser, one_line, run_command

DEFAULT_BASE = "employee-new"  # an issued card in its initial PIN state (123456)

# (CLA, INS) that only read: nothing of these changes a card or spends a try.
ALLOWED: frozenset[tuple[int, int]] = frozenset(
    {
        (Cla.ISO, Ins.SELECT),
        (Cla.ISO, Ins.READ_RECORD),
        (Cla.ISO, Ins.READ_BINARY),
        (Cla.ISO, Ins.GET_DATA),
        (PsamCla.PROPRIETARY, Ins.GET_DATA),  # our GET DATA C1 is CLA 80 (docs/card.md §3)
        (Cla.ISO, Ins.GET_RESPONSE),
    }
)


class NothingToCloneError(CardioError):
    """The card answered, but not as a social security card: no file is made."""


class ForbiddenCommandError(CardioError):
    """A command outside the allow-list: a bug in the cloning code, stopped here."""

    def __init__(self, command: bytes) -> None:
        head = to_hex(command[:2]) if len(command) >= 2 else "?"
        super().__init__(
            f"refused to send {head} to the card: cloning only reads (SELECT, READ RECORD, "
            "READ BINARY, GET DATA, GET RESPONSE); this is a bug in cardio, please report it"
        )


class ReadOnlyReader(Reader):
    """Another reader, through which only ALLOWED commands pass (every exchange, GET
    RESPONSE and 6Cxx resends included: they all go through `_exchange`)."""

    def __init__(self, inner: Reader) -> None:
        super().__init__(None)
        self.inner = inner
        self.name = inner.name

    def card_present(self) -> bool:
        return self.inner.card_present()

    def peek_atr(self) -> bytes | None:
        return self.inner.peek_atr()

    def connect(self) -> bytes:
        return self.inner.connect()

    def reset(self) -> bytes:
        return self.inner.reset()

    def disconnect(self) -> None:
        self.inner.disconnect()

    def _exchange(self, apdu: bytes) -> bytes:
        if len(apdu) < 4 or (apdu[0], apdu[1]) not in ALLOWED:
            raise ForbiddenCommandError(apdu)
        return self.inner.transmit_raw(apdu)

    def close(self) -> None:
        self.inner.close()


# --- from records to fields --------------------------------------------------------------

_SSN = re.compile(r"[0-9]{17}[0-9X]")


def _ascii(value: bytes) -> str:
    text = value.rstrip(b"\x00").decode("ascii")
    if not text.isprintable():
        raise ValueError(text)
    return text


def _date(value: bytes) -> dt.date:
    text = value.hex()
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _length(size: int) -> Callable[[bytes], bytes]:
    def check(value: bytes) -> bytes:
        if len(value) != size:
            raise ValueError(size)
        return value

    return check


def _category(value: bytes) -> Category:
    return Category(_ascii(value))


def _version(value: bytes) -> str:
    text = _ascii(value)
    if text not in SPEC_VERSIONS:
        raise ValueError(text)
    return text


def _card_number(value: bytes) -> str:
    text = _ascii(value)
    if len(text) != 9:
        raise ValueError(text)
    return text


def _ssn(value: bytes) -> str:
    text = _ascii(value)
    if not _SSN.fullmatch(text):
        raise ValueError
    return text


def _sex(value: bytes) -> str:
    text = _ascii(value)
    if text not in ("1", "2"):
        raise ValueError(text)
    return text


def _bcd(digits: int) -> Callable[[bytes], str]:
    def convert(value: bytes) -> str:
        text = value.hex()
        if len(text) != digits or not text.isdigit():
            raise ValueError(text)
        return text

    return convert


@dataclass(frozen=True)
class Field:
    """One record copied into one field of the card file."""

    where: str  # "EF05 07"
    label: str
    tag: int
    convert: Callable[[bytes], Any]
    attribute: str  # of CardData (EF05) or Holder (EF06)
    show: Callable[[Any], str] = str  # how the value is printed: personal data masked


def _copied(_: object) -> str:
    return "copied"


def _mask_hex(value: bytes) -> str:
    return identity.mask_id(value.hex().upper())


CARD_FIELDS = (
    Field(
        "EF05 01",
        "identification code",
        Tag.IDENTIFICATION_CODE,
        _length(16),
        "identification_code",
        _mask_hex,
    ),  # fmt: skip
    Field("EF05 02", "category", Tag.CATEGORY, _category, "category"),
    Field("EF05 03", "version", Tag.SPEC_VERSION, _version, "spec_version"),
    Field("EF05 04", "issuer", Tag.ISSUER, _length(12), "issuer_id", _mask_hex),
    Field("EF05 05", "issue date", Tag.ISSUE_DATE, _date, "issue_date"),
    Field("EF05 06", "expiry date", Tag.EXPIRY_DATE, _date, "expiry_date"),
    Field(
        "EF05 07",
        "card number",
        Tag.CARD_NUMBER,
        _card_number,
        "card_number",
        identity.mask_card_number,
    ),  # fmt: skip
)
HOLDER_FIELDS = (
    Field("EF06 08", "SSN", Tag.SSN, _ssn, "ssn", identity.mask_id),
    Field("EF06 0A", "sex", Tag.SEX, _sex, "sex", _copied),
    Field("EF06 0B", "ethnic group", Tag.ETHNIC, _bcd(2), "ethnic", _copied),
    Field("EF06 0C", "birthplace", Tag.BIRTHPLACE, _bcd(6), "birthplace", _copied),
    Field("EF06 0D", "birth date", Tag.BIRTH_DATE, _date, "birth_date", _copied),
)
HOLDER_FIELDS_TAGS = tuple(f.tag for f in HOLDER_FIELDS[1:])


@dataclass
class Cloned:
    """The new card's state and what to tell about it, one line each."""

    state: CardState
    lines: list[str] = field(default_factory=list)


def _take(fields: tuple[Field, ...], reads: dict[int, Read], lines: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields:
        read = reads.get(f.tag)
        if read is None or read.value is None:
            status = f"{read.sw:04X}" if read is not None else "not read"
            lines.append(f"{f.where} {f.label:<20} not readable ({status}): the base profile's")
            continue
        try:
            value = f.convert(read.value)
        except (ValueError, UnicodeDecodeError):
            lines.append(f"{f.where} {f.label:<20} not in the standard's form: the base profile's")
            continue
        values[f.attribute] = value
        lines.append(f"{f.where} {f.label:<20} {f.show(value)}")
    return values


def clone(reader: Reader, *, base: str = DEFAULT_BASE, new_pin: str | None = None) -> Cloned:
    """Read the card in `reader` (connected) through a ReadOnlyReader and make the new
    card's state: the base profile's, with what the card gave."""
    state = profiles.make(base)
    guarded = ReadOnlyReader(reader)
    card = SocialSecurityCard(guarded)
    card.select_application()  # NotASocialSecurityCard: nothing to copy
    lines: list[str] = []
    ef05 = card.read_file(Fid.EF05, tuple(f.tag for f in CARD_FIELDS))
    if all(read.value is None for read in ef05.values()):
        status = " ".join(sorted({f"{read.sw:04X}" for read in ef05.values()}))
        raise NothingToCloneError(
            f"the card in {one_line(reader.name)} gave none of EF05's records ({status}): "
            "it is not a holder's social security card (a PSAM?); put one in"
        )
    data = replace(state.card, **_take(CARD_FIELDS, ef05, lines))
    holder = state.holder
    version = data.spec_version
    if version == V3:
        lines.append(
            f"EF06 holder data       not copied: a {V3} card gives it only after the "
            f"terminal's key (RKSSSE); the clone has profile {base}'s holder"
        )
    else:
        reads = card.read_holder((Tag.SSN, Tag.NAME, *HOLDER_FIELDS_TAGS), version)
        values = _take(HOLDER_FIELDS[:1], reads, lines)
        name = full_name(reads.get(Tag.NAME), reads.get(Tag.NAME_EXTENSION))
        if name:
            values["name"] = name
            lines.append(f"EF06 09 {'name':<20} {identity.mask_name(name)}")
        else:
            lines.append(f"EF06 09 {'name':<20} not readable: the base profile's")
        values.update(_take(HOLDER_FIELDS[1:], reads, lines))
        holder = replace(holder, **values)
    lines.append(
        f"DF04 medical insurance not copied: it is read after the PIN or RK1DF04; the "
        f"clone has profile {base}'s scheme and region"
    )
    algorithm = algorithm_of(card.fci, data.identification_code)
    if algorithm not in (Algorithm.SM4, Algorithm.DES):
        lines.append("the card's algorithm has no test keys here: the clone is an SM4 card")
        algorithm = Algorithm.SM4
    historical = historical_bytes(reader.peek_atr() or b"")
    if len(historical) != 13:
        historical = derived_historical(data.identification_code)
    state = state.with_(
        profile="clone",
        card=data,
        holder=holder,
        algorithm=algorithm,
        historical=historical,
        keys=card_keys(fixture_issuer(algorithm), data.identification_code, historical),
    )
    if new_pin is not None:
        state = state.with_(
            pin=PinHash.of(new_pin), pin_state=PinState.ENABLED, tries_left=state.try_limit
        )
        lines.append("PIN                     the one given (--pin), enabled")
    else:
        lines.append(f"PIN                     profile {base}'s ({state.pin_state.value})")
    # What the file will hold, checked as any card file is read: a value the reading let
    # through but the format refuses (a name too long for a 1.00 card) is said here.
    store.decode(store.encode(state), "the clone")
    return Cloned(state, lines)


# --- the command -----------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """`cardio card clone` (subparsers: `cardio card`'s)."""
    p = subparsers.add_parser(
        "clone",
        help="copy a real card's freely readable data into a new test card file",
        description="Sends only SELECT, READ RECORD, READ BINARY, GET DATA and GET "
        "RESPONSE: never a VERIFY or anything else that could cost the card a try. "
        "The new file has the test issuer's keys.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--reader", metavar="NAME|INDEX", help="the PC/SC reader of the card")
    source.add_argument("--card", metavar="FILE", help="a card file, served in process")
    p.add_argument("path", metavar="FILE", help="the card file to make")
    p.add_argument(
        "--pin",
        metavar="NEW",
        help="the clone's PIN, enabled ('-': read it from standard input); default: the "
        f"base profile's (the initial PIN of {DEFAULT_BASE})",
    )
    p.add_argument(
        "--profile",
        default=DEFAULT_BASE,
        metavar="NAME",
        help=f"the base for what cannot be read (default {DEFAULT_BASE})",
    )
    p.add_argument("--force", action="store_true", help="replace an existing FILE")
    p.set_defaults(func=run)


def _new_pin(given: str | None) -> str | None:
    if given is None:
        return None
    code = given
    if given == "-":
        import getpass

        code = getpass.getpass("new PIN: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    pin.check_format(code)  # the message never holds the digits
    return code


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    if args.profile == profiles.COUNTERFEIT:
        raise UsageError("a clone has the test issuer's keys; choose another --profile")
    profiles.make(args.profile)  # an unknown name: refused before the card is touched
    new_pin = _new_pin(args.pin)
    if not args.path:
        raise UsageError("the card path is empty; give the card file to make")
    store.check_creatable(args.path, force=args.force)  # said before the card is read
    reader: Reader
    if args.card is not None:
        from cardio.readers.virtual import VirtualReader

        reader = VirtualReader(args.card)
    else:
        from cardio.readers import pcsc

        reader = pcsc.PcscReader(pcsc.resolve(args.reader))
    try:
        reader.connect()
        cloned = clone(reader, base=args.profile, new_pin=new_pin)
    finally:
        reader.close()
    store.create(args.path, cloned.state, force=args.force)
    print(f"cloned the card in {one_line(reader.name)} into {one_line(args.path)}", file=out)
    for line in cloned.lines:
        print(f"  {line}", file=out)
    return Exit.OK


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="cardio card")
    add_parser(parser.add_subparsers(dest="card_command", required=True, metavar="ACTION"))
    args = parser.parse_args(["clone", *(sys.argv[1:] if argv is None else argv)])
    return run_command("cardio", lambda: int(args.func(args, sys.stdout)), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
