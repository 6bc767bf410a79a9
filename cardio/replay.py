"""`cardio replay`: run a session script (cardio/record.py) and print what the card
answered differently, command by command. Exit 0: no difference; 1: some; 2: bad usage
or a bad file.

A card file is replayed on a temporary copy by default: a regression test must give
the same result every time, and a replay that spends a PIN try or a key try on the
card file itself would change the next run's answers (and may block the card). With
`--keep` the script's writes land on the file (it is locked meanwhile, as for any use).

What cannot be sent as recorded is filled in or skipped, and said once per kind:
- `#pin` (a masked VERIFY): filled with `--pin`, never printed or written; skipped
  without it.
- `#auth` (EXTERNAL AUTHENTICATE): its cryptogram answers the recorded run's challenge,
  so it is recomputed over this run's challenge with the card file's own key, or, on a
  reader, with a PSAM (`--psam`) or the test issuer's masters (`--test-keys`, a test
  card); skipped otherwise: sent as recorded it would fail and cost the card one try
  of that key.
- `#secret` (PIN change, MAC, PSAM cipher): never sent again, nor the GET RESPONSEs
  right after it (they would fetch its answer).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cardio import pin, security
from cardio.apdu import historical_bytes, to_hex
from cardio.errors import CardioError, Exit, UsageError
from cardio.issuer import KEYS, KeyName, fixture_issuer
from cardio.keysource import CardIdentity, KeySource, KeySourceError, MasterKeySource
from cardio.model import SSSE_NAME, Algorithm, Cla, Ins, SelectBy, Tag
from cardio.readers.base import Reader
from cardio.readers.virtual import VirtualReader
from cardio.record import Step, StepKind, load
from cardio.trace import MASK, Responses
from cardio.usage import OneLineParser, one_line, run_command

OK = b"\x90\x00"
_KEY_OF_REFERENCE = {k.reference: k.name for k in KEYS}
_AUTH_DATA = 16  # EXTERNAL AUTHENTICATE: cryptogram (8) ‖ raw data (8)
_CRYPTOGRAM = 8
_PIN_BYTES = 3
_GET_RESPONSE = bytes((Cla.ISO, Ins.GET_RESPONSE))

# Why a step was not sent, said once each (with the lines) after the differences.
NO_PIN = "masked PIN commands (give --pin to send them)"
ODD_PIN = "masked PIN commands that are not a 6-digit VERIFY"
SECRET = "secret commands (PIN change, MAC, PSAM cipher): never sent again"  # noqa: S105
NO_KEY = (
    "EXTERNAL AUTHENTICATEs (no key: replay a card file, or give --psam, or --test-keys "
    "for a test card)"
)
NO_CHALLENGE = "EXTERNAL AUTHENTICATEs with no challenge before them in this run"
FETCH = "GET RESPONSEs of commands not sent"
ODD_AUTH = "EXTERNAL AUTHENTICATEs not of the form cryptogram (8) and raw data (8)"


@dataclass
class Live:
    """What this run's card said so far that a recomputed cryptogram needs."""

    atr: bytes = b""
    fci: bytes = b""  # the SSSE's, answer of SELECT by name
    identification_code: bytes | None = None  # EF05 01
    challenge: bytes | None = None  # the last GET CHALLENGE's, spent by one use

    def saw(self, command: bytes, response: bytes) -> None:
        if not response.endswith(OK):
            return
        data = response[:-2]
        head = (command[0], command[1]) if len(command) >= 2 else None
        if head == (Cla.ISO, Ins.GET_CHALLENGE):
            self.challenge = data
        elif head == (Cla.ISO, Ins.SELECT) and command[2] == SelectBy.NAME and len(command) > 5:
            if command[5 : 5 + command[4]] == SSSE_NAME:
                self.fci = data
        elif (
            head == (Cla.ISO, Ins.READ_RECORD)
            and command[2] == Tag.IDENTIFICATION_CODE
            and data[:2] == b"\x01\x10"
            and len(data) == 18
        ):
            self.identification_code = data[2:]


# The cryptogram of an EXTERNAL AUTHENTICATE: (key, challenge, raw, live) -> 8 bytes,
# or None when this key is unknown.
Cryptograms = Callable[[KeyName, bytes, bytes, Live], bytes | None]


def card_file_keys(keys: dict[KeyName, bytes], algorithm: Algorithm) -> Cryptograms:
    """A card file's own keys (whatever issuer made them: a counterfeit card's too)."""

    def compute(key: KeyName, challenge: bytes, raw: bytes, live: Live) -> bytes | None:
        if key not in keys:
            return None
        return security.authentication(algorithm, keys[key], challenge, raw)

    return compute


def source_keys(source: KeySource, *, unknown_is_skip: bool = False) -> Cryptograms:
    """A key source's cryptograms (the issuer's masters, or a PSAM), dispersed for the
    card this run reads: its FCI, EF05 01 and ATR must have been seen. `unknown_is_skip`:
    a card the source has no keys for (another algorithm) skips the step; otherwise (a
    PSAM that fails) the replay stops with the source's error."""

    def compute(key: KeyName, challenge: bytes, raw: bytes, live: Live) -> bytes | None:
        from cardio.protocol import algorithm_of

        algorithm = algorithm_of(live.fci, live.identification_code)
        historical = historical_bytes(live.atr)
        if live.identification_code is None or algorithm is None or len(historical) != 13:
            return None
        card = CardIdentity(algorithm, live.identification_code, historical)
        try:
            return source.external_auth(key, card, challenge, raw)
        except KeySourceError:
            if unknown_is_skip:
                return None
            raise

    return compute


def fixture_keys() -> Cryptograms:
    """The test issuer's masters: a test card in a reader (one `cardio serve` serves)."""
    source = MasterKeySource(fixture_issuer(), fixture_issuer(Algorithm.DES))
    return source_keys(source, unknown_is_skip=True)


@dataclass(frozen=True)
class Difference:
    index: int  # the command's number in the script, 1 first
    line: int
    shown: str  # the command, masked
    expected: str
    got: str


@dataclass
class Outcome:
    commands: int = 0
    compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    stopped: str | None = None  # the failure that ended the run early

    def skip(self, reason: str, step: Step) -> None:
        self.skipped.setdefault(reason, []).append(step.line)


class Replayer:
    """Sends a script's steps to a connected reader and compares the answers."""

    def __init__(
        self, reader: Reader, *, pin_code: str | None = None, keys: Cryptograms | None = None
    ) -> None:
        self.reader = reader
        self._pin = pin_code
        self._keys = keys
        self._responses = Responses()  # a PSAM's cipher output hidden, as in a trace
        self.live = Live()

    def run(self, steps: Sequence[Step], atr: bytes) -> Outcome:
        self.live.atr = atr
        outcome = Outcome()
        skipped = False  # the command before was not sent
        for step in steps:
            if step.kind is StepKind.RESET:
                self._reset(step, outcome)
                skipped = False
                continue
            outcome.commands += 1
            if skipped and step.command is not None and step.command[:2] == _GET_RESPONSE:
                outcome.skip(FETCH, step)  # it would fetch the skipped command's answer
                continue
            command = self._command(step, outcome)
            skipped = command is None
            if command is None:
                continue
            try:
                response = self.reader.transmit_raw(command)
            except CardioError as e:  # a pulled card, a dead reader: what came so far is told
                outcome.stopped = f"#{outcome.commands} (line {step.line}) {step.shown}: {e}"
                return outcome
            self.live.saw(command, response)
            self._compare(step, command, response, outcome)
        return outcome

    def _reset(self, step: Step, outcome: Outcome) -> None:
        self.live = Live(atr=self.reader.reset())
        if step.atr is not None and step.atr != self.live.atr:
            outcome.differences.append(
                Difference(0, step.line, "reset (ATR)", to_hex(step.atr), to_hex(self.live.atr))
            )

    def _command(self, step: Step, outcome: Outcome) -> bytes | None:
        """The bytes to send for a step, or None (skipped, and the reason kept)."""
        if step.kind is StepKind.APDU:
            return step.command
        if step.kind is StepKind.SECRET:
            outcome.skip(SECRET, step)
            return None
        if step.kind is StepKind.PIN:
            if self._pin is None:
                outcome.skip(NO_PIN, step)
                return None
            cells = step.cells
            if len(cells) != 5 + _PIN_BYTES or cells[4] != f"{_PIN_BYTES:02X}":
                outcome.skip(ODD_PIN, step)
                return None
            if any(c == MASK for c in cells[:5]) or any(c != MASK for c in cells[5:]):
                outcome.skip(ODD_PIN, step)
                return None
            return bytes.fromhex("".join(cells[:5])) + pin.encode(self._pin)
        return self._auth(step, outcome)

    def _auth(self, step: Step, outcome: Outcome) -> bytes | None:
        recorded = step.command or b""
        key = _KEY_OF_REFERENCE.get(recorded[3]) if len(recorded) > 3 else None
        if len(recorded) != 5 + _AUTH_DATA or recorded[4] != _AUTH_DATA or key is None:
            outcome.skip(ODD_AUTH, step)
            return None
        if self._keys is None:
            outcome.skip(NO_KEY, step)
            return None
        challenge, self.live.challenge = self.live.challenge, None  # one use, as the card's
        if challenge is None:
            outcome.skip(NO_CHALLENGE, step)
            return None
        raw = recorded[5 + _CRYPTOGRAM :]
        cryptogram = self._keys(key, challenge, raw, self.live)
        if cryptogram is None:
            outcome.skip(NO_KEY, step)
            return None
        return recorded[:5] + cryptogram + raw

    def _compare(self, step: Step, command: bytes, response: bytes, outcome: Outcome) -> None:
        shown = self._responses.line(command, response)[2:]
        if step.expect is None:
            return
        outcome.compared += 1
        if not step.expect.matches(response):
            outcome.differences.append(
                Difference(outcome.commands, step.line, step.shown, step.expect.text(), shown)
            )


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(outcome: Outcome, out: TextIO) -> int:
    for d in outcome.differences:
        where = f"#{d.index} (line {d.line})" if d.index else f"line {d.line}"
        print(f"{where} {d.shown}", file=out)
        print(f"  expected {d.expected}", file=out)
        print(f"  got      {d.got}", file=out)
    for reason, lines in outcome.skipped.items():
        at = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
        print(f"skipped ({len(lines)}) {reason}: line {at}", file=out)
    if outcome.stopped is not None:
        print(f"stopped at {one_line(outcome.stopped)}", file=out)
    n = len(outcome.differences)
    verdict = "no differences" if n == 0 else _count(n, "difference")
    compared = _count(outcome.compared, "answer")
    print(f"{_count(outcome.commands, 'command')}, {compared} compared: {verdict}", file=out)
    return Exit.OK if n == 0 and outcome.stopped is None else Exit.FAILED


# --- where the card is ---------------------------------------------------------------------


@contextlib.contextmanager
def card_file_reader(path: str, *, keep: bool) -> Iterator[tuple[Reader, Cryptograms | None]]:
    """The card file in a virtual slot: a temporary copy (0600, in a 0700 folder, gone
    after) unless `keep`; and the card's own keys for EXTERNAL AUTHENTICATE."""
    from cardio.card import store
    from cardio.psam import store as psam_store

    if not path:
        raise UsageError("the --card path is empty; give a card file")
    if psam_store.is_psam_file(path):  # a PSAM file is never written: no copy needed
        yield VirtualReader(path, shared_psam=True), None
        return
    state = store.read(path)
    keys = card_file_keys(dict(state.keys), state.algorithm)
    if keep:
        reader = VirtualReader(path)
        try:
            yield reader, keys
        finally:
            reader.close()
        return
    folder = Path(tempfile.mkdtemp(prefix="cardio-replay-"))
    try:
        copy = folder / (Path(path).name or "card.json")
        store.create(copy, state)
        reader = VirtualReader(copy)
        try:
            yield reader, keys
        finally:
            reader.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def psam_keys(spec: str, stack: contextlib.ExitStack) -> KeySource:
    """A PSAM (a file or a reader) as the key source, let go when the replay ends."""
    from cardio.keysource import PsamKeySource
    from cardio.psam_source import psam_reader

    reader = psam_reader(spec)
    stack.callback(reader.close)
    reader.connect()
    source = PsamKeySource(reader)
    source.start()
    return source


def _pin_of(given: str | None) -> str | None:
    """--pin's PIN (`-`: read from the terminal or standard input), format checked before
    anything is sent; the message of a bad one never holds it."""
    if given is None:
        return None
    code = given
    if given == "-":
        code = getpass.getpass("PIN: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    pin.check_format(code)
    return code


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """`cardio replay`."""
    p = subparsers.add_parser(
        "replay",
        help="run a recorded session script and print the answers that differ",
        description="Exit 0 when every answer is as recorded, 1 when some differ, 2 for "
        "a bad option or file. A card file is replayed on a temporary copy unless --keep.",
    )
    p.add_argument("script", help="the session script (cardio record)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--card", metavar="FILE", help="a card file (in process)")
    target.add_argument("--reader", metavar="NAME|INDEX", help="a PC/SC reader")
    p.add_argument(
        "--pin",
        metavar="PIN",
        help="fill the masked VERIFYs with this PIN ('-': read it from standard input)",
    )
    p.add_argument(
        "--keep", action="store_true", help="with --card: let the script write to the file itself"
    )
    p.add_argument(
        "--psam",
        metavar="FILE|READER",
        help="with --reader: recompute EXTERNAL AUTHENTICATE with this PSAM",
    )
    p.add_argument(
        "--test-keys",
        action="store_true",
        help="with --reader: recompute EXTERNAL AUTHENTICATE with the test issuer's keys",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    if args.keep and args.card is None:
        raise UsageError("--keep is for --card FILE")
    for option, given in (("--test-keys", args.test_keys), ("--psam", args.psam is not None)):
        if given and args.card is not None:
            raise UsageError(f"{option} is for --reader; a card file's own keys are used")
    if args.test_keys and args.psam is not None:
        raise UsageError("give --psam or --test-keys, not both")
    steps = load(args.script)
    code = _pin_of(args.pin)
    with contextlib.ExitStack() as stack:
        keys: Cryptograms | None
        if args.card is not None:
            reader, keys = stack.enter_context(card_file_reader(args.card, keep=args.keep))
            where = f"{one_line(args.card)}" + ("" if args.keep else " (a temporary copy)")
        else:
            from cardio.readers import pcsc

            reader = pcsc.PcscReader(pcsc.resolve(args.reader))
            stack.callback(reader.close)
            keys = fixture_keys() if args.test_keys else None
            if args.psam is not None:
                keys = source_keys(psam_keys(args.psam, stack))
            where = one_line(reader.name)
        print(f"replaying {one_line(args.script)} on {where}", file=out)
        atr = reader.connect()
        outcome = Replayer(reader, pin_code=code, keys=keys).run(steps, atr)
    return report(outcome, out)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="cardio")
    add_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["replay", *(sys.argv[1:] if argv is None else argv)])
    return run_command("cardio", lambda: int(args.func(args, sys.stdout)), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
