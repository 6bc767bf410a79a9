"""`cardio record`: a card session as a scriptor-runnable script with its answers to check.

The format ("cardio-record 1", docs/record.md), one item a line, LF endings:

    # cardio-record 1
    reset
    00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF 00
    #< 6F 1F 84 0F ... 90 00
    00 84 00 00 08
    #< .. .. .. .. .. .. .. .. 90 00
    #auth 00 82 00 84 10 1A 2B ... 01 02 ...
    #< 90 00
    #pin 00 20 00 00 03 ** ** **
    #< 90 00
    #secret 84 24 00 01 14 ** ** ...
    #< 90 00

- Line 1 is the header `# cardio-record VERSION`. Every comment starts at column 0
  (scriptor skips only those) and no line holds the word "exit": scriptor stops at the
  first line that does, comments included (pcsc-tools 1.6.2).
- A plain APDU is single-spaced hex, as scriptor wants it; `reset` resets the card.
- `#< CELLS` is the card's answer to the command before it, data then SW1 SW2. A cell
  `..` is a volatile byte: it changes from run to run and is not compared. Which answers
  are volatile is decided by the command alone (`_volatile_command`): the data of GET CHALLENGE
  (00 84) and INTERNAL AUTHENTICATE (00 88), of every PSAM command that computes
  (CLA BF, and 80 FA CIPHER DATA), and of the GET RESPONSEs that fetch such data after
  61xx; bytes the trace hid (`**`) are volatile too. The card keeps no clock, so no
  date is volatile: a changed date record is a real difference. Status words are
  always compared.
- Commands a scriptor run must not send are comment lines, so scriptor skips them.
  `#pin`: a VERIFY whose PIN is masked (`cardio replay --pin` fills it in).
  `#secret`: any other command that may carry a PIN or a MAC (CHANGE PIN, RESET RETRY,
  secure messaging CLA 84, the PSAM's CLA BF, which has the same bits, and its CIPHER
  DATA), masked as cardio.trace masks it; never sent again, nor the GET RESPONSEs right
  after it, which would fetch its answer.
  `#auth`: an EXTERNAL AUTHENTICATE (00 82). Its cryptogram answers a challenge of the
  recorded run only: sent as recorded it would fail and cost the card one try of that
  key, so replay recomputes it where it has the key (a card file's own keys, or the
  test issuer's with --test-keys) and skips it otherwise.
- A scriptor run of a script skips the PIN and the EXTERNAL AUTHENTICATEs, so what
  they open (DF04, a 3.00 card's EF06) answers 6982 there.
- `#atr CELLS` after a reset notes the ATR; other `#` lines are notes.

A PIN never reaches the file: every command is masked with cardio.trace's rule
before it is written, whatever the input (a hand-made trace may hold PIN bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TextIO

from cardio.apdu import to_hex
from cardio.errors import CardioError, Exit, UsageError
from cardio.model import Cla, Ins, PsamCla, PsamIns
from cardio.trace import MASK, mask_command, secret
from cardio.usage import OneLineParser, one_line, run_command

if TYPE_CHECKING:
    from cardio.control import Watch

VERSION = 1
HEADER = f"# cardio-record {VERSION}"
VOLATILE = ".."
MAX_BYTES = 8 << 20  # far more than any session; /dev/zero must not eat memory
FILE_MODE = 0o600
_HEADER = re.compile(r"# cardio-record (\d+)\s*$")
_HEX_CELL = re.compile(r"[0-9A-Fa-f]{2}")
_FORBIDDEN = re.compile("exit", re.IGNORECASE)  # scriptor ends a run at any such line


# A session script or trace that cannot be used: one line naming the file and line,
# exit 2. The family's own class (tests/test_errors.py lists every class and its exit).
RecordFileError = UsageError


class StepKind(StrEnum):
    RESET = "reset"
    APDU = "apdu"  # plain, sent by scriptor and by replay
    PIN = "pin"  # a VERIFY, PIN masked: replay fills it from --pin
    SECRET = "secret"  # noqa: S105 - a kind of line: masked PIN change / MAC / PSAM cipher
    AUTH = "auth"  # EXTERNAL AUTHENTICATE: replay recomputes the cryptogram


MARKERS = {StepKind.PIN: "#pin ", StepKind.SECRET: "#secret ", StepKind.AUTH: "#auth "}
EXPECT = "#< "
ATR = "#atr "


# --- expectations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """An answer to check: each byte, or None where it is volatile."""

    cells: tuple[int | None, ...]

    def matches(self, response: bytes) -> bool:
        return len(response) == len(self.cells) and all(
            want is None or want == got for want, got in zip(self.cells, response, strict=True)
        )

    def text(self) -> str:
        return " ".join(VOLATILE if c is None else f"{c:02X}" for c in self.cells)


def _volatile_command(head: tuple[int, int]) -> bool:
    """Whether the command's answer data changes from run to run (the module's rule)."""
    cla, ins = head
    if (cla, ins) in ((Cla.ISO, Ins.GET_CHALLENGE), (Cla.ISO, Ins.INTERNAL_AUTHENTICATE)):
        return True
    return cla == PsamCla.ENVIRONMENT or (cla, ins) == (PsamCla.PROPRIETARY, PsamIns.CIPHER_DATA)


# --- the steps of a script ------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One line of work. `command` is the APDU's bytes (APDU, AUTH) or None (RESET, and
    PIN/SECRET, whose bytes were never written); `shown` is the masked text."""

    kind: StepKind
    line: int
    shown: str = ""
    command: bytes | None = None
    expect: Expect | None = None
    atr: bytes | None = None  # RESET: the recorded ATR, when noted

    def with_expect(self, expect: Expect) -> Step:
        return Step(self.kind, self.line, self.shown, self.command, expect, self.atr)

    def with_atr(self, atr: bytes) -> Step:
        return Step(self.kind, self.line, self.shown, self.command, self.expect, atr)

    @property
    def cells(self) -> list[str]:
        return self.shown.split(" ")


def step_for(masked_cells: list[str], line: int) -> Step:
    """The step of a command as a trace shows it (hex cells, maybe `**`). A command that
    arrives unmasked but is secret is masked here: the PIN never reaches a file."""
    if any(c == MASK for c in masked_cells):
        # Masked by someone: at least what the trace's rule masks stays masked.
        filled = bytes.fromhex("".join("00" if c == MASK else c for c in masked_cells))
        ruled = mask_command(filled).split(" ")
        shown = " ".join(
            MASK if MASK in (c, r) else c.upper() for c, r in zip(masked_cells, ruled, strict=True)
        )
        if masked_cells[1] == f"{Ins.VERIFY:02X}":
            return Step(StepKind.PIN, line, shown)
        return Step(StepKind.SECRET, line, shown)
    command = bytes.fromhex("".join(masked_cells))
    if secret(command):
        kind = StepKind.PIN if command[1] == Ins.VERIFY else StepKind.SECRET
        return Step(kind, line, mask_command(command))
    if command[:2] == bytes((Cla.ISO, Ins.EXTERNAL_AUTHENTICATE)):
        return Step(StepKind.AUTH, line, to_hex(command), command)
    return Step(StepKind.APDU, line, to_hex(command), command)


def _neutral(text: str) -> str:
    """A note safe in a script: one line, no 'exit' (scriptor would stop there)."""
    return _FORBIDDEN.sub("ex-it", one_line(text))


def step_lines(step: Step) -> list[str]:
    """The script lines of one step."""
    if step.kind is StepKind.RESET:
        lines = ["reset"]
        if step.atr is not None:
            lines.append(ATR + to_hex(step.atr))
        return lines
    lines = [step.shown if step.kind is StepKind.APDU else MARKERS[step.kind] + step.shown]
    if step.expect is not None:
        lines.append(EXPECT + step.expect.text())
    else:
        lines.append("# no answer was recorded")
    return lines


# --- recording: trace lines in, script lines out ---------------------------------------------


class Recorder:
    """Turns trace lines (`> ` command, `< ` response, `reset [ATR]`, `#` notes, and a
    watch's first `atr ATR`: the card in the slot as it began) into
    script lines, written as soon as each exchange is complete (a recorder stopped by
    Ctrl+C leaves a usable script)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._pending: Step | None = None
        self._pending_head: tuple[int, int] | None = None
        self._chain_volatile = False  # the last answer was volatile data behind 61xx
        self.commands = 0
        self.started = False  # a reset written: the session's start
        write(HEADER)

    def _flush(self) -> None:
        if self._pending is not None:
            for line in step_lines(self._pending):
                self._write(line)
            self._pending = None

    def reset(self, atr: bytes | None = None) -> None:
        self._flush()
        self.started = True
        self._chain_volatile = False
        step = Step(StepKind.RESET, 0)
        self._write_step(step.with_atr(atr) if atr is not None else step)

    def _write_step(self, step: Step) -> None:
        for line in step_lines(step):
            self._write(line)

    def note(self, text: str) -> None:
        self._flush()
        self._write("# " + _neutral(text))

    def command(self, cells: list[str], where: str) -> None:
        self._flush()
        _check_cells(cells, where, allow_mask=True)
        if len(cells) < 4:
            raise RecordFileError(f"{where}: a command has at least 4 bytes (CLA INS P1 P2)")
        self._pending = step_for(cells, 0)
        self._pending_head = (int(cells[0], 16), int(cells[1], 16))
        self.commands += 1

    def response(self, cells: list[str], where: str) -> None:
        if self._pending is None or self._pending_head is None:
            raise RecordFileError(f"{where}: an answer with no command before it")
        if not cells:  # what a pulled card leaves through vpcd: an empty answer
            self._flush()
            self._write("# the card gave an empty answer (pulled out?)")
            return
        _check_cells(cells, where, allow_mask=True)
        if len(cells) < 2 or MASK in cells[-2:]:
            raise RecordFileError(f"{where}: an answer ends with its status word (2 bytes)")
        head = self._pending_head
        volatile = _volatile_command(head) or (
            head == (Cla.ISO, Ins.GET_RESPONSE) and self._chain_volatile
        )
        values: list[int | None] = [
            None if volatile or c == MASK else int(c, 16) for c in cells[:-2]
        ]
        values += [int(c, 16) for c in cells[-2:]]
        self._pending = self._pending.with_expect(Expect(tuple(values)))
        self._chain_volatile = volatile and cells[-2].upper() == "61"
        self._flush()

    def feed(self, line: str, where: str) -> None:
        """One trace line. Anything else than the trace's forms is an error."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return
        mark = text.split(" ", 1)[0]
        if mark == ">":
            self.command(text[1:].split(), where)
        elif mark == "<":
            self.response(text[1:].split(), where)
        elif text.strip().lower().split(" ")[0] in ("reset", "atr"):
            word, *rest = text.strip().split()
            atr = None
            if rest:
                _check_cells(rest, where, allow_mask=False)
                atr = bytes.fromhex("".join(rest))
            if word.lower() == "reset" or not self.started:
                self.reset(atr)  # `atr`: the card a watch found in the slot, as it starts
            else:
                self.note(f"atr {to_hex(atr or b'')}")
        elif text.startswith("#"):
            self.note(text.lstrip("# "))
        else:
            raise RecordFileError(
                f"{where}: {one_line(text[:40])!r} is not a trace line; a trace has "
                "'> ' commands, '< ' answers, 'reset' and '#' notes"
            )

    def close(self) -> None:
        self._flush()


def _check_cells(cells: list[str], where: str, *, allow_mask: bool) -> None:
    for cell in cells:
        if not (_HEX_CELL.fullmatch(cell) or (allow_mask and cell == MASK)):
            raise RecordFileError(f"{where}: {one_line(cell[:20])!r} is not a hex byte")


def record_lines(
    lines: Iterable[str],
    write: Callable[[str], None] | Recorder,
    *,
    name: str,
    strict: bool = True,
) -> int:
    """Record a trace of `name` (a file's lines, or a watch stream) with `write` (a new
    Recorder over it) or a Recorder; returns the number of commands. A trace that does
    not begin with a reset gets one at the start. Not `strict` (a live stream, which
    must not end a recording over one odd line): a line not understood is a note that
    says so, without its text (it might hold what the trace failed to mask)."""
    recorder = write if isinstance(write, Recorder) else Recorder(write)
    first = True
    try:
        for number, line in enumerate(lines, start=1):
            if first and line.strip():
                first = False
                if line.strip().lower().split(" ")[0] not in ("reset", "atr"):
                    recorder.reset()
            try:
                recorder.feed(line, f"{name}:{number}")
            except RecordFileError:
                if strict:
                    raise
                recorder.note(f"line {number} of the stream was not understood: left out")
    finally:
        recorder.close()
    return recorder.commands


# --- reading a script -------------------------------------------------------------------


def read_text(name: str, what: str) -> str:
    """A file's text, UTF-8, at most MAX_BYTES; RecordFileError (exit 2) otherwise."""
    if not name:
        raise RecordFileError(f"the {what} path is empty; give a file")
    try:
        mode = os.stat(name).st_mode
        if stat.S_ISDIR(mode):
            raise RecordFileError(f"{one_line(name)} is a folder; give the {what}")
        # A pipe is fine (`... | cardio record --from-trace /dev/stdin`); a device is not.
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise RecordFileError(f"{one_line(name)} is not a regular file; give the {what}")
        with open(name, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise RecordFileError(
            f"{one_line(name)} cannot be read ({e.strerror}); give the {what}"
        ) from None
    if len(raw) > MAX_BYTES:
        raise RecordFileError(f"{one_line(name)} is over {MAX_BYTES >> 20} MB; give the {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise RecordFileError(f"{one_line(name)}:{line} is not UTF-8 text") from None


def parse(text: str, name: str) -> list[Step]:
    """The steps of a session script; RecordFileError naming the line otherwise."""
    steps: list[Step] = []
    header_seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{one_line(name)}:{number}"
        line = raw.rstrip()
        if not line:
            continue
        if _FORBIDDEN.search(line):
            raise RecordFileError(
                f"{where}: the line holds 'exit', where scriptor stops the run; remove the word"
            )
        if not header_seen:
            match = _HEADER.match(line)
            if match is None:
                raise RecordFileError(
                    f"{where}: not a session script (it must start with '{HEADER}'); "
                    "make one with 'cardio record'"
                )
            if int(match.group(1)) != VERSION:
                raise RecordFileError(
                    f"{where}: a cardio-record {match.group(1)} script; this cardio reads "
                    f"version {VERSION}"
                )
            header_seen = True
            continue
        steps_line(steps, line, where, number)
    if not header_seen:
        raise RecordFileError(f"{one_line(name)} is empty; make a script with 'cardio record'")
    return steps


def steps_line(steps: list[Step], line: str, where: str, number: int) -> None:
    if line.startswith(EXPECT):
        if not steps or steps[-1].kind is StepKind.RESET or steps[-1].expect is not None:
            raise RecordFileError(f"{where}: an expected answer with no command before it")
        cells = line[len(EXPECT) :].split(" ")
        for cell in cells:
            if not (_HEX_CELL.fullmatch(cell) or cell == VOLATILE):
                raise RecordFileError(
                    f"{where}: {one_line(cell[:20])!r} is neither a hex byte nor '..'"
                )
        if len(cells) < 2 or VOLATILE in cells[-2:]:
            raise RecordFileError(f"{where}: an expected answer ends with its status word")
        steps[-1] = steps[-1].with_expect(
            Expect(tuple(None if c == VOLATILE else int(c, 16) for c in cells))
        )
        return
    if line.startswith(ATR):
        if not steps or steps[-1].kind is not StepKind.RESET:
            raise RecordFileError(f"{where}: an ATR note belongs after 'reset'")
        cells = line[len(ATR) :].split(" ")
        _check_cells(cells, where, allow_mask=False)
        steps[-1] = steps[-1].with_atr(bytes.fromhex("".join(cells)))
        return
    for kind, marker in MARKERS.items():
        if line.startswith(marker):
            cells = line[len(marker) :].split(" ")
            _check_cells(cells, where, allow_mask=kind is not StepKind.AUTH)
            if len(cells) < 4 or MASK in cells[:4]:
                raise RecordFileError(f"{where}: a command starts with CLA INS P1 P2 in hex")
            if kind is StepKind.AUTH:
                command = bytes.fromhex("".join(cells))
                steps.append(Step(kind, number, to_hex(command), command))
            else:
                steps.append(Step(kind, number, " ".join(c.upper() for c in cells)))
            return
    if line.startswith("#"):
        return  # a note
    if line.strip().lower() == "reset":
        steps.append(Step(StepKind.RESET, number))
        return
    cells = line.split(" ")
    try:
        _check_cells(cells, where, allow_mask=False)
    except RecordFileError:
        raise RecordFileError(
            f"{where}: {one_line(line[:40])!r} is not an APDU; scriptor wants hex bytes "
            "with one space between them, and comments start at column 0 with '#'"
        ) from None
    if len(cells) < 4:
        raise RecordFileError(f"{where}: an APDU has at least 4 bytes (CLA INS P1 P2)")
    command = bytes.fromhex("".join(cells))
    if secret(command):  # written by hand: never send a PIN a file holds in the clear
        raise RecordFileError(
            f"{where}: a PIN or MAC command in the clear; write it masked, as '#pin' or '#secret'"
        )
    steps.append(Step(StepKind.APDU, number, to_hex(command), command))


def load(path: str) -> list[Step]:
    return parse(read_text(path, "session script"), path)


# --- writing --------------------------------------------------------------------------------


@contextlib.contextmanager
def private_output(path: str, *, force: bool) -> Iterator[TextIO]:
    """The script file, mode 0600, never through a symlink; an existing file only with
    --force. Written line by line as the session goes."""
    if not path:
        raise UsageError("the --out path is empty; give the script file to write")
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    flags |= os.O_TRUNC if force else os.O_EXCL
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileExistsError:
        raise UsageError(f"{one_line(path)} already exists; add --force to replace it") from None
    except OSError as e:
        raise UsageError(
            f"{one_line(path)} cannot be written ({e.strerror}); give a file in a folder you "
            "can write"
        ) from None
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file (--force) keeps its mode otherwise
    except OSError:
        os.close(fd)
        raise
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
        yield out


# --- the command ------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """`cardio record`."""
    p = subparsers.add_parser(
        "record",
        help="write a card session as a scriptor script with the answers to check",
        description="From a terminal's --trace file, or live from 'cardio serve' (its "
        "control socket's watch). PINs are never written; docs/record.md.",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the session script to write")
    p.add_argument("--from-trace", metavar="TRACE", help="a trace file (pos-terminal --trace)")
    p.add_argument(
        "--control",
        metavar="PATH",
        help="cardio serve's control socket, or its first card file (as cardio ctl)",
    )
    p.add_argument("--slot", type=int, default=0, metavar="N", help="the served slot (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    if args.from_trace is not None and args.control is not None:
        raise UsageError("give --from-trace or --control, not both")
    if args.slot < 0:
        raise UsageError("--slot is a slot number, 0 or more")
    if args.from_trace is None and args.control is None and not os.environ.get("CARDIO_CONTROL"):
        raise UsageError(
            "give --from-trace TRACE, or --control PATH (cardio serve's socket or its first "
            "card file)"
        )
    if args.from_trace is not None:
        # The whole trace first: a bad line is told before any script exists.
        lines: list[str] = []
        trace = read_text(args.from_trace, "trace").splitlines()
        count = record_lines(trace, lines.append, name=args.from_trace)
        with private_output(args.out, force=args.force) as script:
            script.write("".join(line + "\n" for line in lines))
        return _recorded(count, args.out, out)
    from cardio import control

    # The socket, or the first card file it sits beside, or $CARDIO_CONTROL: as ctl.
    # Watched (and acknowledged) before the script exists: a refusal leaves no file.
    with control.Watch(control.resolve(args.control), args.slot) as watch:
        return _record_live(watch, args, out)


def _record_live(watch: Watch, args: argparse.Namespace, out: TextIO) -> int:
    """The script written line by line as the stream comes, so Ctrl+C keeps what came."""
    from cardio.control import WatchCut

    with private_output(args.out, force=args.force) as script:

        def write(text: str) -> None:
            script.write(text + "\n")
            script.flush()

        recorder = Recorder(write)
        try:
            record_lines(watch.lines(), recorder, name=f"slot {args.slot}", strict=False)
        except KeyboardInterrupt:  # the way a live recording ends: what came is kept
            return _recorded(recorder.commands, args.out, out, " (ended by Ctrl+C)")
        except WatchCut as e:
            recorder.note("cut: the live stream stopped here; commands after this are missing")
            raise CardioError(
                f"{e}; {one_line(args.out)} holds the first {_commands(recorder.commands)}"
            ) from None
    return _recorded(recorder.commands, args.out, out)


def _commands(count: int) -> str:
    return f"{count} command" + ("" if count == 1 else "s")


def _recorded(count: int, path: str, out: TextIO, how: str = "") -> int:
    print(f"recorded {_commands(count)} into {one_line(path)}{how}", file=out)
    return Exit.OK


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="cardio")
    add_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["record", *(sys.argv[1:] if argv is None else argv)])
    return run_command("cardio", lambda: int(args.func(args, sys.stdout)), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
