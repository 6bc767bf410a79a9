"""The `cardio` command: make and inspect card files, send APDUs to a card."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import getpass
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cardio import clone, identity, record, replay, vpcd
from cardio.apdu import HexError, parse_hex, to_hex
from cardio.card import profiles, store
from cardio.card.state import CardState
from cardio.errors import Exit, UsageError
from cardio.model import DEFAULT_SPEC_VERSION, SPEC_VERSIONS, Algorithm, Category, Scheme
from cardio.readers.base import Reader
from cardio.readers.virtual import VirtualReader
from cardio.trace import Responses, command_line
from cardio.usage import OneLineParser, one_line, run_command, say

if TYPE_CHECKING:
    from cardio.keysource import KeySource

ALGORITHMS = {"sm4": Algorithm.SM4, "des": Algorithm.DES}  # `card new --algorithm`
PSAM_PROFILE = "psam"  # `card new --profile psam`: not a user-card profile (cardio/psam)
MAX_SCRIPT_BYTES = 8 << 20  # far more than any APDU script; /dev/zero must not eat memory

SCHEMES: dict[str, str] = {
    Scheme.EMPLOYEE_MEDICAL: "urban employee basic medical insurance",
    Scheme.RESIDENT_MEDICAL: "urban-rural resident medical insurance",
    Scheme.RESIDENT_PENSION: "urban-rural resident pension",
}
CATEGORIES: dict[str, str] = {
    Category.SOCIAL_SECURITY: "social security card",
    Category.OLD_MEDICAL: "old city medical insurance card",
}


# --- card ---------------------------------------------------------------------


def summary(state: CardState) -> dict[str, object]:
    """What `card show` tells: never the PIN, holder data masked."""
    return {
        "profile": state.profile,
        "card_number": state.card.card_number,
        "spec_version": state.card.spec_version,
        "real_only": state.real_only,
        "category": state.card.category,
        "scheme": state.scheme,
        "life_cycle": state.life_cycle.value,
        "pin_state": state.pin_state.value,
        "tries_left": state.tries_left,
        "try_limit": state.try_limit,
        "blocked": state.blocked,
        "t0_style": state.t0_style,
        "holder": {
            "name": identity.mask_name(state.holder.name),
            "ssn": identity.mask_id(state.holder.ssn),
        },
    }


def cmd_list_profiles(args: argparse.Namespace, out: TextIO) -> int:
    names = profiles.names()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {profiles.describe(name)}", file=out)
    return Exit.OK


def cmd_new_psam(args: argparse.Namespace, out: TextIO) -> int:
    """`card new --profile psam`: a PSAM holding the test issuer's masters (docs/psam.md)."""
    from cardio.issuer import fixture_issuer
    from cardio.psam import state as psam_state
    from cardio.psam import store as psam_store

    for option, given in (
        ("--spec-version", args.spec_version),
        ("--real-only", args.real_only),
        ("--serial", args.serial),
    ):
        if given:
            raise UsageError(f"{option} is for user cards; leave it out with --profile psam")
    number = args.terminal_number or psam_state.DEFAULT_TERMINAL_NUMBER
    state = psam_state.make(fixture_issuer(ALGORITHMS[args.algorithm]), number)
    psam_store.create(args.path, state, force=args.force)
    print(
        f"made {one_line(args.path)}: a PSAM, terminal number {state.terminal_number}, "
        f"{state.algorithm.name} keys of the test issuer",
        file=out,
    )
    return Exit.OK


def cmd_new(args: argparse.Namespace, out: TextIO) -> int:
    if args.profile == PSAM_PROFILE:
        return cmd_new_psam(args, out)
    if args.terminal_number is not None:
        raise UsageError("--terminal-number is for a PSAM; use it with --profile psam")
    state = profiles.new_card(
        args.profile,
        args.path,
        force=args.force,
        spec_version=args.spec_version,
        real_only=args.real_only,
        serial=args.serial,
        algorithm=ALGORITHMS[args.algorithm],
    )
    print(
        f"made {one_line(args.path)} from profile {args.profile} "
        f"({state.pin_state.value}, {state.tries_left}/{state.try_limit} tries)",
        file=out,
    )
    return Exit.OK


def psam_summary(path: str) -> dict[str, object]:
    """What `card show` tells of a PSAM: never a key byte."""
    from cardio.psam import store as psam_store

    state = psam_store.read(path)
    return {
        "kind": "psam",
        "terminal_number": state.terminal_number,
        "serial": state.serial,
        "algorithm": state.algorithm.name,
        "keys": {r.name.value: f"usage {r.usage:02X} id {r.ident:02X}" for r in state.records()},
    }


def cmd_show_psam(args: argparse.Namespace, out: TextIO) -> int:
    info = psam_summary(args.path)
    if args.json:
        print(json.dumps(info, ensure_ascii=False), file=out)
        return Exit.OK
    keys = info["keys"]
    rows = [
        ("kind", "PSAM"),
        ("terminal", info["terminal_number"]),
        ("serial", info["serial"]),
        ("algorithm", info["algorithm"]),
        ("keys", ", ".join(keys) if isinstance(keys, dict) else ""),
    ]
    for label, value in rows:
        print(f"{label:<12} {value}", file=out)
    return Exit.OK


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    from cardio.psam import store as psam_store

    if psam_store.is_psam_file(args.path):
        return cmd_show_psam(args, out)
    info = summary(store.read(args.path))
    if args.json:
        print(json.dumps(info, ensure_ascii=False), file=out)
        return Exit.OK
    holder = info["holder"]
    assert isinstance(holder, dict)
    rows = [
        ("profile", info["profile"]),
        ("card number", info["card_number"]),
        (
            "version",
            f"{info['spec_version']}"
            + (" (real-only: no extensions)" if info["real_only"] else ""),
        ),
        ("category", f"{info['category']} ({CATEGORIES.get(str(info['category']), '?')})"),
        ("scheme", f"{info['scheme']} ({SCHEMES.get(str(info['scheme']), 'unknown scheme')})"),
        ("life cycle", info["life_cycle"]),
        ("PIN state", info["pin_state"]),
        (
            "tries left",
            f"{info['tries_left']} of {info['try_limit']}"
            + (" (blocked)" if info["blocked"] else ""),
        ),
        ("holder", f"{holder['name']}  {holder['ssn']}"),
    ]
    for label, value in rows:
        print(f"{label:<12} {value}", file=out)
    return Exit.OK


# --- send / script --------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One line of work: an APDU to send, or a reset."""

    apdu: bytes | None  # None = reset
    where: str


@contextmanager
def open_reader(args: argparse.Namespace) -> Iterator[Reader]:
    """The card of `--card PATH` (locked for this process) or of `--reader NAME|INDEX`,
    powered on, and powered off after: each run is a fresh session."""
    reader: Reader
    if args.card is not None:
        reader = VirtualReader(args.card)  # the path as written: '' is refused, not '.'
    else:
        from cardio.readers import pcsc

        reader = pcsc.PcscReader(pcsc.resolve(args.reader))
    try:
        reader.connect()
        yield reader
    finally:
        reader.close()


def run_steps(reader: Reader, steps: Sequence[Step], out: TextIO) -> int:
    """Raw exchanges, like scriptor: what the card answers is shown as it is."""
    responses = Responses()  # a PSAM's encrypted PIN blocks hidden
    for step in steps:
        if step.apdu is None:
            print("> reset", file=out)
            print("< " + to_hex(reader.reset()), file=out)
            continue
        print(command_line(step.apdu), file=out)
        answer = reader.transmit_raw(step.apdu)
        print(responses.line(step.apdu, answer), file=out, flush=True)
    return Exit.OK


def parse_apdu(text: str, where: str) -> bytes:
    try:
        return parse_hex(text)
    except HexError as e:
        raise UsageError(f"{where}: {e}; write an APDU as hex bytes, e.g. '00 A4 04 00'") from None


def read_script(name: str) -> str:
    """The script's text. A pipe is fine (`script --card C /dev/stdin`); a folder is not."""
    if not name:
        raise UsageError("the script path is empty; give the file of APDUs to run")
    try:
        with open(name, "rb") as f:
            raw = f.read(MAX_SCRIPT_BYTES + 1)
    except OSError as e:
        what = "is a folder" if e.errno == errno.EISDIR else f"cannot be read ({e.strerror})"
        raise UsageError(f"{name} {what}; give the file of APDUs to run") from None
    if len(raw) > MAX_SCRIPT_BYTES:
        raise UsageError(
            f"{name} is over {MAX_SCRIPT_BYTES >> 20} MB, too large for an APDU "
            "script; give the file of APDUs to run"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UsageError(
            f"{name}:{line} is not UTF-8 text; save the script as UTF-8 (plain hex APDUs are)"
        ) from None


def parse_script(path: str | Path) -> list[Step]:
    """pcsc-tools `scriptor` format: one hex APDU a line, '#' comments, 'reset', 'exit'."""
    text = read_script(os.fspath(path))
    steps: list[Step] = []
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        where = f"{path}:{number}"
        if not body:
            continue
        if body.lower() == "reset":
            steps.append(Step(None, where))
        elif body.lower() in ("exit", "quit"):
            break
        else:
            steps.append(Step(parse_apdu(body, where), where))
    return steps


def cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    steps = [Step(parse_apdu(t, f"APDU {i}"), f"APDU {i}") for i, t in enumerate(args.apdu, 1)]
    with open_reader(args) as reader:
        return run_steps(reader, steps, out)


def cmd_readers(args: argparse.Namespace, out: TextIO) -> int:
    from cardio.readers import pcsc

    infos = pcsc.list_readers()
    if not infos:
        print("no PC/SC readers", file=out)
        return Exit.OK
    for index, info in enumerate(infos):
        card = f"card  {to_hex(info.atr)}" if info.atr else "no card"
        print(f"{index}: {info.name}  [{card}]", file=out)
    return Exit.OK


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from cardio import control, faults, slots
    from cardio.psam import store as psam_store

    logging.basicConfig(level=logging.INFO, format="cardio serve: %(message)s", stream=sys.stderr)
    try:
        vpcd_at = vpcd.parse_address(args.vpcd) if args.vpcd is not None else None
        listen_at = vpcd.parse_address(args.listen) if args.listen is not None else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    paths = [store.card_path(card) for card in args.card]
    armed = [faults.parse_slotted(spec) for spec in args.faults]
    for index, path in enumerate(paths):
        if path in paths[:index]:
            raise UsageError(
                f"{args.card[index]} is given twice; each slot needs a card of its own"
            )
    if listen_at is not None:
        # Reversed mode: Debian's vpcd makes pcscd abort when a card goes (README).
        if len(paths) > 1 or armed or args.control is not None:
            raise UsageError(
                "--listen serves one card, without --control or --faults (pcscd aborts "
                "there when a card goes); use --vpcd for several cards and remote control"
            )
        return vpcd.serve(
            paths[0], listen=listen_at, verbose=args.verbose, random_seed=args.random_seed
        )
    for index, fault in armed:
        if index >= len(paths):
            raise UsageError(
                f"--faults names slot {index}, but slots go from 0 to {len(paths) - 1}"
            )
        if fault.kind is faults.Kind.TEAR and psam_store.is_psam_file(paths[index]):
            raise UsageError(f"--faults: slot {index} holds a PSAM, which never writes: no tear")
    if args.control == "":
        raise UsageError("the --control path is empty; give the socket's path")
    # As for ctl: a card file names the socket beside it, never a place to make one.
    sock_path: Path | None = (
        control.resolve(args.control).absolute() if args.control else control.default_path(paths[0])
    )
    if (
        sock_path is not None
        and args.control is None
        and len(os.fsencode(sock_path)) > control.SUN_PATH_MAX
    ):
        logging.getLogger("cardio.serve").warning(
            "no control socket: %s is over %d bytes; give a shorter one with --control PATH",
            sock_path,
            control.SUN_PATH_MAX,
        )
        sock_path = None
    return slots.serve_cards(
        paths,
        vpcd=vpcd_at,
        verbose=args.verbose,
        random_seed=args.random_seed,
        control=sock_path,
        faults=armed,
    )


def cmd_ctl(args: argparse.Namespace, out: TextIO) -> int:
    from cardio import control, faults

    action: str = args.action
    words = list(args.words)
    usage = {
        "status": 0,
        "insert": 1,
        "remove": 1,
        "clear": 1,
        "watch": 1,
        "fault": 2,
        "swap": 2,
    }
    needs = usage[action]
    if len(words) > needs or (action in ("clear", "watch", "fault", "swap") and len(words) < needs):
        shapes = {0: "", 1: " SLOT", 2: " SLOT FILE" if action == "swap" else " SLOT SPEC"}
        optional = " [SLOT]" if action in ("insert", "remove") else shapes[needs]
        raise UsageError(f"write it as: cardio ctl {action}{optional}")
    if words and not (words[0].isascii() and words[0].isdigit()):
        raise UsageError(f"{words[0]!r} is not a slot number (0, 1, ...)")
    if action == "fault":
        faults.parse(words[1])  # a bad spec is told here, with exit 2
    if action == "swap":
        path = store.card_path(words[1])
        if not path.exists():
            raise UsageError(f"{words[1]}: no such card file; give the card file to put in")
        if not path.is_file():
            raise UsageError(f"{words[1]} is not a regular file; give the card file to put in")
        words[1] = os.fspath(path)
    if action == "watch":
        return control.watch(control.resolve(args.control), int(words[0]), out)
    return control.request(control.resolve(args.control), " ".join([action, *words]), out)


def _outlet_keys(args: argparse.Namespace) -> KeySource:
    """--test-key, --key FILE (the issuer's master keys) or --psam FILE|READER."""
    from cardio import outlet

    if args.test_key:
        return outlet.fixture_master_key()
    if args.key is not None:
        return outlet.load_key(Path(args.key))
    from cardio.psam_source import open_psam

    return open_psam(args.psam)


def cmd_outlet(args: argparse.Namespace, out: TextIO) -> int:
    from cardio import outlet

    operation = outlet.Operation(args.operation)
    for option, value in (("--key", args.key), ("--log", args.log)):
        if value == "":
            raise UsageError(f"the {option} path is empty; give a file name")
    key = _outlet_keys(args)
    log = outlet.OutletLog(Path(args.log) if args.log is not None else outlet.default_log())
    log.check_writable()  # a log we may not use is refused before the PIN is asked for
    try:
        new_pin = outlet.ask_new_pin() if operation is outlet.Operation.RESET_PIN else None
    except outlet.OutletError as e:  # refused before the card: still an operation to log
        log.record(args.operator, operation, None, f"refused: {e}", id_number=args.id)
        raise
    with open_reader(args) as reader:
        desk = outlet.Outlet(reader, key, operator=args.operator, log=log)
        result = desk.run(operation, args.id, new_pin)
        status = desk.card.pin_status()
    info = result.info
    print(
        f"card        {info.card_number}  {identity.mask_name(info.name or '')}  "
        f"{identity.mask_id(info.ssn or '')}",
        file=out,
    )
    print(f"operation   {operation.value}: done", file=out)
    print(
        f"now         {(status.life_cycle or '?')} / PIN {(status.pin_state or '?')} / "
        f"{status.tries_left} of {status.try_limit} tries",
        file=out,
    )
    print(f"online query password (查询密码, not the card PIN): {result.query_password}", file=out)
    return Exit.OK


def cmd_read_bas(args: argparse.Namespace, out: TextIO) -> int:
    """The reader API's iReadCardBas line (cardio/readbas.py). A failure is the one-line
    error with the API's number; with --json, also a JSON object on standard output."""
    from cardio import api_codes
    from cardio.errors import CardioError
    from cardio.protocol import SocialSecurityCard
    from cardio.readbas import BasicInfo

    try:
        keys = None
        if args.psam is not None:
            from cardio.psam_source import open_psam

            keys = open_psam(args.psam)
        with open_reader(args) as reader:
            atr = reader.connect()
            basics = SocialSecurityCard(reader).read_basics(keys)
            terminal = keys.terminal_number() if keys is not None else None
            info = BasicInfo.of(basics, atr, terminal)
    except CardioError as e:
        code = api_codes.of(e)
        if args.json:
            failed = {"ok": False, "api_code": code, "error": str(e)}
            print(json.dumps(failed, ensure_ascii=False), file=out)
        # A file given by hand has no number in the API: no suffix that suggests one.
        say("cardio", f"{e} (reader API {code})" if code is not None else e)
        return e.exit_code
    if args.json:
        record = {"ok": True, "api_code": 0, **dataclasses.asdict(info)}
        print(json.dumps(record, ensure_ascii=False), file=out)
    else:
        print(info.line(), file=out)
    return Exit.OK


def cmd_script(args: argparse.Namespace, out: TextIO) -> int:
    steps = parse_script(args.file)
    with open_reader(args) as reader:
        return run_steps(reader, steps, out)


# --- wiring ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cardio", description="The card layer of shebao-pos: card files and APDUs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    card = sub.add_parser("card", help="make and inspect card files")
    card_sub = card.add_subparsers(dest="card_command", required=True, metavar="ACTION")
    p = card_sub.add_parser("list-profiles", help="list the card profiles")
    p.set_defaults(func=cmd_list_profiles)
    p = card_sub.add_parser("new", help="make a card file from a profile")
    p.add_argument(
        "--profile",
        required=True,
        help=f"profile name (see list-profiles), or {PSAM_PROFILE} for a PSAM (docs/psam.md)",
    )
    p.add_argument("path", help="the card file to write")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument(
        "--spec-version",
        choices=SPEC_VERSIONS,
        default=None,
        help=f"the card generation, EF05 record 03 (default {DEFAULT_SPEC_VERSION})",
    )
    p.add_argument(
        "--algorithm",
        choices=tuple(ALGORITHMS),
        default="sm4",
        help="the card's (or PSAM's) algorithm: sm4 (default) or des (3DES keys of the "
        "DES test issuer; SSF33 is unpublished and not available)",
    )
    p.add_argument(
        "--serial",
        type=int,
        metavar="N",
        default=None,
        help="another card of the profile's holder: this serial (1-99999999) in its "
        "identification code and card number, so its ATR and keys are its own",
    )
    p.add_argument(
        "--real-only",
        action="store_true",
        help="answer only the standard's commands: our extensions get 6D00",
    )
    p.add_argument(
        "--terminal-number",
        metavar="12DIGITS",
        default=None,
        help="with --profile psam: its terminal number (default 310000000001)",
    )
    p.set_defaults(func=cmd_new)
    p = card_sub.add_parser("show", help="show a card's state (never its PIN) or a PSAM's")
    p.add_argument("path", help="the card or PSAM file")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_show)
    clone.add_parser(card_sub)

    p = sub.add_parser("send", help="send APDUs to a card")
    _card_or_reader(p)
    p.add_argument("apdu", nargs="+", help="APDU in hex, spaces allowed ('00 84 00 00 08')")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("script", help="run a scriptor-style APDU script")
    _card_or_reader(p)
    p.add_argument("file", help="one hex APDU a line, '#' comments, 'reset'")
    p.set_defaults(func=cmd_script)
    record.add_parser(sub)
    replay.add_parser(sub)

    p = sub.add_parser(
        "read-bas",
        help="the card's basic information as the reader API's iReadCardBas prints it",
        description="Prints the holder's SSN and name unmasked (the integrator's "
        "comparison with their own DLL); docs/card.md §8.",
    )
    _card_or_reader(p)
    p.add_argument(
        "--psam",
        metavar="FILE|READER",
        help="check the card with this PSAM first (INTERNAL AUTHENTICATE; RKSSSE on a "
        "3.00 card) and print its terminal number",
    )
    p.add_argument("--json", action="store_true", help="one JSON object, the fields named")
    p.set_defaults(func=cmd_read_bas)

    p = sub.add_parser("outlet", help="service-outlet operations (MAC-protected)")
    p.add_argument(
        "operation", choices=["reset-pin", "restore-initial", "cancel-pin", "activate", "unblock"]
    )
    _card_or_reader(p)
    p.add_argument(
        "--id", required=True, metavar="N", help="the holder's ID number, from the ID document"
    )
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", metavar="FILE", help="issuer master-key file (mode 600)")
    keys.add_argument(
        "--test-key", action="store_true", help="the public test issuer's keys (fixture cards)"
    )
    keys.add_argument("--psam", metavar="FILE|READER", help="a PSAM file or a PSAM's reader")
    p.add_argument("--operator", default=getpass.getuser(), help="who does it (for the log)")
    p.add_argument("--log", metavar="FILE", help="outlet log (default: user data folder)")
    p.set_defaults(func=cmd_outlet)

    p = sub.add_parser("readers", help="list PC/SC readers and their cards")
    p.set_defaults(func=cmd_readers)

    p = sub.add_parser(
        "serve", help="plug card or PSAM files into pcscd through vpcd, one per slot"
    )
    p.add_argument(
        "card",
        metavar="CARD.json",
        nargs="+",
        help="card or PSAM files: the first in slot 0 (PORT), the next in slot 1 (PORT+1), ...",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--vpcd",
        metavar="HOST:PORT",
        help=f"connect to vpcd here (default {vpcd.VPCD_HOST}:{vpcd.VPCD_PORT})",
    )
    where.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="vpcd's reversed mode: wait for vpcd here (host default 127.0.0.1)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log each APDU, PINs masked")
    p.add_argument(
        "--control",
        metavar="PATH",
        help="the control socket for 'cardio ctl' (default .CARD.json.ctl beside the first card)",
    )
    p.add_argument(
        "--faults",
        metavar="[SLOT:]SPEC",
        action="append",
        default=[],
        help="arm a fault from the start (repeatable): mute, delay=MS, remove-after=N, tear, "
        "sw=INS:SW, flip, then ,p=P ,count=N|*",
    )
    # Tests only (docs/card.md §7): GET CHALLENGE from random.Random(N), not secrets.
    p.add_argument("--random-seed", type=int, metavar="N", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "ctl",
        help="control a running 'cardio serve': insert, remove, swap, faults",
        description="status | insert [SLOT] | remove [SLOT] | swap SLOT FILE | "
        "fault SLOT SPEC | clear SLOT | watch SLOT",
    )
    p.add_argument(
        "--control",
        metavar="PATH",
        help="serve's control socket, or its first card file (default $CARDIO_CONTROL)",
    )
    p.add_argument(
        "action", choices=["status", "insert", "remove", "swap", "fault", "clear", "watch"]
    )
    p.add_argument("words", nargs="*", metavar="ARG", help="SLOT, then FILE or SPEC")
    p.set_defaults(func=cmd_ctl)
    return parser


def _card_or_reader(p: argparse.ArgumentParser) -> None:
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--card", metavar="PATH", help="card file (in process)")
    target.add_argument("--reader", metavar="NAME|INDEX", help="PC/SC reader")


def _say(message: object) -> None:
    say("cardio", message)


class _StderrLines(logging.Handler):
    """The card layer's log lines (a card answering 6581 on a full disk, say) as
    `cardio: ...` lines, the form of the command's own errors: never a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _say(record.getMessage())
        except Exception:
            self.handleError(record)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Every failure a person can cause is one `cardio: <what>; <what to do>` line on
    stderr and exit 2 (bad input, damaged file) or 1 (anything else); never a traceback."""
    if out is None:
        out = sys.stdout
        if isinstance(out, io.TextIOWrapper):  # a path or name the terminal cannot show
            out.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    lines: logging.Handler | None = None
    if func is not cmd_serve:  # serve sets up its own log lines
        lines = _StderrLines()
        logging.getLogger("cardio").addHandler(lines)
    try:
        return run_command("cardio", lambda: func(args, out), out)
    finally:
        if lines is not None:
            logging.getLogger("cardio").removeHandler(lines)


if __name__ == "__main__":
    sys.exit(main())
